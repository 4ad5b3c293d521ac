//! Round trips and hostile inputs for the image format.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::fs::{self, File, OpenOptions};
use std::io::{Seek as _, SeekFrom, Write as _};
use std::os::unix::fs::{FileExt as _, OpenOptionsExt as _};
use std::path::PathBuf;

use ckpt_keys::{PublicKey, SigningKey};
use sha2::{Digest as _, Sha256};

use super::layout::{encode_header, Trailer};
use super::manifest::{decode, encode};
use super::*;
use crate::limits::{MAX_CHUNK_LEN, MAX_MANIFEST_LEN, MAX_SIGBLOCK_LEN};
use crate::model::*;

/// A file under the temp dir, removed on drop.
pub(super) struct TempFile {
    pub path: PathBuf,
}

impl TempFile {
    pub fn new(tag: &str) -> (TempFile, File) {
        let mut r = [0u8; 8];
        getrandom::getrandom(&mut r).unwrap();
        let path = std::env::temp_dir().join(format!("ckpt-image-{tag}-{}", hex::encode(r)));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .unwrap();
        (TempFile { path }, file)
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.path);
    }
}

pub(super) fn sample_meta() -> ImageMeta {
    ImageMeta {
        host: HostIdentity {
            machine_id: "0123456789abcdef0123456789abcdef".into(),
            boot_id: "fedcba9876543210fedcba9876543210".into(),
            hostname: "testhost".into(),
        },
        kernel_release: "6.1.0-test".into(),
        arch: "x86_64".into(),
        cpu: CpuFeatures {
            xsave_features: 0x2e7,
            xsave_size: 576,
        },
        vdso_digest: vec![0x5a; 32],
        requester: Requester {
            uid: 1000,
            gid: 1000,
            groups: vec![1000, 27],
        },
    }
}

pub(super) fn sample_process() -> ProcessState {
    let exe = FileIdentity {
        path: "/usr/bin/counter".into(),
        dev: 0x803,
        ino: 1234,
        size: 16384,
        mode: 0o100755,
        uid: 0,
        gid: 0,
        mtime: (1_700_000_000, 5),
        digest: vec![7; 32],
    };
    ProcessState {
        pid: 4242,
        ppid: 1,
        sid: 4242,
        pgid: 4242,
        comm: "counter".into(),
        exe: exe.clone(),
        creds: Credentials {
            uid: [1000; 4],
            gid: [1000; 4],
            groups: vec![1000],
            cap_inheritable: 0,
            cap_permitted: 0,
            cap_effective: 0,
            cap_bounding: 0x1ff_ffff_ffff,
            cap_ambient: 0,
            securebits: 0,
            no_new_privs: false,
            seccomp_mode: 0,
        },
        namespaces: Some(Namespaces {
            user: NsId {
                dev: 4,
                ino: NsId::INITIAL_USER_INO,
            },
            pid: NsId {
                dev: 4,
                ino: NsId::INITIAL_PID_INO,
            },
        }),
        cwd: "/home/user".into(),
        umask: 0o022,
        personality: 0,
        rlimits: vec![Rlimit {
            resource: 7,
            soft: 1024,
            hard: 4096,
        }],
        mm: MmLayout {
            start_code: 0x400000,
            end_code: 0x401000,
            start_data: 0x402000,
            end_data: 0x403000,
            start_brk: 0x500000,
            brk: 0x521000,
            start_stack: 0x7ffc_0000_0000,
            arg_start: 0x7ffc_0000_1000,
            arg_end: 0x7ffc_0000_1100,
            env_start: 0x7ffc_0000_1100,
            env_end: 0x7ffc_0000_1f00,
            auxv: vec![6, 4096, 0, 0],
        },
        vmas: vec![
            Vma {
                start: 0x400000,
                end: 0x401000,
                prot: 5,
                shared: false,
                offset: 0,
                kind: VmaKind::File,
                file: Some(0),
                name: String::new(),
                vm_flags: VmFlags::new(["rd", "ex"]),
                space: None,
            },
            Vma {
                start: 0x500000,
                end: 0x521000,
                prot: 3,
                shared: false,
                offset: 0,
                kind: VmaKind::Anonymous,
                file: None,
                name: "[heap]".into(),
                vm_flags: VmFlags::new(["rd", "wr"]),
                space: None,
            },
            Vma {
                start: 0x7ffc_0000_0000,
                end: 0x7ffc_0000_2000,
                prot: 3,
                shared: false,
                offset: 0,
                kind: VmaKind::Anonymous,
                file: None,
                name: "[stack]".into(),
                vm_flags: VmFlags::new(["rd", "wr", "gd"]),
                space: None,
            },
        ],
        mapped_files: vec![exe],
        threads: vec![ThreadState {
            tid: 4242,
            regs: GpRegs {
                r15: 0,
                r14: 0,
                r13: 0,
                r12: 0,
                rbp: 0,
                rbx: 0,
                r11: 0,
                r10: 0,
                r9: 0,
                r8: 0,
                rax: 0,
                rcx: 0,
                rdx: 0,
                rsi: 0,
                rdi: 0,
                orig_rax: u64::MAX,
                rip: 0x400100,
                cs: 0x33,
                eflags: 0x246,
                rsp: 0x7ffc_0000_0f00,
                ss: 0x2b,
                fs_base: 0,
                gs_base: 0,
                ds: 0,
                es: 0,
                fs: 0,
                gs: 0,
            },
            xsave: crate::model::XsaveArea::new(&[0; 576]),
            sigmask: 0,
            altstack: (0, 2, 0),
            rseq: None,
            clear_child_tid: 0,
            robust_list: (0, 0),
            pending: vec![],
            name: String::new(),
            cached_tid_at: 0,
            robust_futexes: vec![],
        }],
        sigactions: SigActions::new([SigAction {
            signal: 10,
            handler: 0x400200,
            flags: 0x0400_0000,
            restorer: 0x400300,
            mask: 0,
        }]),
        fds: vec![FdState {
            fd: 0,
            description: 0,
            cloexec: false,
        }],
        fds_of_parent: false,
        itimers: vec![],
        oom_score_adj: 0,
        child_subreaper: false,
        pdeathsig: 0,
        posix_timers: Vec::new(),
        seccomp_filters: Vec::new(),
        sched: None,
        cwd_deleted: false,
        stopped: false,
    }
}

/// The file table of the sample image.
pub(super) fn sample_files() -> Vec<OpenFile> {
    vec![OpenFile {
        kind: OpenFileKind::CharDevice,
        path: "/dev/null".into(),
        flags: 2,
        offset: 0,
        dev: 5,
        ino: 6,
        locks: vec![],
    }]
}

/// What the sample image holds besides its chunks.
pub(super) fn sample_content() -> ImageContent {
    ImageContent {
        spaces: vec![Space::Memory { task: 0 }],
        files: sample_files(),
        tasks: vec![sample_process()],
        zombies: Vec::new(),
    }
}

/// The manifest of the sample image (chunk digests are zero).
pub(super) fn sample_manifest() -> Manifest {
    let meta = sample_meta();
    Manifest {
        format_version: super::FORMAT_VERSION,
        image_id: [1; 16],
        created_unix: 1_700_000_000,
        host: meta.host,
        kernel_release: meta.kernel_release,
        arch: meta.arch,
        cpu: meta.cpu,
        vdso_digest: meta.vdso_digest,
        requester: meta.requester,
        digest_algorithm: DigestAlgorithm::Sha256,
        spaces: vec![Space::Memory { task: 0 }],
        chunks: sample_chunks()
            .into_iter()
            .map(|(addr, data)| ChunkEntry {
                space: 0,
                addr,
                len: data.len() as u64,
                digest: vec![0; 32],
                stored: None,
            })
            .collect(),
        files: sample_files(),
        tasks: vec![sample_process()],
        zombies: Vec::new(),
        chunk_digest: None,
        compression: None,
    }
}

/// Chunk contents of the small test image (whole pages, in address order,
/// inside the sample process's mappings).
fn sample_chunks() -> Vec<(u64, Vec<u8>)> {
    vec![
        (0x400000, (0..=255u8).cycle().take(4096).collect()),
        (0x500000, [1, 2, 3].repeat(4096 / 3 + 1)[..4096].to_vec()),
        (0x7ffc_0000_0000, vec![0xa5; 8192]),
    ]
}

/// Writes the sample image into a temp file; returns its bytes.
fn build(signer: Option<&dyn ManifestSigner>) -> Vec<u8> {
    let (tmp, file) = TempFile::new("build");
    let mut w = ImageWriter::new(file).unwrap();
    for (vaddr, data) in sample_chunks() {
        w.write_chunk(0, vaddr, &data).unwrap();
    }
    let done = w.finish(sample_meta(), sample_content(), signer).unwrap();
    let bytes = fs::read(&tmp.path).unwrap();
    assert_eq!(bytes.len() as u64, done.size);
    bytes
}

fn key() -> SigningKey {
    SigningKey::generate().unwrap()
}

fn open_bytes(bytes: &[u8]) -> Result<ImageReader<&[u8]>, ImageError> {
    ImageReader::from_source(bytes)
}

fn trailer_of(bytes: &[u8]) -> Trailer {
    let t: [u8; 48] = bytes[bytes.len() - 48..].try_into().unwrap();
    Trailer::decode(&t).unwrap()
}

/// Assembles an image from its parts, with a consistent trailer.
fn assemble(data: &[u8], manifest: &[u8], sig: &[u8]) -> Vec<u8> {
    let mut out = encode_header().to_vec();
    out.extend_from_slice(data);
    let manifest_offset = out.len() as u64;
    out.extend_from_slice(manifest);
    let sig_offset = if sig.is_empty() { 0 } else { out.len() as u64 };
    out.extend_from_slice(sig);
    let t = Trailer {
        manifest_offset,
        manifest_len: manifest.len() as u64,
        sig_offset,
        sig_len: sig.len() as u64,
        data_len: data.len() as u64,
    };
    out.extend_from_slice(&t.encode());
    out
}

/// The parts of an image: data, manifest bytes, signature block bytes.
fn split(bytes: &[u8]) -> (Vec<u8>, Vec<u8>, Vec<u8>) {
    let t = trailer_of(bytes);
    let data = bytes[32..t.manifest_offset as usize].to_vec();
    let m =
        bytes[t.manifest_offset as usize..(t.manifest_offset + t.manifest_len) as usize].to_vec();
    let s = if t.sig_len == 0 {
        Vec::new()
    } else {
        bytes[t.sig_offset as usize..(t.sig_offset + t.sig_len) as usize].to_vec()
    };
    (data, m, s)
}

fn open_and_verify(bytes: &[u8]) -> Result<(), ImageError> {
    let r = open_bytes(bytes)?;
    r.verify_chunks()?;
    r.for_each_chunk(|_, _| Ok::<(), std::convert::Infallible>(()))
        .map_err(|e| match e {
            ChunkStreamError::Image(e) => e,
            ChunkStreamError::Callback(never) => match never {},
        })
}

