//! `/proc/PID/fdinfo/FD`: the four lines every file has, then lines specific
//! to the file type (eventfd, timerfd, inotify, epoll, ...), which are ignored
//! here.
//!
//! ```text
//! pos:    6
//! flags:  0102002
//! mnt_id: 27
//! ino:    10010882
//! ```
//!
//! (a tab, not spaces, after each colon).
//!
//! The kernel prints `pos:\t%lli\nflags:\t0%o\nmnt_id:\t%i\nino:\t%lu\n`. `pos`
//! is printed signed: files with unsigned offsets (`/proc/PID/mem`, `/dev/mem`)
//! can show a negative number, which is returned as the same 64 bits in a
//! `u64`. `flags` are the open flags in octal (`O_LARGEFILE` included); `mnt_id`
//! matches the first field of `/proc/PID/mountinfo`. Each of the four must
//! appear exactly once.
//!
//! The lines of three anonymous kinds are parsed by their own functions
//! (each of their keys must appear exactly once; the value follows the
//! colon after spaces or a tab):
//!
//! ```text
//! eventfd-count:                5      %16llx: hex, space-padded
//! eventfd-semaphore: 0
//! sigmask:  0000000400000200           hex (a tab after the colon), bit n-1 = signal n
//! clockid: 1
//! ticks: 0
//! settime flags: 00                    octal
//! it_value: (99, 897295226)            time left (relative), s and ns
//! it_interval: (1, 0)
//! ```

use super::lex::{self, set, At};
use super::{ParseError, Problem, ProcFile};

const FILE: ProcFile = ProcFile::FdInfo;

/// The common part of `/proc/PID/fdinfo/FD`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FdInfo {
    /// File position (the bits of the kernel's `loff_t`).
    pub pos: u64,
    /// Open flags (`O_*`, octal in the file).
    pub flags: u32,
    /// Mount id.
    pub mnt_id: u64,
    /// Inode number.
    pub ino: u64,
}

/// Parses `/proc/PID/fdinfo/FD`.
pub fn parse_fdinfo(text: &str) -> Result<FdInfo, ParseError> {
    let (mut pos, mut flags, mut mnt_id, mut ino) = (None, None, None, None);
    for (n, line) in lex::lines(FILE, text)? {
        let at = At::line(FILE, n);
        let Some((key, raw)) = line.split_once(':') else {
            continue;
        };
        let value = || raw.strip_prefix('\t').ok_or(Problem::Malformed);
        match key {
            "pos" => set(&mut pos, value().and_then(position), at, "pos")?,
            "flags" => set(
                &mut flags,
                value().and_then(lex::oct).and_then(lex::narrow),
                at,
                "flags",
            )?,
            "mnt_id" => set(&mut mnt_id, value().and_then(lex::dec), at, "mnt_id")?,
            "ino" => set(&mut ino, value().and_then(lex::dec), at, "ino")?,
            _ => {}
        }
    }
    let need = |field| At::whole(FILE).err(field, Problem::Missing);
    Ok(FdInfo {
        pos: pos.ok_or_else(|| need("pos"))?,
        flags: flags.ok_or_else(|| need("flags"))?,
        mnt_id: mnt_id.ok_or_else(|| need("mnt_id"))?,
        ino: ino.ok_or_else(|| need("ino"))?,
    })
}

/// `%lli`, kept as its 64 bits.
fn position(v: &str) -> Result<u64, Problem> {
    lex::dec_signed(v).map(|p| u64::from_ne_bytes(p.to_ne_bytes()))
}

/// The value after `key:` on a type-specific line: leading spaces or
/// tabs skipped.
fn spaced(raw: &str) -> Result<&str, Problem> {
    let v = raw.trim_start_matches([' ', '\t']);
    if v.len() == raw.len() {
        return Err(Problem::Malformed);
    }
    Ok(v)
}

/// The counter and mode of an eventfd.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventfdInfo {
    pub count: u64,
    pub semaphore: bool,
}

/// The eventfd lines of `/proc/PID/fdinfo/FD`.
pub fn parse_eventfd(text: &str) -> Result<EventfdInfo, ParseError> {
    let (mut count, mut semaphore) = (None, None);
    for (n, line) in lex::lines(FILE, text)? {
        let at = At::line(FILE, n);
        let Some((key, raw)) = line.split_once(':') else {
            continue;
        };
        match key {
            "eventfd-count" => set(
                &mut count,
                spaced(raw).and_then(lex::hex),
                at,
                "eventfd-count",
            )?,
            "eventfd-semaphore" => set(
                &mut semaphore,
                spaced(raw).and_then(lex::flag),
                at,
                "eventfd-semaphore",
            )?,
            _ => {}
        }
    }
    let need = |field| At::whole(FILE).err(field, Problem::Missing);
    Ok(EventfdInfo {
        count: count.ok_or_else(|| need("eventfd-count"))?,
        semaphore: semaphore.ok_or_else(|| need("eventfd-semaphore"))?,
    })
}

