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
    assert_no_image_left(&dir, &image);

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

// ---------------------------------------------------------------------------
// The TPM agent (ckpt-tpm-agent): ckpt-sign does not link libtss2, starts
// the agent as root only for the TPM, and refuses an agent file others
// could have replaced.

/// The installed agent: `<prefix>/lib/ckpt/ckpt-tpm-agent` (the helpers are
/// in `<prefix>/bin`; scripts/test.sh builds them with
/// `CKPT_LIBEXECDIR=<prefix>/lib/ckpt`).
fn agent_path(env: &Env) -> PathBuf {
    env.bin
        .parent()
        .expect("the helpers' directory has a parent")
        .join("lib/ckpt/ckpt-tpm-agent")
}

/// The shared libraries an installed program names in its dynamic section.
fn needed(program: &Path) -> Vec<String> {
    let out = std::process::Command::new("readelf")
        .arg("-d")
        .arg(program)
        .output()
        .expect("run readelf (binutils)");
    assert!(
        out.status.success(),
        "readelf -d {}: {}",
        program.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.contains("(NEEDED)"))
        .filter_map(|l| Some(l.split_once('[')?.1.split_once(']')?.0.to_owned()))
        .collect()
}

#[test]
fn tpm_ckpt_sign_does_not_link_libtss2_or_libcrypto_and_the_agent_does() {
    let env = Env::require();
    let sign = needed(&env.sign_path());
    assert!(
        sign.iter().any(|l| l.starts_with("libc.so")),
        "readelf shows ckpt-sign's NEEDED entries: {sign:?}"
    );
    for lib in &sign {
        assert!(
            !lib.starts_with("libtss2") && !lib.starts_with("libcrypto"),
            "ckpt-sign must not link {lib} (only ckpt-tpm-agent does): {sign:?}"
        );
    }
    let agent = needed(&agent_path(&env));
    assert!(
        agent.iter().any(|l| l.starts_with("libtss2-esys")),
        "the TPM agent links libtss2-esys: {agent:?}"
    );
}

#[test]
fn tpm_agent_run_directly_by_a_user_or_not_on_a_socket_refuses() {
    let env = Env::require();
    let dir = TestDir::new(&env, "tpm-agent-direct");
    let agent = agent_path(&env);
    let meta = fs::metadata(&agent).expect("the agent is installed");
    assert_eq!(
        meta.permissions().mode() & 0o7777,
        0o755,
        "installed 0755, not setuid"
    );
    let mut cmd = env.command(Who::User(&env.user), &agent);
    cmd.current_dir(&dir.work);
    let run = dir.run(cmd);
    run.assert_code(exit::ACCESS_DENIED, "the agent run by a user");
    assert!(
        run.stderr.contains("refusing to run") && run.stderr.contains("only ckpt-sign"),
        "{run}"
    );
    assert_eq!(run.stdout, "", "{run}");
    // Root, but stdin is /dev/null, not ckpt-sign's socket.
    let mut cmd = env.command(Who::Root, &agent);
    cmd.current_dir(&dir.work);
    let run = dir.run(cmd);
    run.assert_code(exit::USAGE, "the agent run by root on a terminal or file");
    assert!(run.stderr.contains("not a socket"), "{run}");
    assert_eq!(run.stdout, "", "{run}");
}

/// Puts the agent's mode back when dropped.
struct ModeGuard(PathBuf);

impl Drop for ModeGuard {
    fn drop(&mut self) {
        let _ = fs::set_permissions(&self.0, fs::Permissions::from_mode(0o755));
    }
}

