//! `/proc/PID/timers`: the process's POSIX timers (`timer_create(2)`), four
//! lines each:
//!
//! ```text
//! ID: 2
//! signal: 36/0000000000000000
//! notify: signal/pid.4351
//! ClockID: 0
//! ```
//!
//! Each block is returned as a [`ProcTimer`] (the dump asks the task for
//! the time left on each). The structure is checked: every block has its
//! four lines in this order, the id is a non-negative decimal `i32`, the
//! signal is `NUMBER/HEX` (the `sigev_value`, printed raw), the notify
//! line is `signal|none|thread` `/` `pid|tid` `.` a decimal id, the clock
//! is a decimal `i32`, and the file does not end inside a block. An empty
//! file means no timers.

use super::lex::{self, At, Context};
use super::{ParseError, Problem, ProcFile};

const FILE: ProcFile = ProcFile::Timers;

/// The lines of one block, in order, after `ID:`.
const FOLLOWING: [&str; 3] = ["signal", "notify", "ClockID"];

/// One POSIX timer as `/proc/PID/timers` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcTimer {
    pub id: i32,
    /// `sigev_signo`.
    pub signo: i32,
    /// `sigev_value`, as the kernel printed it.
    pub value: u64,
    /// `sigev_notify` without `SIGEV_THREAD_ID`: `SIGEV_SIGNAL` (0),
    /// `SIGEV_NONE` (1) or `SIGEV_THREAD` (2).
    pub notify: i32,
    /// `SIGEV_THREAD_ID`: the signal goes to thread `target`.
    pub to_thread: bool,
    /// The pid (or, with `to_thread`, the tid) notified.
    pub target: i32,
    /// The kernel's clock id (CPU clocks are negative).
    pub clock: i32,
}

/// Counts the timers in `/proc/PID/timers`.
pub fn count_posix_timers(text: &str) -> Result<usize, ParseError> {
    parse_posix_timers(text).map(|t| t.len())
}

