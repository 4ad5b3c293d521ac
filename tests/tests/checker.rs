//! The checker workload: after a restore it checks its own memory,
//! protections, fds, offsets, cwd, umask, signal state, rlimits and FPU
//! state, and reports "OK" or what differs.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::fs;
use std::path::Path;

use ckpt_tests::{
    exit, path_str, signal, wait_until, workload_result, Env, Proc, TestDir, Who, WAIT,
};
use nix::sys::signal::Signal;

fn start_checker(env: &Env, dir: &TestDir) -> (Proc, std::path::PathBuf) {
    let program = dir.compile(env, "checker");
    let cdir = dir.work.join("chk");
    fs::create_dir(&cdir).unwrap();
    std::os::unix::fs::chown(&cdir, Some(env.user.uid), Some(env.user.gid)).unwrap();
    let proc = Proc::spawn(
        env,
        Who::User(&env.user),
        &program,
        &[path_str(&cdir)],
        &cdir,
        &[("CKPT_CHECKER_ENV", "value-42")],
        &dir.work.join("checker.log"),
    );
    let ready = cdir.join("ready");
    wait_until(WAIT, "the checker has written ready", || {
        fs::read_to_string(&ready).is_ok_and(|s| s == "ready\n")
    });
    (proc, cdir)
}

/// Sends SIGUSR1 and returns what the checker wrote to its result file.
fn ask(proc: &mut Proc, cdir: &Path, log: &Path) -> String {
    let result = cdir.join("result");
    signal(proc.pid, Signal::SIGUSR1);
    let text = workload_result(proc, &result, log, "the checker");
    fs::remove_file(&result).unwrap();
    text
}

#[test]
fn checker_finds_its_state_intact_after_restore() {
    let env = Env::require();
    let dir = TestDir::new(&env, "checker");
    let (mut orig, cdir) = start_checker(&env, &dir);
    let image = dir.work.join("checker.ckpt");
    env.dump_ok(&dir, orig.pid, &image, &[]);
    orig.wait_gone("dump kills the target");
    env.verify(&dir, &["verify", path_str(&image)])
        .assert_code(exit::OK, "verify");

    let (_run, mut restored) = env.restore_ok(&dir, &image, None);
    let result = ask(&mut restored, &cdir, &dir.work.join("checker.log"));
    assert_eq!(result, "OK\n", "checker after restore reported: {result}");
}

#[test]
fn checker_left_running_is_intact_and_its_image_restores_too() {
    let env = Env::require();
    let dir = TestDir::new(&env, "checker-lr");
    let (mut orig, cdir) = start_checker(&env, &dir);
    let image = dir.work.join("checker.ckpt");
    env.dump_ok(&dir, orig.pid, &image, &["--leave-running"]);
    orig.assert_untouched("--leave-running");
    // The original checks itself first; it appends to append.log, which the
    // restored copy checks again, so put that file back as it was.
    let append = cdir.join("append.log");
    let append_at_dump = fs::read(&append).unwrap();
    let log = dir.work.join("checker.log");
    let result = ask(&mut orig, &cdir, &log);
    assert_eq!(result, "OK\n", "checker left running reported: {result}");
    fs::write(&append, append_at_dump).unwrap();

    let (_run, mut restored) = env.restore_ok(&dir, &image, None);
    let result = ask(&mut restored, &cdir, &log);
    assert_eq!(
        result, "OK\n",
        "checker restored from a --leave-running image reported: {result}"
    );
}

/// `dump --compress`: the image is smaller than the same process's plain
/// image, verifies, and restores a process that finds its whole state
/// intact. A `--leave-running` dump says how long the target was frozen.
#[test]
fn checker_from_a_compressed_image_is_intact() {
    let env = Env::require();
    let dir = TestDir::new(&env, "checker-compress");
    let (mut orig, cdir) = start_checker(&env, &dir);
    let plain = dir.work.join("plain.ckpt");
    let run = env.dump_ok(&dir, orig.pid, &plain, &["--leave-running"]);
    assert!(
        run.stderr
            .contains(&format!("pid {} was frozen for ", orig.pid))
            && run.stderr.contains(" ms"),
        "a --leave-running dump says how long the target was frozen\n{run}"
    );
    let packed = dir.work.join("packed.ckpt");
    env.dump_ok(&dir, orig.pid, &packed, &["--compress"]);
    orig.wait_gone("dump kills the target");
    let (plain_len, packed_len) = (
        fs::metadata(&plain).unwrap().len(),
        fs::metadata(&packed).unwrap().len(),
    );
    assert!(
        packed_len < plain_len,
        "compressed image {packed_len} bytes, plain {plain_len}"
    );
    let v = env.verify(&dir, &["verify", path_str(&packed)]);
    v.assert_code(exit::OK, "verify of a compressed image");
    let json = env.verify(&dir, &["inspect", path_str(&packed), "--json"]);
    json.assert_code(exit::OK, "inspect of a compressed image");
    let json: serde_json::Value = serde_json::from_str(json.stdout.trim()).unwrap();
    assert_eq!(json["compression"], "lz4-blocks", "{json}");
    assert_eq!(json["chunk_digest"], "blake3", "{json}");
    assert!(
        json["stored_bytes"].as_u64().unwrap() < json["memory_bytes"].as_u64().unwrap(),
        "{json}"
    );

    let (_run, mut restored) = env.restore_ok(&dir, &packed, None);
    let result = ask(&mut restored, &cdir, &dir.work.join("checker.log"));
    assert_eq!(result, "OK\n", "checker after restore reported: {result}");
}