#[test]
fn roundtrip_signed_file() {
    let k = key();
    let (tmp, file) = TempFile::new("rt");
    let mut w = ImageWriter::new(file).unwrap();
    for (vaddr, data) in sample_chunks() {
        w.write_chunk(0, vaddr, &data).unwrap();
    }
    let done = w.finish(sample_meta(), sample_content(), Some(&k)).unwrap();
    assert_eq!(fs::metadata(&tmp.path).unwrap().len(), done.size);

    let r = ImageReader::open(File::open(&tmp.path).unwrap()).unwrap();
    assert_eq!(r.manifest_digest(), done.manifest_digest);
    assert_eq!(
        r.signature(),
        SignatureStatus::Signed {
            key: k.public_key()
        }
    );
    let m = r.manifest();
    assert_eq!(m.format_version, 2);
    assert_eq!(m.image_id, done.image_id);
    assert_eq!(m.tasks, vec![sample_process()]);
    assert_eq!(m.files, sample_files());
    assert_eq!(m.host, sample_meta().host);
    assert_eq!(m.requester, sample_meta().requester);
    assert_eq!(m.cpu, sample_meta().cpu);
    assert_eq!(m.vdso_digest, sample_meta().vdso_digest);
    assert_eq!(m.digest_algorithm, DigestAlgorithm::Sha256);
    assert!(m.created_unix > 1_600_000_000);
    r.verify_chunks().unwrap();
    let mut seen = Vec::new();
    r.for_each_chunk(|entry, data| {
        assert_eq!(entry.len, data.len() as u64);
        seen.push((entry.addr, data.to_vec()));
        Ok::<(), ()>(())
    })
    .unwrap();
    assert_eq!(seen, sample_chunks());
    let mut buf = Vec::new();
    let e = r.read_chunk(1, &mut buf).unwrap();
    assert_eq!((e.addr, buf.clone()), sample_chunks()[1]);
    assert!(r.read_chunk(3, &mut buf).is_err());
    let block = r.signature_block().unwrap();
    assert_eq!(block.algorithm, "ed25519");
    assert_eq!(block.key_id, k.public_key().key_id().0.to_vec());
}

/// The sample image with a memfd on fd 0, mapped shared, whose content is
/// its space 1 (two chunks, the second a short last piece).
fn build_with_a_memfd(signer: Option<&dyn ManifestSigner>) -> Vec<u8> {
    let mut content = sample_content();
    content.spaces.push(Space::Memfd {
        name: "buffer".into(),
        size: 6000,
        seals: 0xf,
        mode: None,
    });
    content.files[0].kind = OpenFileKind::Memfd { space: 1 };
    content.files[0].path = "/memfd:buffer (deleted)".into();
    let p = &mut content.tasks[0];
    let mut v = p.vmas[1].clone();
    v.start = 0x600000;
    v.end = 0x602000;
    v.kind = VmaKind::File;
    v.shared = true;
    v.prot = 1;
    v.name = "/memfd:buffer (deleted)".into();
    v.space = Some(1);
    p.vmas.insert(2, v);
    let (tmp, file) = TempFile::new("memfd");
    let mut w = ImageWriter::new(file).unwrap();
    for (vaddr, data) in sample_chunks() {
        w.write_chunk(0, vaddr, &data).unwrap();
    }
    w.write_chunk(1, 0, &[7; 4096]).unwrap();
    w.write_chunk(1, 4096, &[9; 1904]).unwrap();
    w.finish(sample_meta(), content, signer).unwrap();
    fs::read(&tmp.path).unwrap()
}

#[test]
fn roundtrip_with_a_file_content_space() {
    let bytes = build_with_a_memfd(Some(&key()));
    open_and_verify(&bytes).unwrap();
    let r = open_bytes(&bytes).unwrap();
    let m = r.manifest();
    assert_eq!(m.spaces.len(), 2);
    let mut seen = Vec::new();
    r.for_each_chunk(|e, d| {
        seen.push((e.space, e.addr, d.len()));
        Ok::<(), ()>(())
    })
    .unwrap();
    assert_eq!(
        seen,
        vec![
            (0, 0x400000, 4096),
            (0, 0x500000, 4096),
            (0, 0x7ffc_0000_0000, 8192),
            (1, 0, 4096),
            (1, 4096, 1904)
        ]
    );
    flip_every_byte(&build_with_a_memfd(Some(&key())));
}

#[test]
fn roundtrip_unsigned_and_empty() {
    let bytes = build(None);
    let r = open_bytes(&bytes).unwrap();
    assert_eq!(r.signature(), SignatureStatus::Unsigned);
    assert!(r.signature_block().is_none());
    assert_eq!(trailer_of(&bytes).sig_offset, 0);
    r.verify_chunks().unwrap();

    let (tmp, file) = TempFile::new("empty");
    let w = ImageWriter::new(file).unwrap();
    w.finish(sample_meta(), sample_content(), None).unwrap();
    let r = ImageReader::open(File::open(&tmp.path).unwrap()).unwrap();
    assert!(r.manifest().chunks.is_empty());
    r.verify_chunks().unwrap();
}

#[test]
fn manifest_digest_is_sha256_of_manifest_bytes() {
    let bytes = build(Some(&key()));
    let (_, m, _) = split(&bytes);
    let r = open_bytes(&bytes).unwrap();
    assert_eq!(r.manifest_digest()[..], Sha256::digest(&m)[..]);
}

#[test]
fn bad_magic() {
    let mut bytes = build(None);
    bytes[0] = b'X';
    assert!(matches!(
        open_bytes(&bytes),
        Err(ImageError::BadMagic { region: "header" })
    ));
    let mut bytes = build(None);
    let n = bytes.len();
    bytes[n - 2] ^= 1;
    assert!(matches!(
        open_bytes(&bytes),
        Err(ImageError::BadMagic { region: "trailer" })
    ));
    assert!(open_bytes(b"#!/bin/sh\necho not an image\n################################################################################").is_err());
}

#[test]
fn unknown_version() {
    let mut bytes = build(None);
    bytes[8..12].copy_from_slice(&3u32.to_le_bytes());
    assert!(matches!(
        open_bytes(&bytes),
        Err(ImageError::UnsupportedVersion(3))
    ));
    let mut bytes = build(None);
    bytes[8..12].copy_from_slice(&0u32.to_le_bytes());
    assert!(matches!(
        open_bytes(&bytes),
        Err(ImageError::UnsupportedVersion(0))
    ));
}

#[test]
fn manifest_version_must_match_header() {
    let bytes = build(None);
    let (data, m, _) = split(&bytes);
    let mut manifest: Manifest = decode(&m, "manifest").unwrap();
    for other in [1, 3] {
        manifest.format_version = other;
        let image = assemble(&data, &encode(&manifest).unwrap(), &[]);
        assert!(matches!(open_bytes(&image), Err(ImageError::Malformed(_))));
    }
}

