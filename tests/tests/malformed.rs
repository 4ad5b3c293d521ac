//! Malformed manifests, through the installed setuid `ckpt-verify` as the
//! test user: a manifest of millions of tiny CBOR items must be refused
//! (exit 4, one line) within a bounded amount of memory, even under a
//! 1 GiB address-space limit; a manifest that decodes but breaks a rule of
//! the image format (overlapping mappings, a chunk outside its mapping, ...)
//! must be refused by verify, inspect, explain and restore alike (exit 4,
//! one line naming the field), and restore must create nothing.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use ciborium::Value;
use ckpt_tests::image::{with_manifest, Layout};
use ckpt_tests::{
    exit, path_str, processes_mentioning, write_owned, Counter, Env, Proc, TestDir, Who,
};

/// Largest manifest an image may have (`MAX_MANIFEST_LEN`).
const MAX_MANIFEST_LEN: usize = 64 << 20;
/// Entries one CBOR list may have (`MAX_CBOR_COLLECTION_LEN`).
const MAX_LIST: usize = 1 << 20;
/// The peak resident memory SECURITY.md promises for reading any image:
/// manifest (64 MiB) + decoding budget (256 MiB) + one string in flight
/// (64 MiB) + the program.
const PEAK_RSS_BOUND_KIB: u64 = 400 << 10;
/// The address-space limit start-up accepts, under which the helper must
/// still exit cleanly.
const RLIMIT_AS: u64 = 1 << 30;

/// Runs `cmd` under a small Python parent that sets `RLIMIT_AS` in the
/// child and collects its rusage with `wait4`; returns the run and the
/// child's peak RSS in KiB. A child killed by a signal exits 128+signal.
fn run_measured(dir: &TestDir, cmd: &Command, tag: &str) -> (ckpt_tests::Run, u64) {
    const PARENT: &str = "\
import os, resource, sys
out, argv = sys.argv[1], sys.argv[2:]
pid = os.fork()
if pid == 0:
    lim = int(os.environ.pop('CKPT_TEST_RLIMIT_AS'))
    resource.setrlimit(resource.RLIMIT_AS, (lim, lim))
    os.execv(argv[0], argv)
_, status, ru = os.wait4(pid, 0)
open(out, 'w').write(str(ru.ru_maxrss))
sys.exit(os.WEXITSTATUS(status) if os.WIFEXITED(status) else 128 + os.WTERMSIG(status))
";
    let python = Path::new("/usr/bin/python3");
    assert!(
        python.exists(),
        "python3 is needed to measure peak RSS (test.sh installs it)"
    );
    let rss_file = dir.root.join(format!("{tag}.maxrss"));
    let mut m = Command::new(python);
    m.arg("-c")
        .arg(PARENT)
        .arg(&rss_file)
        .arg(cmd.get_program());
    m.args(cmd.get_args());
    m.env_clear()
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .env("LANG", "C.UTF-8")
        .env("CKPT_TEST_RLIMIT_AS", RLIMIT_AS.to_string())
        .stdin(Stdio::null())
        .current_dir(&dir.work);
    let run = dir.run(m);
    let rss = fs::read_to_string(&rss_file)
        .unwrap_or_else(|e| panic!("no rusage for {tag}: {e}\n{run}"))
        .trim()
        .parse()
        .unwrap();
    (run, rss)
}

/// An unsigned image of a counter of the test user (the counter is gone
/// afterwards), and the count file it wrote.
fn unsigned_image(env: &Env, dir: &TestDir) -> (Vec<u8>, PathBuf) {
    let mut c = Counter::start(env, dir, Who::User(&env.user), &dir.work, "c");
    let img = dir.work.join("u.ckpt");
    env.dump_ok(dir, c.proc.pid, &img, &["--unsigned"]);
    c.proc
        .wait_gone("a dump without --leave-running ends the target");
    (fs::read(&img).unwrap(), c.file.clone())
}

fn manifest_of(bytes: &[u8]) -> Value {
    let l = Layout::parse(bytes).unwrap();
    ciborium::de::from_reader(&bytes[l.manifest.start as usize..l.manifest.end as usize])
        .expect("the manifest is CBOR")
}

fn encode(v: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    ciborium::ser::into_writer(v, &mut out).unwrap();
    out
}

/// The value under text key `key` of a CBOR map.
fn field<'a>(v: &'a mut Value, key: &str) -> &'a mut Value {
    let Value::Map(entries) = v else {
        panic!("not a map looking for {key}: {v:?}")
    };
    entries
        .iter_mut()
        .find(|(k, _)| k.as_text() == Some(key))
        .map(|(_, v)| v)
        .unwrap_or_else(|| panic!("no field {key}"))
}

