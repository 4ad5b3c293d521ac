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

#[cfg(test)]
#[allow(clippy::expect_used, clippy::unwrap_used)]
mod tests {
    use super::*;

    /// Every command (nested ones too) with its full name.
    fn commands(cmd: &clap::Command, prefix: &str, out: &mut Vec<(String, clap::Command)>) {
        for sub in cmd.get_subcommands().filter(|s| s.get_name() != "help") {
            let name = format!("{prefix} {}", sub.get_name());
            out.push((name.clone(), sub.clone()));
            commands(sub, &name, out);
        }
    }

    #[test]
    fn pages_cover_every_command_and_option_and_the_written_sections() {
        for page in pages() {
            let text = String::from_utf8(render_page(&page).unwrap()).unwrap();
            let name = page.cmd.get_name().to_owned();
            assert!(
                text.starts_with(".ie") || text.contains(".TH"),
                "{name}: no title"
            );
            for section in [
                ".SH NAME",
                ".SH SYNOPSIS",
                ".SH COMMANDS",
                ".SH \"EXIT STATUS\"",
                ".SH FILES",
                ".SH SECURITY",
                ".SH EXAMPLES",
                ".SH \"SEE ALSO\"",
            ] {
                assert_eq!(text.matches(section).count(), 1, "{name}: {section}");
            }
            let mut all = Vec::new();
            commands(&page.cmd, &name, &mut all);
            assert!(!all.is_empty(), "{name} has no commands");
            for (full, sub) in &all {
                let heading = format!(".SS \"{}\"", roff_text(full));
                assert!(text.contains(&heading), "{name}: no {heading}");
                for arg in sub.get_arguments() {
                    if let Some(long) = arg.get_long() {
                        let flag = roff_text(&format!("--{long}"));
                        assert!(text.contains(&flag), "{full}: option {flag} missing");
                    }
                }
            }
        }
    }

    #[test]
    fn exit_codes_are_the_documented_ones() {
        // The codes each helper can end with (privsep's `Exit`, as the
        // helpers use it): ckpt-sign never verifies or restores.
        let want: [(&str, &[u8]); 2] = [
            ("ckpt-sign", &[0, 1, 2, 3, 6, 10]),
            ("ckpt-verify", &[0, 1, 2, 3, 4, 5, 7, 8, 9, 10]),
        ];
        for (page, (name, codes)) in pages().iter().zip(want) {
            let text = String::from_utf8(render_page(page).unwrap()).unwrap();
            let exit = text
                .split(".SH \"EXIT STATUS\"")
                .nth(1)
                .and_then(|t| t.split(".SH ").next())
                .unwrap();
            let listed: Vec<u8> = exit
                .lines()
                .filter_map(|l| l.strip_prefix(".B "))
                .map(|c| c.trim().parse().unwrap())
                .collect();
            assert_eq!(listed, codes, "{name}");
        }
    }

    #[test]
    fn writes_pages_and_completions() {
        let dir = std::env::temp_dir().join(format!("ckpt-man-test-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        run(&dir).unwrap();
        for f in [
            "man1/ckpt-sign.1",
            "man1/ckpt-verify.1",
            "man5/ckpt-policy.5",
            "man5/ckpt.toml.5",
            "completions/bash/ckpt-verify",
            "completions/zsh/_ckpt-sign",
            "completions/fish/ckpt-verify.fish",
        ] {
            let text = fs::read_to_string(dir.join(f)).unwrap();
            assert!(text.contains("ckpt"), "{f}");
        }
        let bash = fs::read_to_string(dir.join("completions/bash/ckpt-verify")).unwrap();
        assert!(bash.contains("--inherit-fd") && bash.contains("restore"));
        fs::remove_dir_all(&dir).unwrap();
    }

    /// The words a roff page sets in bold: `.B`/`.BR` lines and `\fB...\fR`.
    fn bold_words(page: &str) -> Vec<String> {
        let mut out = Vec::new();
        for line in page.lines() {
            if let Some(rest) = line.strip_prefix(".BR ").or(line.strip_prefix(".B ")) {
                out.extend(
                    rest.split_whitespace()
                        .map(|w| w.trim_matches('"').to_owned()),
                );
            }
        }
        for part in page.split("\\fB").skip(1) {
            if let Some((word, _)) = part.split_once("\\fR") {
                out.push(word.to_owned());
            }
        }
        out
    }

    #[test]
    fn policy_and_config_pages_name_every_key() {
        // The keys policy/src/parse.rs accepts (privileges with roff's `\-`).
        let policy = bold_words(include_str!("../pages/ckpt-policy.5"));
        for key in [
            "revoked",
            "name",
            "public",
            "not_before",
            "not_after",
            "attestation_key",
            "map_uid",
            "map_gid",
            "signed_by",
            "requester",
            "caller",
            "target",
            "exe",
            "exe_digest",
            "host",
            "attested",
            "max_age",
            "one_shot",
            "grant",
            "uid",
            "ruid",
            "euid",
            "suid",
            "fsuid",
            "gid",
            "rgid",
            "egid",
            "sgid",
            "fsgid",
            "caps_within",
            "credentials",
            "capabilities",
            "same\\-pid",
            "exe\\-link",
            "privileged\\-files",
        ] {
            assert!(
                policy.iter().any(|w| w == key),
                "ckpt-policy(5) does not describe {key}"
            );
        }
        // The keys tpm/src/config.rs accepts.
        let config = bold_words(include_str!("../pages/ckpt.toml.5"));
        for key in [
            "key",
            "fallback",
            "tcti",
            "pcrs",
            "attest",
            "signing_handle",
            "attestation_handle",
        ] {
            assert!(
                config.iter().any(|w| w == key),
                "ckpt.toml(5) does not describe {key}"
            );
        }
    }
}