/// The committed version-1 seed images (written by the last version-1
/// writer, `v1-signed` signed with a throwaway key).
fn v1_seed(name: &str) -> Vec<u8> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/seeds/image_reader")
        .join(name);
    fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn version_1_images_open_verify_and_convert() {
    for name in ["v1-signed", "v1-unsigned", "v1-no-chunks"] {
        let bytes = v1_seed(name);
        assert_eq!(bytes[8..12], 1u32.to_le_bytes(), "{name}");
        let r = open_bytes(&bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
        open_and_verify(&bytes).unwrap();
        let m = r.manifest();
        assert_eq!(m.format_version, FORMAT_VERSION_1, "{name}");
        // The one process is task 0, its descriptions the file table, its
        // memory space 0.
        assert_eq!(m.tasks.len(), 1);
        assert_eq!(m.tasks[0].pid, 4242);
        assert_eq!(m.tasks[0].fds.len(), 1);
        assert_eq!(m.files.len(), 1);
        assert_eq!(m.files[0].path, "/dev/null");
        assert_eq!(m.spaces, vec![Space::Memory { task: 0 }]);
        assert!(m.chunks.iter().all(|c| c.space == 0));
        let addrs: Vec<u64> = m.chunks.iter().map(|c| c.addr).collect();
        if name == "v1-no-chunks" {
            assert!(addrs.is_empty());
        } else {
            assert_eq!(addrs, vec![0x400000, 0x500000, 0x7ffc_0000_0000]);
        }
        assert_eq!(
            matches!(r.signature(), SignatureStatus::Signed { .. }),
            name == "v1-signed"
        );
    }
}

#[test]
fn a_version_label_cannot_be_swapped() {
    // A version-2 image relabelled 1, and a version-1 image relabelled 2:
    // the manifest does not decode as the other version's.
    let mut v2 = build(None);
    v2[8..12].copy_from_slice(&1u32.to_le_bytes());
    assert!(matches!(open_bytes(&v2), Err(ImageError::Decode { .. })));
    let mut v1 = v1_seed("v1-unsigned");
    v1[8..12].copy_from_slice(&2u32.to_le_bytes());
    assert!(matches!(open_bytes(&v1), Err(ImageError::Decode { .. })));
    // A version-1 signature does not verify over the version-2 context:
    // the signed seed's signature block on a version-2 image of the same
    // manifest digest is impossible to build, so check the key directly.
    let (_, m, sig) = split(&v1_seed("v1-signed"));
    let block: SignatureBlock = decode(&sig, "signature block").unwrap();
    let key = PublicKey::from_parts(block.algorithm.parse().unwrap(), &block.public_key).unwrap();
    let digest: [u8; 32] = Sha256::digest(&m).into();
    key.verify_manifest_digest_v1(&digest, &block.signature)
        .unwrap();
    assert!(key
        .verify_manifest_digest(&digest, &block.signature)
        .is_err());
}

#[test]
fn truncation_at_every_offset() {
    for signer in [None, Some(key())] {
        let bytes = build(signer.as_ref().map(|k| k as &dyn ManifestSigner));
        for n in 0..bytes.len() {
            let r = open_and_verify(&bytes[..n]);
            assert!(r.is_err(), "truncated to {n} bytes: accepted");
        }
        open_and_verify(&bytes).unwrap();
    }
}

#[test]
fn truncated_file_on_disk() {
    let (tmp, mut file) = TempFile::new("trunc");
    let bytes = build(None);
    file.write_all(&bytes[..bytes.len() - 1]).unwrap();
    assert!(ImageReader::open(File::open(&tmp.path).unwrap()).is_err());
}

#[test]
fn byte_flip_at_every_offset_of_a_signed_image() {
    flip_every_byte(&build(Some(&key())));
}

#[test]
fn byte_flip_at_every_offset_of_a_signed_version_1_image() {
    flip_every_byte(&v1_seed("v1-signed"));
}

#[test]
fn truncation_at_every_offset_of_a_version_1_image() {
    let bytes = v1_seed("v1-signed");
    for n in 0..bytes.len() {
        assert!(open_and_verify(&bytes[..n]).is_err(), "truncated to {n}");
    }
}

fn flip_every_byte(bytes: &[u8]) {
    // One flip per offset, alternating a low and a high bit, split over two
    // threads (each try verifies an ed25519 signature, slow in debug builds).
    let bytes = bytes.to_vec();
    std::thread::scope(|s| {
        for part in 0..2 {
            let bytes = &bytes;
            s.spawn(move || {
                for i in (part..bytes.len()).step_by(2) {
                    let mask = if (i / 2) % 2 == 0 { 0x01u8 } else { 0x80 };
                    let mut bad = bytes.clone();
                    bad[i] ^= mask;
                    assert!(
                        open_and_verify(&bad).is_err(),
                        "byte {i} ^ {mask:#x} was not detected"
                    );
                }
            });
        }
    });
}

#[test]
fn flipped_chunk_is_tampered_with_its_index() {
    let bytes = build(Some(&key()));
    let mut bad = bytes.clone();
    bad[32 + 4096 + 5] ^= 1; // inside chunk 1
    let r = open_bytes(&bad).unwrap();
    assert!(matches!(
        r.verify_chunks(),
        Err(ImageError::Tampered(Tamper::Chunk {
            index: 1,
            vaddr: 0x500000
        }))
    ));
    let mut calls = 0;
    let res = r.for_each_chunk(|_, _| {
        calls += 1;
        Ok::<(), ()>(())
    });
    assert!(matches!(
        res,
        Err(ChunkStreamError::Image(ImageError::Tampered(
            Tamper::Chunk { index: 1, .. }
        )))
    ));
    assert_eq!(calls, 1, "the callback must not see the tampered chunk");
}

#[test]
fn file_changed_after_verify_is_caught_while_streaming() {
    let (tmp, mut file) = TempFile::new("toctou");
    let bytes = build(Some(&key()));
    file.write_all(&bytes).unwrap();
    let r = ImageReader::open(File::open(&tmp.path).unwrap()).unwrap();
    r.verify_chunks().unwrap();
    file.write_all_at(b"X", 32 + 10).unwrap();
    let res = r.for_each_chunk(|_, _| -> Result<(), ()> { panic!("must not be called") });
    assert!(matches!(
        res,
        Err(ChunkStreamError::Image(ImageError::Tampered(
            Tamper::Chunk { index: 0, .. }
        )))
    ));
    // Shrinking the file is caught too.
    file.set_len(40).unwrap();
    assert!(r.verify_chunks().is_err());
}

#[test]
fn callback_error_stops_streaming() {
    let bytes = build(None);
    let r = open_bytes(&bytes).unwrap();
    let mut calls = 0;
    let res = r.for_each_chunk(|_, _| {
        calls += 1;
        Err("stop")
    });
    assert!(matches!(res, Err(ChunkStreamError::Callback("stop"))));
    assert_eq!(calls, 1);
}

#[test]
fn lengths_larger_than_the_file() {
    let bytes = build(Some(&key()));
    let good = trailer_of(&bytes);
    let body = &bytes[..bytes.len() - 48];
    let variants = [
        Trailer {
            manifest_len: MAX_MANIFEST_LEN,
            ..good
        },
        Trailer {
            manifest_len: u64::MAX,
            ..good
        },
        Trailer {
            sig_len: MAX_SIGBLOCK_LEN,
            ..good
        },
        Trailer {
            sig_len: u64::MAX,
            ..good
        },
        Trailer {
            data_len: 1 << 40,
            manifest_offset: 32 + (1 << 40),
            sig_offset: 32 + (1 << 40) + good.manifest_len,
            ..good
        },
        Trailer {
            data_len: u64::MAX - 31,
            manifest_offset: 0,
            ..good
        },
        Trailer {
            manifest_offset: u64::MAX,
            ..good
        },
    ];
    for t in variants {
        let mut image = body.to_vec();
        image.extend_from_slice(&t.encode());
        let err = open_bytes(&image).err();
        assert!(err.is_some(), "{t:?} accepted");
    }
    let mut image = body.to_vec();
    image.extend_from_slice(
        &Trailer {
            manifest_len: MAX_MANIFEST_LEN + 1,
            ..good
        }
        .encode(),
    );
    assert!(matches!(
        open_bytes(&image),
        Err(ImageError::TooLarge {
            what: "manifest",
            ..
        })
    ));
}

#[test]
fn chunk_table_inconsistencies() {
    let bytes = build(None);
    let (data, m, _) = split(&bytes);
    let manifest: Manifest = decode(&m, "manifest").unwrap();
    type Edit = Box<dyn Fn(&mut Manifest)>;
    let cases: Vec<Edit> = vec![
        Box::new(|m| m.chunks[0].len += 1),
        Box::new(|m| m.chunks[0].len -= 1),
        Box::new(|m| m.chunks[2].len = 0),
        Box::new(|m| m.chunks[0].len = MAX_CHUNK_LEN + 1),
        Box::new(|m| m.chunks[1].digest.pop().map(drop).unwrap_or(())),
        Box::new(|m| m.chunks[1].addr = u64::MAX - 10),
        Box::new(|m| {
            m.chunks.pop();
        }),
        Box::new(|m| {
            let c = m.chunks[0].clone();
            m.chunks.push(c);
        }),
    ];
    for (i, f) in cases.iter().enumerate() {
        let mut mm = manifest.clone();
        f(&mut mm);
        let image = assemble(&data, &encode(&mm).unwrap(), &[]);
        assert!(open_bytes(&image).is_err(), "case {i} accepted");
    }
    // Reordering chunks keeps the lengths' sum but breaks the digests.
    let mut mm = manifest.clone();
    mm.chunks.swap(0, 1);
    let image = assemble(&data, &encode(&mm).unwrap(), &[]);
    assert!(open_and_verify(&image).is_err());
}

#[test]
fn deep_cbor_nesting_is_refused() {
    let data = [];
    for depth in [33usize, 1000, 100_000] {
        // An array nested `depth` deep: 0x81 (array of one) repeated.
        let mut deep = vec![0x81u8; depth];
        deep.push(0x00);
        let image = assemble(&data, &deep, &[]);
        assert!(matches!(
            open_bytes(&image),
            Err(ImageError::Decode {
                region: "manifest",
                ..
            })
        ));
        let bytes = build(None);
        let (d, m, _) = split(&bytes);
        let image = assemble(&d, &m, &deep);
        let err = open_bytes(&image).err();
        assert!(
            matches!(
                err,
                Some(ImageError::Decode {
                    region: "signature block",
                    ..
                }) | Some(ImageError::TooLarge {
                    what: "signature block",
                    ..
                })
            ),
            "{err:?}"
        );
        // Maps and tags too.
        let mut deep_map = Vec::new();
        for _ in 0..depth {
            deep_map.extend_from_slice(&[0xa1, 0x00]);
        }
        deep_map.push(0x00);
        assert!(open_bytes(&assemble(&data, &deep_map, &[])).is_err());
        let mut tags = vec![0xc6u8; depth];
        tags.push(0x00);
        assert!(open_bytes(&assemble(&data, &tags, &[])).is_err());
    }
}

#[test]
fn garbage_manifests_are_refused() {
    let cases: Vec<Vec<u8>> = vec![
        vec![0xff],
        vec![0x00],
        vec![0xa0],
        // A map claiming 2^32 entries.
        vec![0xba, 0xff, 0xff, 0xff, 0xff],
        // An array claiming 2^64-1 entries.
        vec![0x9b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff],
        // A byte string claiming 2^63 bytes.
        vec![0x5b, 0x80, 0, 0, 0, 0, 0, 0, 0],
        // Indefinite array never closed.
        vec![0x9f, 0x01, 0x02],
    ];
    for m in cases {
        assert!(open_bytes(&assemble(&[], &m, &[])).is_err(), "{m:x?}");
    }
}

#[test]
fn trailing_garbage() {
    let bytes = build(Some(&key()));
    let mut more = bytes.clone();
    more.push(0);
    assert!(open_bytes(&more).is_err());
    // A second copy of the trailer at the end: the lengths no longer add up.
    let mut doubled = bytes.clone();
    doubled.extend_from_slice(&bytes[bytes.len() - 48..]);
    assert!(matches!(
        open_bytes(&doubled),
        Err(ImageError::Malformed(_))
    ));
    // Bytes after the CBOR item inside the manifest region.
    let unsigned = build(None);
    let (d, m, _) = split(&unsigned);
    let mut m2 = m.clone();
    m2.push(0x00);
    assert!(matches!(
        open_bytes(&assemble(&d, &m2, &[])),
        Err(ImageError::Decode {
            region: "manifest",
            ..
        })
    ));
    // And inside the signature block region.
    let (d, m, s) = split(&bytes);
    let mut s2 = s.clone();
    s2.push(0x00);
    assert!(matches!(
        open_bytes(&assemble(&d, &m, &s2)),
        Err(ImageError::Decode { .. })
    ));
}

/// The manifest is read, hashed and decoded in one pass through a 64 KiB
/// buffer. A signed manifest several buffers long opens, with SHA-256 of
/// all its bytes as its digest; a change to any of its bytes is tampering,
/// whether decoding stops at it (its first byte) or not (a byte the
/// decoder skips, past the first buffer).
#[test]
fn a_long_signed_manifest_is_hashed_whole_and_any_change_is_tampered() {
    use ciborium::Value;
    let k = key();
    let bytes = build(Some(&k));
    let (d, m, s) = split(&bytes);
    let mut v: Value = ciborium::from_reader(&m[..]).unwrap();
    let Value::Map(entries) = &mut v else {
        panic!("the manifest is a map")
    };
    // An unknown field is skipped by the decoder.
    entries.push((
        Value::Text("x-padding".into()),
        Value::Bytes(vec![7; 300_000]),
    ));
    let mut long = Vec::new();
    ciborium::into_writer(&v, &mut long).unwrap();
    let mut block: SignatureBlock = decode(&s, "signature block").unwrap();
    block.signature = k.sign_manifest_digest(&Sha256::digest(&long).into());
    let sig = encode(&block).unwrap();

    let image = assemble(&d, &long, &sig);
    let r = open_bytes(&image).unwrap();
    assert_eq!(r.manifest_digest()[..], Sha256::digest(&long)[..]);
    for at in [0, 1, 70_000, long.len() / 2, long.len() - 1] {
        let mut changed = long.clone();
        changed[at] ^= 0xff;
        match open_bytes(&assemble(&d, &changed, &sig)) {
            Err(ImageError::Tampered(Tamper::Signature)) => {}
            other => panic!("byte {at}: {:?}", other.map(|_| ())),
        }
    }
    // Unsigned, a manifest that does not decode is malformed.
    let mut changed = long.clone();
    changed[0] = 0xff;
    match open_bytes(&assemble(&d, &changed, &[])) {
        Err(ImageError::Decode {
            region: "manifest", ..
        }) => {}
        other => panic!("{:?}", other.map(|_| ())),
    }
    // Cut inside the padding (the trailer moved with it): the decoder
    // runs out of bytes, and the signature no longer verifies.
    let cut = &long[..long.len() - 1000];
    match open_bytes(&assemble(&d, cut, &sig)) {
        Err(ImageError::Tampered(Tamper::Signature)) => {}
        other => panic!("{:?}", other.map(|_| ())),
    }
}

fn with_block(bytes: &[u8], f: impl FnOnce(&mut SignatureBlock)) -> Vec<u8> {
    let (d, m, s) = split(bytes);
    let mut block: SignatureBlock = decode(&s, "signature block").unwrap();
    f(&mut block);
    assemble(&d, &m, &encode(&block).unwrap())
}

#[test]
fn tampered_signature() {
    let bytes = build(Some(&key()));
    let image = with_block(&bytes, |b| b.signature[0] ^= 1);
    assert!(matches!(
        open_bytes(&image),
        Err(ImageError::Tampered(Tamper::Signature))
    ));
    let image = with_block(&bytes, |b| {
        b.signature.pop();
    });
    assert!(matches!(
        open_bytes(&image),
        Err(ImageError::Tampered(Tamper::Signature))
    ));
    // A signature over another manifest.
    let other = build(Some(&key()));
    let (_, _, other_sig) = split(&other);
    let other_block: SignatureBlock = decode(&other_sig, "signature block").unwrap();
    let image = with_block(&bytes, |b| *b = other_block);
    assert!(matches!(
        open_bytes(&image),
        Err(ImageError::Tampered(Tamper::Signature))
    ));
}

#[test]
fn key_id_swapped() {
    let bytes = build(Some(&key()));
    let other = key().public_key();
    let image = with_block(&bytes, |b| b.key_id = other.key_id().0.to_vec());
    assert!(matches!(
        open_bytes(&image),
        Err(ImageError::Tampered(Tamper::KeyId))
    ));
    // Another key with its own (consistent) id: the signature fails.
    let image = with_block(&bytes, |b| {
        b.key_id = other.key_id().0.to_vec();
        b.public_key = other.bytes().to_vec();
    });
    assert!(matches!(
        open_bytes(&image),
        Err(ImageError::Tampered(Tamper::Signature))
    ));
    let image = with_block(&bytes, |b| b.key_id.push(0));
    assert!(open_bytes(&image).is_err());
    let image = with_block(&bytes, |b| b.public_key = vec![0; 32]);
    assert!(open_bytes(&image).is_err());
}

#[test]
fn signature_algorithm_must_be_known_and_verifiable() {
    let bytes = build(Some(&key()));
    let image = with_block(&bytes, |b| b.algorithm = "rsa\u{1b}[31m".into());
    match open_bytes(&image) {
        Err(ImageError::UnsupportedSignature { algorithm }) => {
            assert!(!algorithm.contains('\u{1b}'))
        }
        other => panic!("{:?}", other.err()),
    }
    // A P-256 key in the block with an ed25519 signature: tampered.
    let p256 = super::attest::fake::FakeAk::new(5).public();
    let image = with_block(&bytes, |b| {
        b.algorithm = "ecdsa-p256".into();
        b.public_key = p256.bytes().to_vec();
        b.key_id = p256.key_id().0.to_vec();
    });
    assert!(matches!(
        open_bytes(&image),
        Err(ImageError::Tampered(Tamper::Signature))
    ));
}

#[test]
fn stripping_the_signature_gives_an_unsigned_image() {
    // By design: the signature can be removed. Such an image is reported as
    // unsigned, so it can only be restored with the caller's credentials.
    let bytes = build(Some(&key()));
    let (d, m, _) = split(&bytes);
    let r = ImageReader::from_source(assemble(&d, &m, &[])).unwrap();
    assert_eq!(r.signature(), SignatureStatus::Unsigned);
}

#[test]
fn resigning_reports_the_new_signer() {
    // Anyone can sign a manifest with their own key; trust is the policy's
    // decision, so the reader must report that key, never the original.
    let original = key();
    let attacker = key();
    let bytes = build(Some(&original));
    let (d, m, _) = split(&bytes);
    let digest: [u8; 32] = Sha256::digest(&m).into();
    let pk = attacker.public_key();
    let block = SignatureBlock {
        algorithm: "ed25519".into(),
        key_id: pk.key_id().0.to_vec(),
        public_key: pk.bytes().to_vec(),
        signature: attacker.sign_manifest_digest(&digest),
        attestation: None,
    };
    let r = ImageReader::from_source(assemble(&d, &m, &encode(&block).unwrap())).unwrap();
    assert_eq!(r.signature(), SignatureStatus::Signed { key: pk });
}

#[test]
fn digest_algorithm_is_named_and_checked() {
    let bytes = build(None);
    let (d, m, _) = split(&bytes);
    // The name appears in the manifest as the text "sha256".
    assert!(m.windows(6).any(|w| w == b"sha256"));
    let pos = m.windows(6).position(|w| w == b"sha256").unwrap();
    let mut m2 = m.clone();
    m2[pos..pos + 6].copy_from_slice(b"sha999");
    assert!(matches!(
        open_bytes(&assemble(&d, &m2, &[])),
        Err(ImageError::Decode { .. })
    ));
}

#[test]
fn writer_refuses_misuse() {
    let (_tmp, mut file) = TempFile::new("nonempty");
    file.write_all(b"x").unwrap();
    assert!(matches!(
        ImageWriter::new(file),
        Err(ImageError::InvalidInput(_))
    ));
    let (_tmp, mut file) = TempFile::new("pos");
    file.seek(SeekFrom::Start(10)).unwrap();
    assert!(ImageWriter::new(file).is_err());

    let (_tmp, file) = TempFile::new("chunks");
    let mut w = ImageWriter::new(file).unwrap();
    assert!(matches!(
        w.write_chunk(0, 0, &[]),
        Err(ImageError::InvalidInput(_))
    ));
    let big = vec![0u8; MAX_CHUNK_LEN as usize + 1];
    assert!(matches!(
        w.write_chunk(0, 0, &big),
        Err(ImageError::TooLarge { .. })
    ));
    assert!(w.write_chunk(0, u64::MAX - 1, &[1, 2, 3]).is_err());
    w.write_chunk(0, 0, &big[..MAX_CHUNK_LEN as usize]).unwrap();
}

struct BrokenSigner(SigningKey, SigningKey);

impl ManifestSigner for BrokenSigner {
    fn public_key(&self) -> PublicKey {
        self.0.public_key()
    }
    fn sign_manifest_digest(&self, digest: &[u8; 32]) -> Result<Vec<u8>, SignError> {
        Ok(self.1.sign_manifest_digest(digest))
    }
}

#[test]
fn writer_checks_the_signers_signature() {
    let (_tmp, file) = TempFile::new("selfcheck");
    let w = ImageWriter::new(file).unwrap();
    let res = w.finish(
        sample_meta(),
        sample_content(),
        Some(&BrokenSigner(key(), key())),
    );
    assert!(matches!(
        res,
        Err(ImageError::Sign(SignError::SelfCheck(_)))
    ));
}

#[test]
fn file_and_memory_sources_agree() {
    let bytes = build(Some(&key()));
    let (tmp, mut file) = TempFile::new("agree");
    file.write_all(&bytes).unwrap();
    let a = ImageReader::open(File::open(&tmp.path).unwrap()).unwrap();
    let b = ImageReader::from_source(bytes.clone()).unwrap();
    assert_eq!(a.manifest(), b.manifest());
    assert_eq!(a.manifest_digest(), b.manifest_digest());
}

/// Process CPU time (user + system, all threads), in seconds.
fn cpu_seconds() -> f64 {
    use nix::sys::resource::{getrusage, UsageWho};
    let u = getrusage(UsageWho::RUSAGE_SELF).unwrap();
    let t = |tv: nix::sys::time::TimeVal| tv.tv_sec() as f64 + tv.tv_usec() as f64 / 1e6;
    t(u.user_time()) + t(u.system_time())
}

/// Peak resident set size since the last [`reset_peak_rss`], in MiB.
fn peak_rss_mib() -> f64 {
    let status = fs::read_to_string("/proc/self/status").unwrap();
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    kib / 1024.0
}

fn reset_peak_rss() {
    fs::write("/proc/self/clear_refs", "5").unwrap();
}

/// Throughput of write+finish and verify for 1 GiB. Run with
/// `cargo test --release -p ckpt-core -- --ignored --nocapture throughput`.
/// Prints wall-clock MB/s and the CPU seconds used (all threads), which
/// tell what the code costs when other work shares the two cores.
#[test]
#[ignore]
fn throughput_1gib() {
    use std::time::Instant;
    const TOTAL: usize = 1 << 30;
    const CHUNK: usize = 1 << 20;
    const BASE: u64 = 0x7f00_0000_0000;
    let mb = TOTAL as f64 / 1e6;
    // A 64 MiB pool of pseudo-random bytes (xorshift); chunks are slices of
    // it at varying offsets, so memory stays small and data is non-zero.
    let mut pool = vec![0u8; 64 << 20];
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    for w in pool.chunks_exact_mut(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        w.copy_from_slice(&x.to_le_bytes());
    }
    let k = key();
    let (tmp, file) = TempFile::new("throughput");
    let (t0, c0) = (Instant::now(), cpu_seconds());
    let mut w = ImageWriter::new(file).unwrap();
    for i in 0..TOTAL / CHUNK {
        let off = (i * 4099 * 64) % (pool.len() - CHUNK);
        w.write_chunk(0, BASE + (i * CHUNK) as u64, &pool[off..off + CHUNK])
            .unwrap();
    }
    let (t_chunks, c_chunks) = (t0.elapsed().as_secs_f64(), cpu_seconds() - c0);
    // One 1 GiB anonymous mapping the chunks land in (the reader checks).
    let mut content = sample_content();
    let mut v = content.tasks[0].vmas[1].clone();
    v.start = BASE;
    v.end = BASE + TOTAL as u64;
    v.name = String::new();
    content.tasks[0].vmas.insert(2, v);
    let done = w.finish(sample_meta(), content, Some(&k)).unwrap();
    let (t_total, c_total) = (t0.elapsed().as_secs_f64(), cpu_seconds() - c0);
    drop(pool);
    println!(
        "write_chunk x1024 (1 MiB): {:.0} MB/s wall ({t_chunks:.2}s, {c_chunks:.2} CPU-s); \
         + finish (manifest, sign, fsync): {:.0} MB/s wall ({t_total:.2}s, {c_total:.2} CPU-s); size {}",
        mb / t_chunks,
        mb / t_total,
        done.size
    );

    reset_peak_rss();
    let (t0, c0) = (Instant::now(), cpu_seconds());
    let r = ImageReader::open(File::open(&tmp.path).unwrap()).unwrap();
    let t_open = t0.elapsed().as_secs_f64();
    r.verify_chunks().unwrap();
    let (t_verify, c_verify) = (t0.elapsed().as_secs_f64(), cpu_seconds() - c0);
    println!(
        "open: {:.1} ms; open + verify_chunks (page cache warm): {:.0} MB/s wall ({t_verify:.2}s, \
         {c_verify:.2} CPU-s); peak RSS {:.1} MiB",
        t_open * 1e3,
        mb / t_verify,
        peak_rss_mib()
    );
    reset_peak_rss();
    let (t0, c0) = (Instant::now(), cpu_seconds());
    let mut n = 0u64;
    r.for_each_chunk(|_, d| {
        n += d.len() as u64;
        Ok::<(), ()>(())
    })
    .unwrap();
    let (t_each, c_each) = (t0.elapsed().as_secs_f64(), cpu_seconds() - c0);
    println!(
        "for_each_chunk (1 thread): {:.0} MB/s wall ({t_each:.2}s, {c_each:.2} CPU-s); peak RSS {:.1} MiB",
        n as f64 / 1e6 / t_each,
        peak_rss_mib()
    );
    assert_eq!(n, TOTAL as u64);
}

/// Writes seed images for the fuzz target into `$CKPT_FUZZ_SEEDS`:
/// `CKPT_FUZZ_SEEDS=fuzz/seeds/image_reader cargo test -p ckpt-core -- --ignored write_fuzz_seeds`
#[test]
#[ignore]
fn write_fuzz_seeds() {
    let dir = PathBuf::from(std::env::var_os("CKPT_FUZZ_SEEDS").expect("CKPT_FUZZ_SEEDS"));
    fs::create_dir_all(&dir).unwrap();
    fs::write(dir.join("v2-signed"), build(Some(&key()))).unwrap();
    fs::write(dir.join("v2-unsigned"), build(None)).unwrap();
    let (tmp, file) = TempFile::new("seed");
    let w = ImageWriter::new(file).unwrap();
    w.finish(sample_meta(), sample_content(), None).unwrap();
    fs::copy(&tmp.path, dir.join("v2-no-chunks")).unwrap();
    fs::write(dir.join("v2-memfd"), build_with_a_memfd(Some(&key()))).unwrap();
    // lz4-blocks: a chunk of two blocks (text, and text with a random
    // page), and one of a block stored as it is.
    let mut text = patterned(96, b"tttttttr", 9);
    text.extend_from_slice(&patterned(1, b"r", 10));
    fs::write(
        dir.join("v2-lz4-blocks"),
        write_lz4_blocks(
            &[(BIG_AT, text), (BIG_AT + (1 << 20), patterned(2, b"r", 11))],
            2 << 20,
        ),
    )
    .unwrap();
}

/// Writes the fixture image of ckpt-verify's CLI snapshot tests (the
/// sample process, signed by a fresh test key) and that key, into
/// `$CKPT_CLI_FIXTURES`:
/// `CKPT_CLI_FIXTURES=ckpt-verify/tests/cmd/fixtures cargo test -p ckpt-core -- --ignored write_cli_fixture`
#[test]
#[ignore]
fn write_cli_fixture() {
    let dir = PathBuf::from(std::env::var_os("CKPT_CLI_FIXTURES").expect("CKPT_CLI_FIXTURES"));
    fs::create_dir_all(&dir).unwrap();
    let k = key();
    fs::write(dir.join("test-key.secret"), &*k.to_secret_file_bytes()).unwrap();
    fs::write(
        dir.join("test-key.pub"),
        format!("{}\n", k.public_key().to_line()),
    )
    .unwrap();
    fs::write(dir.join("small.ckpt"), build(Some(&k))).unwrap();
}

/// The file key plus a software attestation key: what `ckpt-sign` does
/// with a TPM, without one.
struct AttestingSigner(SigningKey, super::attest::fake::FakeAk);

fn sample_pcrs() -> Vec<ckpt_keys::quote::PcrValue> {
    [0u8, 1, 2, 3, 4, 5, 6, 7]
        .iter()
        .map(|&i| ckpt_keys::quote::PcrValue {
            index: i,
            value: [i ^ 0x33; 32],
        })
        .collect()
}

impl ManifestSigner for AttestingSigner {
    fn public_key(&self) -> PublicKey {
        self.0.public_key()
    }
    fn sign_manifest_digest(&self, digest: &[u8; 32]) -> Result<Vec<u8>, SignError> {
        Ok(self.0.sign_manifest_digest(digest))
    }
    fn attest_manifest_digest(
        &self,
        digest: &[u8; 32],
    ) -> Result<Option<AttestationBlock>, SignError> {
        Ok(Some(self.1.quote(digest, &sample_pcrs())))
    }
}

#[test]
fn attested_image_roundtrip() {
    let signer = AttestingSigner(key(), super::attest::fake::FakeAk::new(7));
    let bytes = build(Some(&signer));
    let r = open_bytes(&bytes).unwrap();
    let a = r.attestation().expect("attested");
    assert_eq!(a.ak, signer.1.public());
    assert_eq!(a.pcrs, sample_pcrs());
    r.verify_chunks().unwrap();
    // Images without a quote have no attestation field at all.
    let plain = build(Some(&key()));
    let (_, _, sig) = split(&plain);
    let v: ciborium::Value = ciborium::de::from_reader(&sig[..]).unwrap();
    let fields = v.as_map().unwrap();
    assert_eq!(fields.len(), 4, "{fields:?}");
    assert!(open_bytes(&plain).unwrap().attestation().is_none());
}

#[test]
fn quote_copied_from_another_image_is_tampered() {
    let signer = AttestingSigner(key(), super::attest::fake::FakeAk::new(7));
    let a = build(Some(&signer));
    let b = build(Some(&signer));
    let quote_of_a = decode::<SignatureBlock>(&split(&a).2, "signature block")
        .unwrap()
        .attestation
        .unwrap();
    let image = with_block(&b, |blk| blk.attestation = Some(quote_of_a));
    assert!(matches!(
        open_bytes(&image),
        Err(ImageError::Tampered(Tamper::Attestation(
            ckpt_keys::quote::QuoteError::WrongQualifyingData
        )))
    ));
    // Edited PCR values, or a quote moved onto an image that had none.
    let image = with_block(&b, |blk| {
        if let Some(q) = blk.attestation.as_mut() {
            q.pcrs[7].value[0] ^= 1;
        }
    });
    assert!(matches!(
        open_bytes(&image),
        Err(ImageError::Tampered(Tamper::Attestation(_)))
    ));
    let plain = build(Some(&signer.0));
    let moved = decode::<SignatureBlock>(&split(&b).2, "signature block")
        .unwrap()
        .attestation;
    let image = with_block(&plain, |blk| blk.attestation = moved);
    assert!(matches!(
        open_bytes(&image),
        Err(ImageError::Tampered(Tamper::Attestation(_)))
    ));
    // Removing the quote leaves a signed, unattested image.
    let image = with_block(&b, |blk| blk.attestation = None);
    let r = open_bytes(&image).unwrap();
    assert!(r.attestation().is_none());
    assert!(matches!(r.signature(), SignatureStatus::Signed { .. }));
}

/// A signer whose quote is bound to the wrong digest.
struct BadQuoteSigner(SigningKey, super::attest::fake::FakeAk);

impl ManifestSigner for BadQuoteSigner {
    fn public_key(&self) -> PublicKey {
        self.0.public_key()
    }
    fn sign_manifest_digest(&self, digest: &[u8; 32]) -> Result<Vec<u8>, SignError> {
        Ok(self.0.sign_manifest_digest(digest))
    }
    fn attest_manifest_digest(
        &self,
        _digest: &[u8; 32],
    ) -> Result<Option<AttestationBlock>, SignError> {
        Ok(Some(self.1.quote(&[0; 32], &sample_pcrs())))
    }
}

#[test]
fn writer_checks_the_signers_quote() {
    let (_tmp, file) = TempFile::new("quotecheck");
    let w = ImageWriter::new(file).unwrap();
    let res = w.finish(
        sample_meta(),
        sample_content(),
        Some(&BadQuoteSigner(key(), super::attest::fake::FakeAk::new(2))),
    );
    assert!(matches!(
        res,
        Err(ImageError::Sign(SignError::AttestationSelfCheck(_)))
    ));
}

// Decoding within the memory budget (see `super::budget`).

/// `m` encoded with every mapping's `vm_flags` replaced by `n` empty strings
/// (one byte each in CBOR; the budget charges each as the `String` it is
/// decoded into, 24 bytes, though `VmFlags` keeps none of them).
fn with_empty_flags(m: &Manifest, n: u32) -> Vec<u8> {
    let mut m = m.clone();
    for v in &mut m.tasks[0].vmas {
        v.vm_flags = VmFlags::new(["SPLICEME"]);
    }
    let bytes = encode(&m).unwrap();
    let marker = [&[0x81u8, 0x68][..], b"SPLICEME"].concat();
    let mut filler = vec![0x9a];
    filler.extend_from_slice(&n.to_be_bytes());
    filler.resize(5 + n as usize, 0x60);
    let mut out = Vec::with_capacity(bytes.len() + m.tasks[0].vmas.len() * filler.len());
    let mut rest = &bytes[..];
    while let Some(at) = rest.windows(marker.len()).position(|w| w == marker) {
        out.extend_from_slice(&rest[..at]);
        out.extend_from_slice(&filler);
        rest = &rest[at + marker.len()..];
    }
    out.extend_from_slice(rest);
    out
}

fn charged() -> u64 {
    super::budget::LAST_CHARGED.with(|c| c.get())
}

#[test]
fn a_list_longer_than_the_cap_is_refused_before_it_is_stored() {
    use crate::limits::MAX_CBOR_COLLECTION_LEN;
    let cap = u32::try_from(MAX_CBOR_COLLECTION_LEN).unwrap();
    let ok = with_empty_flags(&sample_manifest(), cap);
    let m: Manifest = decode(&ok, "manifest").unwrap();
    assert_eq!(
        m.tasks[0].vmas[0].vm_flags.len() as u64,
        MAX_CBOR_COLLECTION_LEN
    );
    let bad = with_empty_flags(&sample_manifest(), cap + 1);
    match decode::<Manifest>(&bad, "manifest") {
        Err(e @ ImageError::DecodeLimit { .. }) => assert_eq!(
            e.to_string(),
            "malformed image: the manifest has a list of more than 1048576 entries"
        ),
        other => panic!("{:?}", other.map(|_| ())),
    }
    // Nothing past the cap was charged (or stored): the cap's worth of
    // `String`s, and the few other lists of the sample.
    assert!(
        charged() <= MAX_CBOR_COLLECTION_LEN * 24 + (64 << 10),
        "{}",
        charged()
    );
}

#[test]
fn tiny_items_cannot_exceed_the_memory_budget() {
    use crate::limits::{MAX_CBOR_COLLECTION_LEN, MAX_MANIFEST_DECODED};
    // 16 mappings with 2^20 - 1 empty flags each: a 16 MiB manifest that
    // the budget charges as 16 * 24 MiB of `String`s.
    let mut m = sample_manifest();
    let v = m.tasks[0].vmas[1].clone();
    m.tasks[0].vmas = vec![v; 16];
    let bytes = with_empty_flags(&m, u32::try_from(MAX_CBOR_COLLECTION_LEN).unwrap() - 1);
    assert!(bytes.len() as u64 <= MAX_MANIFEST_LEN);
    match decode::<Manifest>(&bytes, "manifest") {
        Err(e @ ImageError::DecodeLimit { .. }) => assert_eq!(
            e.to_string(),
            "malformed image: the manifest needs more than 256 MiB of memory to decode"
        ),
        other => panic!("{:?}", other.map(|_| ())),
    }
    assert_eq!(charged(), MAX_MANIFEST_DECODED);
    // Through the reader: refused as too large (never an abort).
    let data: Vec<u8> = sample_chunks().into_iter().flat_map(|c| c.1).collect();
    let image = assemble(&data, &bytes, &[]);
    assert!(matches!(
        open_bytes(&image),
        Err(ImageError::DecodeLimit {
            region: "manifest",
            ..
        })
    ));
}

/// A manifest at the caps real images can reach at once (every chunk, every
/// mapping with 30 flags) decodes within the budget.
#[test]
fn the_largest_real_manifest_fits_the_budget() {
    use crate::limits::{MAX_CHUNKS, MAX_MANIFEST_DECODED, MAX_VMAS};
    let mut m = sample_manifest();
    m.chunks = (0..MAX_CHUNKS)
        .map(|i| ChunkEntry {
            space: 0,
            addr: 0x7f00_0000_0000 + i * 0x2000,
            len: 0x1000,
            digest: vec![0x5a; 32],
            stored: None,
        })
        .collect();
    let v = Vma {
        start: 0x7f00_0000_0000,
        end: 0x7f00_0001_0000,
        prot: 3,
        shared: false,
        offset: 0,
        kind: VmaKind::Anonymous,
        file: None,
        name: String::new(),
        vm_flags: VmFlags::new(["rd"; 30]),
        space: None,
    };
    m.tasks[0].vmas = vec![v; MAX_VMAS];
    let bytes = encode(&m).unwrap();
    assert!(
        bytes.len() as u64 <= MAX_MANIFEST_LEN,
        "{} bytes",
        bytes.len()
    );
    let back: Manifest = decode(&bytes, "manifest").unwrap();
    assert_eq!(back, m);
    let used = charged();
    println!(
        "largest real manifest: {} MiB of CBOR, {} MiB charged of {} MiB",
        bytes.len() >> 20,
        used >> 20,
        MAX_MANIFEST_DECODED >> 20
    );
    assert!(used < MAX_MANIFEST_DECODED);
}

#[test]
fn an_invalid_manifest_is_refused_when_opened_naming_the_field() {
    let bytes = build(None);
    let (data, m, _) = split(&bytes);
    let mut manifest: Manifest = decode(&m, "manifest").unwrap();
    // The stack mapping moved to overlap the heap.
    manifest.tasks[0].vmas[2].start = 0x510000;
    manifest.tasks[0].vmas[2].end = 0x530000;
    let image = assemble(&data, &encode(&manifest).unwrap(), &[]);
    match open_bytes(&image) {
        Err(e @ ImageError::Invalid(_)) => {
            let text = e.to_string();
            assert!(
                text.contains("tasks[0].vmas[2] 0x510000..0x530000"),
                "{text}"
            );
        }
        other => panic!("{:?}", other.map(|_| ())),
    }
}

/// Every committed image seed decodes into the model and encodes back to
/// exactly the bytes it was read from: the model's serde representation is
/// the image format and must not drift when its types move or change.
#[test]
fn model_reencodes_seeds_byte_for_byte() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/seeds/image_reader");
    let mut n = 0;
    for entry in fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let data = fs::read(&path).unwrap();
        if data[8..12] == FORMAT_VERSION_1.to_le_bytes() {
            // Read by `v1`, never written: see
            // `version_1_images_open_verify_and_convert`.
            continue;
        }
        let t = TRAILER_LEN as usize;
        let trailer = Trailer::decode(data[data.len() - t..].try_into().unwrap()).unwrap();
        let start = trailer.manifest_offset as usize;
        let bytes = &data[start..start + trailer.manifest_len as usize];
        let m: Manifest = decode(bytes, "manifest").unwrap();
        assert!(!m.tasks[0].threads.is_empty(), "{}", path.display());
        assert_eq!(
            encode(&m).unwrap(),
            bytes,
            "{}: the manifest re-encodes differently",
            path.display()
        );
        n += 1;
    }
    assert!(n >= 3, "expected the committed seeds in {}", dir.display());
}

