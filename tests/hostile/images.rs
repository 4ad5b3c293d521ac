//! Hostile images: every header, trailer, manifest and signature field
//! changed structurally (lengths, versions, algorithm names, key ids,
//! digests, counts, types), manifests re-encoded from their CBOR structure,
//! and regions swapped between two valid images. `verify` and `restore`
//! must both refuse (exit 4 unless the case says otherwise) before
//! anything is created.

use std::fs;
use std::path::PathBuf;

use ciborium::value::Value;
use ckpt_tests::image::{Layout, Trailer, HEADER_LEN, TRAILER_LEN};
use ckpt_tests::{exit, path_str, write_owned, Counter, Env, TestDir, Who};
use sha2::{Digest as _, Sha256};

use crate::{caller_creds_only, new_entries, outcome, setup, strays, Cases};

/// Two counters, each dumped signed and unsigned.
struct Images {
    a: Vec<u8>,
    ua: Vec<u8>,
    b: Vec<u8>,
    ub: Vec<u8>,
    counts: Vec<PathBuf>,
}

fn make_images(env: &Env, dir: &TestDir) -> Images {
    let mut out = Vec::new();
    let mut counts = Vec::new();
    for name in ["a", "b"] {
        let mut c = Counter::start(env, dir, Who::User(&env.user), &dir.work, name);
        let s = dir.work.join(format!("{name}.ckpt"));
        let u = dir.work.join(format!("u{name}.ckpt"));
        env.dump_ok(dir, c.proc.pid, &u, &["--leave-running", "--unsigned"]);
        env.dump_ok(dir, c.proc.pid, &s, &[]);
        c.proc.wait_gone("the dump kills the target");
        out.push((fs::read(&s).unwrap(), fs::read(&u).unwrap()));
        fs::remove_file(&s).unwrap();
        fs::remove_file(&u).unwrap();
        counts.push(c.file.clone());
    }
    let (b, ub) = out.pop().unwrap();
    let (a, ua) = out.pop().unwrap();
    Images {
        a,
        ua,
        b,
        ub,
        counts,
    }
}

/// The regions of an image.
#[derive(Clone)]
struct Parts {
    header: Vec<u8>,
    data: Vec<u8>,
    manifest: Vec<u8>,
    sig: Vec<u8>,
}

fn parts(img: &[u8]) -> Parts {
    let l = Layout::parse(img).expect("a valid image follows the documented layout");
    let r = |r: std::ops::Range<u64>| img[r.start as usize..r.end as usize].to_vec();
    Parts {
        header: r(l.header),
        data: r(l.data),
        manifest: r(l.manifest),
        sig: r(l.sig),
    }
}

/// An image from its regions with a consistent trailer.
fn assemble(p: &Parts) -> Vec<u8> {
    let mut v = p.header.clone();
    v.extend_from_slice(&p.data);
    v.extend_from_slice(&p.manifest);
    v.extend_from_slice(&p.sig);
    let mo = HEADER_LEN + p.data.len() as u64;
    let t = Trailer {
        manifest_offset: mo,
        manifest_len: p.manifest.len() as u64,
        sig_offset: if p.sig.is_empty() {
            0
        } else {
            mo + p.manifest.len() as u64
        },
        sig_len: p.sig.len() as u64,
        data_len: p.data.len() as u64,
    };
    v.extend_from_slice(&t.encode());
    v
}

fn decode(bytes: &[u8]) -> Value {
    ciborium::de::from_reader(bytes).expect("a valid image's CBOR decodes")
}

fn encode(v: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    ciborium::ser::into_writer(v, &mut out).expect("encode CBOR");
    out
}

fn text(s: &str) -> Value {
    Value::Text(s.to_string())
}

fn int(n: i128) -> Value {
    Value::Integer(ciborium::value::Integer::try_from(n).expect("CBOR integer range"))
}

fn map_mut(v: &mut Value) -> &mut Vec<(Value, Value)> {
    match v {
        Value::Map(m) => m,
        other => panic!("expected a CBOR map, found {other:?}"),
    }
}

