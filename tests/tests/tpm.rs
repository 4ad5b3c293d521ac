//! TPM-backed signing and attestation against a real software TPM (swtpm),
//! through the installed setuid helpers.
//!
//! Each test starts its own swtpm on a free loopback port with a fresh
//! state directory, points `<sysconfdir>/ckpt.toml` at it, and restores the
//! configuration (and removes the TPM key record) when it ends. Those files
//! are shared by every test of the run, so the TPM tests hold a file lock
//! for their whole length; other test binaries do not run at the same time.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use ckpt_keys::quote::PcrValue;
use ckpt_keys::{Algorithm, PublicKey};
use ckpt_tests::image::Layout;
use ckpt_tests::swtpm::Swtpm;
use ckpt_tests::{exit, path_str, Counter, Env, Run, TestDir, Who};

/// Holds the TPM test lock and puts the configuration back when dropped.
struct TpmSetup {
    _lock: nix::fcntl::Flock<fs::File>,
    sysconfdir: PathBuf,
    saved_config: Option<Vec<u8>>,
    created_dropin_dir: bool,
    tpm: Swtpm,
}

const DROPIN: &str = "zz-tpm-test.toml";
const TPM_FILES: [&str; 3] = ["tpm.key", "tpm.pub", "tpm-ak.pub"];

impl TpmSetup {
    fn new(env: &Env, dir: &TestDir) -> TpmSetup {
        let lock = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open("/tmp/ckpt-tpm-tests.lock")
            .expect("open the TPM test lock");
        let lock = nix::fcntl::Flock::lock(lock, nix::fcntl::FlockArg::LockExclusive)
            .map_err(|(_, e)| e)
            .expect("take the TPM test lock");
        let sysconfdir = env.sysconfdir.clone();
        let keys = sysconfdir.join("keys");
        for f in TPM_FILES {
            let _ = fs::remove_file(keys.join(f));
        }
        let saved_config = fs::read(sysconfdir.join("ckpt.toml")).ok();
        let dropins = sysconfdir.join("policy.d");
        let created_dropin_dir = !dropins.exists();
        if created_dropin_dir {
            fs::create_dir(&dropins).expect("mkdir policy.d");
            fs::set_permissions(&dropins, fs::Permissions::from_mode(0o755)).unwrap();
        }
        let tpm = Swtpm::start(&dir.root.join("swtpm-state"));
        let s = TpmSetup {
            _lock: lock,
            sysconfdir,
            saved_config,
            created_dropin_dir,
            tpm,
        };
        s.config("key = \"tpm\"", "");
        s
    }

    /// Writes `ckpt.toml`: `signing` lines in `[signing]`, `tpm` lines in
    /// `[tpm]` (the TCTI of this test's swtpm is always set).
    fn config(&self, signing: &str, tpm: &str) {
        let text = format!(
            "[signing]\n{signing}\n[tpm]\ntcti = \"{}\"\npcrs = \"sha256:0,1,2,3,4,5,6,7\"\n{tpm}\n",
            self.tpm.tcti()
        );
        let path = self.sysconfdir.join("ckpt.toml");
        fs::write(&path, text).expect("write ckpt.toml");
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
    }

    fn policy(&self, text: &str) {
        let path = self.sysconfdir.join("policy.d").join(DROPIN);
        fs::write(&path, text).expect("write the policy drop-in");
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
    }

    /// `ckpt-sign keygen --tpm` as root: the signing key's line.
    fn keygen(&self, env: &Env, dir: &TestDir) -> PublicKey {
        let run = env.sign_as(Who::Root, dir, &["keygen", "--tpm"]);
        run.assert_code(exit::OK, "keygen --tpm as root");
        PublicKey::from_line(run.stdout.trim())
            .unwrap_or_else(|e| panic!("keygen --tpm must print a public key line ({e})\n{run}"))
    }

    /// A connection to this test's swtpm (from the test, not the helpers).
    fn direct(&self) -> ckpt_tpm::Tpm {
        ckpt_tpm::Tpm::connect(&self.tpm.tcti()).expect("connect to swtpm")
    }
}

impl Drop for TpmSetup {
    fn drop(&mut self) {
        let keys = self.sysconfdir.join("keys");
        for f in TPM_FILES {
            let _ = fs::remove_file(keys.join(f));
        }
        let _ = fs::remove_file(self.sysconfdir.join("policy.d").join(DROPIN));
        if self.created_dropin_dir {
            let _ = fs::remove_dir(self.sysconfdir.join("policy.d"));
        }
        let path = self.sysconfdir.join("ckpt.toml");
        match &self.saved_config {
            Some(b) => {
                let _ = fs::write(&path, b);
            }
            None => {
                let _ = fs::remove_file(&path);
            }
        }
        self.tpm.stop();
    }
}