/// Images are written with BLAKE3 chunk digests, named in the manifest;
/// the digest of each chunk is BLAKE3 of its bytes.
#[test]
fn new_images_name_and_use_blake3_chunk_digests() {
    let bytes = build(None);
    let r = open_bytes(&bytes).unwrap();
    let m = r.manifest();
    assert_eq!(m.chunk_digest, Some(super::ChunkDigest::Blake3));
    assert_eq!(super::digest::chunk_digest_name(m), "blake3");
    // File and vdso digests keep their own algorithm.
    assert_eq!(m.digest_algorithm, DigestAlgorithm::Sha256);
    for (c, (_, data)) in m.chunks.iter().zip(sample_chunks()) {
        assert_eq!(c.digest, blake3::hash(&data).as_bytes().to_vec());
    }
    let (_, mbytes, _) = split(&bytes);
    assert!(mbytes.windows(6).any(|w| w == b"blake3"));
    open_and_verify(&bytes).unwrap();
}

/// An image whose manifest has no `chunk_digest` (every image written
/// before it existed) has SHA-256 chunk digests, and still verifies and
/// streams; the same image with BLAKE3 digests but no name is tampered.
#[test]
fn images_without_a_chunk_digest_name_are_sha256() {
    let mut m = sample_manifest();
    let mut data = Vec::new();
    for (c, (_, d)) in m.chunks.iter_mut().zip(sample_chunks()) {
        c.digest = Sha256::digest(&d).to_vec();
        data.extend_from_slice(&d);
    }
    assert_eq!(m.chunk_digest, None);
    let old = assemble(&data, &encode(&m).unwrap(), &[]);
    open_and_verify(&old).unwrap();
    let r = open_bytes(&old).unwrap();
    assert_eq!(super::digest::chunk_digest_name(r.manifest()), "sha256");
    let mut buf = vec![0u8; 1000];
    let mut got = Vec::new();
    r.stream_chunk(2, &mut buf, |off, piece| {
        assert_eq!(off as usize, got.len());
        got.extend_from_slice(piece);
        Ok::<(), ()>(())
    })
    .unwrap();
    assert_eq!(got, sample_chunks()[2].1);
    // BLAKE3 digests under the old (absent) name do not verify.
    for (c, (_, d)) in m.chunks.iter_mut().zip(sample_chunks()) {
        c.digest = blake3::hash(&d).as_bytes().to_vec();
    }
    let mislabelled = assemble(&data, &encode(&m).unwrap(), &[]);
    // (Which chunk is reported depends on which verification thread
    // gets there first.)
    assert!(matches!(
        open_and_verify(&mislabelled),
        Err(ImageError::Tampered(Tamper::Chunk { .. }))
    ));
    // And named, they do.
    m.chunk_digest = Some(super::ChunkDigest::Blake3);
    open_and_verify(&assemble(&data, &encode(&m).unwrap(), &[])).unwrap();
}

