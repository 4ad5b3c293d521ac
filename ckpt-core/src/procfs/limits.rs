//! `/proc/PID/limits`: a header and one row per resource limit.
//!
//! ```text
//! Limit                     Soft Limit           Hard Limit           Units
//! Max open files            1024                 4096                 files
//! Max nice priority         0                    0
//! ```
//!
//! The kernel prints `%-25s %-20s %-20s %-10s` (units omitted for the two
//! priority rows); values are decimal or `unlimited` (`RLIM_INFINITY`,
//! returned as `u64::MAX`). Row names are matched whole, after collapsing the
//! padding, to their `RLIMIT_*` number; the units must be the ones the kernel
//! prints for that row. Every one of the 16 rows must appear exactly once and
//! no other row may: an unknown row means a kernel this parser was not written
//! for, and dumping without it would lose a limit.

use super::lex::{self, At, Context};
use super::{ParseError, Problem, ProcFile};

const FILE: ProcFile = ProcFile::Limits;

/// One resource limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    /// `RLIMIT_*` number (0 = `RLIMIT_CPU` ... 15 = `RLIMIT_RTTIME`).
    pub resource: u32,
    /// Soft limit; `u64::MAX` for `unlimited`.
    pub soft: u64,
    /// Hard limit; `u64::MAX` for `unlimited`.
    pub hard: u64,
}

/// Row name, and the units the kernel prints for it; index = `RLIMIT_*`.
const ROWS: [(&str, Option<&str>); 16] = [
    ("Max cpu time", Some("seconds")),
    ("Max file size", Some("bytes")),
    ("Max data size", Some("bytes")),
    ("Max stack size", Some("bytes")),
    ("Max core file size", Some("bytes")),
    ("Max resident set", Some("bytes")),
    ("Max processes", Some("processes")),
    ("Max open files", Some("files")),
    ("Max locked memory", Some("bytes")),
    ("Max address space", Some("bytes")),
    ("Max file locks", Some("locks")),
    ("Max pending signals", Some("signals")),
    ("Max msgqueue size", Some("bytes")),
    ("Max nice priority", None),
    ("Max realtime priority", None),
    ("Max realtime timeout", Some("us")),
];

const HEADER: [&str; 6] = ["Limit", "Soft", "Limit", "Hard", "Limit", "Units"];

/// Parses `/proc/PID/limits` into its 16 limits, in `RLIMIT_*` order.
pub fn parse_limits(text: &str) -> Result<Vec<Limit>, ParseError> {
    let mut lines = lex::lines(FILE, text)?;
    let (_, header) = lines
        .next()
        .ok_or_else(|| At::whole(FILE).err("Limit", Problem::Missing))?;
    if !header.split_ascii_whitespace().eq(HEADER) {
        return Err(At::line(FILE, 1).err("Limit", Problem::Malformed));
    }

    let mut found: [Option<Limit>; 16] = [None; 16];
    for (n, line) in lines {
        let at = At::line(FILE, n);
        let tokens: Vec<&str> = line.split_ascii_whitespace().collect();
        let name_len = tokens
            .iter()
            .position(|t| *t == "unlimited" || t.starts_with(|c: char| c.is_ascii_digit()))
            .ok_or_else(|| at.err("Soft Limit", Problem::Missing))?;
        let (name, values) = tokens.split_at_checked(name_len).unwrap_or_default();
        let name = name.join(" ");
        let (resource, (_, units)) = ROWS
            .iter()
            .enumerate()
            .find(|(_, (row, _))| *row == name)
            .ok_or_else(|| at.err("Limit", Problem::Unknown))?;

        let mut values = values.iter().copied();
        let soft = value(values.next()).at(at, "Soft Limit")?;
        let hard = value(values.next()).at(at, "Hard Limit")?;
        if values.next() != *units {
            return Err(at.err("Units", Problem::Malformed));
        }
        if values.next().is_some() {
            return Err(at.err("Units", Problem::Trailing));
        }

        let slot = found
            .get_mut(resource)
            .ok_or_else(|| at.err("Limit", Problem::Unknown))?;
        if slot.is_some() {
            return Err(at.err("Limit", Problem::Duplicate));
        }
        *slot = Some(Limit {
            resource: u32::try_from(resource)
                .map_err(|_| Problem::Overflow)
                .at(at, "Limit")?,
            soft,
            hard,
        });
    }

    found
        .iter()
        .zip(ROWS)
        .map(|(limit, (name, _))| limit.ok_or_else(|| At::whole(FILE).err(name, Problem::Missing)))
        .collect()
}

fn value(v: Option<&str>) -> Result<u64, Problem> {
    match v {
        None => Err(Problem::Missing),
        Some("unlimited") => Ok(u64::MAX),
        Some(v) => lex::dec(v),
    }
}

