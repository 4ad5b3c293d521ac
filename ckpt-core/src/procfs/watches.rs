//! The list lines of `/proc/PID/fdinfo/FD`: what an epoll instance
//! watches, what an inotify instance watches, and the file locks held
//! through a description. Each is one line per entry, after the four
//! common lines (see [`super::fdinfo`]):
//!
//! ```text
//! tfd:        6 events: 10000019 data:                9  pos:0 ino:40e sdev:10
//! inotify wd:3 ino:99063e sdev:fe00000 mask:2 ignored_mask:0 fhandle-bytes:8 fhandle-type:1 f_handle:3e0699003506e5a2
//! lock:   1: POSIX  ADVISORY  WRITE 6590 fe:00:10028610 10 19
//! lock:   2: OFDLCK ADVISORY  READ -1 fe:00:10028611 5 EOF
//! ```
//!
//! (a tab, not spaces, after `lock:`).
//!
//! The kernel prints `tfd: %8d events: %8x data: %16llx  pos:%lli
//! ino:%lx sdev:%x` (an epoll entry; `sdev` is the kernel's internal
//! `major << 20 | minor`), `inotify wd:%x ino:%lx sdev:%x mask:%x
//! ignored_mask:%x` followed, when the file system can encode one, by
//! `fhandle-bytes:%x fhandle-type:%x f_handle:` and the handle's bytes in
//! hex (note that `wd` is hex too), and for a lock `%lld: ` then the kind
//! (`POSIX `, `OFDLCK`, `FLOCK  `, `LEASE  `, ...), its class, `READ` or
//! `WRITE`, the owner's pid, `MAJ:MIN:INO`, the first byte and the last
//! byte or `EOF`. Tokens are separated by runs of spaces.

use super::lex::{self, At};
use super::{ParseError, Problem, ProcFile};

const FILE: ProcFile = ProcFile::FdInfo;

/// One entry of an epoll interest list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EpollEntry {
    /// The fd number the target was added under.
    pub tfd: i32,
    pub events: u32,
    pub data: u64,
    /// The target's inode and its file system's device (kernel encoding).
    pub ino: u64,
    pub sdev: u32,
}

/// One inotify watch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InotifyMark {
    pub wd: i32,
    pub ino: u64,
    /// The file system's device (kernel encoding, `major << 20 | minor`).
    pub sdev: u32,
    pub mask: u32,
    /// The file handle identifying the inode, when the file system has one:
    /// its type and bytes.
    pub handle: Option<(i32, Vec<u8>)>,
}

/// What kind of lock a `lock:` line shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LockClass {
    Posix,
    Ofd,
    Flock,
    /// A lease, delegation or anything else: the kernel's words for it.
    Other(String),
}

/// One `lock:` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockLine {
    pub class: LockClass,
    pub write: bool,
    /// The owner's pid (a POSIX lock's process; -1 or the creator for the
    /// others).
    pub pid: i32,
    pub start: u64,
    /// Last byte, inclusive; `None` for `EOF`.
    pub end: Option<u64>,
}

/// `key:value` with exactly this key.
fn keyed<'a>(token: Option<&'a str>, key: &str) -> Result<&'a str, Problem> {
    token
        .ok_or(Problem::Missing)?
        .strip_prefix(key)
        .and_then(|v| v.strip_prefix(':'))
        .ok_or(Problem::Malformed)
}