/// The value under `path` (map keys, or array indices as decimal).
fn at<'a>(v: &'a mut Value, path: &[&str]) -> &'a mut Value {
    let mut cur = v;
    for key in path {
        cur = match cur {
            Value::Map(m) => m
                .iter_mut()
                .find(|(k, _)| k.as_text() == Some(key))
                .map(|(_, v)| v)
                .unwrap_or_else(|| panic!("no field {key} in the manifest (path {path:?})")),
            Value::Array(a) => {
                let i: usize = key.parse().expect("array index");
                &mut a[i]
            }
            other => panic!("cannot descend into {other:?} at {key}"),
        };
    }
    cur
}

fn remove(v: &mut Value, path: &[&str], field: &str) {
    let m = map_mut(at(v, path));
    let before = m.len();
    m.retain(|(k, _)| k.as_text() != Some(field));
    assert_eq!(
        before,
        m.len() + 1,
        "field {field} present once at {path:?}"
    );
}

/// Runs `verify` and `restore` (with a pid file) on `bytes` as the test
/// user and checks both exit codes, the messages, and that nothing was
/// created: no process, no pid file, no other new file, count files
/// unchanged.
fn expect(
    env: &Env,
    dir: &TestDir,
    imgs: &Images,
    cases: &mut Cases,
    name: &str,
    bytes: &[u8],
    want_verify: i32,
    want_restore: i32,
) {
    cases.start(name);
    let path = dir.work.join(format!("{name}.ckpt"));
    write_owned(&path, bytes, &env.user);
    let before = ckpt_tests::TestDir::list(&dir.work);
    let v = env.verify(dir, &["verify", path_str(&path)]);
    cases.check(
        name,
        outcome(&v, want_verify, None).map(|p| format!("verify: {p}")),
    );
    let counts: Vec<Vec<u8>> = imgs.counts.iter().map(|c| fs::read(c).unwrap()).collect();
    let pidfile = dir.work.join(format!("{name}.pid"));
    let (r, proc) = env.restore(dir, &path, Some(&pidfile));
    cases.check(
        name,
        outcome(&r, want_restore, None).map(|p| format!("restore: {p}")),
    );
    if let Some(p) = proc {
        cases.check(name, caller_creds_only(p.pid, &env.user));
        drop(p);
        let _ = fs::remove_file(&pidfile);
    } else if pidfile.exists() {
        cases.fail(name, "a refused restore wrote its pid file");
        let _ = fs::remove_file(&pidfile);
    }
    if want_restore != exit::OK {
        cases.check(name, strays(dir));
        let after: Vec<Vec<u8>> = imgs.counts.iter().map(|c| fs::read(c).unwrap()).collect();
        if after != counts {
            cases.fail(name, "a count file changed: a refused image ran");
        }
    }
    let stray_files = new_entries(&dir.work, &before);
    if !stray_files.is_empty() {
        cases.fail(name, format!("new files: {stray_files:?}"));
    }
    let _ = fs::remove_file(&path);
}

fn set_header(img: &[u8], at: usize, bytes: &[u8]) -> Vec<u8> {
    let mut v = img.to_vec();
    v[at..at + bytes.len()].copy_from_slice(bytes);
    v
}

fn with_trailer(img: &[u8], f: impl Fn(&mut Trailer)) -> Vec<u8> {
    let mut t = Layout::parse(img).unwrap().trailer;
    f(&mut t);
    ckpt_tests::image::with_trailer(img, &t)
}

