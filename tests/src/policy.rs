//! The admin policy and the one-shot ledger, for the policy and grant tests.
//!
//! `<sysconfdir>/policy.toml`, `<sysconfdir>/policy.d/` and
//! `<statedir>/one-shot/` are shared by every test of the run (the helpers'
//! paths are fixed at build time). A test that writes a policy takes
//! [`PolicyGuard::lock`] first and keeps it for its whole length: it holds
//! the same file lock as the TPM tests (`tests/tests/tpm.rs`), which write
//! `ckpt.toml` and a drop-in, so no two such tests ever overlap, in one test
//! binary or across binaries run by hand. The guard starts from the default
//! (no policy file, no drop-in) and puts it back when dropped, even when the
//! test panics: it removes `policy.toml`, every drop-in, `policy.d` if it
//! created it, and every ledger entry that appeared while it was held, and
//! resets the modes and owners tests change.
//!
//! Also here: `explain --json` and audit-record helpers shared by the
//! policy tests.

use std::collections::BTreeSet;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::syslog::{parse, Record, Syslog};
use crate::{exit, path_str, Env, Run, TestDir, Who, WAIT};

/// The lock file shared with the TPM tests (they also change
/// `<sysconfdir>`).
pub const CONFIG_LOCK: &str = "/tmp/ckpt-tpm-tests.lock";

/// The state directory the tests were built for (the helpers are built in
/// the same cargo invocation with the same `CKPT_STATEDIR`).
pub fn statedir() -> PathBuf {
    PathBuf::from(option_env!("CKPT_STATEDIR").unwrap_or("/var/lib/ckpt"))
}

/// The first line of every policy file a test writes.
const MARKER: &str =
    "# written by the ckpt end-to-end tests (tests/src/policy.rs); removed when the test ends\n";

/// Holds the configuration lock; the policy is the default again when it
/// is dropped. See the module documentation.
pub struct PolicyGuard {
    _lock: nix::fcntl::Flock<fs::File>,
    pub sysconfdir: PathBuf,
    pub statedir: PathBuf,
    created_dropin_dir: bool,
    created_ledger_dir: bool,
    ledger_before: BTreeSet<String>,
}

impl PolicyGuard {
    /// Takes the configuration lock (waiting for any other holder) and
    /// checks that the policy is the default: no `policy.toml`, no drop-in.
    /// Panics (the test cannot claim anything) when another policy is
    /// installed.
    pub fn lock(env: &Env) -> PolicyGuard {
        let file = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(CONFIG_LOCK)
            .unwrap_or_else(|e| panic!("open the configuration lock {CONFIG_LOCK}: {e}"));
        let lock = nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusive)
            .map_err(|(_, e)| e)
            .expect("take the configuration lock");
        let sysconfdir = env.sysconfdir.clone();
        let statedir = statedir();
        let policy = sysconfdir.join("policy.toml");
        if let Ok(text) = fs::read_to_string(&policy) {
            // Left by a test of ours that was killed: ours to remove.
            assert!(
                text.starts_with(MARKER),
                "{} exists and was not written by these tests: the policy tests need the \
                 default (empty) policy; remove it (or rerun scripts/test.sh)",
                policy.display()
            );
            fs::remove_file(&policy).expect("remove a stale test policy");
        }
        let dropins = sysconfdir.join("policy.d");
        let created_dropin_dir = !dropins.exists();
        if created_dropin_dir {
            fs::create_dir(&dropins).unwrap_or_else(|e| panic!("mkdir {}: {e}", dropins.display()));
        }
        fs::set_permissions(&dropins, fs::Permissions::from_mode(0o755)).expect("chmod policy.d");
        std::os::unix::fs::chown(&dropins, Some(0), Some(0)).expect("chown policy.d");
        for e in fs::read_dir(&dropins).expect("list policy.d") {
            let p = e.expect("policy.d entry").path();
            let text = fs::read_to_string(&p).unwrap_or_default();
            assert!(
                text.starts_with(MARKER),
                "{} exists and was not written by these tests: the policy tests need the \
                 default (empty) policy; remove it (or rerun scripts/test.sh)",
                p.display()
            );
            fs::remove_file(&p).expect("remove a stale test drop-in");
        }
        let ledger = statedir.join("one-shot");
        let created_ledger_dir = !ledger.exists();
        let ledger_before = ledger_entries(&ledger);
        PolicyGuard {
            _lock: lock,
            sysconfdir,
            statedir,
            created_dropin_dir,
            created_ledger_dir,
            ledger_before,
        }
    }

    pub fn policy_path(&self) -> PathBuf {
        self.sysconfdir.join("policy.toml")
    }

    pub fn dropin_dir(&self) -> PathBuf {
        self.sysconfdir.join("policy.d")
    }

    /// Writes `policy.toml`: root:root, mode 0644, `text` after a marker
    /// comment line (so line numbers in messages are `text`'s plus one).
    pub fn policy(&self, text: &str) -> PathBuf {
        let p = self.policy_path();
        write_root(&p, text);
        p
    }

    /// Writes a `policy.toml` of one rule, `name`, that grants `exe-link`
    /// to `user` for images this host signed: the way the tests get a
    /// restore built as root (a privileged build) with the caller's own
    /// credentials otherwise.
    pub fn grant_exe_link(&self, name: &str, user: &str) -> PathBuf {
        self.policy(&format!(
            "[[rule]]\n\
             name = {}\n\
             signed_by = [\"this-host\"]\n\
             caller = [{}]\n\
             grant = [\"exe-link\"]\n",
            toml_str(name),
            toml_str(&format!("user:{user}"))
        ))
    }

    /// Writes the drop-in `policy.d/NAME`: root:root, mode 0644, after the
    /// marker line.
    pub fn dropin(&self, name: &str, text: &str) -> PathBuf {
        let p = self.dropin_dir().join(name);
        write_root(&p, text);
        p
    }

    /// Back to the default policy (no file, no drop-in) while still locked.
    pub fn clear(&self) {
        let _ = fs::remove_file(self.policy_path());
        let d = self.dropin_dir();
        let _ = fs::set_permissions(&d, fs::Permissions::from_mode(0o755));
        let _ = std::os::unix::fs::chown(&d, Some(0), Some(0));
        if let Ok(rd) = fs::read_dir(&d) {
            for e in rd.flatten() {
                let _ = fs::remove_file(e.path());
            }
        }
    }

    /// `<statedir>/one-shot/<image id>`.
    pub fn ledger_entry(&self, image_id: &str) -> PathBuf {
        self.statedir.join("one-shot").join(image_id)
    }

    /// Removes the ledger entry of `image_id` (allows the image once more).
    pub fn forget(&self, image_id: &str) {
        let p = self.ledger_entry(image_id);
        match fs::remove_file(&p) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => panic!("remove {}: {e}", p.display()),
        }
    }
}