/// The epoll entries of `/proc/PID/fdinfo/FD` (none for another kind of
/// file).
pub fn parse_epoll(text: &str) -> Result<Vec<EpollEntry>, ParseError> {
    let mut out = Vec::new();
    for (n, line) in lex::lines(FILE, text)? {
        let at = At::line(FILE, n);
        let Some(rest) = line.strip_prefix("tfd:") else {
            continue;
        };
        let mut t2 = rest.split_whitespace();
        let tfd = t2
            .next()
            .ok_or(Problem::Missing)
            .and_then(lex::dec)
            .and_then(lex::narrow)
            .map_err(|p| at.err("tfd", p))?;
        let mut field = |key: &'static str| -> Result<&str, ParseError> {
            let label = t2.next().ok_or_else(|| at.err(key, Problem::Missing))?;
            if label.strip_suffix(':') != Some(key) {
                return Err(at.err(key, Problem::Malformed));
            }
            t2.next().ok_or_else(|| at.err(key, Problem::Missing))
        };
        let events = lex::hex(field("events")?)
            .and_then(lex::narrow)
            .map_err(|p| at.err("events", p))?;
        let data = lex::hex(field("data")?).map_err(|p| at.err("data", p))?;
        keyed(t2.next(), "pos").map_err(|p| at.err("pos", p))?;
        let ino = keyed(t2.next(), "ino")
            .and_then(lex::hex)
            .map_err(|p| at.err("ino", p))?;
        let sdev = keyed(t2.next(), "sdev")
            .and_then(lex::hex)
            .and_then(lex::narrow)
            .map_err(|p| at.err("sdev", p))?;
        if t2.next().is_some() {
            return Err(at.err("tfd", Problem::Trailing));
        }
        out.push(EpollEntry {
            tfd,
            events,
            data,
            ino,
            sdev,
        });
    }
    Ok(out)
}

/// A hex string of bytes (two digits each).
fn hex_bytes(s: &str) -> Result<Vec<u8>, Problem> {
    if !s.len().is_multiple_of(2) {
        return Err(Problem::Malformed);
    }
    let mut out = Vec::with_capacity(s.len() / 2);
    let mut chars = s.chars();
    while let (Some(a), Some(b)) = (chars.next(), chars.next()) {
        let hi = a.to_digit(16).ok_or(Problem::InvalidDigit)?;
        let lo = b.to_digit(16).ok_or(Problem::InvalidDigit)?;
        out.push(u8::try_from(hi.wrapping_shl(4) | lo).map_err(|_| Problem::Overflow)?);
    }
    Ok(out)
}

/// The inotify watches of `/proc/PID/fdinfo/FD` (none for another kind
/// of file).
pub fn parse_inotify(text: &str) -> Result<Vec<InotifyMark>, ParseError> {
    let mut out = Vec::new();
    for (n, line) in lex::lines(FILE, text)? {
        let at = At::line(FILE, n);
        let Some(rest) = line.strip_prefix("inotify ") else {
            continue;
        };
        let mut t = rest.split_whitespace();
        let wd = keyed(t.next(), "wd")
            .and_then(lex::hex)
            .and_then(lex::narrow)
            .map_err(|p| at.err("wd", p))?;
        let ino = keyed(t.next(), "ino")
            .and_then(lex::hex)
            .map_err(|p| at.err("ino", p))?;
        let sdev = keyed(t.next(), "sdev")
            .and_then(lex::hex)
            .and_then(lex::narrow)
            .map_err(|p| at.err("sdev", p))?;
        let mask = keyed(t.next(), "mask")
            .and_then(lex::hex)
            .and_then(lex::narrow)
            .map_err(|p| at.err("mask", p))?;
        keyed(t.next(), "ignored_mask")
            .and_then(lex::hex)
            .map_err(|p| at.err("ignored_mask", p))?;
        let handle = match t.next() {
            None => None,
            Some(first) => {
                let bytes: usize = keyed(Some(first), "fhandle-bytes")
                    .and_then(lex::hex)
                    .and_then(lex::narrow)
                    .map_err(|p| at.err("fhandle-bytes", p))?;
                let kind: i32 = keyed(t.next(), "fhandle-type")
                    .and_then(lex::hex)
                    .and_then(lex::narrow)
                    .map_err(|p| at.err("fhandle-type", p))?;
                let data = keyed(t.next(), "f_handle")
                    .and_then(hex_bytes)
                    .map_err(|p| at.err("f_handle", p))?;
                if data.len() != bytes {
                    return Err(at.err("f_handle", Problem::BadLength));
                }
                Some((kind, data))
            }
        };
        if t.next().is_some() {
            return Err(at.err("inotify", Problem::Trailing));
        }
        out.push(InotifyMark {
            wd,
            ino,
            sdev,
            mask,
            handle,
        });
    }
    Ok(out)
}