#[test]
fn header_trailer_and_framing_fields() {
    let (_g, env) = setup();
    let dir = TestDir::new(&env, "hostile-framing");
    let imgs = make_images(&env, &dir);
    let a = &imgs.a;
    let ua = &imgs.ua;
    let t4 = exit::TAMPERED;
    let mut cases = Cases::default();
    let mut table: Vec<(&str, Vec<u8>)> = vec![
        ("header-magic-last-byte", set_header(a, 7, b"X")),
        ("header-magic-lowercase", set_header(a, 0, b"ckptimg\0")),
        ("header-magic-of-trailer", set_header(a, 0, b"CKPTEND\0")),
        ("header-version-0", set_header(a, 8, &0u32.to_le_bytes())),
        // Version 1 is read, but this version-2 manifest is not a
        // version-1 one (nor signed in its context).
        ("header-version-1", set_header(a, 8, &1u32.to_le_bytes())),
        ("header-version-3", set_header(a, 8, &3u32.to_le_bytes())),
        (
            "header-version-max",
            set_header(a, 8, &u32::MAX.to_le_bytes()),
        ),
        (
            "header-version-big-endian-2",
            set_header(a, 8, &2u32.to_be_bytes()),
        ),
        ("header-reserved-first", set_header(a, 12, &[1])),
        ("header-reserved-last", set_header(a, 31, &[0x80])),
        (
            "unsigned-header-version-1",
            set_header(ua, 8, &1u32.to_le_bytes()),
        ),
        ("trailer-magic", {
            let mut v = a.clone();
            let n = v.len();
            v[n - 1] = b'X';
            v
        }),
        (
            "trailer-manifest-offset-minus-1",
            with_trailer(a, |t| t.manifest_offset -= 1),
        ),
        (
            "trailer-manifest-offset-plus-1",
            with_trailer(a, |t| t.manifest_offset += 1),
        ),
        (
            "trailer-manifest-len-minus-1",
            with_trailer(a, |t| t.manifest_len -= 1),
        ),
        (
            "trailer-manifest-len-over-cap",
            with_trailer(a, |t| t.manifest_len = (64 << 20) + 1),
        ),
        (
            "trailer-manifest-len-max",
            with_trailer(a, |t| t.manifest_len = u64::MAX),
        ),
        (
            "trailer-sig-offset-plus-1",
            with_trailer(a, |t| t.sig_offset += 1),
        ),
        (
            "trailer-sig-len-minus-1",
            with_trailer(a, |t| t.sig_len -= 1),
        ),
        (
            "trailer-sig-len-over-cap",
            with_trailer(a, |t| t.sig_len = (64 << 10) + 1),
        ),
        (
            "trailer-data-len-plus-4096",
            with_trailer(a, |t| t.data_len += 4096),
        ),
        (
            "trailer-data-len-max",
            with_trailer(a, |t| t.data_len = u64::MAX - 31),
        ),
        (
            "unsigned-trailer-sig-offset-without-len",
            with_trailer(ua, |t| t.sig_offset = t.manifest_offset + t.manifest_len),
        ),
        ("empty-file", Vec::new()),
        ("image-twice", [a.as_slice(), a.as_slice()].concat()),
    ];
    for (name, bytes) in table.drain(..) {
        expect(&env, &dir, &imgs, &mut cases, name, &bytes, t4, t4);
    }
    cases.finish("header, trailer and framing");
}