fn item(v: &mut Value, i: usize) -> &mut Value {
    match v {
        Value::Array(a) => &mut a[i],
        _ => panic!("not an array: {v:?}"),
    }
}

fn int(v: &Value) -> u64 {
    v.as_integer()
        .and_then(|i| u64::try_from(i).ok())
        .unwrap_or_else(|| panic!("not an unsigned integer: {v:?}"))
}

fn set(v: &mut Value, n: u64) {
    *v = Value::Integer(n.into());
}

/// `m` encoded with every list `vm_flags` replaced by `n` empty strings
/// (spliced as bytes: a `Value` of millions of items would be the test's
/// own memory problem).
fn with_empty_flags(m: &Value, n: usize) -> Vec<u8> {
    let mut m = m.clone();
    let vmas = field(item(field(&mut m, "tasks"), 0), "vmas");
    let Value::Array(vmas) = vmas else { panic!() };
    for v in vmas.iter_mut() {
        *field(v, "vm_flags") = Value::Array(vec![Value::Text("SPLICEME".into())]);
    }
    let bytes = encode(&m);
    let marker = [&[0x81u8, 0x68][..], b"SPLICEME"].concat();
    let mut filler = vec![0x9a];
    filler.extend_from_slice(&u32::try_from(n).unwrap().to_be_bytes());
    filler.resize(5 + n, 0x60);
    let mut out = Vec::new();
    let mut rest = &bytes[..];
    while let Some(at) = rest.windows(marker.len()).position(|w| w == marker) {
        out.extend_from_slice(&rest[..at]);
        out.extend_from_slice(&filler);
        rest = &rest[at + marker.len()..];
    }
    out.extend_from_slice(rest);
    out
}

/// Every command refuses `name` (already written) with exit 4 and one line
/// on stderr containing `expect`; restore creates nothing. Returns the
/// problems found and each command's peak RSS.
fn check_refused(
    env: &Env,
    dir: &TestDir,
    count_file: &Path,
    name: &str,
    expect: &str,
) -> (Vec<String>, Vec<(String, u64)>) {
    let path = dir.work.join(name);
    let pidfile = dir.work.join(format!("{name}.pid"));
    let count_before = fs::read(count_file).unwrap();
    let mut problems = Vec::new();
    let mut rss = Vec::new();
    let commands: [&[&str]; 4] = [
        &["verify", path_str(&path)],
        &["inspect", path_str(&path)],
        &["explain", path_str(&path)],
        &["restore", path_str(&path), "--pidfile", path_str(&pidfile)],
    ];
    for args in commands {
        let mut cmd = env.command(Who::User(&env.user), &env.verify_path());
        cmd.args(args);
        let tag = format!("{name}-{}", args[0]);
        let (run, kib) = run_measured(dir, &cmd, &tag);
        rss.push((args[0].to_string(), kib));
        // The refusal is one line; an unreachable audit log may add a
        // warning of its own.
        let err = run
            .stderr
            .lines()
            .filter(|l| !l.starts_with("ckpt-verify: warning: audit log unavailable"))
            .collect::<Vec<_>>()
            .join("\n");
        let err = err.trim();
        if run.code != Some(exit::TAMPERED) {
            problems.push(format!(
                "{name}: {}: expected exit 4, got {}\n{run}",
                args[0],
                run.describe_exit()
            ));
        } else if err.lines().count() != 1 || !err.contains(expect) {
            problems.push(format!(
                "{name}: {}: expected one line on stderr containing {expect:?}, got {err:?}",
                args[0]
            ));
        }
        if kib > PEAK_RSS_BOUND_KIB {
            problems.push(format!(
                "{name}: {}: peak RSS {} MiB, above the bound {} MiB",
                args[0],
                kib >> 10,
                PEAK_RSS_BOUND_KIB >> 10
            ));
        }
    }
    let strays = processes_mentioning(path_str(&dir.root));
    if !strays.is_empty() {
        problems.push(format!("{name}: restore left processes {strays:?}"));
        for pid in strays {
            drop(Proc::adopt(pid, "stray restored process"));
        }
    }
    if pidfile.exists() {
        problems.push(format!("{name}: a refused restore wrote its pid file"));
    }
    if fs::read(count_file).unwrap() != count_before {
        problems.push(format!(
            "{name}: the count file changed: a refused image ran"
        ));
    }
    (problems, rss)
}