impl Drop for PolicyGuard {
    fn drop(&mut self) {
        self.clear();
        if self.created_dropin_dir {
            let _ = fs::remove_dir(self.dropin_dir());
        }
        let ledger = self.statedir.join("one-shot");
        if ledger.is_dir() {
            let _ = fs::set_permissions(&ledger, fs::Permissions::from_mode(0o700));
            let _ = std::os::unix::fs::chown(&ledger, Some(0), Some(0));
        }
        for name in ledger_entries(&ledger) {
            if !self.ledger_before.contains(&name) {
                let _ = fs::remove_file(ledger.join(&name));
            }
        }
        if self.created_ledger_dir {
            let _ = fs::remove_dir(&ledger);
        }
    }
}

fn ledger_entries(dir: &Path) -> BTreeSet<String> {
    match fs::read_dir(dir) {
        Ok(rd) => rd
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect(),
        Err(_) => BTreeSet::new(),
    }
}

fn write_root(path: &Path, text: &str) {
    let mut body = String::from(MARKER);
    body.push_str(text);
    fs::write(path, body).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    fs::set_permissions(path, fs::Permissions::from_mode(0o644)).expect("chmod policy file");
    std::os::unix::fs::chown(path, Some(0), Some(0)).expect("chown policy file");
}

/// A TOML basic string for `s` (test paths and names need no escapes
/// beyond what `{:?}` gives, and are checked to be plain).
pub fn toml_str(s: &str) -> String {
    assert!(
        s.chars().all(|c| !c.is_control() && c != '"' && c != '\\'),
        "{s:?} needs TOML escapes"
    );
    format!("\"{s}\"")
}

/// `ckpt-verify explain --json IMAGE` as `who`: exit 0 and one JSON object.
pub fn explain(env: &Env, dir: &TestDir, who: Who, image: &Path) -> (Run, Value) {
    let run = env.verify_as(who, dir, &["explain", "--json", path_str(image)]);
    run.assert_code(exit::OK, "explain --json");
    let v = serde_json::from_str(run.stdout.trim()).unwrap_or_else(|e| {
        panic!("explain --json must print one JSON object on stdout ({e})\n{run}")
    });
    (run, v)
}

/// Every privilege, in the order `explain` and the audit log list them.
pub const PRIVILEGES: [&str; 5] = [
    "credentials",
    "capabilities",
    "same-pid",
    "exe-link",
    "privileged-files",
];

/// Asserts `explain --json` grants `privilege` by `rule`.
pub fn assert_granted(v: &Value, run: &Run, privilege: &str, rule: &str) {
    let g = &v["grants"][privilege];
    assert_keys(g, &["granted", "one_shot", "origin", "rule"], run);
    assert_eq!(g["granted"], true, "{privilege} must be granted\n{run}");
    assert_eq!(g["rule"], rule, "{privilege} granted by rule {rule}\n{run}");
    let origin = g["origin"].as_str().unwrap_or_default();
    assert!(
        origin.contains("policy") && origin.contains(':'),
        "{privilege}: origin names the file and line, got {origin:?}\n{run}"
    );
}