/// Mutations of an unsigned image's manifest, re-encoded with a consistent
/// layout; each is malformed, so both helpers exit 4.
#[test]
fn manifest_fields_reencoded_in_unsigned_images() {
    let (_g, env) = setup();
    let dir = TestDir::new(&env, "hostile-manifest");
    let imgs = make_images(&env, &dir);
    let p = parts(&imgs.ua);
    let m0 = decode(&p.manifest);
    // The re-encoding itself is faithful: the unmodified manifest
    // re-encodes to the same bytes, and that image verifies as unsigned.
    assert_eq!(
        encode(&m0),
        p.manifest,
        "ciborium re-encodes the manifest byte for byte"
    );

    let chunks_len = match at(&mut m0.clone(), &["chunks"]) {
        Value::Array(a) => a.len(),
        other => panic!("chunks is not an array: {other:?}"),
    };
    assert!(chunks_len >= 2, "the counter image has at least two chunks");
    type Edit = Box<dyn Fn(&mut Value)>;
    let set = |path: &'static [&'static str], v: Value| -> Edit {
        Box::new(move |m: &mut Value| *at(m, path) = v.clone())
    };
    let del = |path: &'static [&'static str], field: &'static str| -> Edit {
        Box::new(move |m: &mut Value| remove(m, path, field))
    };
    let table: Vec<(&str, Edit)> = vec![
        ("format-version-0", set(&["format_version"], int(0))),
        ("format-version-1", set(&["format_version"], int(1))),
        ("format-version-3", set(&["format_version"], int(3))),
        (
            "format-version-as-text",
            set(&["format_version"], text("2")),
        ),
        ("format-version-negative", set(&["format_version"], int(-1))),
        (
            "image-id-15-bytes",
            set(&["image_id"], Value::Bytes(vec![7; 15])),
        ),
        (
            "image-id-17-bytes",
            set(&["image_id"], Value::Bytes(vec![7; 17])),
        ),
        (
            "image-id-as-array",
            set(&["image_id"], Value::Array(vec![int(1); 16])),
        ),
        ("created-negative", set(&["created_unix"], int(-1))),
        (
            "created-as-float",
            set(&["created_unix"], Value::Float(1.5)),
        ),
        ("host-as-integer", set(&["host"], int(0))),
        (
            "kernel-release-as-bytes",
            set(&["kernel_release"], Value::Bytes(b"6.1".to_vec())),
        ),
        ("arch-as-null", set(&["arch"], Value::Null)),
        (
            "cpu-xsave-size-over-u32",
            set(&["cpu", "xsave_size"], int(1 << 33)),
        ),
        (
            "cpu-without-xsave-features",
            del(&["cpu"], "xsave_features"),
        ),
        (
            "vdso-digest-31-bytes",
            set(&["vdso_digest"], Value::Bytes(vec![0; 31])),
        ),
        ("requester-without-uid", del(&["requester"], "uid")),
        (
            "requester-groups-as-map",
            set(&["requester", "groups"], Value::Map(vec![])),
        ),
        (
            "digest-algorithm-sha512",
            set(&["digest_algorithm"], text("sha512")),
        ),
        (
            "digest-algorithm-uppercase",
            set(&["digest_algorithm"], text("SHA256")),
        ),
        (
            "digest-algorithm-empty",
            set(&["digest_algorithm"], text("")),
        ),
        (
            "digest-algorithm-as-integer",
            set(&["digest_algorithm"], int(0)),
        ),
        ("chunks-none", set(&["chunks"], Value::Array(vec![]))),
        (
            "chunks-last-dropped",
            Box::new(|m: &mut Value| {
                if let Value::Array(a) = at(m, &["chunks"]) {
                    a.pop();
                }
            }),
        ),
        (
            "chunks-first-duplicated",
            Box::new(|m: &mut Value| {
                if let Value::Array(a) = at(m, &["chunks"]) {
                    let f = a[0].clone();
                    a.insert(0, f);
                }
            }),
        ),
        (
            "chunks-first-two-swapped",
            Box::new(|m: &mut Value| {
                if let Value::Array(a) = at(m, &["chunks"]) {
                    a.swap(0, 1);
                }
            }),
        ),
        (
            "chunk-digest-31-bytes",
            Box::new(|m: &mut Value| {
                if let Value::Bytes(d) = at(m, &["chunks", "0", "3"]) {
                    d.pop();
                }
            }),
        ),
        (
            "chunk-digest-64-bytes",
            Box::new(|m: &mut Value| {
                if let Value::Bytes(d) = at(m, &["chunks", "0", "3"]) {
                    let c = d.clone();
                    d.extend(c);
                }
            }),
        ),
        ("chunk-len-0", set(&["chunks", "0", "2"], int(0))),
        (
            "chunk-len-plus-1",
            Box::new(|m: &mut Value| {
                let v = at(m, &["chunks", "0", "2"]);
                let n: i128 = v.as_integer().unwrap().into();
                *v = int(n + 1);
            }),
        ),
        (
            "chunk-entry-5-elements",
            Box::new(|m: &mut Value| {
                if let Value::Array(e) = at(m, &["chunks", "0"]) {
                    e.push(int(0));
                }
            }),
        ),
        ("chunks-as-map", set(&["chunks"], Value::Map(vec![]))),
        (
            "tasks-removed",
            Box::new(|m: &mut Value| remove(m, &[], "tasks")),
        ),
        (
            "spaces-removed",
            Box::new(|m: &mut Value| remove(m, &[], "spaces")),
        ),
        ("tasks-empty", set(&["tasks"], Value::Array(vec![]))),
        (
            "chunk-space-out-of-range",
            set(&["chunks", "0", "0"], int(7)),
        ),
        (
            "files-removed",
            Box::new(|m: &mut Value| remove(m, &[], "files")),
        ),
        (
            "manifest-as-array",
            Box::new(|m: &mut Value| {
                let fields = map_mut(m).iter().map(|(_, v)| v.clone()).collect();
                *m = Value::Array(fields);
            }),
        ),
        (
            "arch-twice",
            Box::new(|m: &mut Value| {
                map_mut(m).push((text("arch"), text("x86_64")));
            }),
        ),
    ];
    let mut cases = Cases::default();
    for (name, edit) in &table {
        let mut m = m0.clone();
        edit(&mut m);
        let mut q = p.clone();
        q.manifest = encode(&m);
        assert_ne!(q.manifest, p.manifest, "{name} changes the manifest");
        expect(
            &env,
            &dir,
            &imgs,
            &mut cases,
            name,
            &assemble(&q),
            exit::TAMPERED,
            exit::TAMPERED,
        );
    }
    cases.finish("manifest fields (unsigned, re-encoded)");
}

