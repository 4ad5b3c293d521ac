//! Path races: while a helper runs, a name the caller passed flips in a
//! loop between a regular file of the caller's, a symbolic link to a
//! root-only file (or to a name in a root-only directory) and nothing. Whatever the
//! interleaving, the helper only ever acts on what the caller could reach
//! alone: the root-only files are never read, written or created, no
//! root-owned file appears in the caller's directory, no temporary file is
//! left, and each call ends with one of its documented exit codes.

use std::fs;
use std::os::unix::fs::{lchown, symlink};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use ckpt_tests::{exit, path_str, write_owned, Account, Counter, FileSnapshot, TestDir, Who};

use crate::{caller_creds_only, outcome_any, root_owned_under, setup, strays_except, Cases};

/// Flips `name` between a regular file of `owner` holding `content`,
/// symbolic links (owned by `owner`) to each of `targets`, and no file at
/// all, until stopped.
struct Flipper {
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<u64>>,
}

impl Flipper {
    fn start(name: PathBuf, content: Vec<u8>, targets: Vec<PathBuf>, owner: Account) -> Flipper {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let handle = std::thread::spawn(move || {
            let dir = name.parent().unwrap().to_path_buf();
            let (tmp_file, tmp_link) = (dir.join(".flip-file"), dir.join(".flip-link"));
            let mut flips = 0u64;
            while !flag.load(Ordering::Relaxed) {
                write_owned(&tmp_file, &content, &owner);
                fs::rename(&tmp_file, &name).unwrap();
                flips += 1;
                for t in &targets {
                    let _ = fs::remove_file(&tmp_link);
                    symlink(t, &tmp_link).unwrap();
                    lchown(&tmp_link, Some(owner.uid), Some(owner.gid)).unwrap();
                    fs::rename(&tmp_link, &name).unwrap();
                    flips += 1;
                    std::thread::yield_now();
                }
                // And absent for a moment, so a create can succeed.
                let _ = fs::remove_file(&name);
                flips += 1;
                std::thread::yield_now();
            }
            flips
        });
        Flipper {
            stop,
            handle: Some(handle),
        }
    }

    fn stop(mut self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        self.handle.take().unwrap().join().unwrap()
    }
}

