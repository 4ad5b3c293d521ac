//! Image format versions through the installed helpers: the writer writes
//! version 2; a version-1 image (what the helpers wrote before: one
//! `process` with its own descriptions, chunks `[vaddr, len, digest]`,
//! signatures over `"ckpt-image-v1\0"`) still verifies, inspects as version
//! 1 and restores; an image of several processes is well-formed but
//! refused by restore, naming the count.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::fs;
use std::path::Path;

use ciborium::Value;
use ckpt_tests::image::{with_manifest, Layout};
use ckpt_tests::{exit, path_str, write_owned, Counter, Env, TestDir, Who};
use sha2::{Digest as _, Sha256};

fn manifest_value(image: &[u8]) -> Value {
    let l = Layout::parse(image).unwrap();
    ciborium::de::from_reader(&image[l.manifest.start as usize..l.manifest.end as usize]).unwrap()
}

fn encode(v: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    ciborium::ser::into_writer(v, &mut out).unwrap();
    out
}

fn text(s: &str) -> Value {
    Value::Text(s.into())
}

fn int(n: u64) -> Value {
    Value::Integer(n.into())
}

fn take(top: &mut Vec<(Value, Value)>, key: &str) -> Value {
    let i = top
        .iter()
        .position(|(k, _)| k.as_text() == Some(key))
        .unwrap_or_else(|| panic!("the manifest has no {key}"));
    top.remove(i).1
}

fn field<'a>(v: &'a mut Value, key: &str) -> &'a mut Value {
    let Value::Map(m) = v else {
        panic!("not a map: {v:?}")
    };
    m.iter_mut()
        .find(|(k, _)| k.as_text() == Some(key))
        .map(|(_, v)| v)
        .unwrap_or_else(|| panic!("no field {key}"))
}

/// A version-2 image of one process rewritten exactly as the version-1
/// writer laid it out: header version 1; `tasks[0]` as `process`, with the
/// file table as its `descriptions`; chunks `[vaddr, len, digest]` with
/// SHA-256 digests; no `spaces`, no `chunk_digest`. Unsigned (the test has no version-1 signer; the signature
/// path of version 1 is the committed seed's, below).
fn as_version_1(image: &[u8]) -> Vec<u8> {
    let mut m = manifest_value(image);
    let Value::Map(top) = &mut m else {
        panic!("the manifest is not a map")
    };
    let spaces = take(top, "spaces");
    assert_eq!(
        spaces,
        Value::Array(vec![Value::Map(vec![(
            text("Memory"),
            Value::Map(vec![(text("task"), int(0))])
        )])]),
        "one process's image has one space, its memory"
    );
    let files = take(top, "files");
    let Value::Array(mut tasks) = take(top, "tasks") else {
        panic!("tasks is not an array")
    };
    assert_eq!(tasks.len(), 1);
    let mut process = tasks.remove(0);
    let Value::Map(fields) = &mut process else {
        panic!("the task is not a map")
    };
    fields.push((text("descriptions"), files));
    let Value::Array(chunks) = take(top, "chunks") else {
        panic!("chunks is not an array")
    };
    // Version 1 had SHA-256 chunk digests and no `chunk_digest`.
    assert_eq!(take(top, "chunk_digest"), text("blake3"));
    let mut at = Layout::parse(image).unwrap().data.start as usize;
    let chunks = chunks
        .into_iter()
        .map(|c| {
            let Value::Array(mut e) = c else {
                panic!("a chunk entry is not an array")
            };
            assert_eq!(e.len(), 4, "[space, addr, len, digest]");
            assert_eq!(e.remove(0), int(0), "space 0");
            let len = usize::try_from(u64::try_from(e[1].as_integer().unwrap()).unwrap()).unwrap();
            e[2] = Value::Bytes(Sha256::digest(&image[at..at + len]).to_vec());
            at += len;
            Value::Array(e)
        })
        .collect();
    for (k, v) in top.iter_mut() {
        if k.as_text() == Some("format_version") {
            *v = int(1);
        }
    }
    top.push((text("chunks"), Value::Array(chunks)));
    top.push((text("process"), process));
    let mut out = with_manifest(image, &encode(&m)).unwrap();
    out[8..12].copy_from_slice(&1u32.to_le_bytes());
    out
}

fn format_version(env: &Env, dir: &TestDir, image: &Path) -> serde_json::Value {
    let run = env.verify(dir, &["inspect", path_str(image), "--json"]);
    run.assert_code(exit::OK, "inspect --json");
    let json: serde_json::Value = serde_json::from_str(run.stdout.trim()).unwrap();
    json["format_version"].clone()
}

#[test]
fn a_version_1_image_verifies_inspects_and_restores() {
    let env = Env::require();
    let dir = TestDir::new(&env, "format-v1");
    let mut c = Counter::start(&env, &dir, Who::User(&env.user), &dir.work, "c");
    let p1 = c.proc.pid;
    let v2 = dir.work.join("v2.ckpt");
    env.dump_ok(&dir, p1, &v2, &["--unsigned"]);
    c.proc.wait_gone("dump kills the target");
    let n_dump = c.lines().last().expect("counted before the dump").0;
    let bytes = fs::read(&v2).unwrap();
    assert_eq!(
        bytes[8..12],
        2u32.to_le_bytes(),
        "the dump writes version 2"
    );
    assert_eq!(format_version(&env, &dir, &v2), 2);

    let v1 = dir.work.join("v1.ckpt");
    write_owned(&v1, &as_version_1(&bytes), &env.user);
    env.verify(&dir, &["verify", path_str(&v1)])
        .assert_code(exit::UNSIGNED, "verify of an unsigned version-1 image");
    assert_eq!(format_version(&env, &dir, &v1), 1);
    let run = env.verify(&dir, &["inspect", path_str(&v1)]);
    run.assert_code(exit::OK, "inspect");
    assert!(
        run.stdout.contains("format version: 1"),
        "inspect names the version\n{run}"
    );

    // Restored: converted to the version-2 form when read.
    let (_run, restored) = env.restore_ok(&dir, &v1, None);
    c.wait_for(restored.pid, n_dump + 10);
    c.assert_continuous(&[p1, restored.pid]);
}