#[cfg(test)]
mod tests {
    use super::super::testdata as td;
    use super::super::Location;
    use super::*;

    const INF: u64 = u64::MAX;

    fn err(text: &str) -> ParseError {
        match parse_limits(text) {
            Err(e) => e,
            Ok(v) => panic!("accepted {text:?} as {v:?}"),
        }
    }

    fn at(line: usize, field: &'static str, problem: Problem) -> ParseError {
        ParseError::new(FILE, Location::Line(line), field, problem)
    }

    /// The real sample with row `n` (1-based line) replaced.
    fn with_line(n: usize, replacement: &str) -> String {
        td::LIMITS
            .lines()
            .enumerate()
            .map(|(i, l)| if i + 1 == n { replacement } else { l })
            .filter(|l| !l.is_empty())
            .map(|l| format!("{l}\n"))
            .collect()
    }

    #[test]
    fn procfs_limits_real_sample() -> Result<(), ParseError> {
        let l = parse_limits(td::LIMITS)?;
        let got: Vec<(u32, u64, u64)> = l.iter().map(|l| (l.resource, l.soft, l.hard)).collect();
        assert_eq!(
            got,
            [
                (0, 3600, INF),
                (1, INF, INF),
                (2, INF, INF),
                (3, 8_388_608, INF),
                (4, 0, INF),
                (5, INF, INF),
                (6, 96365, 96365),
                (7, 1024, 4096),
                (8, 8_388_608, 8_388_608),
                (9, INF, INF),
                (10, INF, INF),
                (11, 96365, 96365),
                (12, 819_200, 819_200),
                (13, 0, 0),
                (14, 0, 0),
                (15, INF, INF),
            ]
        );
        let d = parse_limits(td::LIMITS_DEFAULT)?;
        assert_eq!((d[0].soft, d[7].soft, d[7].hard), (INF, 20000, 20000));
        Ok(())
    }

    #[test]
    fn procfs_limits_malformed() {
        assert_eq!(
            err(""),
            ParseError::new(FILE, Location::Whole, "Limit", Problem::Missing)
        );
        assert_eq!(
            err(td::LIMITS.trim_end()),
            at(17, "line", Problem::Truncated)
        );
        assert_eq!(
            err("Limit Soft Limit Hard Limit\n"),
            at(1, "Limit", Problem::Malformed)
        );
        assert_eq!(
            err(&with_line(9, "")),
            ParseError::new(FILE, Location::Whole, "Max open files", Problem::Missing)
        );
        let header_only = td::LIMITS.lines().next().map(|h| format!("{h}\n"));
        assert_eq!(
            err(&header_only.unwrap_or_default()),
            ParseError::new(FILE, Location::Whole, "Max cpu time", Problem::Missing)
        );
        for (bad, field, problem) in [
            (
                "Max open files            1024                 4096",
                "Units",
                Problem::Malformed,
            ),
            (
                "Max open files            1024                 4096   bytes",
                "Units",
                Problem::Malformed,
            ),
            (
                "Max open files            1024                 4096   files x",
                "Units",
                Problem::Trailing,
            ),
            (
                "Max open files            1024",
                "Hard Limit",
                Problem::Missing,
            ),
            (
                "Max open files            1024      unlimitedx   files",
                "Hard Limit",
                Problem::InvalidDigit,
            ),
            (
                "Max open files            18446744073709551616 1 files",
                "Soft Limit",
                Problem::Overflow,
            ),
            (
                "Max open files            unlimited  -1 files",
                "Hard Limit",
                Problem::InvalidDigit,
            ),
            ("Max open files", "Soft Limit", Problem::Missing),
            (
                "Max open file             1024       4096 files",
                "Limit",
                Problem::Unknown,
            ),
            (
                "Max open files files      1024       4096 files",
                "Limit",
                Problem::Unknown,
            ),
            (
                "Max cpu time              unlimited  unlimited  seconds",
                "Limit",
                Problem::Duplicate,
            ),
            ("", "Soft Limit", Problem::Missing),
        ] {
            let text = with_line(9, bad);
            // An empty replacement removes the line; put an empty line back.
            let text = if bad.is_empty() {
                text.replacen("Max locked", "\nMax locked", 1)
            } else {
                text
            };
            assert_eq!(err(&text), at(9, field, problem), "{bad:?}");
        }
        // Units on a row that has none.
        assert_eq!(
            err(&with_line(
                15,
                "Max nice priority         0                    0                    us"
            )),
            at(15, "Units", Problem::Malformed)
        );
        // Padding is not significant.
        assert!(parse_limits(&with_line(9, "Max open files 1 2 files")).is_ok());
    }
}