impl Drop for Flipper {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// A root-only directory holding a root-only file (the victim).
struct Secret {
    dir: PathBuf,
    victim: PathBuf,
    fresh: PathBuf,
    snapshot: FileSnapshot,
}

fn secret(dir: &TestDir, content: &[u8]) -> Secret {
    let d = dir.dir("secret", 0o700, None);
    let victim = d.join("victim");
    dir.file(&victim, content, 0o600, None);
    Secret {
        fresh: d.join("created-through-a-link"),
        snapshot: FileSnapshot::of(&victim),
        victim,
        dir: d,
    }
}

impl Secret {
    fn check(&self) -> Option<String> {
        if FileSnapshot::of(&self.victim) != self.snapshot {
            return Some(format!("{} was changed", self.victim.display()));
        }
        let entries = TestDir::list(&self.dir);
        if entries != ["victim"] {
            return Some(format!(
                "files appeared in the root-only directory: {entries:?}"
            ));
        }
        None
    }
}

/// The caller's race directory: no root-owned file, no temporary file.
fn check_race_dir(race: &Path) -> Option<String> {
    let rooted = root_owned_under(race, false);
    if !rooted.is_empty() {
        return Some(format!(
            "root-owned files in the caller's directory: {rooted:?}"
        ));
    }
    let temps: Vec<String> = TestDir::list(race)
        .into_iter()
        .filter(|n| n.contains(".tmp."))
        .collect();
    (!temps.is_empty()).then(|| format!("temporary files left: {temps:?}"))
}

const ROUNDS: usize = 12;

#[test]
fn dump_output_name_flipped_to_a_symlink() {
    let (_g, env) = setup();
    let dir = TestDir::new(&env, "race-dump-out");
    let s = secret(&dir, b"root's file\n");
    let race = dir.dir("race", 0o755, Some(&env.user));
    let mut c = Counter::start(&env, &dir, Who::User(&env.user), &dir.work, "c");
    let out = race.join("out.ckpt");
    let flip = Flipper::start(
        out.clone(),
        b"mine\n".to_vec(),
        vec![s.victim.clone(), s.fresh.clone()],
        env.user.clone(),
    );
    let pid = c.proc.pid.to_string();
    let name = "race-dump-o-force";
    let mut cases = Cases::default();
    cases.start(name);
    let mut codes = Vec::new();
    for _ in 0..ROUNDS {
        let r = env.sign(
            &dir,
            &[
                "dump",
                "--pid",
                &pid,
                "-o",
                path_str(&out),
                "--force",
                "--leave-running",
            ],
        );
        cases.check(name, outcome_any(&r, &[exit::OK, exit::DUMP_FAILED], None));
        codes.push(r.code);
    }
    let flips = flip.stop();
    assert!(flips > 10, "the name flipped only {flips} times");
    cases.check(name, s.check());
    cases.check(name, check_race_dir(&race));
    c.proc
        .assert_untouched("a --leave-running dump, whatever happened to its output name");
    eprintln!("{name}: exit codes {codes:?} over {flips} flips");
    cases.finish("dump -o race");
}

#[test]
fn restore_pidfile_name_flipped_to_a_symlink() {
    let (_g, env) = setup();
    let dir = TestDir::new(&env, "race-pidfile");
    let s = secret(&dir, b"root's file\n");
    let race = dir.dir("race", 0o755, Some(&env.user));
    let mut c = Counter::start(&env, &dir, Who::User(&env.user), &dir.work, "c");
    let image = dir.work.join("c.ckpt");
    env.dump_ok(&dir, c.proc.pid, &image, &[]);
    c.proc.wait_gone("the dump kills the target");
    let pidfile = race.join("pid");
    let flip = Flipper::start(
        pidfile.clone(),
        b"1\n".to_vec(),
        vec![s.victim.clone(), s.fresh.clone()],
        env.user.clone(),
    );
    let name = "race-restore-pidfile";
    let mut cases = Cases::default();
    cases.start(name);
    let mut codes = Vec::new();
    for _ in 0..ROUNDS {
        let r = env.verify(
            &dir,
            &["restore", path_str(&image), "--pidfile", path_str(&pidfile)],
        );
        cases.check(name, outcome_any(&r, &[exit::OK, exit::OTHER], None));
        if r.code == Some(exit::OK) {
            if let Ok(pid) = r.stdout.trim().parse::<i32>() {
                cases.check(name, caller_creds_only(pid, &env.user));
                drop(ckpt_tests::Proc::adopt(pid, "restored counter"));
            }
        }
        cases.check(name, strays_except(&dir, &[]));
        codes.push(r.code);
    }
    let flips = flip.stop();
    cases.check(name, s.check());
    cases.check(name, check_race_dir(&race));
    eprintln!("{name}: exit codes {codes:?} over {flips} flips");
    cases.finish("restore --pidfile race");
}

#[test]
fn verify_image_name_flipped_to_a_root_only_image() {
    let (_g, env) = setup();
    let dir = TestDir::new(&env, "race-verify");
    let race = dir.dir("race", 0o755, Some(&env.user));
    let mut c = Counter::start(&env, &dir, Who::User(&env.user), &dir.work, "c");
    let (mine, theirs) = (dir.work.join("mine.ckpt"), dir.work.join("theirs.ckpt"));
    env.dump_ok(&dir, c.proc.pid, &mine, &["--leave-running"]);
    env.dump_ok(&dir, c.proc.pid, &theirs, &[]);
    c.proc.wait_gone("the dump kills the target");
    let id_of = |p: &Path| {
        let (run, json) = env.verify_json(&dir, p);
        run.assert_code(exit::OK, "verify of a fresh image");
        json["image_id"].as_str().unwrap().to_string()
    };
    let (mine_id, secret_id) = (id_of(&mine), id_of(&theirs));
    let s = secret(&dir, &fs::read(&theirs).unwrap());
    fs::remove_file(&theirs).unwrap();
    let name_in_race = race.join("img.ckpt");
    let flip = Flipper::start(
        name_in_race.clone(),
        fs::read(&mine).unwrap(),
        vec![s.victim.clone()],
        env.user.clone(),
    );
    let name = "race-verify-image";
    let mut cases = Cases::default();
    cases.start(name);
    let mut codes = Vec::new();
    for _ in 0..ROUNDS * 2 {
        let r = env.verify(&dir, &["verify", path_str(&name_in_race), "--json"]);
        // A symbolic link is refused (exit 1, "not followed") or, followed
        // as the caller, denied by the kernel (exit 3).
        cases.check(
            name,
            outcome_any(
                &r,
                &[exit::OK, exit::OTHER, exit::ACCESS_DENIED],
                Some("img.ckpt"),
            ),
        );
        if r.stdout.contains(&secret_id) {
            cases.fail(
                name,
                format!(
                    "verify read the root-only image {secret_id}: {}",
                    r.stdout.trim()
                ),
            );
        }
        if r.code == Some(exit::OK) && !r.stdout.contains(&mine_id) {
            cases.fail(
                name,
                format!(
                    "verify exit 0 without the caller's image id: {}",
                    r.stdout.trim()
                ),
            );
        }
        codes.push(r.code);
    }
    let flips = flip.stop();
    cases.check(name, s.check());
    cases.check(name, check_race_dir(&race));
    eprintln!("{name}: exit codes {codes:?} over {flips} flips");
    cases.finish("verify IMAGE race");
}

#[test]
fn key_file_flipped_to_the_host_key() {
    let (_g, env) = setup();
    let dir = TestDir::new(&env, "race-key");
    let race = dir.dir("race", 0o755, Some(&env.user));
    let key = ckpt_keys::SigningKey::generate().expect("generate a key");
    let my_id = key.public_key().key_id().to_string();
    let (_line, host_id) = env.host_key_id(&dir);
    let host_key = env.sysconfdir.join("keys/host.key");
    let host_snapshot = FileSnapshot::of(&host_key);
    let mut c = Counter::start(&env, &dir, Who::User(&env.user), &dir.work, "c");
    let keyfile = race.join("my.key");
    let flip = Flipper::start(
        keyfile.clone(),
        key.to_secret_file_bytes().to_vec(),
        vec![host_key.clone()],
        env.user.clone(),
    );
    let pid = c.proc.pid.to_string();
    let out = dir.work.join("k.ckpt");
    let name = "race-dump-key-file";
    let mut cases = Cases::default();
    cases.start(name);
    let mut codes = Vec::new();
    for _ in 0..ROUNDS {
        let _ = fs::remove_file(&out);
        let r = env.sign(
            &dir,
            &[
                "dump",
                "--pid",
                &pid,
                "-o",
                path_str(&out),
                "--leave-running",
                "--key",
                path_str(&keyfile),
            ],
        );
        cases.check(
            name,
            outcome_any(
                &r,
                &[exit::OK, exit::OTHER, exit::ACCESS_DENIED],
                Some("my.key"),
            ),
        );
        if r.code == Some(exit::OK) {
            let (v, json) = env.verify_json(&dir, &out);
            if json["key_id"] != my_id.as_str() || v.code != Some(exit::UNTRUSTED) {
                cases.fail(name, format!("--key produced an image not signed by the caller's key (host key {host_id}): {}", v.stdout.trim()));
            }
        }
        codes.push(r.code);
    }
    let flips = flip.stop();
    assert_eq!(
        FileSnapshot::of(&host_key),
        host_snapshot,
        "the host key is unchanged"
    );
    cases.check(name, check_race_dir(&race));
    c.proc.assert_untouched("--leave-running dumps");
    eprintln!("{name}: exit codes {codes:?} over {flips} flips");
    cases.finish("--key FILE race");
}