/// `stream_chunk` hands every piece over in order, in pieces of the
/// buffer's size, and fails a changed chunk after its last piece: the
/// bytes were seen, the error says which chunk.
#[test]
fn stream_chunk_pieces_and_a_changed_chunk() {
    let bytes = build(None);
    let r = open_bytes(&bytes).unwrap();
    let mut buf = vec![0u8; 3000];
    let mut sizes = Vec::new();
    r.stream_chunk(2, &mut buf, |_, piece| {
        sizes.push(piece.len());
        Ok::<(), ()>(())
    })
    .unwrap();
    assert_eq!(sizes, vec![3000, 3000, 2192]);
    let (data, m, _) = split(&bytes);
    let mut data2 = data.clone();
    let last = data2.len() - 1;
    data2[last] ^= 1;
    let bad = assemble(&data2, &m, &[]);
    let r = open_bytes(&bad).unwrap();
    let mut seen = 0usize;
    let e = r
        .stream_chunk(2, &mut buf, |_, piece| {
            seen += piece.len();
            Ok::<(), ()>(())
        })
        .unwrap_err();
    assert_eq!(seen, 8192);
    assert!(matches!(
        e,
        ChunkStreamError::Image(ImageError::Tampered(Tamper::Chunk { index: 2, .. }))
    ));
    assert!(r.stream_chunk(0, &mut [], |_, _| Ok::<(), ()>(())).is_err());
}

