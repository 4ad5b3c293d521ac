//! Start-up hardening, tested in a fresh process: the test binary re-runs
//! itself as the probe under a shell that poisons the environment, closes
//! fds, lowers limits and ignores signals, and the probe reports what
//! `harden` left.
//!
//! No libtest harness (`harness = false`): `harden` refuses to run once a
//! second thread exists, as in the helpers it must run first in `main`, and
//! libtest runs every test on a thread of its own. `main` below is either the
//! probe (with the variable set) or a small runner of the checks that prints
//! libtest's result line.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::process::Command;

const PROBE_VAR: &str = "CKPT_STARTUP_PROBE";

fn main() {
    if std::env::var_os(PROBE_VAR).is_some() {
        probe();
        return;
    }
    let checks: [(&str, fn()); 4] = [
        ("hardens_a_hostile_start", hardens_a_hostile_start),
        (
            "refuses_a_lowered_hard_file_size_limit",
            refuses_a_lowered_hard_file_size_limit,
        ),
        (
            "refuses_a_tiny_hard_nofile_limit",
            refuses_a_tiny_hard_nofile_limit,
        ),
        (
            "refuses_to_run_with_other_threads",
            refuses_to_run_with_other_threads,
        ),
    ];
    println!("\nrunning {} tests", checks.len());
    let mut failed = Vec::new();
    for (name, check) in checks {
        let ok = std::panic::catch_unwind(check).is_ok();
        println!("test {name} ... {}", if ok { "ok" } else { "FAILED" });
        if !ok {
            failed.push(name);
        }
    }
    println!(
        "\ntest result: {}. {} passed; {} failed; 0 ignored; 0 measured; 0 filtered out\n",
        if failed.is_empty() { "ok" } else { "FAILED" },
        checks.len() - failed.len(),
        failed.len()
    );
    if !failed.is_empty() {
        eprintln!("failed: {}", failed.join(", "));
        std::process::exit(101);
    }
}

/// The probe: runs `harden` first thing in a fresh single-threaded process
/// and reports what it left; the checks below assert on the report.
fn probe() {
    let result = ckpt_privsep::startup::harden();
    let s = match result {
        Ok(s) => s,
        Err(e) => {
            println!("PROBE error={e}");
            return;
        }
    };
    let env: Vec<String> = std::env::vars_os()
        .map(|(k, v)| format!("{}={}", k.to_string_lossy(), v.to_string_lossy()))
        .collect();
    println!("PROBE env={}", env.join(","));
    for fd in 0..=2 {
        let target = std::fs::read_link(format!("/proc/self/fd/{fd}"))
            .map(|p| p.display().to_string())
            .unwrap_or_else(|_| "closed".into());
        println!("PROBE fd{fd}={target}");
    }
    println!(
        "PROBE dumpable={}",
        nix::sys::prctl::get_dumpable().expect("dumpable")
    );
    let old = nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o077));
    println!("PROBE umask={:o}", old.bits());
    let (core_soft, _) =
        nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_CORE).expect("core");
    println!("PROBE core_soft={core_soft}");
    let (soft, hard) =
        nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE).expect("nofile");
    println!("PROBE nofile_raised={}", soft == hard);
    // SIGCHLD was ignored by the shell: waiting for a child must still work.
    let waited = Command::new("true").status().map(|s| s.success());
    println!("PROBE wait={waited:?}");
    println!("PROBE caller_uid={}", s.caller.uid);
}

fn run_probe(shell_prefix: &str) -> String {
    let exe = std::env::current_exe().expect("exe");
    let script = format!(
        "{shell_prefix}; exec env -i {PROBE_VAR}=1 LD_PRELOAD=/nonexistent/evil.so \
         TSS2_LOGFILE=/tmp/ckpt-evil-log PATH=/evil:/bin IFS=x \"$0\" 0<&- 2>&-"
    );
    let out = Command::new("/bin/bash")
        .arg("-c")
        .arg(script)
        .arg(exe)
        .output()
        .expect("run probe");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(text.contains("PROBE "), "probe did not run: {text}");
    text
}

fn field<'a>(text: &'a str, name: &str) -> &'a str {
    let key = format!("PROBE {name}=");
    text.lines()
        .find_map(|l| l.find(key.as_str()).map(|i| &l[i + key.len()..]))
        .unwrap_or_else(|| panic!("no {name} in {text}"))
}

fn hardens_a_hostile_start() {
    let text = run_probe("ulimit -S -n 100; ulimit -S -c 1000; umask 000; trap '' CHLD PIPE");
    assert_eq!(field(&text, "env"), "PATH=/usr/sbin:/usr/bin:/sbin:/bin");
    assert_eq!(field(&text, "fd0"), "/dev/null");
    assert_eq!(field(&text, "fd2"), "/dev/null");
    assert_eq!(field(&text, "dumpable"), "false");
    assert_eq!(field(&text, "umask"), "77");
    assert_eq!(field(&text, "core_soft"), "0");
    assert_eq!(field(&text, "nofile_raised"), "true");
    assert_eq!(field(&text, "wait"), "Ok(true)");
}

fn refuses_a_lowered_hard_file_size_limit() {
    let text = run_probe("ulimit -f 1000");
    let e = field(&text, "error");
    assert!(e.contains("RLIMIT_FSIZE"), "{e}");
}

fn refuses_a_tiny_hard_nofile_limit() {
    let text = run_probe("ulimit -n 16");
    let e = field(&text, "error");
    assert!(e.contains("RLIMIT_NOFILE"), "{e}");
}

/// In a process that already has a second thread, `harden` refuses rather
/// than clear the environment under that thread, and says why.
fn refuses_to_run_with_other_threads() {
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let other = std::thread::spawn(move || rx.recv());
    let err = ckpt_privsep::startup::harden().expect_err("harden with two threads");
    assert!(
        matches!(
            err,
            ckpt_privsep::startup::StartupError::Threaded { threads: 2 }
        ),
        "{err}"
    );
    assert!(
        std::env::var_os("PATH").is_some(),
        "the environment is untouched"
    );
    drop(tx);
    let _ = other.join();
}