/// Asserts `explain --json` denies `privilege` with `condition`, naming
/// `rule` (or no rule), with a reason containing every `words`.
pub fn assert_denied(
    v: &Value,
    run: &Run,
    privilege: &str,
    condition: &str,
    rule: Option<&str>,
    words: &[&str],
) {
    let g = &v["grants"][privilege];
    assert_keys(g, &["condition", "granted", "reason", "rule"], run);
    assert_eq!(g["granted"], false, "{privilege} must be denied\n{run}");
    assert_eq!(
        g["condition"], condition,
        "{privilege}: failing condition\n{run}"
    );
    match rule {
        Some(r) => assert_eq!(g["rule"], r, "{privilege}: closest rule\n{run}"),
        None => assert!(g["rule"].is_null(), "{privilege}: no rule\n{run}"),
    }
    let reason = g["reason"].as_str().unwrap_or_default();
    for w in words {
        assert!(
            reason.contains(w),
            "{privilege}: the reason {reason:?} must mention {w:?}\n{run}"
        );
    }
    if let Some(r) = rule {
        assert!(
            reason.contains(&format!("rule \"{r}\": {condition}: ")),
            "{privilege}: the reason {reason:?} must read `rule \"{r}\": {condition}: ...`\n{run}"
        );
    }
}

/// Field names of the restore audit record, in the documented order.
pub const RESTORE_FIELDS: [&str; 11] = [
    "event",
    "caller_uid",
    "image_id",
    "signer",
    "signer_name",
    "trusted",
    "grants",
    "denied",
    "outcome",
    "pid",
    "reason",
];

/// Field names of the dump audit record, in the documented order.
pub const DUMP_FIELDS: [&str; 8] = [
    "event",
    "caller_uid",
    "pid",
    "image_id",
    "signer",
    "signer_name",
    "outcome",
    "reason",
];

/// Asserts `r` has exactly the fields `keys`, in that order, and each of
/// `want` (field, value) exactly.
pub fn assert_record(r: &Record, keys: &[&str], want: &[(&str, &str)]) {
    let found: Vec<&str> = r.fields.keys().map(String::as_str).collect();
    let mut sorted: Vec<&str> = keys.to_vec();
    sorted.sort_unstable();
    assert_eq!(found, sorted, "the record's fields: {}", r.raw);
    // Order: each key's first occurrence as ` key=` in the raw line (the
    // only free text, `reason`, is last).
    let body = r
        .raw
        .split_once("]: ")
        .map_or(r.raw.as_str(), |(_, b)| b)
        .to_string();
    let body = format!(" {body}");
    let mut last = 0;
    for k in keys {
        let at = body
            .find(&format!(" {k}="))
            .unwrap_or_else(|| panic!("field {k} missing in {}", r.raw));
        assert!(at >= last, "field {k} out of order in {}", r.raw);
        last = at;
    }
    for (k, v) in want {
        assert_eq!(r.get(k), Some(*v), "field {k} of {}", r.raw);
    }
    assert!(!r.raw.contains('\n'), "one record is one line: {:?}", r.raw);
}

/// The owner and mode of `path` (for checks on the ledger).
pub fn owner_mode(path: &Path) -> (u32, u32, u32) {
    let md = fs::symlink_metadata(path).unwrap_or_else(|e| panic!("stat {}: {e}", path.display()));
    (md.uid(), md.gid(), md.mode() & 0o7777)
}

/// Waits (up to [`WAIT`]) for a record received after the first `before`
/// records (`log.raw().len()` taken before the command) that matches `pred`.
pub fn wait_new(log: &Syslog, before: usize, what: &str, pred: impl Fn(&Record) -> bool) -> Record {
    let find = || {
        log.raw()
            .iter()
            .skip(before)
            .filter_map(|r| parse(r))
            .find(|r| pred(r))
    };
    let start = std::time::Instant::now();
    loop {
        if let Some(r) = find() {
            return r;
        }
        if start.elapsed() > WAIT {
            panic!(
                "no new audit record for {what} within {WAIT:?}; received since:\n  {}",
                log.raw()
                    .iter()
                    .skip(before)
                    .cloned()
                    .collect::<Vec<_>>()
                    .join("\n  ")
            );
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

/// Asserts the JSON object `v` has exactly the keys `keys` (sorted).
pub fn assert_keys(v: &Value, keys: &[&str], run: &Run) {
    let mut found: Vec<&str> = v
        .as_object()
        .unwrap_or_else(|| panic!("expected a JSON object, got {v}\n{run}"))
        .keys()
        .map(String::as_str)
        .collect();
    found.sort_unstable();
    let mut want = keys.to_vec();
    want.sort_unstable();
    assert_eq!(found, want, "the keys of {v}\n{run}");
}

/// The top-level keys of `explain --json` for an intact image
/// (docs/POLICY.md, "What explain says").
pub const EXPLAIN_KEYS: [&str; 21] = [
    "schema",
    "image",
    "integrity",
    "image_id",
    "signed",
    "key_id",
    "trusted",
    "trust",
    "signer",
    "attestation",
    "caller",
    "mapping",
    "requester",
    "target",
    "exe",
    "host",
    "freshness",
    "grants",
    "decision",
    "restore",
    "notices",
];
