//! The host signing configuration: `<sysconfdir>/ckpt.toml`.
//!
//! ```toml
//! [signing]
//! key = "file"                 # "file" (keys/host.key) or "tpm" (keys/tpm.key)
//! fallback = "file"            # optional: sign with the file key when the TPM
//!                              # is unreachable (the image then has no quote)
//!
//! [tpm]
//! tcti = "device:/dev/tpmrm0"  # how to reach the TPM (libtss2 TCTI string)
//! pcrs = "sha256:0,1,2,3,4,5,6,7"   # PCRs every quote covers
//! attest = true                # quote every host-signed dump when an
//!                              # attestation key exists (keygen --tpm)
//! signing_handle = 0x81000c70  # persistent handles used by keygen --tpm
//! attestation_handle = 0x81000c71
//! ```
//!
//! Every key is optional; the values above are the defaults, except that
//! `fallback` is unset by default (a TPM failure fails the dump). An absent
//! file means all defaults.
//!
//! The file is trusted only when it and its directory are owned by root and
//! not writable by group or others; it is opened without following a
//! symbolic link. Parsing is strict: unknown keys are errors with the line.
//! Nothing here is ever taken from the environment or the command line.

use std::fs::{self, OpenOptions};
use std::io::{self, Read as _};
use std::os::unix::fs::{MetadataExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// Default TCTI: the kernel's TPM resource manager.
pub const DEFAULT_TCTI: &str = "device:/dev/tpmrm0";
/// Default persistent handle of the signing key (owner range).
pub const DEFAULT_SIGNING_HANDLE: u32 = 0x8100_0c70;
/// Default persistent handle of the attestation key (owner range).
pub const DEFAULT_ATTESTATION_HANDLE: u32 = 0x8100_0c71;
/// Default PCR selection: sha256 PCRs 0-7 (firmware, boot loader, secure
/// boot state on a PC).
pub const DEFAULT_PCRS: [u8; 8] = [0, 1, 2, 3, 4, 5, 6, 7];
/// Largest configuration file read.
pub const MAX_CONFIG_LEN: u64 = 64 * 1024;

/// Which host key signs dumps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KeySource {
    /// The ed25519 key in `keys/host.key`.
    File,
    /// The TPM-resident key recorded in `keys/tpm.key`.
    Tpm,
}

impl KeySource {
    /// `"file"` or `"tpm"`.
    pub fn name(self) -> &'static str {
        match self {
            KeySource::File => "file",
            KeySource::Tpm => "tpm",
        }
    }
}

/// The parsed configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostConfig {
    /// The key that signs host-signed dumps.
    pub key: KeySource,
    /// Sign with the file key when the TPM cannot be used.
    pub fallback_to_file: bool,
    /// The TCTI string for libtss2.
    pub tcti: String,
    /// PCR indices (sha256 bank) that quotes cover, ascending.
    pub pcrs: Vec<u8>,
    /// Quote host-signed dumps when an attestation key exists.
    pub attest: bool,
    /// Persistent handle for the signing key (keygen --tpm).
    pub signing_handle: u32,
    /// Persistent handle for the attestation key (keygen --tpm).
    pub attestation_handle: u32,
}

impl Default for HostConfig {
    fn default() -> Self {
        HostConfig {
            key: KeySource::File,
            fallback_to_file: false,
            tcti: DEFAULT_TCTI.to_owned(),
            pcrs: DEFAULT_PCRS.to_vec(),
            attest: true,
            signing_handle: DEFAULT_SIGNING_HANDLE,
            attestation_handle: DEFAULT_ATTESTATION_HANDLE,
        }
    }
}