#[test]
fn tpm_agent_writable_by_group_is_refused_and_nothing_is_dumped() {
    let env = Env::require();
    let dir = TestDir::new(&env, "tpm-agent-mode");
    let t = TpmSetup::new(&env, &dir);
    t.keygen(&env, &dir);
    let agent = agent_path(&env);
    let _guard = ModeGuard(agent.clone());
    fs::set_permissions(&agent, fs::Permissions::from_mode(0o775)).unwrap();

    let mut c = Counter::start(&env, &dir, Who::User(&env.user), &dir.work, "c");
    let pid = c.proc.pid.to_string();
    let image = dir.work.join("c.ckpt");
    let run = env.sign(&dir, &["dump", "--pid", &pid, "-o", path_str(&image)]);
    run.assert_code(exit::DUMP_FAILED, "dump with a group-writable agent");
    assert!(
        run.stderr.contains("cannot start the TPM agent")
            && run.stderr.contains(path_str(&agent))
            && run.stderr.contains("writable by group or others"),
        "the refusal names the agent and why\n{run}"
    );
    c.proc
        .assert_untouched("a dump refused on the agent leaves the target running");
    assert_no_image_left(&dir, &image);

    let run = env.sign_as(Who::Root, &dir, &["keygen", "--tpm"]);
    run.assert_code(exit::OTHER, "keygen --tpm with a group-writable agent");
    assert!(run.stderr.contains("writable by group or others"), "{run}");
    drop(t);
}

/// A TCP server on a free port pair that accepts connections and never
/// answers: a TPM that hangs.
struct SilentTpm {
    port: u16,
    _listeners: [std::net::TcpListener; 2],
}

impl SilentTpm {
    fn start() -> SilentTpm {
        for _ in 0..200 {
            let a = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            let port = a.local_addr().expect("local addr").port();
            if port == u16::MAX {
                continue;
            }
            if let Ok(b) = std::net::TcpListener::bind(("127.0.0.1", port + 1)) {
                // The kernel completes connections into the backlog: the
                // TCTI connects, writes its command and waits forever.
                return SilentTpm {
                    port,
                    _listeners: [a, b],
                };
            }
        }
        panic!("no free loopback port pair");
    }
}