/// The committed version-1 seed, signed by a throwaway key with the
/// version-1 context: the installed verifier checks that signature (the
/// key is not trusted here: exit 9, not 4), and the same bytes labelled
/// version 2 are malformed.
#[test]
fn a_signed_version_1_image_is_checked_by_the_installed_verifier() {
    let env = Env::require();
    let dir = TestDir::new(&env, "format-v1-signed");
    let seed = fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/seeds/image_reader/v1-signed"),
    )
    .unwrap();
    assert_eq!(seed[8..12], 1u32.to_le_bytes());
    let image = dir.work.join("seed.ckpt");
    write_owned(&image, &seed, &env.user);
    env.verify(&dir, &["verify", path_str(&image)]).assert_code(
        exit::UNTRUSTED,
        "a good version-1 signature by an untrusted key",
    );
    assert_eq!(format_version(&env, &dir, &image), 1);

    let mut relabelled = seed.clone();
    relabelled[8..12].copy_from_slice(&2u32.to_le_bytes());
    let bad = dir.work.join("relabelled.ckpt");
    write_owned(&bad, &relabelled, &env.user);
    env.verify(&dir, &["verify", path_str(&bad)])
        .assert_code(exit::TAMPERED, "a version-1 manifest labelled version 2");

    // One flipped signature byte: tampered, not unsigned or untrusted.
    let l = Layout::parse(&seed).unwrap();
    let mut flipped = seed.clone();
    flipped[l.sig.end as usize - 3] ^= 1;
    let bad = dir.work.join("flipped.ckpt");
    write_owned(&bad, &flipped, &env.user);
    env.verify(&dir, &["verify", path_str(&bad)])
        .assert_code(exit::TAMPERED, "a version-1 image with a bad signature");
}

#[test]
fn an_image_of_two_processes_needs_the_second_to_be_a_child_of_the_first() {
    let env = Env::require();
    let dir = TestDir::new(&env, "format-two-tasks");
    let mut c = Counter::start(&env, &dir, Who::User(&env.user), &dir.work, "c");
    let image = dir.work.join("one.ckpt");
    env.dump_ok(&dir, c.proc.pid, &image, &["--unsigned"]);
    c.proc.wait_gone("dump kills the target");
    let bytes = fs::read(&image).unwrap();
    // A second process (another pid and thread id) with its own memory
    // space, its fds naming the same file table; its parent `ppid`.
    let two_tasks = |ppid: u64| {
        let mut m = manifest_value(&bytes);
        let Value::Array(tasks) = field(&mut m, "tasks") else {
            panic!("tasks")
        };
        let mut second = tasks[0].clone();
        *field(&mut second, "pid") = int(3_999_999);
        *field(&mut second, "ppid") = int(ppid);
        let Value::Array(threads) = field(&mut second, "threads") else {
            panic!("threads")
        };
        *field(&mut threads[0], "tid") = int(3_999_999);
        tasks.push(second);
        let Value::Array(spaces) = field(&mut m, "spaces") else {
            panic!("spaces")
        };
        spaces.push(Value::Map(vec![(
            text("Memory"),
            Value::Map(vec![(text("task"), int(1))]),
        )]));
        with_manifest(&bytes, &encode(&m)).unwrap()
    };

    // The child of the first task: a well-formed tree of two.
    let two = dir.work.join("two.ckpt");
    write_owned(
        &two,
        &two_tasks(u64::try_from(c.proc.pid).unwrap()),
        &env.user,
    );
    env.verify(&dir, &["verify", path_str(&two)])
        .assert_code(exit::UNSIGNED, "two processes are well-formed");
    let run = env.verify(&dir, &["inspect", path_str(&two), "--json"]);
    run.assert_code(exit::OK, "inspect --json");
    let json: serde_json::Value = serde_json::from_str(run.stdout.trim()).unwrap();
    assert_eq!(json["processes"], 2);

    // A second task whose parent is no earlier task: malformed for every
    // command, naming the field; nothing is restored.
    let orphan = dir.work.join("orphan.ckpt");
    write_owned(&orphan, &two_tasks(1), &env.user);
    let before = fs::read(&c.file).unwrap();
    let pidfile = dir.work.join("two.pid");
    for args in [
        vec!["verify", path_str(&orphan)],
        vec!["inspect", path_str(&orphan)],
        vec![
            "restore",
            path_str(&orphan),
            "--pidfile",
            path_str(&pidfile),
        ],
    ] {
        let run = env.verify(&dir, &args);
        run.assert_code(
            exit::TAMPERED,
            &format!("{} of an orphaned second task", args[0]),
        );
        assert!(
            run.stderr.contains("tasks[1].ppid"),
            "the refusal names the field\n{run}"
        );
    }
    assert!(!pidfile.exists(), "a refused restore wrote its pid file");
    assert_eq!(fs::read(&c.file).unwrap(), before, "nothing ran");
}