/// The `lock:` lines of `/proc/PID/fdinfo/FD`.
pub fn parse_locks(text: &str) -> Result<Vec<LockLine>, ParseError> {
    let mut out = Vec::new();
    for (n, line) in lex::lines(FILE, text)? {
        let at = At::line(FILE, n);
        let Some(rest) = line.strip_prefix("lock:") else {
            continue;
        };
        let t: Vec<&str> = rest.split_whitespace().collect();
        // id:, kind, class, type, pid, dev:ino, start, end
        let [id, kind, class, ty, pid, _dev, start, end] = t.as_slice() else {
            return Err(at.err("lock", Problem::Malformed));
        };
        if !id.ends_with(':') {
            return Err(at.err("lock", Problem::Malformed));
        }
        let class = match (*kind, *class) {
            ("POSIX", "ADVISORY") => LockClass::Posix,
            ("OFDLCK", "ADVISORY") => LockClass::Ofd,
            ("FLOCK", "ADVISORY") => LockClass::Flock,
            (k, c) => LockClass::Other(format!("{k} {c}")),
        };
        let write = match *ty {
            "WRITE" => true,
            "READ" => false,
            _ => return Err(at.err("lock type", Problem::Unknown)),
        };
        let start = lex::dec(start).map_err(|p| at.err("lock start", p))?;
        let end = match *end {
            "EOF" => None,
            e => Some(lex::dec(e).map_err(|p| at.err("lock end", p))?),
        };
        let pid = pid
            .parse::<i32>()
            .map_err(|_| at.err("lock pid", Problem::Malformed))?;
        out.push(LockLine {
            class,
            write,
            pid,
            start,
            end,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const EPOLL: &str = "pos:\t0\nflags:\t02\nmnt_id:\t17\nino:\t1038\n\
tfd:        6 events: 10000019 data:                9  pos:0 ino:40e sdev:10\n\
tfd:        4 events: 80000019 data:     deadbeefcafe  pos:0 ino:40e sdev:10\n\
tfd:        5 events: 40000000 data:                7  pos:0 ino:40e sdev:10\n";

    const INOTIFY: &str = "pos:\t0\nflags:\t04000\nmnt_id:\t17\nino:\t1038\n\
inotify wd:4 ino:ea92c sdev:15 mask:4 ignored_mask:0 fhandle-bytes:c fhandle-type:81 f_handle:2ca90e000000000000000000\n\
inotify wd:1a ino:990640 sdev:fe00000 mask:80000300 ignored_mask:0 fhandle-bytes:8 fhandle-type:1 f_handle:4006990061545715\n\
inotify wd:3 ino:5 sdev:2d mask:2 ignored_mask:0 \n";

    const LOCKS: &str = "pos:\t0\nflags:\t0100002\nmnt_id:\t27\nino:\t10028610\n\
lock:\t1: POSIX  ADVISORY  WRITE 6590 fe:00:10028610 10 19\n\
lock:\t2: POSIX  ADVISORY  READ 6590 fe:00:10028610 100 EOF\n\
lock:\t3: OFDLCK ADVISORY  READ -1 fe:00:10028611 5 5\n\
lock:\t4: FLOCK  ADVISORY  WRITE 6590 fe:00:10028609 0 EOF\n\
lock:\t5: LEASE  ACTIVE    READ 6590 fe:00:10028612 0 EOF\n";

    #[test]
    fn procfs_epoll_entries() -> Result<(), ParseError> {
        let e = parse_epoll(EPOLL)?;
        assert_eq!(e.len(), 3);
        assert_eq!(
            e[1],
            EpollEntry {
                tfd: 4,
                events: 0x8000_0019,
                data: 0xdead_beef_cafe,
                ino: 0x40e,
                sdev: 0x10
            }
        );
        assert_eq!((e[2].tfd, e[2].events, e[2].data), (5, 0x4000_0000, 7));
        assert!(parse_epoll(super::super::testdata::FDINFO_EVENTFD)?.is_empty());
        for bad in [
            "tfd: x events: 1 data: 1  pos:0 ino:1 sdev:1\n",
            "tfd: 1 events: 1 data: 1  pos:0 ino:1\n",
            "tfd: 1 event: 1 data: 1  pos:0 ino:1 sdev:1\n",
            "tfd: 1 events: 100000000 data: 1  pos:0 ino:1 sdev:1\n",
            "tfd: 1 events: 1 data: 1  pos:0 ino:1 sdev:1",
        ] {
            assert!(parse_epoll(bad).is_err(), "{bad:?}");
        }
        // Every prefix: an error or fewer entries, never a panic.
        for i in 0..EPOLL.len() {
            let _ = parse_epoll(&EPOLL[..i]);
        }
        Ok(())
    }

    #[test]
    fn procfs_inotify_watches() -> Result<(), ParseError> {
        let w = parse_inotify(INOTIFY)?;
        assert_eq!(w.len(), 3);
        assert_eq!(w[1].wd, 0x1a);
        assert_eq!(w[1].mask, 0x8000_0300);
        assert_eq!(w[1].sdev, 0xfe0_0000);
        assert_eq!(
            w[1].handle,
            Some((1, vec![0x40, 0x06, 0x99, 0x00, 0x61, 0x54, 0x57, 0x15]))
        );
        assert_eq!(w[2].handle, None);
        for bad in [
            "inotify wd:1 ino:5 sdev:2d mask:2 ignored_mask:0 fhandle-bytes:8 fhandle-type:1 f_handle:40\n",
            "inotify wd:1 ino:5 sdev:2d mask:2 ignored_mask:0 fhandle-bytes:1 fhandle-type:1 f_handle:4g\n",
            "inotify wd:1 ino:5 sdev:2d mask:2\n",
            "inotify wd:-1 ino:5 sdev:2d mask:2 ignored_mask:0\n",
            "inotify wd:1 ino:5 sdev:2d mask:2 ignored_mask:0 fhandle-bytes:1 fhandle-type:1 f_handle:40 x\n",
        ] {
            assert!(parse_inotify(bad).is_err(), "{bad:?}");
        }
        for i in 0..INOTIFY.len() {
            let _ = parse_inotify(&INOTIFY[..i]);
        }
        Ok(())
    }

    #[test]
    fn procfs_lock_lines() -> Result<(), ParseError> {
        let l = parse_locks(LOCKS)?;
        assert_eq!(
            l,
            vec![
                LockLine {
                    class: LockClass::Posix,
                    write: true,
                    pid: 6590,
                    start: 10,
                    end: Some(19)
                },
                LockLine {
                    class: LockClass::Posix,
                    write: false,
                    pid: 6590,
                    start: 100,
                    end: None
                },
                LockLine {
                    class: LockClass::Ofd,
                    write: false,
                    pid: -1,
                    start: 5,
                    end: Some(5)
                },
                LockLine {
                    class: LockClass::Flock,
                    write: true,
                    pid: 6590,
                    start: 0,
                    end: None
                },
                LockLine {
                    class: LockClass::Other("LEASE ACTIVE".into()),
                    write: false,
                    pid: 6590,
                    start: 0,
                    end: None
                },
            ]
        );
        for bad in [
            "lock:\t1: POSIX  ADVISORY  WRITE 6590 fe:00:1 10\n",
            "lock:\t1: POSIX  ADVISORY  UNLCK 6590 fe:00:1 10 19\n",
            "lock:\t1: POSIX  ADVISORY  WRITE 6590 fe:00:1 -1 19\n",
        ] {
            assert!(parse_locks(bad).is_err(), "{bad:?}");
        }
        for i in 0..LOCKS.len() {
            let _ = parse_locks(&LOCKS[..i]);
        }
        Ok(())
    }
}