#[test]
fn tpm_agent_runs_as_root_alone_and_its_death_fails_the_dump_naming_the_step() {
    let env = Env::require();
    let dir = TestDir::new(&env, "tpm-agent-hang");
    let t = TpmSetup::new(&env, &dir);
    t.keygen(&env, &dir);
    let silent = SilentTpm::start();
    // The record is the real swtpm's; the TCTI now points at a TPM that
    // never answers, so the agent waits while we look at it.
    let path = t.sysconfdir.join("ckpt.toml");
    fs::write(
        &path,
        format!(
            "[signing]\nkey = \"tpm\"\n[tpm]\ntcti = \"swtpm:host=127.0.0.1,port={}\"\n",
            silent.port
        ),
    )
    .unwrap();
    let agent = agent_path(&env);
    let mut c = Counter::start(&env, &dir, Who::User(&env.user), &dir.work, "c");
    let pid = c.proc.pid.to_string();
    let image = dir.work.join("c.ckpt");
    let run = std::thread::scope(|s| {
        let dump = s.spawn(|| env.sign(&dir, &["dump", "--pid", &pid, "-o", path_str(&image)]));
        let mut found = None;
        ckpt_tests::wait_until(
            std::time::Duration::from_secs(20),
            "the TPM agent to start",
            || {
                found = ckpt_tests::procfs::pids().into_iter().find(|&p| {
                    ckpt_tests::procfs::cmdline(p)
                        .is_some_and(|c| c.first().map(String::as_str) == Some(path_str(&agent)))
                });
                found.is_some()
            },
        );
        let apid = found.expect("found above");
        // Look first, assert after the agent is gone (a failed assertion
        // here would leave the dump waiting on a silent TPM).
        let status = ckpt_tests::procfs::status(apid).unwrap_or_default();
        // Wait until it is blocked on the silent TPM (at its very start
        // the runtime briefly has /proc/self/maps open), then look.
        let snapshot = || {
            let fds: Vec<(String, PathBuf)> = TestDir::list(Path::new(&format!("/proc/{apid}/fd")))
                .into_iter()
                .map(|n| {
                    let l = fs::read_link(format!("/proc/{apid}/fd/{n}")).unwrap_or_default();
                    (n, l)
                })
                .collect();
            // Inodes of the agent's TCP sockets (its own connections to the TPM).
            let tcp: Vec<String> = ["tcp", "tcp6"]
                .iter()
                .flat_map(|f| {
                    fs::read_to_string(format!("/proc/{apid}/net/{f}"))
                        .unwrap_or_default()
                        .lines()
                        .skip(1)
                        .filter_map(|l| l.split_whitespace().nth(9).map(str::to_owned))
                        .collect::<Vec<_>>()
                })
                .collect();
            (fds, tcp)
        };
        let connected = |(fds, tcp): &(Vec<(String, PathBuf)>, Vec<String>)| {
            fds.iter().any(|(_, l)| {
                let l = l.to_string_lossy();
                tcp.iter().any(|i| l == format!("socket:[{i}]"))
            })
        };
        ckpt_tests::wait_until(
            std::time::Duration::from_secs(20),
            "the TPM agent to connect to the silent TPM",
            || connected(&snapshot()),
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
        let (fds, tcp) = snapshot();
        let environ = fs::read(format!("/proc/{apid}/environ")).unwrap_or_default();
        // Fields after the command: state ppid pgrp session tty_nr ...
        let stat = fs::read_to_string(format!("/proc/{apid}/stat")).unwrap_or_default();
        let fields: Vec<String> = stat
            .rsplit_once(')')
            .map(|(_, r)| r.split_whitespace().map(str::to_owned).collect())
            .unwrap_or_default();
        let mut kill = env.command(Who::User(&env.user), Path::new("/bin/kill"));
        kill.args(["-s", "KILL", &apid.to_string()]);
        let k = dir.run(kill);
        let survived = ckpt_tests::procfs::stat(apid).is_some_and(|s| s.state != 'Z');
        // Root kills it: the dump fails at once, naming the step.
        ckpt_tests::signal(apid, nix::sys::signal::Signal::SIGKILL);
        let run = dump.join().expect("the dump thread");
        for (k, want) in [("Uid", "0\t0\t0\t0"), ("Gid", "0\t0\t0\t0"), ("Groups", "")] {
            assert_eq!(
                status.get(k).map(String::as_str),
                Some(want),
                "{k} of the agent"
            );
        }
        // fds 0 and 1: one socket (to ckpt-sign); 2: /dev/null; any other:
        // a TCP connection the agent made to the TPM itself. Nothing of
        // ckpt-sign's (image, keys, directories) was inherited.
        let link = |n: &str| fds.iter().find(|(f, _)| f == n).map(|(_, l)| l.clone());
        assert!(
            link("0").is_some_and(|l| l.to_string_lossy().starts_with("socket:"))
                && link("0") == link("1"),
            "{fds:?}"
        );
        assert_eq!(
            link("2").as_deref(),
            Some(Path::new("/dev/null")),
            "{fds:?}"
        );
        for (n, l) in fds
            .iter()
            .filter(|(n, _)| !["0", "1", "2"].contains(&n.as_str()))
        {
            let inode = l
                .to_string_lossy()
                .strip_prefix("socket:[")
                .and_then(|r| r.strip_suffix(']'))
                .map(str::to_owned);
            assert!(
                inode.is_some_and(|i| tcp.contains(&i)),
                "fd {n} of the agent is {} (only its own TPM connections may be open)",
                l.display()
            );
        }
        assert_eq!(
            environ, b"TSS2_LOG=all+none\0",
            "the agent's whole environment"
        );
        assert_eq!(
            fields.get(3).map(String::as_str),
            Some(apid.to_string().as_str()),
            "the agent leads a session of its own: {stat}"
        );
        assert_eq!(
            fields.get(4).map(String::as_str),
            Some("0"),
            "no controlling terminal: {stat}"
        );
        assert_ne!(k.code, Some(0), "the caller's kill must fail\n{k}");
        assert!(survived, "the agent survived the caller's SIGKILL");
        run
    });
    run.assert_code(exit::DUMP_FAILED, "dump whose TPM agent was killed");
    assert!(
        run.stderr.contains("the TPM agent ended during") && run.stderr.contains("SIGKILL"),
        "the error names the agent's end and the step\n{run}"
    );
    c.proc
        .assert_untouched("a dump that fails on the TPM leaves the target running");
    assert_no_image_left(&dir, &image);
    drop(t);
}

/// A refused or failed dump left neither `image` nor a temporary file in
/// the test directory.
fn assert_no_image_left(dir: &TestDir, image: &Path) {
    assert!(!image.exists(), "no image at {}", image.display());
    let temps: Vec<String> = TestDir::list(&dir.work)
        .into_iter()
        .filter(|n| n.contains(".tmp"))
        .collect();
    assert!(temps.is_empty(), "temporary files left: {temps:?}");
}
