//! `ckpt-man OUTDIR`: writes the man pages and shell completions of the two
//! helpers into OUTDIR (`man1/`, `man5/`, `completions/{bash,zsh,fish}/`).
//!
//! `ckpt-sign(1)` and `ckpt-verify(1)` are rendered from the helpers' own
//! clap definitions (their `src/cli.rs`, compiled into this program as
//! modules, so a new option shows up here without anyone copying it), with
//! one subsection per command, followed by the hand-written sections in
//! `pages/*.1.in` (EXIT STATUS, FILES, SECURITY, EXAMPLES). `ckpt-policy(5)`
//! and `ckpt.toml(5)` are hand-written roff (`pages/*.5`), copied as they
//! are. The completions come from the same definitions (clap_complete).
//!
//! Trusts nothing but its own argument; writes only under OUTDIR.
#![forbid(unsafe_code)]

#[allow(dead_code)]
#[path = "../../ckpt-sign/src/cli.rs"]
mod sign_cli;

#[allow(dead_code)]
#[path = "../../ckpt-verify/src/cli.rs"]
mod verify_cli;

use std::fs;
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::CommandFactory as _;
use clap_complete::Shell;

/// One page: the clap command and the hand-written sections appended.
struct Page {
    cmd: clap::Command,
    extra: &'static str,
}

/// The hand-written pages, copied as they are: (section dir, file, text).
const STATIC_PAGES: [(&str, &str, &str); 2] = [
    (
        "man5",
        "ckpt-policy.5",
        include_str!("../pages/ckpt-policy.5"),
    ),
    ("man5", "ckpt.toml.5", include_str!("../pages/ckpt.toml.5")),
];

fn pages() -> [Page; 2] {
    [
        Page {
            cmd: sign_cli::Cli::command(),
            extra: include_str!("../pages/ckpt-sign.1.in"),
        },
        Page {
            cmd: verify_cli::Cli::command(),
            extra: include_str!("../pages/ckpt-verify.1.in"),
        },
    ]
}

/// Why a page could not be written.
#[derive(Debug)]
struct WriteError {
    path: PathBuf,
    source: io::Error,
}

impl std::fmt::Display for WriteError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.path.display(), self.source)
    }
}

fn write_file(path: &Path, bytes: &[u8]) -> Result<(), WriteError> {
    let err = |source| WriteError {
        path: path.to_owned(),
        source,
    };
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).map_err(err)?;
    }
    fs::write(path, bytes).map_err(err)
}

/// Escapes text for a roff line: backslashes, and a leading `.` or `'`.
fn roff_text(s: &str) -> String {
    let s = s.replace('\\', "\\e").replace('-', "\\-");
    if s.starts_with('.') || s.starts_with('\'') {
        format!("\\&{s}")
    } else {
        s
    }
}

/// The page of one helper: clap_mangen's title, NAME, SYNOPSIS,
/// DESCRIPTION and OPTIONS, then COMMANDS (each subcommand's usage, help
/// and options, nested commands too), then the hand-written sections, then
/// VERSION.
fn render_page(page: &Page) -> io::Result<Vec<u8>> {
    let mut cmd = page.cmd.clone();
    cmd.build();
    let man = clap_mangen::Man::new(cmd.clone()).section("1");
    let mut out = Vec::new();
    man.render_title(&mut out)?;
    man.render_name_section(&mut out)?;
    man.render_synopsis_section(&mut out)?;
    man.render_description_section(&mut out)?;
    man.render_options_section(&mut out)?;
    writeln!(out, ".SH COMMANDS")?;
    for sub in cmd.get_subcommands().filter(|s| s.get_name() != "help") {
        render_command(&mut out, sub)?;
    }
    out.extend_from_slice(page.extra.as_bytes());
    if !page.extra.ends_with('\n') {
        out.push(b'\n');
    }
    man.render_version_section(&mut out)?;
    Ok(out)
}

/// `.SS` with the usage line, the long help and the options of `sub`.
fn render_command(out: &mut Vec<u8>, sub: &clap::Command) -> io::Result<()> {
    let mut sub = sub.clone();
    let usage = sub.render_usage().to_string();
    let usage = usage.trim().trim_start_matches("Usage:").trim().to_owned();
    let title = usage
        .split_whitespace()
        .take_while(|w| !w.starts_with('[') && !w.starts_with('<') && !w.starts_with('-'))
        .collect::<Vec<_>>()
        .join(" ");
    writeln!(out, ".SS \"{}\"", roff_text(&title))?;
    writeln!(out, ".B {}", roff_text(&usage))?;
    if let Some(about) = sub.get_long_about().or(sub.get_about()) {
        writeln!(out, ".PP")?;
        for line in about.to_string().lines() {
            writeln!(out, "{}", roff_text(line))?;
        }
    }
    let has_args = sub
        .get_arguments()
        .any(|a| a.get_id() != "help" && a.get_id() != "version");
    if has_args {
        let mut opts = Vec::new();
        clap_mangen::Man::new(sub.clone()).render_options_section(&mut opts)?;
        let text = String::from_utf8_lossy(&opts);
        // Drop clap_mangen's own ".SH OPTIONS" heading: these are a
        // subsection's options.
        let body = text.replacen(".SH OPTIONS\n", ".PP\nOptions:\n", 1);
        out.extend_from_slice(body.as_bytes());
    }
    let nested: Vec<clap::Command> = sub
        .get_subcommands()
        .filter(|s| s.get_name() != "help")
        .cloned()
        .collect();
    for n in &nested {
        render_command(out, n)?;
    }
    Ok(())
}

fn run(outdir: &Path) -> Result<(), WriteError> {
    for page in pages() {
        let name = page.cmd.get_name().to_owned();
        let path = outdir.join("man1").join(format!("{name}.1"));
        let bytes = render_page(&page).map_err(|source| WriteError {
            path: path.clone(),
            source,
        })?;
        write_file(&path, &bytes)?;
        for (shell, dir, file) in [
            (Shell::Bash, "bash", name.clone()),
            (Shell::Zsh, "zsh", format!("_{name}")),
            (Shell::Fish, "fish", format!("{name}.fish")),
        ] {
            let mut cmd = page.cmd.clone();
            let mut buf = Vec::new();
            clap_complete::generate(shell, &mut cmd, name.clone(), &mut buf);
            write_file(&outdir.join("completions").join(dir).join(file), &buf)?;
        }
    }
    for (dir, file, text) in STATIC_PAGES {
        write_file(&outdir.join(dir).join(file), text.as_bytes())?;
    }
    Ok(())
}

fn main() -> ExitCode {
    let args: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
    let [outdir] = args.as_slice() else {
        let _ = writeln!(
            io::stderr(),
            "usage: ckpt-man OUTDIR  (writes man1/, man5/ and completions/ under OUTDIR)"
        );
        return ExitCode::from(2);
    };
    match run(Path::new(outdir)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let _ = writeln!(io::stderr(), "ckpt-man: cannot write {e}");
            ExitCode::from(1)
        }
    }
}