/// Every timer in `/proc/PID/timers`, in the file's order.
pub fn parse_posix_timers(text: &str) -> Result<Vec<ProcTimer>, ParseError> {
    let mut out = Vec::new();
    let mut cur = ProcTimer {
        id: 0,
        signo: 0,
        value: 0,
        notify: 0,
        to_thread: false,
        target: 0,
        clock: 0,
    };
    // Index into FOLLOWING of the next line expected, or None at a block start.
    let mut expect: Option<usize> = None;
    for (n, line) in lex::lines(FILE, text)? {
        let at = At::line(FILE, n);
        let Some((key, value)) = line.split_once(": ") else {
            return Err(at.err("key", Problem::Malformed));
        };
        match expect {
            None => {
                if key != "ID" {
                    return Err(at.err("ID", Problem::Missing));
                }
                cur.id = lex::dec(value).and_then(lex::narrow).at(at, "ID")?;
                expect = Some(0);
            }
            Some(i) => {
                let want = FOLLOWING.get(i).copied().unwrap_or("ID");
                if key != want {
                    return Err(at.err(want, Problem::Missing));
                }
                if value.is_empty() {
                    return Err(at.err(want, Problem::Empty));
                }
                match i {
                    0 => {
                        let (sig, val) = value
                            .split_once('/')
                            .ok_or(Problem::Malformed)
                            .at(at, "signal")?;
                        cur.signo = lex::dec(sig).and_then(lex::narrow).at(at, "signal")?;
                        cur.value = lex::hex(val).at(at, "signal")?;
                    }
                    1 => {
                        let (kind, rest) = value
                            .split_once('/')
                            .ok_or(Problem::Malformed)
                            .at(at, "notify")?;
                        cur.notify = match kind {
                            "signal" => 0,
                            "none" => 1,
                            "thread" => 2,
                            _ => return Err(at.err("notify", Problem::Unknown)),
                        };
                        let (whom, id) = rest
                            .split_once('.')
                            .ok_or(Problem::Malformed)
                            .at(at, "notify")?;
                        cur.to_thread = match whom {
                            "pid" => false,
                            "tid" => true,
                            _ => return Err(at.err("notify", Problem::Unknown)),
                        };
                        cur.target = lex::dec(id).and_then(lex::narrow).at(at, "notify")?;
                    }
                    _ => {
                        cur.clock = lex::dec_signed(value)
                            .and_then(lex::narrow_signed)
                            .at(at, "ClockID")?;
                        out.push(cur);
                    }
                }
                expect = Some(i.saturating_add(1)).filter(|&j| j < FOLLOWING.len());
            }
        }
    }
    if let Some(i) = expect {
        let want = FOLLOWING.get(i).copied().unwrap_or("ID");
        return Err(At::whole(FILE).err(want, Problem::Missing));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::super::testdata as td;
    use super::super::Location;
    use super::*;

    fn err(text: &str) -> ParseError {
        match count_posix_timers(text) {
            Err(e) => e,
            Ok(v) => panic!("accepted {text:?} as {v}"),
        }
    }

    fn at(line: usize, field: &'static str, problem: Problem) -> ParseError {
        ParseError::new(FILE, Location::Line(line), field, problem)
    }

    #[test]
    fn procfs_timers_real_sample() -> Result<(), ParseError> {
        assert_eq!(count_posix_timers(td::TIMERS)?, 3);
        Ok(())
    }

    #[test]
    fn procfs_timers_every_field() -> Result<(), ParseError> {
        let text = "ID: 9\nsignal: 10/0000000000001234\nnotify: none/pid.5604\nClockID: -6\n\
                    ID: 8\nsignal: 12/ffffffffffffffff\nnotify: signal/tid.5605\nClockID: -2\n";
        assert_eq!(
            parse_posix_timers(text)?,
            vec![
                ProcTimer {
                    id: 9,
                    signo: 10,
                    value: 0x1234,
                    notify: 1,
                    to_thread: false,
                    target: 5604,
                    clock: -6
                },
                ProcTimer {
                    id: 8,
                    signo: 12,
                    value: u64::MAX,
                    notify: 0,
                    to_thread: true,
                    target: 5605,
                    clock: -2
                }
            ]
        );
        Ok(())
    }

    #[test]
    fn procfs_timers_empty() -> Result<(), ParseError> {
        assert_eq!(count_posix_timers("")?, 0);
        Ok(())
    }

    #[test]
    fn procfs_timers_malformed() {
        let block = "ID: 0\nsignal: 14/0000000000000000\nnotify: signal/pid.1\nClockID: 0\n";
        assert_eq!(count_posix_timers(block), Ok(1));
        assert_eq!(
            err("ID: 0\nsignal: 14/0\n"),
            ParseError::new(FILE, Location::Whole, "notify", Problem::Missing)
        );
        assert_eq!(
            err("ID: 0\nsignal: 14/0"),
            at(2, "line", Problem::Truncated)
        );
        assert_eq!(err("signal: 14/0\n"), at(1, "ID", Problem::Missing));
        assert_eq!(err("ID: x\n"), at(1, "ID", Problem::InvalidDigit));
        assert_eq!(err("ID: -1\n"), at(1, "ID", Problem::InvalidDigit));
        assert_eq!(err("ID: 2147483648\n"), at(1, "ID", Problem::Overflow));
        assert_eq!(err("ID:\n"), at(1, "key", Problem::Malformed));
        assert_eq!(err("ID: 0\nnotify: x\n"), at(2, "signal", Problem::Missing));
        assert_eq!(err("ID: 0\nsignal: \n"), at(2, "signal", Problem::Empty));
        assert_eq!(
            err("ID: 0\nsignal: 14\n"),
            at(2, "signal", Problem::Malformed)
        );
        assert_eq!(
            err("ID: 0\nsignal: 14/zz\nnotify: x\n"),
            at(2, "signal", Problem::InvalidDigit)
        );
        assert_eq!(
            err("ID: 0\nsignal: 14/0\nnotify: bogus/pid.1\n"),
            at(3, "notify", Problem::Unknown)
        );
        assert_eq!(
            err("ID: 0\nsignal: 14/0\nnotify: signal/pgid.1\n"),
            at(3, "notify", Problem::Unknown)
        );
        assert_eq!(
            err("ID: 0\nsignal: 14/0\nnotify: signal/pid1\n"),
            at(3, "notify", Problem::Malformed)
        );
        assert_eq!(
            err("ID: 0\nsignal: 14/0\nnotify: signal/pid.1\nClockID: x\n"),
            at(4, "ClockID", Problem::InvalidDigit)
        );
        assert_eq!(err(&format!("{block}\n")), at(5, "key", Problem::Malformed));
        assert_eq!(
            err(&format!("{block}{block}ClockID: 0\n")),
            at(9, "ID", Problem::Missing)
        );
    }
}