/// The signal mask of a signalfd (bit `n - 1` is signal `n`).
pub fn parse_signalfd(text: &str) -> Result<u64, ParseError> {
    let mut mask = None;
    for (n, line) in lex::lines(FILE, text)? {
        let at = At::line(FILE, n);
        if let Some(raw) = line.strip_prefix("sigmask:") {
            set(&mut mask, spaced(raw).and_then(lex::hex), at, "sigmask")?;
        }
    }
    mask.ok_or_else(|| At::whole(FILE).err("sigmask", Problem::Missing))
}

/// The clock, state and unread expirations of a timerfd. Times are
/// nanoseconds; `value_ns` is the time left (0: disarmed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimerfdInfo {
    pub clockid: i32,
    pub ticks: u64,
    pub settime_flags: u32,
    pub value_ns: u64,
    pub interval_ns: u64,
}

/// The timerfd lines of `/proc/PID/fdinfo/FD`.
pub fn parse_timerfd(text: &str) -> Result<TimerfdInfo, ParseError> {
    let (mut clockid, mut ticks, mut flags, mut value, mut interval) =
        (None, None, None, None, None);
    for (n, line) in lex::lines(FILE, text)? {
        let at = At::line(FILE, n);
        let Some((key, raw)) = line.split_once(':') else {
            continue;
        };
        match key {
            "clockid" => set(
                &mut clockid,
                spaced(raw)
                    .and_then(lex::dec_signed)
                    .and_then(lex::narrow_signed),
                at,
                "clockid",
            )?,
            "ticks" => set(&mut ticks, spaced(raw).and_then(lex::dec), at, "ticks")?,
            "settime flags" => set(
                &mut flags,
                spaced(raw).and_then(lex::oct).and_then(lex::narrow),
                at,
                "settime flags",
            )?,
            "it_value" => set(&mut value, spaced(raw).and_then(timespec), at, "it_value")?,
            "it_interval" => set(
                &mut interval,
                spaced(raw).and_then(timespec),
                at,
                "it_interval",
            )?,
            _ => {}
        }
    }
    let need = |field| At::whole(FILE).err(field, Problem::Missing);
    Ok(TimerfdInfo {
        clockid: clockid.ok_or_else(|| need("clockid"))?,
        ticks: ticks.ok_or_else(|| need("ticks"))?,
        settime_flags: flags.ok_or_else(|| need("settime flags"))?,
        value_ns: value.ok_or_else(|| need("it_value"))?,
        interval_ns: interval.ok_or_else(|| need("it_interval"))?,
    })
}

/// `(%llu, %llu)`: seconds and nanoseconds, as nanoseconds.
fn timespec(v: &str) -> Result<u64, Problem> {
    let inner = v
        .strip_prefix('(')
        .and_then(|v| v.strip_suffix(')'))
        .ok_or(Problem::Malformed)?;
    let (sec, nsec) = inner.split_once(", ").ok_or(Problem::Malformed)?;
    let (sec, nsec) = (lex::dec(sec)?, lex::dec(nsec)?);
    if nsec >= 1_000_000_000 {
        return Err(Problem::OutOfRange);
    }
    sec.checked_mul(1_000_000_000)
        .and_then(|s| s.checked_add(nsec))
        .ok_or(Problem::Overflow)
}

#[cfg(test)]
mod tests {
    use super::super::testdata as td;
    use super::super::Location;
    use super::*;

    const O_RDWR: u32 = 0o2;
    const O_APPEND: u32 = 0o2000;
    const O_NONBLOCK: u32 = 0o4000;
    const O_LARGEFILE: u32 = 0o100000;
    const O_CLOEXEC: u32 = 0o2000000;

    fn err(text: &str) -> ParseError {
        match parse_fdinfo(text) {
            Err(e) => e,
            Ok(v) => panic!("accepted {text:?} as {v:?}"),
        }
    }

    fn at(line: usize, field: &'static str, problem: Problem) -> ParseError {
        ParseError::new(FILE, Location::Line(line), field, problem)
    }

    #[test]
    fn procfs_fdinfo_real_append_file() -> Result<(), ParseError> {
        let f = parse_fdinfo(td::FDINFO_APPEND)?;
        assert_eq!(
            f,
            FdInfo {
                pos: 6,
                flags: O_LARGEFILE | O_APPEND | O_RDWR,
                mnt_id: 27,
                ino: 10_010_882,
            }
        );
        let rw = parse_fdinfo(td::FDINFO_RW)?;
        assert_eq!((rw.pos, rw.flags), (0, O_LARGEFILE | O_RDWR));
        Ok(())
    }

    #[test]
    fn procfs_fdinfo_real_special_files_extra_lines_ignored() -> Result<(), ParseError> {
        let e = parse_fdinfo(td::FDINFO_EVENTFD)?;
        assert_eq!(e.flags, O_CLOEXEC | O_NONBLOCK | O_RDWR);
        assert_eq!((e.mnt_id, e.ino), (17, 1038));
        let t = parse_fdinfo(td::FDINFO_TIMERFD)?;
        assert_eq!(t.flags, O_RDWR);
        // inotify: its extra line has an `ino:` inside, not as its key.
        let i = parse_fdinfo(td::FDINFO_INOTIFY)?;
        assert_eq!((i.flags, i.ino), (0, 1038));
        Ok(())
    }

