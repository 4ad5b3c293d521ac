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
//! Only the count is returned (the dump uses it to refuse or to know how many
//! timers to recreate). The structure is still checked: every block has its
//! four lines in this order, the id is a non-negative decimal `i32`, and the
//! file does not end inside a block. An empty file means no timers.

use super::lex::{self, At, Context};
use super::{ParseError, Problem, ProcFile};

const FILE: ProcFile = ProcFile::Timers;

/// The lines of one block, in order, after `ID:`.
const FOLLOWING: [&str; 3] = ["signal", "notify", "ClockID"];

/// Counts the timers in `/proc/PID/timers`.
pub fn count_posix_timers(text: &str) -> Result<usize, ParseError> {
    let mut count = 0usize;
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
                let _id: i32 = lex::dec(value).and_then(lex::narrow).at(at, "ID")?;
                count = count.saturating_add(1);
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
                expect = Some(i.saturating_add(1)).filter(|&j| j < FOLLOWING.len());
            }
        }
    }
    if let Some(i) = expect {
        let want = FOLLOWING.get(i).copied().unwrap_or("ID");
        return Err(At::whole(FILE).err(want, Problem::Missing));
    }
    Ok(count)
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
        assert_eq!(err(&format!("{block}\n")), at(5, "key", Problem::Malformed));
        assert_eq!(
            err(&format!("{block}{block}ClockID: 0\n")),
            at(9, "ID", Problem::Missing)
        );
    }
}
