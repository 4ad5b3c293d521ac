//! Capture of the helpers' audit log.
//!
//! The helpers send one syslog datagram per dump and per restore to a socket
//! fixed when they are built: `/dev/log`, or `CKPT_SYSLOG_SOCKET` when set
//! at build time. `scripts/test.sh` builds everything (this crate too) with
//! `CKPT_SYSLOG_SOCKET` pointing into the test prefix; [`Syslog::start`]
//! binds that socket in the test process and keeps every record it
//! receives. It refuses to run against `/dev/log` (that would take the
//! system's syslog socket).

use std::collections::BTreeMap;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock};

use std::time::{Duration, Instant};

use crate::WAIT;

/// One received record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    /// The raw datagram (lossy UTF-8).
    pub raw: String,
    /// `<PRI>`: facility * 8 + severity.
    pub priority: u8,
    /// The tag before `[pid]:`, e.g. `ckpt-sign`.
    pub program: String,
    pub fields: BTreeMap<String, String>,
}

impl Record {
    pub fn get(&self, key: &str) -> Option<&str> {
        self.fields.get(key).map(String::as_str)
    }
}

/// Parses `<PRI>prog[pid]: key=value key="quoted \" value" ...`.
pub fn parse(raw: &str) -> Option<Record> {
    let rest = raw.strip_prefix('<')?;
    let (pri, rest) = rest.split_once('>')?;
    let (tag, mut body) = rest.split_once(": ")?;
    let program = tag.split('[').next()?.to_string();
    let mut fields = BTreeMap::new();
    loop {
        body = body.trim_start_matches(' ');
        if body.is_empty() {
            break;
        }
        let (key, after) = body.split_once('=')?;
        if key.is_empty() || key.contains(' ') {
            return None;
        }
        let (value, next) = if let Some(q) = after.strip_prefix('"') {
            let mut value = String::new();
            let mut chars = q.char_indices();
            let mut end = None;
            while let Some((i, c)) = chars.next() {
                match c {
                    '"' => {
                        end = Some(i + 1);
                        break;
                    }
                    '\\' => {
                        let (_, e) = chars.next()?;
                        match e {
                            'n' => value.push('\n'),
                            't' => value.push('\t'),
                            'x' => {
                                let h: String = [chars.next()?.1, chars.next()?.1].iter().collect();
                                value.push(char::from(u8::from_str_radix(&h, 16).ok()?));
                            }
                            other => value.push(other),
                        }
                    }
                    c => value.push(c),
                }
            }
            (value, &q[end?..])
        } else {
            let end = after.find(' ').unwrap_or(after.len());
            (after[..end].to_string(), &after[end..])
        };
        if !(next.is_empty() || next.starts_with(' ')) {
            return None;
        }
        fields.insert(key.to_string(), value);
        body = next;
    }
    Some(Record {
        raw: raw.to_string(),
        priority: pri.parse().ok()?,
        program,
        fields,
    })
}

/// The running capture (one per test process).
#[derive(Debug)]
pub struct Syslog {
    records: Arc<Mutex<Vec<String>>>,
}

impl Syslog {
    /// Binds the build-time syslog socket and starts receiving; panics when
    /// this build has no test socket.
    pub fn start() -> &'static Syslog {
        static CAPTURE: OnceLock<Result<Syslog, String>> = OnceLock::new();
        match CAPTURE.get_or_init(Syslog::bind) {
            Ok(s) => s,
            Err(why) => panic!("audit log capture cannot run: {why}"),
        }
    }

    fn bind() -> Result<Syslog, String> {
        let path = option_env!("CKPT_SYSLOG_SOCKET").ok_or(
            "this build has no CKPT_SYSLOG_SOCKET: build with it set (scripts/test.sh does) \
             so the helpers send their audit records where the test can read them",
        )?;
        let path = Path::new(path);
        if path == Path::new("/dev/log") {
            return Err(
                "CKPT_SYSLOG_SOCKET is /dev/log; the tests need a socket of their own".into(),
            );
        }
        if let Ok(md) = std::fs::symlink_metadata(path) {
            if !md.file_type().is_socket() {
                return Err(format!("{} exists and is not a socket", path.display()));
            }
            std::fs::remove_file(path)
                .map_err(|e| format!("remove stale {}: {e}", path.display()))?;
        }
        let sock = UnixDatagram::bind(path).map_err(|e| format!("bind {}: {e}", path.display()))?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o666))
            .map_err(|e| format!("chmod {}: {e}", path.display()))?;
        let records = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&records);
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 65536];
            while let Ok(n) = sock.recv(&mut buf) {
                let text = String::from_utf8_lossy(&buf[..n]).into_owned();
                sink.lock().unwrap_or_else(|p| p.into_inner()).push(text);
            }
        });
        Ok(Syslog { records })
    }

    /// Every record received so far, raw.
    pub fn raw(&self) -> Vec<String> {
        self.records
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Records matching `pred` (unparseable ones are never matched).
    pub fn matching(&self, pred: impl Fn(&Record) -> bool) -> Vec<Record> {
        self.raw()
            .iter()
            .filter_map(|r| parse(r))
            .filter(|r| pred(r))
            .collect()
    }

    /// Waits (up to [`WAIT`]) until a record matches `pred`, and returns it.
    pub fn wait_for(&self, what: &str, pred: impl Fn(&Record) -> bool) -> Record {
        let start = Instant::now();
        loop {
            if let Some(r) = self.matching(&pred).into_iter().next() {
                return r;
            }
            if start.elapsed() > WAIT {
                panic!(
                    "no audit record for {what} within {WAIT:?}; received:\n  {}",
                    self.raw().join("\n  ")
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_plain_and_quoted_fields() {
        let r = parse(r#"<84>ckpt-sign[42]: event=dump pid=7 image_id=- reason="a \"b\" c=d\nx\x01" outcome=refused"#)
            .expect("parses");
        assert_eq!(r.priority, 84);
        assert_eq!(r.program, "ckpt-sign");
        assert_eq!(r.get("event"), Some("dump"));
        assert_eq!(r.get("image_id"), Some("-"));
        assert_eq!(r.get("reason"), Some("a \"b\" c=d\nx\u{1}"));
        assert_eq!(r.get("outcome"), Some("refused"));
    }

    #[test]
    fn rejects_malformed_records() {
        assert!(parse("no priority").is_none());
        assert!(parse("<84>tag: key").is_none());
        assert!(parse(r#"<84>tag: k="unterminated"#).is_none());
        assert!(parse(r#"<84>tag: k="v"junk"#).is_none());
    }
}