/// Why the configuration cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// Opening, reading or inspecting the file or its directory failed.
    #[error("{}: cannot {op}", path.display())]
    Io {
        path: PathBuf,
        op: &'static str,
        #[source]
        source: io::Error,
    },
    /// Not a regular file (or directory).
    #[error("{}: is not a {expected}", path.display())]
    WrongType {
        path: PathBuf,
        expected: &'static str,
    },
    /// Not owned by root.
    #[error("{}: owned by uid {uid}, must be owned by root", path.display())]
    BadOwner { path: PathBuf, uid: u32 },
    /// Writable by group or others.
    #[error("{}: mode {mode:04o} is writable by group or others", path.display())]
    BadMode { path: PathBuf, mode: u32 },
    /// Larger than [`MAX_CONFIG_LEN`].
    #[error("{}: too large (at most {MAX_CONFIG_LEN} bytes)", path.display())]
    TooLarge { path: PathBuf },
    /// TOML syntax, an unknown key or a wrong type.
    #[error("{}:{line}: {message}", path.display())]
    Syntax {
        path: PathBuf,
        line: usize,
        message: String,
    },
    /// A value that is not valid.
    #[error("{}: {field}: {reason}", path.display())]
    Invalid {
        path: PathBuf,
        field: &'static str,
        reason: String,
    },
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Raw {
    #[serde(default)]
    signing: RawSigning,
    #[serde(default)]
    tpm: RawTpm,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawSigning {
    key: Option<KeySource>,
    fallback: Option<KeySource>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawTpm {
    tcti: Option<String>,
    pcrs: Option<String>,
    attest: Option<bool>,
    signing_handle: Option<u32>,
    attestation_handle: Option<u32>,
}

/// Parses the configuration text; `origin` names the file in errors.
pub fn parse(text: &str, origin: &Path) -> Result<HostConfig, ConfigError> {
    let raw: Raw = toml::from_str(text).map_err(|e| {
        let line = e.span().map_or(0, |s| {
            text.get(..s.start).unwrap_or("").matches('\n').count() + 1
        });
        ConfigError::Syntax {
            path: origin.to_owned(),
            line,
            message: e.message().trim_end().to_owned(),
        }
    })?;
    let invalid = |field, reason: String| ConfigError::Invalid {
        path: origin.to_owned(),
        field,
        reason,
    };
    let mut c = HostConfig::default();
    if let Some(k) = raw.signing.key {
        c.key = k;
    }
    match raw.signing.fallback {
        None => {}
        Some(KeySource::File) => c.fallback_to_file = true,
        Some(KeySource::Tpm) => {
            return Err(invalid(
                "signing.fallback",
                "only \"file\" can be a fallback".to_owned(),
            ))
        }
    }
    if let Some(t) = raw.tpm.tcti {
        if t.is_empty() || t.len() > 256 || t.chars().any(|ch| ch.is_control()) {
            return Err(invalid("tpm.tcti", format!("{t:?} is not a TCTI string")));
        }
        c.tcti = t;
    }
    if let Some(p) = raw.tpm.pcrs {
        c.pcrs = parse_pcrs(&p).map_err(|r| invalid("tpm.pcrs", r))?;
    }
    if let Some(a) = raw.tpm.attest {
        c.attest = a;
    }
    for (field, value, slot) in [
        (
            "tpm.signing_handle",
            raw.tpm.signing_handle,
            &mut c.signing_handle,
        ),
        (
            "tpm.attestation_handle",
            raw.tpm.attestation_handle,
            &mut c.attestation_handle,
        ),
    ] {
        if let Some(h) = value {
            if !(0x8100_0000..0x8180_0000).contains(&h) {
                return Err(invalid(
                    field,
                    format!("{h:#x} is not an owner or endorsement persistent handle (0x81000000-0x817fffff)"),
                ));
            }
            *slot = h;
        }
    }
    if c.signing_handle == c.attestation_handle {
        return Err(invalid(
            "tpm.attestation_handle",
            "must differ from tpm.signing_handle".to_owned(),
        ));
    }
    Ok(c)
}

/// `sha256:0,1,2` (ranges `0-7` allowed) to ascending, distinct indices.
pub fn parse_pcrs(s: &str) -> Result<Vec<u8>, String> {
    let list = s.strip_prefix("sha256:").ok_or_else(|| {
        format!("{s:?}: expected sha256:<indices>, e.g. \"sha256:0,1,2,3,4,5,6,7\"")
    })?;
    let mut out = Vec::new();
    for part in list.split(',') {
        let num = |t: &str| {
            t.trim()
                .parse::<u8>()
                .ok()
                .filter(|&n| n < ckpt_keys::quote::MAX_PCRS)
                .ok_or_else(|| format!("{s:?}: {t:?} is not a PCR index (0-23)"))
        };
        let (a, b) = match part.split_once('-') {
            Some((a, b)) => (num(a)?, num(b)?),
            None => {
                let n = num(part)?;
                (n, n)
            }
        };
        if a > b {
            return Err(format!("{s:?}: range {part:?} is backwards"));
        }
        out.extend(a..=b);
    }
    out.sort_unstable();
    out.dedup();
    Ok(out)
}

/// Loads `path`: all defaults when it does not exist; otherwise it and its
/// directory must be root-owned and not writable by group or others.
pub fn load(path: &Path) -> Result<HostConfig, ConfigError> {
    load_owned_by(path, 0)
}

fn io_err<'a>(path: &'a Path, op: &'static str) -> impl FnOnce(io::Error) -> ConfigError + 'a {
    move |source| ConfigError::Io {
        path: path.to_owned(),
        op,
        source,
    }
}

fn check_owner_mode(path: &Path, meta: &fs::Metadata, owner: u32) -> Result<(), ConfigError> {
    if meta.uid() != owner {
        return Err(ConfigError::BadOwner {
            path: path.to_owned(),
            uid: meta.uid(),
        });
    }
    let mode = meta.mode() & 0o7777;
    if mode & 0o022 != 0 {
        return Err(ConfigError::BadMode {
            path: path.to_owned(),
            mode,
        });
    }
    Ok(())
}

pub(crate) fn load_owned_by(path: &Path, owner: u32) -> Result<HostConfig, ConfigError> {
    if let Some(dir) = path.parent() {
        let meta = fs::symlink_metadata(dir).map_err(io_err(dir, "inspect"))?;
        if !meta.is_dir() {
            return Err(ConfigError::WrongType {
                path: dir.to_owned(),
                expected: "directory",
            });
        }
        check_owner_mode(dir, &meta, owner)?;
    }
    let mut file = match OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(HostConfig::default()),
        Err(e) => return Err(io_err(path, "open")(e)),
    };
    let meta = file.metadata().map_err(io_err(path, "inspect"))?;
    if !meta.is_file() {
        return Err(ConfigError::WrongType {
            path: path.to_owned(),
            expected: "regular file",
        });
    }
    check_owner_mode(path, &meta, owner)?;
    let mut bytes = Vec::new();
    (&mut file)
        .take(MAX_CONFIG_LEN + 1)
        .read_to_end(&mut bytes)
        .map_err(io_err(path, "read"))?;
    if bytes.len() as u64 > MAX_CONFIG_LEN {
        return Err(ConfigError::TooLarge {
            path: path.to_owned(),
        });
    }
    let text = String::from_utf8(bytes).map_err(|_| ConfigError::Invalid {
        path: path.to_owned(),
        field: "file",
        reason: "not UTF-8 text".to_owned(),
    })?;
    parse(&text, path)
}

#[cfg(test)]
#[allow(clippy::expect_used, clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    fn p() -> &'static Path {
        Path::new("ckpt.toml")
    }

    #[test]
    fn defaults_and_design_example() {
        assert_eq!(parse("", p()).unwrap(), HostConfig::default());
        let c = parse(
            "[signing]\nkey = \"file\"                                  # or \"tpm\"\n\
             [tpm]\ntcti = \"device:/dev/tpmrm0\"\npcrs = \"sha256:0,1,2,3,4,5,6,7\"\n",
            p(),
        )
        .unwrap();
        assert_eq!(c, HostConfig::default());
        let c = parse(
            "[signing]\nkey = \"tpm\"\nfallback = \"file\"\n[tpm]\n\
             tcti = \"swtpm:host=127.0.0.1,port=2321\"\npcrs = \"sha256:7,0-2,16\"\n\
             attest = false\nsigning_handle = 0x81000100\nattestation_handle = 0x81000101\n",
            p(),
        )
        .unwrap();
        assert_eq!(c.key, KeySource::Tpm);
        assert!(c.fallback_to_file);
        assert_eq!(c.tcti, "swtpm:host=127.0.0.1,port=2321");
        assert_eq!(c.pcrs, vec![0, 1, 2, 7, 16]);
        assert!(!c.attest);
        assert_eq!(c.signing_handle, 0x8100_0100);
    }

    #[test]
    fn strict() {
        let e = |t: &str| parse(t, p()).unwrap_err().to_string();
        assert!(e("[signing]\nkey = \"hsm\"\n").starts_with("ckpt.toml:2:"));
        assert!(e("[signing]\nfallback = \"tpm\"\n").contains("fallback"));
        assert!(e("[tpm]\nfoo = 1\n").contains("foo"));
        assert!(e("[other]\n").contains("other"));
        assert!(e("[tpm]\npcrs = \"0,1\"\n").contains("sha256:"));
        assert!(e("[tpm]\npcrs = \"sha256:24\"\n").contains("PCR index"));
        assert!(e("[tpm]\npcrs = \"sha256:3-1\"\n").contains("backwards"));
        assert!(e("[tpm]\npcrs = \"sha256:\"\n").contains("PCR index"));
        assert!(e("[tpm]\nsigning_handle = 0x80000001\n").contains("persistent handle"));
        assert!(e("[tpm]\nattestation_handle = 0x81000c70\n").contains("must differ"));
        assert!(e("[tpm]\ntcti = \"\"\n").contains("TCTI"));
    }

    #[test]
    fn file_checks() {
        let mut r = [0u8; 8];
        getrandom::getrandom(&mut r).unwrap();
        let dir = std::env::temp_dir().join(format!("ckpt-tpm-cfg-{:x}", u64::from_ne_bytes(r)));
        fs::create_dir(&dir).unwrap();
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
        let owner = fs::metadata(&dir).unwrap().uid();
        let path = dir.join("ckpt.toml");
        assert_eq!(load_owned_by(&path, owner).unwrap(), HostConfig::default());
        fs::write(&path, "[signing]\nkey = \"tpm\"\n").unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        assert_eq!(load_owned_by(&path, owner).unwrap().key, KeySource::Tpm);
        fs::set_permissions(&path, fs::Permissions::from_mode(0o664)).unwrap();
        assert!(matches!(
            load_owned_by(&path, owner),
            Err(ConfigError::BadMode { .. })
        ));
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        assert!(matches!(
            load_owned_by(&path, owner + 1),
            Err(ConfigError::BadOwner { .. })
        ));
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o777)).unwrap();
        assert!(matches!(
            load_owned_by(&path, owner),
            Err(ConfigError::BadMode { .. })
        ));
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
        let link = dir.join("link.toml");
        std::os::unix::fs::symlink(&path, &link).unwrap();
        assert!(matches!(
            load_owned_by(&link, owner),
            Err(ConfigError::Io { .. })
        ));
        let _ = fs::remove_dir_all(&dir);
    }
}