#[test]
fn a_manifest_of_millions_of_tiny_items_is_refused_within_bounded_memory() {
    let env = Env::require();
    let dir = TestDir::new(&env, "malformed-tiny");
    let (image, count_file) = unsigned_image(&env, &dir);
    let m = manifest_of(&image);
    let base = encode(&m).len();

    // One list of ~64M empty strings (the whole manifest cap), and 60
    // mappings of 2^20 - 1 empty strings each: the first trips the
    // per-list cap, the second the memory budget.
    let one_list = {
        let mut m = m.clone();
        let vmas = field(item(field(&mut m, "tasks"), 0), "vmas");
        let first = item(vmas, 0).clone();
        *vmas = Value::Array(vec![first]);
        let n = MAX_MANIFEST_LEN - base - 64;
        with_empty_flags(&m, n)
    };
    let many_lists = {
        let mut m = m.clone();
        let vmas = field(item(field(&mut m, "tasks"), 0), "vmas");
        let first = item(vmas, 0).clone();
        *vmas = Value::Array(vec![first; 60]);
        with_empty_flags(&m, MAX_LIST - 1)
    };
    let mut problems = Vec::new();
    for (name, manifest, expect) in [
        (
            "one-list.ckpt",
            one_list,
            "the manifest has a list of more than 1048576 entries",
        ),
        (
            "many-lists.ckpt",
            many_lists,
            "the manifest needs more than 256 MiB of memory to decode",
        ),
    ] {
        assert!(
            manifest.len() <= MAX_MANIFEST_LEN && manifest.len() > 56 << 20,
            "{name}: manifest of {} bytes",
            manifest.len()
        );
        let bytes = with_manifest(&image, &manifest).unwrap();
        write_owned(&dir.work.join(name), &bytes, &env.user);
        let (p, rss) = check_refused(&env, &dir, &count_file, name, expect);
        println!(
            "{name}: {} MiB manifest; peak RSS (MiB): {}",
            manifest.len() >> 20,
            rss.iter()
                .map(|(c, k)| format!("{c} {}", k >> 10))
                .collect::<Vec<_>>()
                .join(", ")
        );
        problems.extend(p);
        let _ = fs::remove_file(dir.work.join(name));
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn semantically_malformed_images_are_refused_alike_by_every_command() {
    let env = Env::require();
    let dir = TestDir::new(&env, "malformed-semantic");
    let (image, count_file) = unsigned_image(&env, &dir);
    let m = manifest_of(&image);

    // The control: the same manifest, re-encoded unchanged, is a good
    // unsigned image (exit 8), so each case below fails for its edit alone.
    let control = dir.work.join("control.ckpt");
    write_owned(
        &control,
        &with_manifest(&image, &encode(&m)).unwrap(),
        &env.user,
    );
    env.verify(&dir, &["verify", path_str(&control)])
        .assert_code(exit::UNSIGNED, "the unchanged re-encoded manifest");

    type Edit = Box<dyn Fn(&mut Value)>;
    let cases: Vec<(&str, &str, Edit)> = vec![
        (
            "overlapping-mappings",
            "tasks[0].vmas[1]",
            Box::new(|m| {
                let vmas = field(item(field(m, "tasks"), 0), "vmas");
                let start0 = int(field(item(vmas, 0), "start"));
                set(field(item(vmas, 1), "start"), start0);
            }),
        ),
        (
            "unaligned-mapping",
            "tasks[0].vmas[0]",
            Box::new(|m| {
                let vmas = field(item(field(m, "tasks"), 0), "vmas");
                let end = field(item(vmas, 0), "end");
                let e = int(end);
                set(end, e + 1);
            }),
        ),
        (
            "chunk-outside-its-mapping",
            "chunks[0]",
            Box::new(|m| set(item(item(field(m, "chunks"), 0), 1), 0x10000)),
        ),
        (
            "fd-names-no-description",
            "tasks[0].fds[0]",
            Box::new(|m| {
                let fds = field(item(field(m, "tasks"), 0), "fds");
                set(field(item(fds, 0), "description"), 100_000);
            }),
        ),
        (
            "xsave-size-mismatch",
            "tasks[0].threads[0].xsave",
            Box::new(|m| {
                let size = field(field(m, "cpu"), "xsave_size");
                let s = int(size);
                set(size, s + 64);
            }),
        ),
        (
            "nul-in-exe-path",
            "tasks[0].exe.path",
            Box::new(|m| {
                let path = field(field(item(field(m, "tasks"), 0), "exe"), "path");
                let p = path.as_text().unwrap().to_string();
                *path = Value::Text(format!("{p}\0x"));
            }),
        ),
    ];
    let mut problems = Vec::new();
    for (name, expect, edit) in &cases {
        let mut mm = m.clone();
        edit(&mut mm);
        let file = format!("{name}.ckpt");
        let bytes = with_manifest(&image, &encode(&mm)).unwrap();
        write_owned(&dir.work.join(&file), &bytes, &env.user);
        let (p, _) = check_refused(&env, &dir, &count_file, &file, expect);
        problems.extend(p);
    }
    assert!(
        problems.is_empty(),
        "{} problems over {} cases:\n{}",
        problems.len(),
        cases.len(),
        problems.join("\n")
    );
}