    #[test]
    fn procfs_fdinfo_negative_pos_keeps_bits() -> Result<(), ParseError> {
        let f = parse_fdinfo("pos:\t-8388608\nflags:\t0100000\nmnt_id:\t22\nino:\t4\n")?;
        assert_eq!(f.pos, 0xffff_ffff_ff80_0000);
        Ok(())
    }

    #[test]
    fn procfs_fdinfo_malformed() {
        let whole = |field| ParseError::new(FILE, Location::Whole, field, Problem::Missing);
        assert_eq!(err(""), whole("pos"));
        assert_eq!(err("pos:\t0\nflags:\t02\nmnt_id:\t1\n"), whole("ino"));
        assert_eq!(
            err("pos:\t0\nflags:\t02\nmnt_id:\t1\nino:\t5"),
            at(4, "line", Problem::Truncated)
        );
        assert_eq!(
            err("pos:\t0\nflags:\t02\nmnt_id:\t1\nino:\t\n"),
            at(4, "ino", Problem::Empty)
        );
        assert_eq!(err("pos: 0\n"), at(1, "pos", Problem::Malformed));
        assert_eq!(err("pos:\t0x10\n"), at(1, "pos", Problem::InvalidDigit));
        assert_eq!(
            err("pos:\t9223372036854775808\n"),
            at(1, "pos", Problem::Overflow)
        );
        assert_eq!(
            err("pos:\t0\nflags:\t08\n"),
            at(2, "flags", Problem::InvalidDigit)
        );
        assert_eq!(
            err("pos:\t0\nflags:\t040000000000\n"),
            at(2, "flags", Problem::Overflow)
        );
        assert_eq!(
            err("pos:\t0\nflags:\t02\nmnt_id:\t-1\n"),
            at(3, "mnt_id", Problem::InvalidDigit)
        );
        assert_eq!(err("pos:\t0\npos:\t0\n"), at(2, "pos", Problem::Duplicate));
        assert_eq!(
            err("pos:\t0\nflags:\t02\nmnt_id:\t1\nino:\t18446744073709551616\n"),
            at(4, "ino", Problem::Overflow)
        );
    }

    #[test]
    fn procfs_fdinfo_anonymous_kinds() -> Result<(), ParseError> {
        assert_eq!(
            parse_eventfd(td::FDINFO_EVENTFD)?,
            EventfdInfo {
                count: 5,
                semaphore: false
            }
        );
        let big = "eventfd-count: fffffffffffffffe\neventfd-semaphore: 1\n";
        assert_eq!(
            parse_eventfd(big)?,
            EventfdInfo {
                count: 0xffff_ffff_ffff_fffe,
                semaphore: true
            }
        );
        assert_eq!(parse_signalfd(td::FDINFO_SIGNALFD)?, (1 << 9) | (1 << 34));
        assert_eq!(
            parse_timerfd(td::FDINFO_TIMERFD)?,
            TimerfdInfo {
                clockid: 1,
                ticks: 0,
                settime_flags: 0,
                value_ns: 99_897_295_226,
                interval_ns: 1_000_000_000,
            }
        );
        Ok(())
    }

    #[test]
    fn procfs_fdinfo_anonymous_kinds_malformed() {
        let whole = |field| ParseError::new(FILE, Location::Whole, field, Problem::Missing);
        assert_eq!(
            parse_eventfd("eventfd-count: 5\n"),
            Err(whole("eventfd-semaphore"))
        );
        assert_eq!(
            parse_eventfd("eventfd-count:5\n"),
            Err(at(1, "eventfd-count", Problem::Malformed))
        );
        assert_eq!(
            parse_eventfd("eventfd-count: 5\neventfd-count: 5\n"),
            Err(at(2, "eventfd-count", Problem::Duplicate))
        );
        assert_eq!(
            parse_eventfd("eventfd-count: 5\neventfd-semaphore: 2\n"),
            Err(at(2, "eventfd-semaphore", Problem::OutOfRange))
        );
        assert_eq!(parse_signalfd("pos:\t0\n"), Err(whole("sigmask")));
        assert_eq!(
            parse_signalfd("sigmask:\t1g\n"),
            Err(at(1, "sigmask", Problem::InvalidDigit))
        );
        let timer = |value: &str| {
            format!(
                "clockid: 1\nticks: 0\nsettime flags: 00\nit_value: {value}\nit_interval: (0, 0)\n"
            )
        };
        assert_eq!(
            parse_timerfd(&timer("(1, 1000000000)")),
            Err(at(4, "it_value", Problem::OutOfRange))
        );
        assert_eq!(
            parse_timerfd(&timer("1, 0")),
            Err(at(4, "it_value", Problem::Malformed))
        );
        assert_eq!(
            parse_timerfd(&timer("(18446744073709551615, 0)")),
            Err(at(4, "it_value", Problem::Overflow))
        );
        assert_eq!(parse_timerfd("clockid: 1\n"), Err(whole("ticks")));
    }
}