/// Chunks larger than a write buffer, written straight into the buffers
/// (`write_chunk_with`), come back byte for byte; a failing filler fails
/// the writer.
#[test]
fn write_chunk_with_spans_buffers() {
    let (tmp, file) = TempFile::new("with");
    let mut w = ImageWriter::new(file).unwrap();
    let pattern = |i: u64| (i.wrapping_mul(2_654_435_761) >> 13) as u8;
    let len = (3 << 20) + 4096;
    let mut calls = 0;
    w.write_chunk_with(0, 0x400000, len, |off, piece| {
        calls += 1;
        for (i, b) in piece.iter_mut().enumerate() {
            *b = pattern(off + i as u64);
        }
        Ok::<(), ImageError>(())
    })
    .unwrap();
    assert!(calls >= 4, "{calls} pieces");
    // The writer does not validate the manifest (the reader does).
    let done = w.finish(sample_meta(), sample_content(), None).unwrap();
    drop(done);
    let bytes = fs::read(&tmp.path).unwrap();
    let (data, _, _) = split(&bytes);
    assert_eq!(data.len() as u64, len);
    assert!(data
        .iter()
        .enumerate()
        .all(|(i, &b)| b == pattern(i as u64)));

    let (_tmp2, file) = TempFile::new("with-fail");
    let mut w = ImageWriter::new(file).unwrap();
    let r = w.write_chunk_with(0, 0x400000, 8192, |_, _| {
        Err(ImageError::InvalidInput("filler failed"))
    });
    assert!(r.is_err());
    assert!(w.write_chunk(0, 0x500000, &[0; 4096]).is_err());
}