/// A manifest claiming root's credentials and every capability, in an
/// unsigned image, in one re-signed with the caller's own key, and with a
/// 64 MiB flood of tiny items: what the caller can restore runs with the
/// caller's credentials only, and the flood is a clean exit 4.
#[test]
fn manifest_claims_and_floods() {
    let (_g, env) = setup();
    let dir = TestDir::new(&env, "hostile-claims");
    let imgs = make_images(&env, &dir);
    let p = parts(&imgs.ua);
    let mut m = decode(&p.manifest);
    *at(&mut m, &["tasks", "0", "creds", "uid"]) = Value::Array(vec![int(0); 4]);
    *at(&mut m, &["tasks", "0", "creds", "gid"]) = Value::Array(vec![int(0); 4]);
    for cap in [
        "cap_permitted",
        "cap_effective",
        "cap_bounding",
        "cap_inheritable",
    ] {
        *at(&mut m, &["tasks", "0", "creds", cap]) = int(0x1ff_ffff_ffff);
    }
    *at(&mut m, &["requester", "uid"]) = int(0);
    let mut root_claim = p.clone();
    root_claim.manifest = encode(&m);

    let mut cases = Cases::default();
    // Unsigned: restored with the caller's credentials (exit 0) ...
    expect(
        &env,
        &dir,
        &imgs,
        &mut cases,
        "unsigned-claims-root",
        &assemble(&root_claim),
        exit::UNSIGNED,
        exit::OK,
    );
    // ... and refused (exit 5) when the caller demands the saved ones.
    {
        let name = "unsigned-claims-root-require-saved-creds";
        cases.start(name);
        let path = dir.work.join(format!("{name}.ckpt"));
        write_owned(&path, &assemble(&root_claim), &env.user);
        let r = env.verify(&dir, &["restore", path_str(&path), "--require-saved-creds"]);
        cases.check(name, outcome(&r, exit::POLICY, None));
        cases.check(name, strays(&dir));
        let _ = fs::remove_file(&path);
    }
    // Re-signed with the caller's own key: intact, untrusted (9), still the
    // caller's credentials.
    let key = ckpt_keys::SigningKey::generate().expect("generate a key");
    let pk = key.public_key();
    let digest: [u8; 32] = Sha256::digest(&root_claim.manifest).into();
    let sig_block = Value::Map(vec![
        (text("algorithm"), text(pk.algorithm().name())),
        (text("key_id"), Value::Bytes(pk.key_id().0.to_vec())),
        (text("public_key"), Value::Bytes(pk.bytes().to_vec())),
        (
            text("signature"),
            Value::Bytes(key.sign_manifest_digest(&digest)),
        ),
    ]);
    let mut resigned = root_claim.clone();
    resigned.sig = encode(&sig_block);
    expect(
        &env,
        &dir,
        &imgs,
        &mut cases,
        "resigned-by-caller-claims-root",
        &assemble(&resigned),
        exit::UNTRUSTED,
        exit::OK,
    );

    // A flood of empty strings in one mapping's vm_flags, up to the
    // manifest cap, under the smallest RLIMIT_AS start-up accepts.
    {
        let name = "manifest-flood-64mib-of-empty-strings";
        cases.start(name);
        let mut m = decode(&p.manifest);
        let base = encode(&m).len();
        let n = (64usize << 20) - base - 64;
        *at(&mut m, &["tasks", "0", "vmas", "0", "vm_flags"]) = Value::Array(vec![text(""); n]);
        let mut q = p.clone();
        q.manifest = encode(&m);
        assert!(
            q.manifest.len() as u64 <= 64 << 20,
            "the flood fits the cap"
        );
        let path = dir.work.join(format!("{name}.ckpt"));
        write_owned(&path, &assemble(&q), &env.user);
        drop(q);
        let gib = (1u64 << 30).to_string();
        let lim = format!("as:{gib}:{gib}");
        for cmd in ["verify", "restore"] {
            let r = crate::run_wrapped(
                &env,
                &dir,
                Who::User(&env.user),
                &["--rlimit", &lim],
                &env.verify_path(),
                &[cmd, path_str(&path)],
            );
            cases.check(
                name,
                outcome(&r, exit::TAMPERED, None).map(|e| format!("{cmd}: {e}")),
            );
        }
        cases.check(name, strays(&dir));
        let _ = fs::remove_file(&path);
    }
    cases.finish("manifest claims and floods");
}

