//! Identity of the running host and kernel, as recorded in an image's
//! signed metadata: machine id, boot id, hostname, kernel release and
//! machine architecture.
//!
//! Trust: these files and `uname(2)` are the kernel's and root's; their
//! content is still checked for shape (the ids must be 32 lowercase hex
//! characters) and read with a size cap.

use std::fs::File;
use std::io::{self, Read as _};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Where the machine id lives (systemd's `machine-id(5)`).
pub const MACHINE_ID_PATH: &str = "/etc/machine-id";
/// Where the kernel publishes the id of the current boot.
pub const BOOT_ID_PATH: &str = "/proc/sys/kernel/random/boot_id";

/// Largest id file read (a real one is 33 or 37 bytes).
const MAX_ID_FILE_LEN: u64 = 128;

/// Which machine, which boot.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct HostIdentity {
    /// `/etc/machine-id`: 32 lowercase hex characters.
    pub machine_id: String,
    /// The boot id, without dashes: 32 lowercase hex characters.
    pub boot_id: String,
    /// The host name (`uname -n`), informational.
    pub hostname: String,
}

/// Why the host's identity could not be established.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HostError {
    /// An identity file could not be read.
    #[error("cannot read {}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },
    /// An identity file does not hold a 128-bit id in hex.
    #[error("{} does not hold a 128-bit id in hex", path.display())]
    Malformed {
        /// The file.
        path: PathBuf,
    },
    /// `uname(2)` failed.
    #[error("uname failed")]
    Uname(#[source] nix::Error),
}

impl HostIdentity {
    /// The identity of the running host.
    pub fn current() -> Result<Self, HostError> {
        let uts = nix::sys::utsname::uname().map_err(HostError::Uname)?;
        Ok(HostIdentity {
            machine_id: read_id(Path::new(MACHINE_ID_PATH))?,
            boot_id: read_id(Path::new(BOOT_ID_PATH))?,
            hostname: uts.nodename().to_string_lossy().into_owned(),
        })
    }
}

/// The running kernel's release (`uname -r`).
pub fn kernel_release() -> Result<String, HostError> {
    let uts = nix::sys::utsname::uname().map_err(HostError::Uname)?;
    Ok(uts.release().to_string_lossy().into_owned())
}

/// The machine architecture (`uname -m`), e.g. `x86_64`.
pub fn arch() -> Result<String, HostError> {
    let uts = nix::sys::utsname::uname().map_err(HostError::Uname)?;
    Ok(uts.machine().to_string_lossy().into_owned())
}

/// Reads an id file: 32 hex digits, optionally with the dashes of the UUID
/// form, and a trailing newline. Returns it lowercase without dashes.
fn read_id(path: &Path) -> Result<String, HostError> {
    let read_err = |source| HostError::Read {
        path: path.to_path_buf(),
        source,
    };
    let mut text = String::new();
    File::open(path)
        .and_then(|f| f.take(MAX_ID_FILE_LEN).read_to_string(&mut text))
        .map_err(read_err)?;
    parse_id(&text).ok_or_else(|| HostError::Malformed {
        path: path.to_path_buf(),
    })
}

/// `"0123...ef\n"` or `"01234567-89ab-...\n"` → 32 lowercase hex characters.
fn parse_id(text: &str) -> Option<String> {
    let trimmed = text.trim_end_matches('\n');
    let id: String = trimmed.chars().filter(|&c| c != '-').collect();
    let dashes = trimmed.len() - id.len();
    let shape_ok =
        id.len() == 32 && (dashes == 0 || dashes == 4) && id.chars().all(|c| c.is_ascii_hexdigit());
    shape_ok.then(|| id.to_ascii_lowercase())
}

#[cfg(test)]
#[allow(clippy::expect_used, clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn id_shapes() {
        let hex = "0123456789abcdef0123456789abcdef";
        assert_eq!(parse_id(&format!("{hex}\n")).as_deref(), Some(hex));
        assert_eq!(
            parse_id("01234567-89AB-cdef-0123-456789abcdef\n").as_deref(),
            Some(hex)
        );
        assert_eq!(parse_id(""), None);
        assert_eq!(parse_id(&hex[..31]), None);
        assert_eq!(parse_id(&format!("{hex}0")), None);
        assert_eq!(parse_id(&format!("{}zz", &hex[..30])), None);
        assert_eq!(parse_id(&format!("{hex}\n\nx")), None);
    }

    #[test]
    fn current_host() {
        // /etc/machine-id may be missing in minimal containers; the boot id
        // and uname never are.
        let boot = read_id(Path::new(BOOT_ID_PATH)).expect("boot id");
        assert_eq!(boot.len(), 32);
        assert!(!kernel_release().expect("uname").is_empty());
        assert_eq!(arch().expect("uname"), std::env::consts::ARCH);
        if Path::new(MACHINE_ID_PATH).exists() {
            let h = HostIdentity::current().expect("host identity");
            assert_eq!(h.boot_id, boot);
        }
    }
}
