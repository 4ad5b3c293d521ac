//! Hostile images: a byte flipped in each region, truncation, trailing
//! garbage, absurd lengths, a signature taken from another image. Each must
//! be refused by verify and restore with the tampered exit code (4), and a
//! refused restore must create nothing.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::fs;
use std::path::{Path, PathBuf};

use ckpt_tests::image::{flipped, probe_offsets, with_trailer, Layout, Trailer};
use ckpt_tests::{
    exit, path_str, processes_mentioning, write_owned, Counter, Env, Proc, TestDir, Who,
};

/// Images made from one counter: signed A, unsigned U, signed B (the last
/// dump kills the counter, so no process of this test runs afterwards).
struct Images {
    a: Vec<u8>,
    u: Vec<u8>,
    b: Vec<u8>,
    count_file: PathBuf,
}

fn make_images(env: &Env, dir: &TestDir) -> Images {
    let mut c = Counter::start(env, dir, Who::User(&env.user), &dir.work, "c");
    let (a, u, b) = (
        dir.work.join("a.ckpt"),
        dir.work.join("u.ckpt"),
        dir.work.join("b.ckpt"),
    );
    env.dump_ok(dir, c.proc.pid, &a, &["--leave-running"]);
    env.dump_ok(dir, c.proc.pid, &u, &["--leave-running", "--unsigned"]);
    env.dump_ok(dir, c.proc.pid, &b, &[]);
    c.proc.wait_gone("the last dump kills the target");
    Images {
        a: fs::read(&a).unwrap(),
        u: fs::read(&u).unwrap(),
        b: fs::read(&b).unwrap(),
        count_file: c.file.clone(),
    }
}

fn layout(bytes: &[u8], what: &str) -> Layout {
    Layout::parse(bytes).unwrap_or_else(|e| {
        panic!("{what} does not follow the documented image layout (header, data, manifest, signature, 48-byte trailer): {e}")
    })
}

/// Runs verify and restore on `bytes` (written to `name` in the work dir)
/// and returns what went wrong, if anything: verify must exit `want_verify`,
/// restore must exit 4 and create no process, and the count file must not
/// change.
fn expect_refused(
    env: &Env,
    dir: &TestDir,
    imgs: &Images,
    name: &str,
    bytes: &[u8],
    want_verify: i32,
) -> Vec<String> {
    let path = dir.work.join(name);
    write_owned(&path, bytes, &env.user);
    let mut problems = Vec::new();
    let v = env.verify(dir, &["verify", path_str(&path)]);
    if v.code != Some(want_verify) {
        problems.push(format!(
            "{name}: verify: expected exit {want_verify}, got {}; stderr: {}",
            v.describe_exit(),
            v.stderr.trim()
        ));
    } else if v.stderr.trim().is_empty() && v.stdout.trim().is_empty() {
        problems.push(format!(
            "{name}: verify exit {want_verify} without any message"
        ));
    }
    if want_verify == exit::TAMPERED {
        let count_before = fs::read(&imgs.count_file).unwrap();
        let pidfile = dir.work.join(format!("{name}.pid"));
        let (r, proc) = env.restore(dir, &path, Some(&pidfile));
        if r.code != Some(exit::TAMPERED) {
            problems.push(format!(
                "{name}: restore: expected exit 4, got {}; stdout: {}; stderr: {}",
                r.describe_exit(),
                r.stdout.trim(),
                r.stderr.trim()
            ));
        }
        drop(proc);
        let strays = processes_mentioning(path_str(&dir.root));
        if !strays.is_empty() {
            problems.push(format!("{name}: restore left processes {strays:?} running"));
            for pid in strays {
                drop(Proc::adopt(pid, "stray restored process"));
            }
        }
        if pidfile.exists() {
            problems.push(format!("{name}: a refused restore wrote its pid file"));
        }
        if fs::read(&imgs.count_file).unwrap() != count_before {
            problems.push(format!(
                "{name}: the count file changed: a refused image ran"
            ));
        }
    }
    let _ = fs::remove_file(&path);
    problems
}

fn assert_no_problems(problems: Vec<String>, total: usize) {
    assert!(
        problems.is_empty(),
        "{} of {total} hostile images were not refused as they must be:\n  {}",
        problems.len(),
        problems.join("\n  ")
    );
}