/// The sample content with one more anonymous mapping of `len` bytes at
/// [`BIG_AT`], for images larger than the sample's.
fn content_with_big_mapping(len: u64) -> ImageContent {
    let mut content = sample_content();
    let heap = content.tasks[0].vmas[1].clone();
    content.tasks[0].vmas.insert(
        2,
        Vma {
            start: BIG_AT,
            end: BIG_AT + len,
            name: String::new(),
            ..heap
        },
    );
    content
}

const BIG_AT: u64 = 0x1000_0000;

/// An image longer than a writeback step (whose writeback the writer
/// starts as it goes) reads back byte for byte.
#[test]
fn writer_starts_writeback_and_writes_every_byte() {
    let (tmp, file) = TempFile::new("writeback");
    let mut w = ImageWriter::new(file).unwrap();
    let pattern = |i: u64| (i.wrapping_mul(2_654_435_761) >> 11) as u8;
    let chunk = 4u64 << 20;
    let count = 10u64;
    for c in 0..count {
        w.write_chunk_with(0, BIG_AT + c * chunk, chunk, |off, piece| {
            for (i, b) in piece.iter_mut().enumerate() {
                *b = pattern(c * chunk + off + i as u64);
            }
            Ok::<(), ImageError>(())
        })
        .unwrap();
    }
    w.finish(sample_meta(), content_with_big_mapping(chunk * count), None)
        .unwrap();
    let bytes = fs::read(&tmp.path).unwrap();
    let r = open_bytes(&bytes).unwrap();
    let mut at = 0u64;
    r.for_each_chunk(|e, d| {
        assert_eq!(e.addr, BIG_AT + at);
        assert!(d
            .iter()
            .enumerate()
            .all(|(i, &b)| b == pattern(at + i as u64)));
        at += d.len() as u64;
        Ok::<(), ()>(())
    })
    .unwrap();
    assert_eq!(at, chunk * count);
}

/// Chunks compressed on several threads are stored in the order they were
/// written, compressible ones compressed and the others as they are, and
/// read back byte for byte.
#[test]
fn compressed_chunks_keep_their_order() {
    let (tmp, file) = TempFile::new("compressed");
    let mut w = ImageWriter::new(file).unwrap();
    w.compress_with(Compression::Lz4).unwrap();
    let len = crate::image::MAX_BLOCK_LEN as u64;
    let chunk = |c: u64| -> Vec<u8> {
        let mut x = 0x9e37_79b9_7f4a_7c15u64 ^ c;
        (0..len)
            .map(|i| match c % 3 {
                // Incompressible (xorshift64*), text-like, zeros.
                0 => {
                    x ^= x >> 12;
                    x ^= x << 25;
                    x ^= x >> 27;
                    (x.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 56) as u8
                }
                1 => b"checkpoint "[(i % 11) as usize] ^ (c as u8),
                _ => 0,
            })
            .collect()
    };
    let count = 40u64;
    for c in 0..count {
        w.write_chunk(0, BIG_AT + c * len, &chunk(c)).unwrap();
    }
    w.finish(sample_meta(), content_with_big_mapping(count * len), None)
        .unwrap();
    let bytes = fs::read(&tmp.path).unwrap();
    assert!((bytes.len() as u64) < count * len * 3 / 4);
    let r = open_bytes(&bytes).unwrap();
    let mut c = 0u64;
    r.for_each_chunk(|e, d| {
        assert_eq!(e.addr, BIG_AT + c * len);
        assert_eq!(e.stored.is_some(), !c.is_multiple_of(3), "chunk {c}");
        assert_eq!(d, chunk(c).as_slice(), "chunk {c}");
        c += 1;
        Ok::<(), ()>(())
    })
    .unwrap();
    assert_eq!(c, count);
    // Streamed too (restore's path), as images written with `lz4` before
    // `lz4-blocks` are: each compressed chunk checked whole, then handed
    // over whole.
    assert_eq!(r.manifest().compression, Some(Compression::Lz4));
    let mut buf = vec![0u8; 1000];
    for i in 0..count as usize {
        let mut got = Vec::new();
        r.stream_chunk(i, &mut buf, |off, piece| {
            assert_eq!(off as usize, got.len());
            got.extend_from_slice(piece);
            Ok::<(), ()>(())
        })
        .unwrap();
        assert_eq!(got, chunk(i as u64), "chunk {i} streamed");
    }
}

/// Without compression, a chunk of memory that reads as zeros where the
/// image holds nothing leaves out its zero pages at either end and in
/// long runs: a chunk of zeros leaves no entry, random data is stored
/// whole, and every chunk reads back byte for byte with the gaps as
/// zeros. A chunk whose length is not whole pages (a saved file's last
/// piece) loses a zero tail too.
#[test]
fn plain_zero_sparse_chunks_leave_out_zero_pages() {
    const P: usize = 4096;
    let noise = |len: usize, mut x: u64| -> Vec<u8> {
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 24) as u8 | 1
            })
            .collect()
    };
    // (data, least bytes left out wherever the buffers cut it)
    let mut chunks: Vec<(Vec<u8>, usize)> = Vec::new();
    chunks.push((vec![0u8; 64 * P], 64 * P));
    chunks.push((noise(48 * P, 3), 0));
    // Zeros 3, data 5, zeros 20, data 2, zeros 8, data 1, zeros 2 (pages).
    let mut mixed = vec![0u8; 41 * P];
    mixed[3 * P..8 * P].copy_from_slice(&noise(5 * P, 5));
    mixed[28 * P..30 * P].copy_from_slice(&noise(2 * P, 7));
    mixed[38 * P + 17] = 9;
    chunks.push((mixed, 5 * P));
    // A 40-page run inside: cut in two by a buffer boundary, its longer
    // part (at least 20 pages) still goes.
    let mut long_gap = noise(100 * P, 11);
    long_gap[30 * P..70 * P].fill(0);
    chunks.push((long_gap, 20 * P));
    // Not whole pages: data, then zeros to the end, the last page short.
    let mut tail = vec![0u8; 10 * P + 100];
    tail[..2 * P].copy_from_slice(&noise(2 * P, 13));
    chunks.push((tail, 8 * P + 100));

    let (tmp, file) = TempFile::new("plain-sparse");
    let mut w = ImageWriter::new(file).unwrap();
    let mut at = Vec::new();
    let mut next = BIG_AT;
    for (data, _) in &chunks {
        at.push(next);
        w.write_zero_sparse_chunk(0, next, data).unwrap();
        next += (data.len() as u64).div_ceil(P as u64) * P as u64;
    }
    w.finish(sample_meta(), content_with_big_mapping(next - BIG_AT), None)
        .unwrap();
    let bytes = fs::read(&tmp.path).unwrap();
    let r = open_bytes(&bytes).unwrap();
    r.verify_chunks().unwrap();
    let mut back: Vec<Vec<u8>> = chunks.iter().map(|(d, _)| vec![0u8; d.len()]).collect();
    let mut stored = vec![0usize; chunks.len()];
    r.for_each_chunk(|e, d| {
        assert!(e.stored.is_none(), "not compressed");
        let i = at.iter().rposition(|&a| a <= e.addr).unwrap();
        let off = (e.addr - at[i]) as usize;
        back[i][off..off + d.len()].copy_from_slice(d);
        stored[i] += d.len();
        Ok::<(), ()>(())
    })
    .unwrap();
    for (i, (data, least_dropped)) in chunks.iter().enumerate() {
        assert!(back[i] == *data, "chunk {i} reads back as it was");
        assert!(
            stored[i] + least_dropped <= data.len(),
            "chunk {i}: {} of {} bytes stored, at least {least_dropped} should be left out",
            stored[i],
            data.len()
        );
    }
    assert_eq!(stored[1], 48 * P, "random data is stored whole");
    // A chunk written as it is keeps its zeros.
    let (tmp, file) = TempFile::new("plain-whole");
    let mut w = ImageWriter::new(file).unwrap();
    w.write_chunk(0, BIG_AT, &chunks[0].0).unwrap();
    w.finish(sample_meta(), content_with_big_mapping(64 * P as u64), None)
        .unwrap();
    let bytes = fs::read(&tmp.path).unwrap();
    let r = open_bytes(&bytes).unwrap();
    let mut whole = 0;
    r.for_each_chunk(|_, d| {
        whole += d.len();
        Ok::<(), ()>(())
    })
    .unwrap();
    assert_eq!(whole, 64 * P);
}

/// A zero-sparse chunk whose last stored byte fills a write buffer to the
/// end: its digest is ended in the next (empty) buffer, which the writer
/// still sends when it finishes.
#[test]
fn a_sparse_chunk_ending_a_full_buffer_keeps_its_digest() {
    const P: usize = 4096;
    let data = |pages: usize, seed: usize| -> Vec<u8> {
        (0..pages * P)
            .map(|i| ((i + seed) % 251) as u8 | 1)
            .collect()
    };
    // The header and 64 pages fill the first buffer and 32 bytes of the
    // second; 63 + 1 sparse pages then leave the third buffer at a page
    // boundary, and the last 63 pages fill it exactly.
    let chunks = [data(64, 1), data(64, 2), data(63, 3)];
    let (tmp, file) = TempFile::new("sparse-full");
    let mut w = ImageWriter::new(file).unwrap();
    let mut at = BIG_AT;
    let mut want = Vec::new();
    for (i, c) in chunks.iter().enumerate() {
        if i == 0 {
            w.write_chunk(0, at, c).unwrap();
        } else {
            w.write_zero_sparse_chunk(0, at, c).unwrap();
        }
        want.push((at, c.clone()));
        at += c.len() as u64;
    }
    w.finish(sample_meta(), content_with_big_mapping(at - BIG_AT), None)
        .unwrap();
    let bytes = fs::read(&tmp.path).unwrap();
    let r = open_bytes(&bytes).unwrap();
    r.verify_chunks().unwrap();
    let mut seen = Vec::new();
    r.for_each_chunk(|e, d| {
        seen.push((e.addr, d.to_vec()));
        Ok::<(), ()>(())
    })
    .unwrap();
    assert_eq!(seen, want);
}