/// Pages written with zeros: a plain and a compressed image leave out
/// those of anonymous memory (private, and shared anonymous) in long runs
/// and keep the zero copy-on-write page of a private file mapping (the
/// file under it is not zero). Both images restore a checker that finds
/// every page as it was, byte for byte. (How much each leaves out:
/// `zero_pages_written_cost_next_to_nothing`.)
#[test]
fn zero_pages_restore_from_plain_and_compressed_images() {
    let env = Env::require();
    let dir = TestDir::new(&env, "checker-zeros");
    let (mut orig, cdir) = start_checker(&env, &dir);
    let plain = dir.work.join("plain.ckpt");
    env.dump_ok(&dir, orig.pid, &plain, &["--leave-running"]);
    let packed = dir.work.join("packed.ckpt");
    env.dump_ok(&dir, orig.pid, &packed, &["--compress"]);
    orig.wait_gone("dump kills the target");

    let memory = |image: &Path| -> u64 {
        let out = env.verify(&dir, &["inspect", path_str(image), "--json"]);
        out.assert_code(exit::OK, "inspect");
        let json: serde_json::Value = serde_json::from_str(out.stdout.trim()).unwrap();
        json["memory_bytes"].as_u64().unwrap()
    };
    // The checker holds well over 16 pages of data; its long runs of zero
    // pages are 35 in its private region (pages 40-74) and 12 at the end
    // of its shared one.
    for image in [&plain, &packed] {
        assert!(
            memory(image) > 16 * 4096,
            "{}: memory of the checker",
            image.display()
        );
    }

    // Each restored checker appends to append.log when it checks: put it
    // back as it was at the dump before the second one.
    let append = cdir.join("append.log");
    let append_at_dump = fs::read(&append).unwrap();
    let log = dir.work.join("checker.log");
    for image in [&packed, &plain] {
        fs::write(&append, &append_at_dump).unwrap();
        let (_run, mut restored) = env.restore_ok(&dir, image, None);
        let result = ask(&mut restored, &cdir, &log);
        assert_eq!(
            result,
            "OK\n",
            "checker restored from {} reported: {result}",
            image.display()
        );
        restored.wait_gone("the checker exits after its check");
    }
}

/// Memory written with zeros (real pages, not the shared zero page): 16 MiB
/// of private and 1 MiB of shared anonymous memory, data in one page of
/// every 64. A plain image and a compressed one each hold a small part of
/// it (the data pages, and zero pages only where a write buffer's edge
/// cuts a run short), and both restore a process that finds every page
/// as it was.
#[test]
fn zero_pages_written_cost_next_to_nothing() {
    const MIB: u64 = 16;
    let env = Env::require();
    let dir = TestDir::new(&env, "zeroes");
    let program = dir.compile(&env, "zeroes");
    let zdir = dir.work.join("z");
    fs::create_dir(&zdir).unwrap();
    std::os::unix::fs::chown(&zdir, Some(env.user.uid), Some(env.user.gid)).unwrap();
    let log = dir.work.join("zeroes.log");
    let orig = Proc::spawn(
        &env,
        Who::User(&env.user),
        &program,
        &[&MIB.to_string(), path_str(&zdir)],
        &zdir,
        &[],
        &log,
    );
    wait_until(WAIT, "zeroes has written ready", || {
        fs::read_to_string(zdir.join("ready")).is_ok_and(|s| s == "ready\n")
    });
    let written = (MIB + 1) << 20;
    let plain = dir.work.join("plain.ckpt");
    env.dump_ok(&dir, orig.pid, &plain, &["--leave-running"]);
    let packed = dir.work.join("packed.ckpt");
    env.dump_ok(&dir, orig.pid, &packed, &["--compress"]);
    let mut orig = orig;
    orig.wait_gone("dump kills the target");
    for image in [&plain, &packed] {
        let out = env.verify(&dir, &["inspect", path_str(image), "--json"]);
        out.assert_code(exit::OK, "inspect");
        let json: serde_json::Value = serde_json::from_str(out.stdout.trim()).unwrap();
        let memory = json["memory_bytes"].as_u64().unwrap();
        let size = fs::metadata(image).unwrap().len();
        // 69 pages of data; at most 15 zero pages kept at each of the 68
        // buffer edges the plain image's data crosses, far fewer in
        // practice.
        assert!(
            memory < written / 4 && size < written / 4,
            "{}: {memory} bytes of memory in a {size}-byte image, for {written} bytes written \
             (mostly zeros)",
            image.display()
        );
        let (_run, mut restored) = env.restore_ok(&dir, image, None);
        let result = zdir.join("result");
        signal(restored.pid, Signal::SIGUSR1);
        // It exits after reporting.
        let text = workload_result(&mut restored, &result, &log, "zeroes");
        fs::remove_file(&result).unwrap();
        assert_eq!(text, "OK\n", "restored from {}: {text}", image.display());
    }
}