/// Any change to a signed manifest (the signature block kept) is tampering.
#[test]
fn manifest_fields_changed_under_a_signature() {
    let (_g, env) = setup();
    let dir = TestDir::new(&env, "hostile-signed-manifest");
    let imgs = make_images(&env, &dir);
    let p = parts(&imgs.a);
    let m0 = decode(&p.manifest);
    type Edit = Box<dyn Fn(&mut Value)>;
    let bump = |path: &'static [&'static str]| -> Edit {
        Box::new(move |m: &mut Value| {
            let v = at(m, path);
            let n: i128 = v.as_integer().expect("integer field").into();
            *v = int(n + 1);
        })
    };
    let flip_bytes = |path: &'static [&'static str]| -> Edit {
        Box::new(move |m: &mut Value| {
            if let Value::Bytes(b) = at(m, path) {
                b[0] ^= 1;
            } else {
                panic!("{path:?} is not a byte string");
            }
        })
    };
    let table: Vec<(&str, Edit)> = vec![
        ("signed-format-version", bump(&["format_version"])),
        ("signed-image-id", flip_bytes(&["image_id"])),
        ("signed-created-unix", bump(&["created_unix"])),
        (
            "signed-kernel-release",
            Box::new(|m: &mut Value| *at(m, &["kernel_release"]) = text("0.0.0-forged")),
        ),
        (
            "signed-arch",
            Box::new(|m: &mut Value| *at(m, &["arch"]) = text("aarch64")),
        ),
        ("signed-cpu-xsave-size", bump(&["cpu", "xsave_size"])),
        ("signed-vdso-digest", flip_bytes(&["vdso_digest"])),
        (
            "signed-requester-uid",
            Box::new(|m: &mut Value| *at(m, &["requester", "uid"]) = int(0)),
        ),
        (
            "signed-requester-groups",
            Box::new(|m: &mut Value| *at(m, &["requester", "groups"]) = Value::Array(vec![int(0)])),
        ),
        ("signed-chunk-addr", bump(&["chunks", "0", "1"])),
        ("signed-chunk-space", bump(&["chunks", "0", "0"])),
        ("signed-chunk-digest", flip_bytes(&["chunks", "0", "3"])),
        (
            "signed-process-uid-root",
            Box::new(|m: &mut Value| {
                *at(m, &["tasks", "0", "creds", "uid"]) = Value::Array(vec![int(0); 4])
            }),
        ),
        (
            "signed-process-caps",
            Box::new(|m: &mut Value| {
                *at(m, &["tasks", "0", "creds", "cap_effective"]) = int(0x1ff_ffff_ffff)
            }),
        ),
        (
            "signed-unknown-field-added",
            Box::new(|m: &mut Value| map_mut(m).push((text("grants"), text("all")))),
        ),
        (
            "signed-fields-reordered",
            Box::new(|m: &mut Value| map_mut(m).reverse()),
        ),
    ];
    let mut cases = Cases::default();
    for (name, edit) in &table {
        let mut m = m0.clone();
        edit(&mut m);
        let mut q = p.clone();
        q.manifest = encode(&m);
        assert_ne!(q.manifest, p.manifest, "{name} changes the manifest");
        expect(
            &env,
            &dir,
            &imgs,
            &mut cases,
            name,
            &assemble(&q),
            exit::TAMPERED,
            exit::TAMPERED,
        );
    }
    cases.finish("manifest fields under a signature");
}