/// Chunk data for the `lz4-blocks` tests: `pages` pages, each random,
/// text-like or zeros by `pattern` (one letter a page: `r`, `t`, `z`),
/// repeated.
fn patterned(pages: usize, pattern: &[u8], seed: u64) -> Vec<u8> {
    const P: usize = 4096;
    let mut x = 0x9e37_79b9_7f4a_7c15u64 ^ seed;
    let mut out = Vec::with_capacity(pages * P);
    for p in 0..pages {
        for i in 0..P {
            out.push(match pattern[p % pattern.len()] {
                b'r' => {
                    x ^= x >> 12;
                    x ^= x << 25;
                    x ^= x >> 27;
                    (x.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 56) as u8
                }
                b't' => b"checkpoint restart "[(i + p) % 19],
                _ => 0,
            });
        }
    }
    out
}

/// Writes `chunks` (address, data) zero-sparse with `lz4-blocks` and
/// returns the image's bytes.
fn write_lz4_blocks(chunks: &[(u64, Vec<u8>)], span: u64) -> Vec<u8> {
    let (tmp, file) = TempFile::new("lz4-blocks");
    let mut w = ImageWriter::new(file).unwrap();
    w.compress_with(Compression::Lz4Blocks).unwrap();
    for (addr, data) in chunks {
        w.write_zero_sparse_chunk(0, *addr, data).unwrap();
    }
    w.finish(sample_meta(), content_with_big_mapping(span), None)
        .unwrap();
    fs::read(&tmp.path).unwrap()
}

/// `lz4-blocks`: a chunk of any length (up to the cap) is one entry of
/// the image, however many blocks it takes (a few zero pages where two
/// blocks meet do not cut it); a long run of zero pages does;
/// incompressible data that would pass the cap with its headers goes on
/// in a second entry. Every chunk reads back byte for byte, whole
/// (`for_each_chunk`) and streamed a block at a time with a buffer too
/// small for two blocks and with one large enough.
#[test]
fn lz4_blocks_chunks_are_one_entry_each_and_read_back() {
    const P: u64 = 4096;
    // 4 MiB; zero pages that meet at the first blocks' edge, too few to
    // cut it.
    let mut text = patterned(1024, b"ttrttttt", 1);
    text[62 * P as usize..67 * P as usize].fill(0);
    let random = patterned(2048, b"r", 2); // 8 MiB
    let mut gapped = patterned(256, b"tttr", 3); // 1 MiB
    gapped[100 * P as usize..150 * P as usize].fill(0);
    let chunks = vec![
        (BIG_AT, text.clone()),
        (BIG_AT + (8 << 20), random.clone()),
        (BIG_AT + (16 << 20), gapped.clone()),
    ];
    let bytes = write_lz4_blocks(&chunks, 17 << 20);
    let r = open_bytes(&bytes).unwrap();
    assert_eq!(r.manifest().compression, Some(Compression::Lz4Blocks));
    r.verify_chunks().unwrap();
    let shape: Vec<(u64, u64)> = r
        .manifest()
        .chunks
        .iter()
        .map(|c| (c.addr, c.len))
        .collect();
    let random_first = (8 << 20) - 256 * 1024;
    assert_eq!(
        shape,
        vec![
            (BIG_AT, 4 << 20),
            (BIG_AT + (8 << 20), random_first),
            (BIG_AT + (8 << 20) + random_first, 256 * 1024),
            (BIG_AT + (16 << 20), 100 * P),
            (BIG_AT + (16 << 20) + 150 * P, 106 * P),
        ],
        "one entry per chunk, cut by the zero run and by the cap"
    );
    for c in &r.manifest().chunks {
        assert!(c.stored.is_some() && c.file_len() <= crate::limits::MAX_CHUNK_LEN);
    }
    assert!(
        r.manifest().chunks[0].file_len() < (1 << 20),
        "text compresses"
    );
    let expect = |addr: u64, len: u64| -> Vec<u8> {
        let (at, data) = chunks.iter().rev().find(|(a, _)| *a <= addr).unwrap();
        let off = (addr - at) as usize;
        data[off..off + len as usize].to_vec()
    };
    let mut whole = 0;
    r.for_each_chunk(|e, d| {
        assert!(d == expect(e.addr, e.len), "chunk at {:#x}", e.addr);
        whole += 1;
        Ok::<(), ()>(())
    })
    .unwrap();
    assert_eq!(whole, 5);
    for buf_len in [1000, 2 * MAX_BLOCK_LEN] {
        let mut buf = vec![0u8; buf_len];
        for (i, c) in r.manifest().chunks.iter().enumerate() {
            let mut got = Vec::new();
            r.stream_chunk(i, &mut buf, |off, piece| {
                assert_eq!(off as usize, got.len());
                assert!(piece.len() <= MAX_BLOCK_LEN);
                got.extend_from_slice(piece);
                Ok::<(), ()>(())
            })
            .unwrap();
            assert!(got == expect(c.addr, c.len), "chunk {i} streamed");
        }
    }
}

/// `lz4-blocks`: a byte changed anywhere in a chunk's stored bytes (a
/// block header, compressed or stored bytes) fails it as tampered with
/// its index, whether or not its blocks still decode, both streamed and
/// read whole; the chunks before it still read.
#[test]
fn lz4_blocks_a_changed_byte_is_tampered() {
    let data = patterned(256, b"tttrz", 5); // 1 MiB: 4 blocks
    let bytes = write_lz4_blocks(&[(BIG_AT, data)], 1 << 20);
    let (stored, m, _) = split(&bytes);
    let len = stored.len();
    let mut checked = 0;
    for off in (0..len)
        .step_by(len / 97 + 1)
        .chain([0, 3, 4, 7, 8, len - 1])
    {
        let mut d = stored.clone();
        d[off] ^= 0x41;
        let bad = assemble(&d, &m, &[]);
        let r = open_bytes(&bad).unwrap();
        let mut buf = vec![0u8; 4096];
        let e = r
            .stream_chunk(0, &mut buf, |_, _| Ok::<(), ()>(()))
            .unwrap_err();
        assert!(
            matches!(
                e,
                ChunkStreamError::Image(ImageError::Tampered(Tamper::Chunk { index: 0, .. }))
            ),
            "byte {off}: {e:?}"
        );
        let mut whole = Vec::new();
        assert!(matches!(
            r.read_chunk(0, &mut whole),
            Err(ImageError::Tampered(Tamper::Chunk { index: 0, .. }))
        ));
        assert!(matches!(
            r.verify_chunks(),
            Err(ImageError::Tampered(Tamper::Chunk { index: 0, .. }))
        ));
        checked += 1;
    }
    assert!(checked > 90);
}

/// A chunk whose blocks do not decode, but whose digest matches (an
/// unsigned image anyone can write, or a signer's bug), is malformed for
/// every reader: verify, whole reads and streaming agree.
#[test]
fn lz4_blocks_that_do_not_decode_are_malformed_for_every_reader() {
    let data = patterned(128, b"tttr", 6); // 512 KiB: 2 blocks
    let bytes = write_lz4_blocks(&[(BIG_AT, data)], 1 << 20);
    let (stored, m, _) = split(&bytes);
    let mut m: Manifest = decode(&m, "manifest").unwrap();
    assert_eq!(m.chunks.len(), 1);
    // The first block's stored length one less: its bytes end early, the
    // next header is read from inside them.
    let mut d = stored.clone();
    let n = u32::from_le_bytes(d[4..8].try_into().unwrap());
    d[4..8].copy_from_slice(&(n - 1).to_le_bytes());
    m.chunks[0].digest = blake3::hash(&d).as_bytes().to_vec();
    let bad = assemble(&d, &encode(&m).unwrap(), &[]);
    let r = open_bytes(&bad).unwrap();
    assert!(matches!(r.verify_chunks(), Err(ImageError::Malformed(_))));
    let mut whole = Vec::new();
    assert!(matches!(
        r.read_chunk(0, &mut whole),
        Err(ImageError::Malformed(_))
    ));
    let mut buf = vec![0u8; 4096];
    assert!(matches!(
        r.stream_chunk(0, &mut buf, |_, _| Ok::<(), ()>(())),
        Err(ChunkStreamError::Image(ImageError::Malformed(_)))
    ));
}

/// Block headers are checked before anything is read for them: lengths
/// out of range, stored longer than the block, and blocks that do not add
/// up to the chunk are malformed, never a panic or an allocation.
#[test]
fn lz4_blocks_headers_out_of_range_are_malformed() {
    use super::compress::{block_header, parse_block_header};
    assert_eq!(
        parse_block_header(block_header(4096, 10)).unwrap(),
        (4096, 10)
    );
    assert_eq!(
        parse_block_header(block_header(MAX_BLOCK_LEN, MAX_BLOCK_LEN)).unwrap(),
        (MAX_BLOCK_LEN, MAX_BLOCK_LEN)
    );
    for (len, stored) in [
        (0, 0),
        (0, 1),
        (10, 0),
        (10, 11),
        (MAX_BLOCK_LEN + 1, 1),
        (u32::MAX as usize, u32::MAX as usize),
    ] {
        assert!(
            matches!(
                parse_block_header(block_header(len, stored)),
                Err(ImageError::Malformed(_))
            ),
            "{len} {stored}"
        );
    }
    // One chunk of `len` bytes stored as `stored`, its digest right:
    // only the blocks can be wrong.
    let image = |stored: &[u8], len: u64| -> Vec<u8> {
        let base = write_lz4_blocks(&[(BIG_AT, patterned(1, b"t", 1))], 1 << 20);
        let (_, m, _) = split(&base);
        let mut m: Manifest = decode(&m, "manifest").unwrap();
        m.chunks[0].len = len;
        m.chunks[0].stored = std::num::NonZeroU32::new(stored.len() as u32);
        m.chunks[0].digest = blake3::hash(stored).as_bytes().to_vec();
        assemble(stored, &encode(&m).unwrap(), &[])
    };
    let read = |stored: &[u8], len: u64| -> Result<Vec<u8>, ImageError> {
        let bytes = image(stored, len);
        let r = open_bytes(&bytes)?;
        let mut buf = Vec::new();
        r.read_chunk(0, &mut buf)?;
        Ok(buf)
    };
    let page = patterned(1, b"r", 4);
    let mut one = block_header(4096, 4096).to_vec();
    one.extend_from_slice(&page);
    assert_eq!(read(&one, 4096).unwrap(), page, "a block stored as it is");
    let malformed = |stored: &[u8], len: u64, what: &str| {
        assert!(
            matches!(read(stored, len), Err(ImageError::Malformed(_))),
            "{what}"
        );
    };
    malformed(&one, 8192, "short of the chunk");
    let mut past = block_header(8192, 8192).to_vec();
    past.extend_from_slice(&patterned(2, b"r", 5));
    malformed(&past, 4096, "past the chunk");
    malformed(&one[..one.len() - 1], 4096, "cut block");
    malformed(&one[..5], 4096, "cut header");
    let mut bad = block_header(4096, 3).to_vec();
    bad.extend_from_slice(b"\xff\xff\xff");
    malformed(&bad, 4096, "not LZ4");
}
