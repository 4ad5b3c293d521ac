//! Start-up hardening, tested in a fresh process: the test binary re-runs
//! itself (only the `probe` test) under a shell that poisons the
//! environment, closes fds, lowers limits and ignores signals, and the probe
//! reports what `harden` left.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::process::Command;

const PROBE_VAR: &str = "CKPT_STARTUP_PROBE";

/// Runs only as the child of the tests below (the variable is set there);
/// on its own it has nothing to check.
#[test]
fn probe() {
    if std::env::var_os(PROBE_VAR).is_none() {
        return;
    }
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
         TSS2_LOGFILE=/tmp/ckpt-evil-log PATH=/evil:/bin IFS=x \"$0\" probe --exact --nocapture --test-threads=1 0<&- 2>&-"
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

#[test]
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

#[test]
fn refuses_a_lowered_hard_file_size_limit() {
    let text = run_probe("ulimit -f 1000");
    let e = field(&text, "error");
    assert!(e.contains("RLIMIT_FSIZE"), "{e}");
}

#[test]
fn refuses_a_tiny_hard_nofile_limit() {
    let text = run_probe("ulimit -n 16");
    let e = field(&text, "error");
    assert!(e.contains("RLIMIT_NOFILE"), "{e}");
}
