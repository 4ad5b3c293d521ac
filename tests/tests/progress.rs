//! The progress bar: a dump or a restore that lasts more than a second
//! draws a bar (bytes done, rate, time left) on stderr when stderr is a
//! terminal, and nothing at all when it is not. The bar is erased before
//! the helper's own lines, and stdout (the `--json` object, the pid) never
//! sees it. The workload holds 1 GiB of written memory, so the dump and the
//! restore (which reads the image twice: verify, then restore) each last
//! well over a second.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::fs;
use std::io::Read;
use std::path::Path;
use std::process::Stdio;
use std::time::Instant;

use ckpt_tests::{
    exit, path_str, user_dir, wait_ready, Env, Proc, Run, TestDir, Who, HELPER_TIMEOUT,
};

/// MiB of memory the workload writes: enough that a dump and a restore
/// each last well over the bar's one second on a quiet machine (a warm
/// restore streams about 2 GB/s here).
const BALLAST_MIB: &str = "3072";

/// The bar's rate and time-left fields, as drawn.
fn has_bar(text: &str) -> bool {
    text.contains("dump [") || text.contains("restore [")
}

/// Runs `program ARGS` as the test user with stderr on a new terminal (a
/// pty of 120 columns; everything the terminal received is the run's
/// `stderr`) and stdout on a file.
fn run_on_terminal(env: &Env, dir: &TestDir, program: &Path, args: &[&str], tag: &str) -> Run {
    let size = nix::pty::Winsize {
        ws_row: 40,
        ws_col: 120,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    let pty = nix::pty::openpty(Some(&size), None).expect("openpty");
    let out_path = dir.root.join(format!("{tag}.stdout"));
    let out = fs::File::create(&out_path).expect("create stdout file");
    let mut cmd = env.command(Who::User(&env.user), program);
    cmd.args(args)
        .current_dir(&dir.work)
        .stdout(out)
        .stderr(Stdio::from(pty.slave));
    let desc = format!("{} {}", program.display(), args.join(" "));
    let mut child = cmd.spawn().expect("start the helper on a terminal");
    // Only the helper (and what it starts) holds the terminal side now.
    drop(cmd);
    let reader = std::thread::spawn(move || {
        let mut f = fs::File::from(pty.master);
        let mut seen = Vec::new();
        let mut buf = [0u8; 4096];
        // EIO once no terminal side is open any more.
        while let Ok(n) = f.read(&mut buf) {
            if n == 0 {
                break;
            }
            seen.extend_from_slice(&buf[..n]);
        }
        seen
    });
    let start = Instant::now();
    let status = loop {
        if let Some(st) = child.try_wait().expect("wait for the helper") {
            break st;
        }
        if start.elapsed() > HELPER_TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{desc} did not finish within {HELPER_TIMEOUT:?}; killed");
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    };
    let seen = reader.join().expect("terminal reader");
    Run {
        cmd: desc,
        code: status.code(),
        status,
        stdout: fs::read_to_string(&out_path).unwrap_or_default(),
        stderr: String::from_utf8_lossy(&seen).into_owned(),
    }
}

/// The terminal output of a run with a bar: the bar was drawn with bytes
/// done, a rate and the time left, then erased, and the helper's own lines
/// come after it, each whole.
fn assert_bar(run: &Run, label: &str, last_line: &str) {
    let text = &run.stderr;
    let bar_at = text
        .find(&format!("{label} ["))
        .unwrap_or_else(|| panic!("no {label} bar on the terminal\n{run}"));
    let bar = &text[bar_at..];
    let first = bar.split(['\r', '\n']).next().unwrap_or_default();
    assert!(
        first.contains("iB/") && first.contains("iB/s") && first.contains(" eta "),
        "the bar shows bytes done of the total, the rate and the time left: {first:?}\n{run}"
    );
    // Erased before anything else is printed: a carriage return and an
    // erase of the line after the last bar drawn, then whole lines.
    let last_bar = text.rfind(&format!("{label} [")).unwrap();
    let after = &text[last_bar..];
    let erase = after
        .find("\r\x1b[2K")
        .unwrap_or_else(|| panic!("the bar is erased (CR, erase line)\n{run}"));
    let rest = &after[erase + 5..];
    assert!(
        !has_bar(rest),
        "nothing of the bar is left after it was erased: {rest:?}"
    );
    assert!(
        rest.lines()
            .map(|l| l.trim_end_matches('\r'))
            .any(|l| l.starts_with(last_line)),
        "after the bar, the helper's line {last_line:?} stands alone: {rest:?}\n{run}"
    );
}

fn start_ballast(env: &Env, dir: &TestDir) -> Proc {
    let prog = dir.compile(env, "ballast");
    let wdir = user_dir(env, dir, "ballast");
    let ready = wdir.join("ready");
    let proc = Proc::spawn(
        env,
        Who::User(&env.user),
        &prog,
        &[BALLAST_MIB, path_str(&ready)],
        &wdir,
        &[],
        &wdir.join("log"),
    );
    wait_ready(&wdir, "ballast");
    proc
}

#[test]
fn a_long_dump_and_restore_show_a_bar_only_on_a_terminal() {
    let env = Env::require();
    let dir = TestDir::new(&env, "progress");
    let target = start_ballast(&env, &dir);
    let pid = target.pid.to_string();

    // 1. stderr on a terminal, text output: a bar, erased, then `wrote`.
    let on_tty = dir.work.join("tty.ckpt");
    let run = run_on_terminal(
        &env,
        &dir,
        &env.sign_path(),
        &[
            "dump",
            "--pid",
            &pid,
            "-o",
            path_str(&on_tty),
            "--leave-running",
        ],
        "dump-tty",
    );
    run.assert_code(exit::OK, "dump with stderr on a terminal");
    assert_bar(&run, "dump", "ckpt-sign: wrote ");
    assert_eq!(
        run.stdout, "",
        "a text dump prints nothing on stdout\n{run}"
    );

    // 2. stderr on a terminal, --json: the bar on the terminal, stdout one
    // clean JSON object.
    let json_img = dir.work.join("json.ckpt");
    let run = run_on_terminal(
        &env,
        &dir,
        &env.sign_path(),
        &[
            "dump",
            "--pid",
            &pid,
            "-o",
            path_str(&json_img),
            "--leave-running",
            "--json",
        ],
        "dump-json-tty",
    );
    run.assert_code(exit::OK, "dump --json with stderr on a terminal");
    assert!(has_bar(&run.stderr), "the bar is on the terminal\n{run}");
    let v: serde_json::Value = serde_json::from_str(run.stdout.trim())
        .unwrap_or_else(|e| panic!("stdout is one JSON object ({e})\n{run}"));
    assert_eq!(v["schema"], 1);
    assert_eq!(v["image"], path_str(&json_img));
    assert_eq!(
        v["size"].as_u64(),
        Some(fs::metadata(&json_img).unwrap().len())
    );
    assert!(!run.stdout.contains('\x1b') && !run.stdout.contains('\r'));

    // 3. stderr a file: no bar, no control characters, only the lines.
    let plain = dir.work.join("plain.ckpt");
    let run = env.sign(
        &dir,
        &[
            "dump",
            "--pid",
            &pid,
            "-o",
            path_str(&plain),
            "--leave-running",
        ],
    );
    run.assert_code(exit::OK, "dump with stderr on a file");
    assert!(
        !has_bar(&run.stderr) && !run.stderr.contains('\x1b') && !run.stderr.contains('\r'),
        "no bar and no terminal control without a terminal\n{run}"
    );
    // (The audit log is not listened to here: its warning is a line too.)
    let lines: Vec<&str> = run
        .stderr
        .lines()
        .filter(|l| !l.starts_with("ckpt-sign: warning: audit log unavailable"))
        .collect();
    assert_eq!(
        lines.len(),
        2,
        "two lines: wrote ..., and how long --leave-running froze it\n{run}"
    );
    assert!(lines[0].starts_with("ckpt-sign: wrote "), "{run}");
    assert!(
        lines[1].starts_with(&format!("ckpt-sign: pid {pid} was frozen for ")),
        "{run}"
    );

    // 4. A restore with stderr on a terminal: a bar, erased before the
    // restored process runs; the pid alone on stdout.
    drop(target);
    let run = run_on_terminal(
        &env,
        &dir,
        &env.verify_path(),
        &["restore", path_str(&on_tty)],
        "restore-tty",
    );
    run.assert_code(exit::OK, "restore with stderr on a terminal");
    let restored: i32 = run
        .stdout
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("restore prints the pid alone on stdout\n{run}"));
    let _restored = Proc::adopt(restored, "restored ballast").expect("the restored process runs");
    assert!(
        run.stderr.contains("restore ["),
        "a restore of 1 GiB shows its bar\n{run}"
    );
    let after = &run.stderr[run.stderr.rfind("restore [").unwrap()..];
    assert!(
        after.contains("\r\x1b[2K"),
        "the restore bar is erased\n{run}"
    );
}

/// A dump that fails shows its one error line whole (after any bar), and a
/// dump whose stderr is not a terminal prints no control character even
/// when it fails.
#[test]
fn a_refusal_is_one_clean_line_with_or_without_a_terminal() {
    let env = Env::require();
    let dir = TestDir::new(&env, "progress-refusal");
    let img = dir.work.join("x.ckpt");
    // pid 1 belongs to root: the caller may not trace it.
    let run = run_on_terminal(
        &env,
        &dir,
        &env.sign_path(),
        &["dump", "--pid", "1", "-o", path_str(&img), "--json"],
        "refusal-tty",
    );
    run.assert_code(exit::ACCESS_DENIED, "dump of pid 1");
    assert_eq!(run.stdout, "", "no JSON for a refusal\n{run}");
    let lines: Vec<&str> = run
        .stderr
        .lines()
        .map(|l| l.trim_end_matches('\r'))
        .collect();
    assert!(
        lines.contains(
            &"ckpt-sign: cannot dump pid 1: it belongs to another user (uid 0); only root or \
              that user can dump it"
        ),
        "the refusal says what, on what, and what to do\n{run}"
    );
    assert!(!run.stderr.contains('\x1b'), "{run}");
    assert!(!img.exists(), "no image for a refusal");
}
