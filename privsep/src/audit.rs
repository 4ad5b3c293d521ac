//! The audit log: one structured line per dump and per restore (including
//! refusals and failures), sent to syslog, facility `authpriv`.
//!
//! Wire format (RFC 3164 style, as glibc's `syslog(3)` sends it, without the
//! timestamp, which the syslog daemon adds):
//!
//! ```text
//! <85>ckpt-verify[4242]: event=restore caller_uid=1001 image_id=... outcome=ok ...
//! ```
//!
//! `<85>` is authpriv.notice (successes), `<84>` authpriv.warning
//! (refusals and failures). Fields are `key=value`, separated by one space,
//! in the order the helper set them. A value that is empty is written `-`;
//! a value holding a space, `"`, `\`, `=` or any control character is
//! written in double quotes with `\"`, `\\`, `\n`, `\t` and `\xNN`
//! escapes, so one record is always one line and cannot forge another
//! field. Values are cut at [`MAX_VALUE_CHARS`] characters.
//!
//! The socket is fixed at build time: [`SYSLOG_SOCKET`] is `/dev/log`
//! unless the build environment sets `CKPT_SYSLOG_SOCKET` (the test suite
//! points it at a socket it listens on). Nothing at run time can change it.

use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The syslog socket (build time: `CKPT_SYSLOG_SOCKET`, default `/dev/log`).
pub const SYSLOG_SOCKET: &str = match option_env!("CKPT_SYSLOG_SOCKET") {
    Some(p) => p,
    None => "/dev/log",
};

/// syslog facility `authpriv` (10).
pub const FACILITY_AUTHPRIV: u8 = 10;

/// Longest value written (characters, before escaping).
pub const MAX_VALUE_CHARS: usize = 512;

/// How long a send may block (a syslog daemon that does not read).
const SEND_TIMEOUT: Duration = Duration::from_secs(2);

/// Severity of a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    /// authpriv.warning: a refusal or a failure.
    Warning = 4,
    /// authpriv.notice: a success.
    Notice = 5,
}

impl Severity {
    /// The `<PRI>` value: facility * 8 + severity.
    pub fn priority(self) -> u8 {
        FACILITY_AUTHPRIV * 8 + self as u8
    }
}