#[test]
fn signature_block_fields() {
    let (_g, env) = setup();
    let dir = TestDir::new(&env, "hostile-sigblock");
    let imgs = make_images(&env, &dir);
    let p = parts(&imgs.a);
    let s0 = decode(&p.sig);
    let mine = ckpt_keys::SigningKey::generate()
        .expect("generate a key")
        .public_key();
    type Edit = Box<dyn Fn(&mut Value)>;
    let set = |field: &'static str, v: Value| -> Edit {
        Box::new(move |s: &mut Value| *at(s, &[field]) = v.clone())
    };
    let edit_bytes = |field: &'static str, f: fn(&mut Vec<u8>)| -> Edit {
        Box::new(move |s: &mut Value| {
            if let Value::Bytes(b) = at(s, &[field]) {
                f(b)
            } else {
                panic!("{field} is not a byte string")
            }
        })
    };
    let mine_id = mine.key_id().0.to_vec();
    let mine_pk = mine.bytes().to_vec();
    let table: Vec<(&str, Edit)> = vec![
        ("sig-algorithm-unknown", set("algorithm", text("ed448"))),
        ("sig-algorithm-empty", set("algorithm", text(""))),
        ("sig-algorithm-as-integer", set("algorithm", int(1))),
        (
            "sig-key-id-15-bytes",
            edit_bytes("key_id", |b| {
                b.pop();
            }),
        ),
        (
            "sig-key-id-of-another-key",
            set("key_id", Value::Bytes(mine_id)),
        ),
        (
            "sig-public-key-of-another-key",
            set("public_key", Value::Bytes(mine_pk)),
        ),
        (
            "sig-public-key-truncated",
            edit_bytes("public_key", |b| {
                b.pop();
            }),
        ),
        (
            "sig-signature-zeroed",
            edit_bytes("signature", |b| b.iter_mut().for_each(|x| *x = 0)),
        ),
        (
            "sig-signature-truncated",
            edit_bytes("signature", |b| {
                b.pop();
            }),
        ),
        (
            "sig-signature-extended",
            edit_bytes("signature", |b| b.push(0)),
        ),
        (
            "sig-signature-removed",
            Box::new(|s: &mut Value| remove(s, &[], "signature")),
        ),
        (
            "sig-attestation-garbage",
            Box::new(|s: &mut Value| map_mut(s).push((text("attestation"), text("trust me")))),
        ),
        (
            "sig-block-as-array",
            Box::new(|s: &mut Value| {
                let fields = map_mut(s).iter().map(|(_, v)| v.clone()).collect();
                *s = Value::Array(fields);
            }),
        ),
    ];
    let mut cases = Cases::default();
    for (name, edit) in &table {
        let mut s = s0.clone();
        edit(&mut s);
        let mut q = p.clone();
        q.sig = encode(&s);
        expect(
            &env,
            &dir,
            &imgs,
            &mut cases,
            name,
            &assemble(&q),
            exit::TAMPERED,
            exit::TAMPERED,
        );
    }
    // Raw framing of the block.
    let mut q = p.clone();
    q.sig.push(0);
    expect(
        &env,
        &dir,
        &imgs,
        &mut cases,
        "sig-trailing-byte",
        &assemble(&q),
        exit::TAMPERED,
        exit::TAMPERED,
    );
    // The signature stripped: a host-signed image becomes an unsigned one,
    // never a trusted one; restore gives the caller's credentials.
    let mut q = p.clone();
    q.sig.clear();
    expect(
        &env,
        &dir,
        &imgs,
        &mut cases,
        "sig-stripped-is-unsigned",
        &assemble(&q),
        exit::UNSIGNED,
        exit::OK,
    );
    cases.finish("signature block fields");
}

