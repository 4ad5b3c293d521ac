//! `/proc/PID/task/TID/children`: the pids of the children of one thread,
//! each printed as `"%d "` (so a non-empty file ends with a space and has no
//! newline), in the kernel's list order.
//!
//! Each pid must be a positive decimal `i32` and appear once. A text that does
//! not end with the space was cut short. An empty file means no children.

use super::lex::{self, At, Context};
use super::{ParseError, Problem, ProcFile};

const FILE: ProcFile = ProcFile::Children;

/// Parses `/proc/PID/task/TID/children`.
pub fn parse_children(text: &str) -> Result<Vec<i32>, ParseError> {
    let at = At::line(FILE, 1);
    if text.is_empty() {
        return Ok(Vec::new());
    }
    let body = text
        .strip_suffix(' ')
        .ok_or_else(|| at.err("pid", Problem::Truncated))?;
    let pids = body
        .split(' ')
        .map(|p| {
            let pid: i32 = lex::dec(p).and_then(lex::narrow).at(at, "pid")?;
            if pid == 0 {
                return Err(at.err("pid", Problem::OutOfRange));
            }
            Ok(pid)
        })
        .collect::<Result<Vec<_>, _>>()?;
    let mut sorted = pids.clone();
    sorted.sort_unstable();
    if sorted.windows(2).any(|w| w.first() == w.get(1)) {
        return Err(at.err("pid", Problem::Duplicate));
    }
    Ok(pids)
}

#[cfg(test)]
mod tests {
    use super::super::testdata as td;
    use super::super::Location;
    use super::*;

    fn err(text: &str) -> Option<Problem> {
        parse_children(text).err().map(|e| {
            assert_eq!(
                (e.file, e.location, e.field),
                (FILE, Location::Line(1), "pid")
            );
            e.problem
        })
    }

    #[test]
    fn procfs_children_real_sample() -> Result<(), ParseError> {
        assert_eq!(parse_children(td::CHILDREN)?, [4354, 4355]);
        Ok(())
    }

    #[test]
    fn procfs_children_empty_and_one() -> Result<(), ParseError> {
        assert_eq!(parse_children("")?, Vec::<i32>::new());
        assert_eq!(parse_children("1 ")?, [1]);
        assert_eq!(parse_children("2147483647 ")?, [i32::MAX]);
        Ok(())
    }

    #[test]
    fn procfs_children_malformed() {
        assert_eq!(err("4354 4355"), Some(Problem::Truncated));
        assert_eq!(err("4354 4355\n"), Some(Problem::Truncated));
        assert_eq!(err("4354 4355 \n"), Some(Problem::Truncated));
        assert_eq!(err(" "), Some(Problem::Empty));
        assert_eq!(err("1  2 "), Some(Problem::Empty));
        assert_eq!(err("-1 "), Some(Problem::InvalidDigit));
        assert_eq!(err("0 "), Some(Problem::OutOfRange));
        assert_eq!(err("2147483648 "), Some(Problem::Overflow));
        assert_eq!(err("1x "), Some(Problem::InvalidDigit));
        assert_eq!(err("7 8 7 "), Some(Problem::Duplicate));
    }
}