fn json(run: &Run) -> serde_json::Value {
    serde_json::from_str(run.stdout.trim())
        .unwrap_or_else(|e| panic!("expected one JSON object on stdout ({e})\n{run}"))
}

/// A counter of the test user, dumped (as that user) into `name.ckpt`.
fn dump_counter(env: &Env, dir: &TestDir, name: &str) -> (Counter, PathBuf, Run) {
    let mut c = Counter::start(env, dir, Who::User(&env.user), &dir.work, name);
    let image = dir.work.join(format!("{name}.ckpt"));
    let run = env.dump_ok(dir, c.proc.pid, &image, &[]);
    c.proc
        .wait_gone("the dump kills the target once the image is on disk");
    (c, image, run)
}

#[test]
fn tpm_library_keys_sign_quote_and_verify_in_software() {
    let dir = std::env::temp_dir().join(format!("ckpt-tpm-lib-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    let sw = Swtpm::start(&dir.join("state"));
    let mut tpm = ckpt_tpm::Tpm::connect(&sw.tcti()).expect("connect");
    let (sh, ah) = (0x8100_0c70, 0x8100_0c71);
    let made = tpm.provision(sh, ah, None, false).expect("provision");
    assert!(!made.reused);
    assert_eq!(made.signing.algorithm(), Algorithm::EcdsaP256);
    assert_ne!(made.signing, made.attestation);
    // Signing: verified in software, over the domain-separated message.
    let key = tpm.load(&made.record.signing, false).expect("load");
    let digest = [0x42u8; 32];
    let sig = tpm.sign_manifest_digest(&key, &digest).expect("sign");
    made.signing
        .verify_manifest_digest(&digest, &sig)
        .expect("the TPM's signature verifies in software");
    assert!(made
        .signing
        .verify_manifest_digest(&[0x43; 32], &sig)
        .is_err());
    // The restricted AK cannot sign an arbitrary digest; the signing key
    // cannot be loaded as the AK.
    assert!(tpm.load(&made.record.attestation, false).is_err());
    let ak = tpm.load(&made.record.attestation, true).expect("load AK");
    assert!(tpm.sign_manifest_digest(&ak, &digest).is_err());
    // Quote: verified in software.
    let pcrs = [0u8, 1, 2, 3, 4, 5, 6, 7];
    let q = tpm.quote(&ak, &digest, &pcrs).expect("quote");
    assert_eq!(q.attest.len(), 145);
    ckpt_keys::quote::verify_quote(&made.attestation, &q.attest, &q.signature, &digest, &q.pcrs)
        .expect("the quote verifies in software");
    // Extending a PCR changes what is quoted.
    tpm.pcr_extend(7, &[9u8; 32]).expect("extend");
    let q2 = tpm.quote(&ak, &digest, &pcrs).expect("quote");
    assert_ne!(q2.pcrs[7], q.pcrs[7]);
    assert_eq!(q2.pcrs[..7], q.pcrs[..7]);
    // Reuse with the record; refusal without it; replacement with force.
    let again = tpm
        .provision(sh, ah, Some(&made.record), false)
        .expect("reuse");
    assert!(again.reused);
    assert_eq!(again.signing, made.signing);
    let e = tpm.provision(sh, ah, None, false).unwrap_err().to_string();
    assert!(e.contains("already in use"), "{e}");
    let new = tpm.provision(sh, ah, None, true).expect("force");
    assert_ne!(new.signing, made.signing);
    assert!(tpm.load(&made.record.signing, false).is_err());
    drop(tpm);
    drop(sw);
    let _ = fs::remove_dir_all(&dir);
}

#[test]
fn tpm_keygen_dump_then_verify_and_restore_without_the_tpm() {
    let env = Env::require();
    let dir = TestDir::new(&env, "tpm-e2e");
    let mut t = TpmSetup::new(&env, &dir);
    let signing = t.keygen(&env, &dir);

    // pubkey --tpm, as anyone: one line in the form policies take.
    let run = env.sign(&dir, &["pubkey", "--tpm"]);
    run.assert_code(exit::OK, "pubkey --tpm");
    assert_eq!(run.stdout.trim(), signing.to_line());
    assert!(run.stdout.starts_with("ckpt-ecdsa-p256 "));
    let run = env.sign(&dir, &["pubkey", "--tpm", "--attestation"]);
    run.assert_code(exit::OK, "pubkey --tpm --attestation");
    let ak = PublicKey::from_line(run.stdout.trim()).expect("AK line");
    assert_ne!(ak, signing);
    // keygen --tpm again keeps the keys.
    assert_eq!(t.keygen(&env, &dir), signing);
    // Only root may create keys, or pick the TPM key on the command line.
    env.sign(&dir, &["keygen", "--tpm"])
        .assert_code(exit::ACCESS_DENIED, "keygen --tpm as a user");

    // A dump by the user: the configuration selects the TPM key.
    let (c, image, run) = dump_counter(&env, &dir, "c");
    assert!(run.stderr.contains(&signing.key_id().to_string()), "{run}");
    assert!(run.stderr.contains("TPM key"), "{run}");
    assert!(run.stderr.contains("TPM quote"), "{run}");
    let n_dump = c.lines().last().expect("counted").0;

    // The TPM goes away: verification and restore do not need it.
    t.tpm.stop();
    let (run, v) = env.verify_json(&dir, &image);
    run.assert_code(
        exit::OK,
        "verify of a TPM-signed image with the TPM stopped",
    );
    assert_eq!(v["key_id"], signing.key_id().to_string(), "{run}");
    assert_eq!(v["trusted"], true, "{run}");
    assert_eq!(v["signer"], "this-host", "{run}");
    let a = &v["attestation"];
    assert_eq!(a["attestation_key"], ak.key_id().to_string(), "{run}");
    assert_eq!(a["host_attestation_key"], true, "{run}");
    assert_eq!(a["pcrs"].as_object().map(|m| m.len()), Some(8), "{run}");
    let run = env.verify(&dir, &["inspect", path_str(&image)]);
    run.assert_code(exit::OK, "inspect");
    assert!(run.stdout.contains("attested = [{ 0 = \""), "{run}");
    let (_run, restored) = env.restore_ok(&dir, &image, None);
    c.wait_for(restored.pid, n_dump + 5);

    // --key tpm is root's.
    let mut c2 = Counter::start(&env, &dir, Who::User(&env.user), &dir.work, "c2");
    let pid = c2.proc.pid.to_string();
    let out = dir.work.join("c2.ckpt");
    env.sign(
        &dir,
        &["dump", "--pid", &pid, "-o", path_str(&out), "--key", "tpm"],
    )
    .assert_code(exit::ACCESS_DENIED, "dump --key tpm by a user");
    c2.proc
        .assert_untouched("a refused dump leaves the target alone");
    assert!(!out.exists());
}

#[test]
fn tpm_root_selects_the_tpm_key_with_key_tpm() {
    let env = Env::require();
    let dir = TestDir::new(&env, "tpm-keyopt");
    let t = TpmSetup::new(&env, &dir);
    let signing = t.keygen(&env, &dir);
    t.config("key = \"file\"", "");
    let (_host_line, host_id) = env.host_key_id(&dir);
    let mut c = Counter::start(&env, &dir, Who::User(&env.user), &dir.work, "c");
    let pid = c.proc.pid.to_string();
    let image = dir.root.join("root.ckpt");
    let run = env.sign_as(
        Who::Root,
        &dir,
        &[
            "dump",
            "--pid",
            &pid,
            "-o",
            path_str(&image),
            "--key",
            "tpm",
        ],
    );
    run.assert_code(exit::OK, "dump --key tpm as root");
    c.proc.wait_gone("dump kills the target");
    let run = env.verify_as(Who::Root, &dir, &["verify", "--json", path_str(&image)]);
    assert_eq!(json(&run)["key_id"], signing.key_id().to_string(), "{run}");
    // With key = "file" (and an attestation key) the file key signs and
    // the TPM still quotes.
    let (_c, image, _run) = dump_counter(&env, &dir, "f");
    let (run, v) = env.verify_json(&dir, &image);
    run.assert_code(exit::OK, "verify");
    assert_eq!(v["key_id"], host_id, "{run}");
    assert!(v["attestation"].is_object(), "{run}");
}

/// Splices the attestation (the last field of the signature block's CBOR
/// map) of `from` into `into`; both signed by the same key.
fn splice_attestation(from: &[u8], into: &[u8]) -> Vec<u8> {
    let key = b"\x6battestation";
    let find = |b: &[u8], l: &Layout| {
        let sig = &b[l.sig.start as usize..l.sig.end as usize];
        let at = sig
            .windows(key.len())
            .position(|w| w == key)
            .expect("the signature block has an attestation field");
        (sig.to_vec(), at + key.len())
    };
    let (la, lb) = (Layout::parse(from).unwrap(), Layout::parse(into).unwrap());
    let (sa, ia) = find(from, &la);
    let (sb, ib) = find(into, &lb);
    let mut sig = sb[..ib].to_vec();
    sig.extend_from_slice(&sa[ia..]);
    let mut out = into[..lb.sig.start as usize].to_vec();
    out.extend_from_slice(&sig);
    let mut t = lb.trailer;
    t.sig_len = sig.len() as u64;
    out.extend_from_slice(&t.encode());
    out
}

#[test]
fn tpm_quote_copied_from_another_image_is_refused() {
    let env = Env::require();
    let dir = TestDir::new(&env, "tpm-copy");
    let t = TpmSetup::new(&env, &dir);
    t.keygen(&env, &dir);
    let (_a, image_a, _) = dump_counter(&env, &dir, "a");
    let (_b, image_b, _) = dump_counter(&env, &dir, "b");
    let (a, b) = (fs::read(&image_a).unwrap(), fs::read(&image_b).unwrap());
    let forged = dir.work.join("forged.ckpt");
    ckpt_tests::write_owned(&forged, &splice_attestation(&a, &b), &env.user);
    // The splice itself is sound: B's own quote put back is accepted.
    let same = dir.work.join("same.ckpt");
    ckpt_tests::write_owned(&same, &splice_attestation(&b, &b), &env.user);
    env.verify(&dir, &["verify", path_str(&same)])
        .assert_code(exit::OK, "B with its own quote");
    for cmd in ["verify", "explain", "restore"] {
        let run = env.verify(&dir, &[cmd, path_str(&forged)]);
        run.assert_code(exit::TAMPERED, &format!("{cmd} of B with A's quote"));
        assert!(
            run.stderr.contains("attestation") && run.stderr.contains("bound to other data"),
            "{cmd}: the refusal names the quote\n{run}"
        );
    }
}

/// The current values of sha256 PCRs 0-7, as a policy set.
fn pcr_set(values: &[PcrValue]) -> String {
    let v: Vec<String> = values
        .iter()
        .map(|p| {
            let h: String = p.value.iter().map(|b| format!("{b:02x}")).collect();
            format!("{} = \"{h}\"", p.index)
        })
        .collect();
    format!("{{ {} }}", v.join(", "))
}

#[test]
fn tpm_pcr_extended_after_keygen_denies_the_grant_and_explain_names_it() {
    let env = Env::require();
    let dir = TestDir::new(&env, "tpm-pcr");
    let t = TpmSetup::new(&env, &dir);
    t.keygen(&env, &dir);
    let good = t
        .direct()
        .pcr_read(&[0, 1, 2, 3, 4, 5, 6, 7])
        .expect("read PCRs");
    t.policy(&format!(
        "[[rule]]\nname = \"known-boot\"\nsigned_by = [\"this-host\"]\n\
         attested = [{}]\ngrant = [\"same-pid\"]\n",
        pcr_set(&good)
    ));
    env.verify_as(Who::Root, &dir, &["policy", "check"])
        .assert_code(exit::OK, "the policy with an attested rule is valid");

    let (_c, before, _) = dump_counter(&env, &dir, "before");
    let run = env.verify(&dir, &["explain", "--json", path_str(&before)]);
    run.assert_code(exit::OK, "explain");
    let v = json(&run);
    assert_eq!(v["grants"]["same-pid"]["granted"], true, "{run}");
    assert_eq!(v["grants"]["same-pid"]["rule"], "known-boot", "{run}");

    // Something is measured into PCR 7 after keygen: the boot state the
    // policy allows is gone.
    t.direct().pcr_extend(7, &[0x77; 32]).expect("extend PCR 7");
    let (_c, after, _) = dump_counter(&env, &dir, "after");
    let run = env.verify(&dir, &["explain", "--json", path_str(&after)]);
    run.assert_code(exit::OK, "explain");
    let v = json(&run);
    let sp = &v["grants"]["same-pid"];
    assert_eq!(sp["granted"], false, "{run}");
    let reason = sp["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("attested") && reason.contains("PCR 7"),
        "{run}"
    );
    let run = env.verify(&dir, &["explain", path_str(&after)]);
    assert!(run.stdout.contains("PCR 7 is"), "{run}");
    // Several allowed sets (a kernel update): the new state can be added.
    let now = t
        .direct()
        .pcr_read(&[0, 1, 2, 3, 4, 5, 6, 7])
        .expect("read PCRs");
    t.policy(&format!(
        "[[rule]]\nname = \"known-boot\"\nsigned_by = [\"this-host\"]\n\
         attested = [{}, {}]\ngrant = [\"same-pid\"]\n",
        pcr_set(&good),
        pcr_set(&now)
    ));
    let run = env.verify(&dir, &["explain", "--json", path_str(&after)]);
    assert_eq!(json(&run)["grants"]["same-pid"]["granted"], true, "{run}");
}

#[test]
fn tpm_unreachable_at_dump_fails_or_falls_back_to_the_file_key() {
    let env = Env::require();
    let dir = TestDir::new(&env, "tpm-down");
    let mut t = TpmSetup::new(&env, &dir);
    t.keygen(&env, &dir);
    t.tpm.stop();
    let mut c = Counter::start(&env, &dir, Who::User(&env.user), &dir.work, "c");
    let pid = c.proc.pid.to_string();
    let image = dir.work.join("c.ckpt");
    let run = env.sign(&dir, &["dump", "--pid", &pid, "-o", path_str(&image)]);
    run.assert_code(exit::DUMP_FAILED, "dump with the TPM unreachable");
    assert!(
        run.stderr.contains("TPM"),
        "the refusal names the TPM\n{run}"
    );
    c.proc
        .assert_untouched("a dump that fails on the TPM leaves the target running");
    assert!(!image.exists(), "no image");
    assert_eq!(
        TestDir::list(&dir.work)
            .iter()
            .filter(|n| n.contains(".tmp"))
            .count(),
        0
    );

    // fallback = "file": the file key signs, the image says so (its key),
    // and it carries no quote.
    t.config("key = \"tpm\"\nfallback = \"file\"", "");
    let (_host_line, host_id) = env.host_key_id(&dir);
    let run = env.dump_ok(&dir, c.proc.pid, &image, &[]);
    assert!(run.stderr.contains("fallback"), "{run}");
    c.proc.wait_gone("dump kills the target");
    let (run, v) = env.verify_json(&dir, &image);
    run.assert_code(exit::OK, "verify of the fallback image");
    assert_eq!(v["key_id"], host_id, "{run}");
    assert!(v["attestation"].is_null(), "{run}");
}

#[test]
fn tpm_hostile_tss2_environment_creates_no_file() {
    let env = Env::require();
    let dir = TestDir::new(&env, "tpm-env");
    let t = TpmSetup::new(&env, &dir);
    let hostile = dir.dir("hostile", 0o777, None);
    let logs: Vec<PathBuf> = (0..4)
        .map(|i| hostile.join(format!("tss2-{i}.log")))
        .collect();
    let poison = |cmd: &mut std::process::Command, log: &Path| {
        cmd.env("TSS2_LOGFILE", log)
            .env("TSS2_LOG", "all+trace")
            .env("TSS2_TCTI", "device:/dev/null")
            .env("TPM2TOOLS_TCTI", "device:/dev/null")
            .env("TCTI", "device:/dev/null");
    };
    // keygen --tpm as root, pubkey --tpm and a TPM dump as the user.
    let mut cmd = env.command(Who::Root, &env.sign_path());
    cmd.args(["keygen", "--tpm"]).current_dir(&dir.work);
    poison(&mut cmd, &logs[0]);
    dir.run(cmd)
        .assert_code(exit::OK, "keygen --tpm with TSS2_* set");
    let mut cmd = env.command(Who::User(&env.user), &env.sign_path());
    cmd.args(["pubkey", "--tpm"]).current_dir(&dir.work);
    poison(&mut cmd, &logs[1]);
    dir.run(cmd)
        .assert_code(exit::OK, "pubkey --tpm with TSS2_* set");
    let mut c = Counter::start(&env, &dir, Who::User(&env.user), &dir.work, "c");
    let image = dir.work.join("c.ckpt");
    let mut cmd = env.command(Who::User(&env.user), &env.sign_path());
    cmd.args([
        "dump",
        "--pid",
        &c.proc.pid.to_string(),
        "-o",
        path_str(&image),
    ])
    .current_dir(&dir.work);
    poison(&mut cmd, &logs[2]);
    let run = dir.run(cmd);
    run.assert_code(
        exit::OK,
        "a TPM dump with TSS2_* set (the TCTI is the configured one)",
    );
    c.proc.wait_gone("dump kills the target");
    let mut cmd = env.command(Who::User(&env.user), &env.verify_path());
    cmd.args(["verify", path_str(&image)])
        .current_dir(&dir.work);
    poison(&mut cmd, &logs[3]);
    dir.run(cmd).assert_code(exit::OK, "verify with TSS2_* set");
    for l in &logs {
        assert!(!l.exists(), "{} was created", l.display());
    }
    assert_eq!(
        TestDir::list(&hostile),
        Vec::<String>::new(),
        "nothing created"
    );
    drop(t);
}