/// Regions of two valid images (two processes) combined.
#[test]
fn regions_swapped_between_images() {
    let (_g, env) = setup();
    let dir = TestDir::new(&env, "hostile-swaps");
    let imgs = make_images(&env, &dir);
    let (a, b, ua, ub) = (
        parts(&imgs.a),
        parts(&imgs.b),
        parts(&imgs.ua),
        parts(&imgs.ub),
    );
    let chunk_ranges = |pp: &Parts| -> Vec<(usize, usize)> {
        let mut m = decode(&pp.manifest);
        let Value::Array(cs) = at(&mut m, &["chunks"]).clone() else {
            panic!("chunks")
        };
        let mut off = 0usize;
        cs.iter()
            .map(|c| {
                let Value::Array(e) = c else {
                    panic!("chunk entry")
                };
                let len: i128 = e[2].as_integer().unwrap().into();
                let r = (off, len as usize);
                off += len as usize;
                r
            })
            .collect()
    };
    let ca = chunk_ranges(&a);
    let cb = chunk_ranges(&b);
    let mut cases = Cases::default();
    let mut table: Vec<(&str, Vec<u8>)> = Vec::new();
    table.push((
        "swap-data-of-a-manifest-and-sig-of-b",
        assemble(&Parts {
            data: a.data.clone(),
            ..b.clone()
        }),
    ));
    table.push((
        "swap-sig-of-b-onto-a",
        assemble(&Parts {
            sig: b.sig.clone(),
            ..a.clone()
        }),
    ));
    table.push((
        "swap-manifest-of-b-into-a",
        assemble(&Parts {
            manifest: b.manifest.clone(),
            ..a.clone()
        }),
    ));
    table.push((
        "swap-unsigned-data-of-a-manifest-of-b",
        assemble(&Parts {
            data: ua.data.clone(),
            ..ub.clone()
        }),
    ));
    table.push((
        "swap-sig-of-a-onto-unsigned-a",
        assemble(&Parts {
            sig: a.sig.clone(),
            ..ua.clone()
        }),
    ));
    table.push((
        "swap-sig-block-doubled",
        assemble(&Parts {
            sig: [a.sig.clone(), a.sig.clone()].concat(),
            ..a.clone()
        }),
    ));
    // (B's own trailer can be byte-identical to A's: the unsigned one is not.)
    table.push(("swap-trailer-of-unsigned-a-onto-a", {
        let mut v = imgs.a[..imgs.a.len() - TRAILER_LEN as usize].to_vec();
        v.extend_from_slice(&imgs.ua[imgs.ua.len() - TRAILER_LEN as usize..]);
        v
    }));
    // One chunk of A replaced by B's chunk of the same length and index.
    let same = ca
        .iter()
        .zip(&cb)
        .position(|(x, y)| x.1 == y.1 && a.data[x.0..x.0 + x.1] != b.data[y.0..y.0 + y.1])
        .expect("the two counters have a chunk of equal length and different content");
    let mut d = a.data.clone();
    let (xo, xl) = ca[same];
    let yo = cb[same].0;
    d[xo..xo + xl].copy_from_slice(&b.data[yo..yo + xl]);
    table.push((
        "swap-one-chunk-from-b",
        assemble(&Parts {
            data: d.clone(),
            ..a.clone()
        }),
    ));
    table.push((
        "swap-one-chunk-from-b-unsigned",
        assemble(&Parts {
            data: d,
            ..ua.clone()
        }),
    ));
    // Two chunks of A of equal length exchanged.
    let pair = (0..ca.len())
        .flat_map(|i| (i + 1..ca.len()).map(move |j| (i, j)))
        .find(|&(i, j)| {
            ca[i].1 == ca[j].1
                && a.data[ca[i].0..ca[i].0 + ca[i].1] != a.data[ca[j].0..ca[j].0 + ca[j].1]
        });
    if let Some((i, j)) = pair {
        let mut d = a.data.clone();
        let (io, l) = ca[i];
        let jo = ca[j].0;
        let ci = a.data[io..io + l].to_vec();
        let cj = a.data[jo..jo + l].to_vec();
        d[io..io + l].copy_from_slice(&cj);
        d[jo..jo + l].copy_from_slice(&ci);
        table.push((
            "swap-two-chunks-within-a",
            assemble(&Parts {
                data: d,
                ..a.clone()
            }),
        ));
    } else {
        // Chunk boundaries differ: move the last chunk's bytes to the front.
        let mut d = a.data.clone();
        d.rotate_right(ca.last().unwrap().1);
        table.push((
            "swap-two-chunks-within-a",
            assemble(&Parts {
                data: d,
                ..a.clone()
            }),
        ));
    }
    for (name, bytes) in table.drain(..) {
        for orig in [&imgs.a, &imgs.b, &imgs.ua, &imgs.ub] {
            assert_ne!(&bytes, orig, "{name} must differ from every valid image");
        }
        expect(
            &env,
            &dir,
            &imgs,
            &mut cases,
            name,
            &bytes,
            exit::TAMPERED,
            exit::TAMPERED,
        );
    }
    cases.finish("regions swapped between images");
}