#[test]
fn a_byte_flipped_in_any_region_is_refused() {
    let env = Env::require();
    let dir = TestDir::new(&env, "tamper-flip");
    let imgs = make_images(&env, &dir);
    let l = layout(&imgs.a, "signed image");
    assert!(
        !l.sig.is_empty(),
        "a signed image has a signature block: {l:?}"
    );
    let mut problems = Vec::new();
    let mut total = 0;
    for (region, range) in l.regions() {
        for off in probe_offsets(&range) {
            total += 1;
            let name = format!("flip-{}-{off}.ckpt", region.replace(' ', "-"));
            problems.extend(expect_refused(
                &env,
                &dir,
                &imgs,
                &name,
                &flipped(&imgs.a, off),
                exit::TAMPERED,
            ));
        }
    }
    // Unsigned images are protected by their chunk digests.
    let lu = layout(&imgs.u, "unsigned image");
    assert!(
        lu.sig.is_empty(),
        "an --unsigned image has no signature block: {lu:?}"
    );
    for off in probe_offsets(&lu.data) {
        total += 1;
        let name = format!("unsigned-flip-data-{off}.ckpt");
        problems.extend(expect_refused(
            &env,
            &dir,
            &imgs,
            &name,
            &flipped(&imgs.u, off),
            exit::TAMPERED,
        ));
    }
    assert_no_problems(problems, total);
}

#[test]
fn verify_json_reports_a_tampered_image() {
    let env = Env::require();
    let dir = TestDir::new(&env, "tamper-json");
    let imgs = make_images(&env, &dir);
    let l = layout(&imgs.a, "signed image");
    let path = dir.work.join("bad.ckpt");
    write_owned(
        &path,
        &flipped(&imgs.a, l.data.start + (l.data.end - l.data.start) / 2),
        &env.user,
    );
    let (run, json) = env.verify_json(&dir, &path);
    run.assert_code(
        exit::TAMPERED,
        "verify --json of an image with a flipped data byte",
    );
    assert_eq!(json["integrity"], "tampered", "{run}");
}

#[test]
fn truncated_extended_and_absurd_images_are_refused() {
    let env = Env::require();
    let dir = TestDir::new(&env, "tamper-trunc");
    let imgs = make_images(&env, &dir);
    let a = &imgs.a;
    let l = layout(a, "signed image");
    let mid = |r: &std::ops::Range<u64>| r.start + (r.end - r.start) / 2;
    let mut cuts = vec![
        0,
        1,
        8,
        31,
        32,
        33,
        mid(&l.data),
        l.manifest.start,
        mid(&l.manifest),
        mid(&l.sig),
        l.len - 48,
        l.len - 47,
        l.len - 1,
    ];
    cuts.sort_unstable();
    cuts.dedup();
    let mut problems = Vec::new();
    let mut total = 0;
    for cut in cuts {
        total += 1;
        problems.extend(expect_refused(
            &env,
            &dir,
            &imgs,
            &format!("cut-{cut}.ckpt"),
            &a[..cut as usize],
            exit::TAMPERED,
        ));
    }
    for extra in [1usize, 4096] {
        total += 1;
        let mut v = a.clone();
        v.resize(v.len() + extra, 0x41);
        problems.extend(expect_refused(
            &env,
            &dir,
            &imgs,
            &format!("garbage-{extra}.ckpt"),
            &v,
            exit::TAMPERED,
        ));
    }
    let t = l.trailer;
    let absurd: Vec<(&str, Trailer)> = vec![
        (
            "manifest-len-max",
            Trailer {
                manifest_len: u64::MAX,
                ..t
            },
        ),
        (
            "manifest-len-huge",
            Trailer {
                manifest_len: 1 << 40,
                ..t
            },
        ),
        (
            "manifest-offset-past-end",
            Trailer {
                manifest_offset: l.len + 4096,
                ..t
            },
        ),
        (
            "manifest-offset-zero",
            Trailer {
                manifest_offset: 0,
                ..t
            },
        ),
        (
            "data-len-max",
            Trailer {
                data_len: u64::MAX,
                ..t
            },
        ),
        (
            "data-len-short",
            Trailer {
                data_len: t.data_len.saturating_sub(4096),
                ..t
            },
        ),
        (
            "sig-len-max",
            Trailer {
                sig_len: u64::MAX,
                ..t
            },
        ),
        (
            "sig-len-huge",
            Trailer {
                sig_len: 1 << 40,
                ..t
            },
        ),
        (
            "sig-offset-into-manifest",
            Trailer {
                sig_offset: t.manifest_offset,
                ..t
            },
        ),
    ];
    for (name, tr) in absurd {
        total += 1;
        problems.extend(expect_refused(
            &env,
            &dir,
            &imgs,
            &format!("{name}.ckpt"),
            &with_trailer(a, &tr),
            exit::TAMPERED,
        ));
    }
    assert_no_problems(problems, total);
}