/// Why a record could not be sent.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// Creating the socket failed.
    #[error("cannot create a socket for the audit log")]
    Socket(#[source] std::io::Error),
    /// Connecting to the syslog socket failed (no syslog daemon).
    #[error("cannot connect to the audit log {}", path.display())]
    Connect {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Sending the record failed.
    #[error("cannot send to the audit log {}", path.display())]
    Send {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// One audit record: the event name, then `key=value` fields in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    fields: Vec<(&'static str, String)>,
}

impl Record {
    /// A record for `event` (`restore` or `dump`).
    pub fn new(event: &str) -> Record {
        Record {
            fields: vec![("event", event.to_owned())],
        }
    }

    /// Set `key` to `value`: replaces an earlier value in place, or appends.
    pub fn set(&mut self, key: &'static str, value: impl Into<String>) -> &mut Record {
        let value = value.into();
        match self.fields.iter_mut().find(|(k, _)| *k == key) {
            Some(slot) => slot.1 = value,
            None => self.fields.push((key, value)),
        }
        self
    }

    /// The value of `key`, if set.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The fields as one line: `event=restore caller_uid=1001 ...`.
    pub fn message(&self) -> String {
        self.fields
            .iter()
            .map(|(k, v)| format!("{k}={}", quote(v)))
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// The datagram: `<PRI>prog[pid]: message`.
    pub fn datagram(&self, prog: &str, pid: u32, severity: Severity) -> String {
        format!("<{}>{prog}[{pid}]: {}", severity.priority(), self.message())
    }
}

/// A value as written in a record (see the module documentation).
pub fn quote(value: &str) -> String {
    if value.is_empty() {
        return "-".to_owned();
    }
    let mut v: String = value.chars().take(MAX_VALUE_CHARS).collect();
    if v.len() < value.len() {
        v.push_str("...");
    }
    let plain = !v
        .chars()
        .any(|c| c == ' ' || c == '"' || c == '\\' || c == '=' || c.is_control());
    if plain {
        return v;
    }
    let mut out = String::with_capacity(v.len() + 2);
    out.push('"');
    for c in v.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => {
                let mut buf = [0u8; 4];
                for b in c.encode_utf8(&mut buf).bytes() {
                    out.push_str(&format!("\\x{b:02x}"));
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A connection to the syslog socket.
#[derive(Debug)]
pub struct AuditLog {
    sock: UnixDatagram,
    path: PathBuf,
}

impl AuditLog {
    /// Connect to [`SYSLOG_SOCKET`]. Succeeds only when a syslog daemon
    /// (or the test suite) is listening there.
    pub fn connect() -> Result<AuditLog, AuditError> {
        AuditLog::connect_to(Path::new(SYSLOG_SOCKET))
    }

    /// Connect to `path` (tests; the helpers use [`AuditLog::connect`]).
    pub fn connect_to(path: &Path) -> Result<AuditLog, AuditError> {
        let sock = UnixDatagram::unbound().map_err(AuditError::Socket)?;
        sock.connect(path).map_err(|source| AuditError::Connect {
            path: path.to_owned(),
            source,
        })?;
        sock.set_write_timeout(Some(SEND_TIMEOUT))
            .map_err(AuditError::Socket)?;
        Ok(AuditLog {
            sock,
            path: path.to_owned(),
        })
    }

    /// Send `record` as `prog` with this process's pid.
    pub fn send(&self, prog: &str, record: &Record, severity: Severity) -> Result<(), AuditError> {
        let line = record.datagram(prog, std::process::id(), severity);
        let sent = loop {
            // A caught signal interrupts a send with a timeout (EINTR even
            // with SA_RESTART): try again, the record must get through.
            match self.sock.send(line.as_bytes()) {
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                r => {
                    break r.map_err(|source| AuditError::Send {
                        path: self.path.clone(),
                        source,
                    })?
                }
            }
        };
        if sent != line.len() {
            return Err(AuditError::Send {
                path: self.path.clone(),
                source: std::io::Error::from(std::io::ErrorKind::WriteZero),
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn quoting() {
        assert_eq!(quote(""), "-");
        assert_eq!(quote("abc:def,ghi"), "abc:def,ghi");
        assert_eq!(quote("two words"), "\"two words\"");
        assert_eq!(quote("a=b"), "\"a=b\"");
        assert_eq!(quote("x\" forged=1\nnext"), "\"x\\\" forged=1\\nnext\"");
        assert_eq!(quote("back\\slash"), "\"back\\\\slash\"");
        assert_eq!(quote("bell\x07"), "\"bell\\x07\"");
        let long = "a".repeat(MAX_VALUE_CHARS + 10);
        assert_eq!(quote(&long).len(), MAX_VALUE_CHARS + 3);
    }

    #[test]
    fn record_line() {
        let mut r = Record::new("restore");
        r.set("caller_uid", "1001")
            .set("grants", "")
            .set("outcome", "refused")
            .set("reason", "policy refusal: no rule");
        r.set("grants", "credentials:r1,exe-link:r1");
        assert_eq!(r.get("outcome"), Some("refused"));
        assert_eq!(
            r.datagram("ckpt-verify", 42, Severity::Warning),
            "<84>ckpt-verify[42]: event=restore caller_uid=1001 grants=credentials:r1,exe-link:r1 \
             outcome=refused reason=\"policy refusal: no rule\""
        );
        assert_eq!(Severity::Notice.priority(), 85);
    }

    #[test]
    fn sends_one_datagram() {
        let dir = std::env::temp_dir().join(format!("ckpt-audit-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir(&dir).unwrap();
        let path = dir.join("log.sock");
        let server = UnixDatagram::bind(&path).unwrap();
        let log = AuditLog::connect_to(&path).unwrap();
        let mut r = Record::new("dump");
        r.set("outcome", "ok");
        log.send("ckpt-sign", &r, Severity::Notice).unwrap();
        let mut buf = [0u8; 1024];
        let n = server.recv(&mut buf).unwrap();
        let got = std::str::from_utf8(&buf[..n]).unwrap();
        assert_eq!(
            got,
            format!(
                "<85>ckpt-sign[{}]: event=dump outcome=ok",
                std::process::id()
            )
        );
        drop(server);
        std::fs::remove_file(&path).unwrap();
        assert!(matches!(
            AuditLog::connect_to(&path),
            Err(AuditError::Connect { .. })
        ));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