#[test]
fn a_signature_from_another_image_is_refused_and_a_stripped_one_reads_as_unsigned() {
    let env = Env::require();
    let dir = TestDir::new(&env, "tamper-splice");
    let imgs = make_images(&env, &dir);
    let (la, lb, lu) = (
        layout(&imgs.a, "image A"),
        layout(&imgs.b, "image B"),
        layout(&imgs.u, "unsigned image"),
    );

    // A's header, data and manifest with B's (valid, host-signed) signature block.
    let mut spliced = imgs.a[..la.sig.start as usize].to_vec();
    spliced.extend_from_slice(&imgs.b[lb.sig.start as usize..lb.sig.end as usize]);
    spliced.extend_from_slice(
        &Trailer {
            sig_offset: la.sig.start,
            sig_len: lb.trailer.sig_len,
            ..la.trailer
        }
        .encode(),
    );
    let mut problems = expect_refused(&env, &dir, &imgs, "spliced.ckpt", &spliced, exit::TAMPERED);

    // A without its signature block, trailer written the way an unsigned
    // image's is: integrity holds, but it must now read as unsigned (never as
    // signed and trusted).
    let mut stripped = imgs.a[..la.manifest.end as usize].to_vec();
    let sig_offset = if lu.trailer.sig_offset == 0 {
        0
    } else {
        la.manifest.end
    };
    stripped.extend_from_slice(
        &Trailer {
            sig_offset,
            sig_len: 0,
            ..la.trailer
        }
        .encode(),
    );
    let path = dir.work.join("stripped.ckpt");
    write_owned(&path, &stripped, &env.user);
    let (run, json) = env.verify_json(&dir, &path);
    if run.code != Some(exit::UNSIGNED) || json["signed"] != false {
        problems.push(format!(
            "stripped signature: expected exit 8 and \"signed\": false, got {} and {json}",
            run.describe_exit()
        ));
    }
    assert_no_problems(problems, 2);
}

#[test]
fn an_image_the_caller_cannot_read_is_refused() {
    let env = Env::require();
    let dir = TestDir::new(&env, "tamper-unreadable");
    let imgs = make_images(&env, &dir);
    // A valid image, but root's and mode 0600: the helpers open it as the caller.
    let path: &Path = &dir.root.join("roots.ckpt");
    dir.file(path, &imgs.a, 0o600, None);
    let v = env.verify(&dir, &["verify", path_str(path)]);
    v.assert_refused("verify of an image only root can read");
    v.assert_code(
        exit::ACCESS_DENIED,
        "verify of an image only root can read (SECURITY.md §6)",
    );
    let (r, proc) = env.restore(&dir, path, None);
    assert!(
        proc.is_none(),
        "restore of an image only root can read must not run it\n{r}"
    );
    r.assert_refused("restore of an image only root can read");
    r.assert_code(
        exit::ACCESS_DENIED,
        "restore of an image only root can read (SECURITY.md §6)",
    );
    assert!(processes_mentioning(path_str(&dir.root)).is_empty());
}

/// A compressed image (`dump --compress`: LZ4 chunks, zero pages of
/// anonymous memory left out), signed or not: a byte flipped in its chunk
/// data is refused by verify and restore, and nothing runs.
#[test]
fn a_byte_flipped_in_a_compressed_image_is_refused() {
    let env = Env::require();
    let dir = TestDir::new(&env, "tamper-compressed");
    let mut c = Counter::start(&env, &dir, Who::User(&env.user), &dir.work, "c");
    let (signed, unsigned) = (dir.work.join("s.ckpt"), dir.work.join("u.ckpt"));
    env.dump_ok(
        &dir,
        c.proc.pid,
        &signed,
        &["--leave-running", "--compress"],
    );
    env.dump_ok(&dir, c.proc.pid, &unsigned, &["--compress", "--unsigned"]);
    c.proc.wait_gone("the last dump kills the target");
    let imgs = Images {
        a: fs::read(&signed).unwrap(),
        u: fs::read(&unsigned).unwrap(),
        b: Vec::new(),
        count_file: c.file.clone(),
    };
    let mut problems = Vec::new();
    let mut total = 0;
    for (what, bytes) in [("signed", &imgs.a), ("unsigned", &imgs.u)] {
        let l = layout(bytes, what);
        for off in probe_offsets(&l.data) {
            total += 1;
            let name = format!("compressed-{what}-flip-data-{off}.ckpt");
            problems.extend(expect_refused(
                &env,
                &dir,
                &imgs,
                &name,
                &flipped(bytes, off),
                exit::TAMPERED,
            ));
        }
    }
    assert_no_problems(problems, total);
}
