//! `/proc/PID/stat`: one line, `pid (comm) state ppid ...`, 52 fields as
//! numbered in proc(5).
//!
//! The comm is printed raw: it may contain spaces, `(`, `)` and even a
//! newline. The kernel prints no `)` after it, so the comm runs from the first
//! `(` to the *last* `)`. The fields after it are separated by single spaces
//! and are all decimal integers; every one of fields 3..=52 is checked, not
//! only those returned, so a torn or corrupted line is rejected. Fields after
//! 52 (a future kernel's additions) are checked the same way and otherwise
//! ignored. The whole text must end with a newline.
//!
//! Errors carry [`Location::Line`]`(1)`: the file is one record even when
//! the comm contains a newline.
//!
//! [`Location::Line`]: super::Location::Line

use super::lex::{self, At, Context};
use super::{ParseError, Problem, ProcFile};

const FILE: ProcFile = ProcFile::Stat;

/// The fields of `/proc/PID/stat` the dump uses (proc(5) numbering).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stat {
    /// (1) pid.
    pub pid: i32,
    /// (2) comm, without the parentheses, exactly as printed.
    pub comm: String,
    /// (3) state.
    pub state: char,
    /// (4) ppid.
    pub ppid: i32,
    /// (5) pgrp.
    pub pgrp: i32,
    /// (6) session.
    pub session: i32,
    /// (7) tty_nr.
    pub tty_nr: i32,
    /// (9) flags (`PF_*`).
    pub flags: u32,
    /// (20) num_threads.
    pub num_threads: i64,
    /// (22) starttime, in clock ticks since boot.
    pub start_time: u64,
    /// (26) startcode.
    pub start_code: u64,
    /// (27) endcode.
    pub end_code: u64,
    /// (28) startstack.
    pub start_stack: u64,
    /// (45) start_data.
    pub start_data: u64,
    /// (46) end_data.
    pub end_data: u64,
    /// (47) start_brk.
    pub start_brk: u64,
    /// (48) arg_start.
    pub arg_start: u64,
    /// (49) arg_end.
    pub arg_end: u64,
    /// (50) env_start.
    pub env_start: u64,
    /// (51) env_end.
    pub env_end: u64,
    /// (52) exit_code.
    pub exit_code: i32,
}

/// proc(5) names of fields 3..=52; index 0 is field 3.
const NAMES: [&str; 50] = [
    "state",
    "ppid",
    "pgrp",
    "session",
    "tty_nr",
    "tpgid",
    "flags",
    "minflt",
    "cminflt",
    "majflt",
    "cmajflt",
    "utime",
    "stime",
    "cutime",
    "cstime",
    "priority",
    "nice",
    "num_threads",
    "itrealvalue",
    "starttime",
    "vsize",
    "rss",
    "rsslim",
    "startcode",
    "endcode",
    "startstack",
    "kstkesp",
    "kstkeip",
    "signal",
    "blocked",
    "sigignore",
    "sigcatch",
    "wchan",
    "nswap",
    "cnswap",
    "exit_signal",
    "processor",
    "rt_priority",
    "policy",
    "delayacct_blkio_ticks",
    "guest_time",
    "cguest_time",
    "start_data",
    "end_data",
    "start_brk",
    "arg_start",
    "arg_end",
    "env_start",
    "env_end",
    "exit_code",
];

/// The fields after the comm, numbered as in proc(5).
struct Fields<'a> {
    values: Vec<&'a str>,
    at: At,
}

impl<'a> Fields<'a> {
    /// Field number `n` (3..=52) and its name.
    fn get(&self, n: usize) -> Result<(&'a str, &'static str), ParseError> {
        let i = n.checked_sub(3).unwrap_or(usize::MAX);
        let name = NAMES.get(i).copied().unwrap_or("field");
        let value = self
            .values
            .get(i)
            .copied()
            .ok_or_else(|| self.at.err(name, Problem::Missing))?;
        Ok((value, name))
    }

    fn unsigned(&self, n: usize) -> Result<u64, ParseError> {
        let (v, name) = self.get(n)?;
        lex::dec(v).at(self.at, name)
    }

    fn signed(&self, n: usize) -> Result<i64, ParseError> {
        let (v, name) = self.get(n)?;
        lex::dec_signed(v).at(self.at, name)
    }

    fn int(&self, n: usize) -> Result<i32, ParseError> {
        let name = self.get(n)?.1;
        lex::narrow_signed(self.signed(n)?).at(self.at, name)
    }
}

/// Parses `/proc/PID/stat`.
pub fn parse_stat(text: &str) -> Result<Stat, ParseError> {
    let at = At::line(FILE, 1);
    let body = text
        .strip_suffix('\n')
        .ok_or_else(|| at.err("line", Problem::Truncated))?;

    let (pid, rest) = body
        .split_once(" (")
        .ok_or_else(|| at.err("comm", Problem::Missing))?;
    let pid = lex::dec_signed(pid)
        .and_then(lex::narrow_signed)
        .at(at, "pid")?;
    let (comm, rest) = rest
        .rsplit_once(')')
        .ok_or_else(|| at.err("comm", Problem::Malformed))?;
    let rest = rest
        .strip_prefix(' ')
        .ok_or_else(|| at.err("state", Problem::Missing))?;

    let f = Fields {
        values: rest.split(' ').collect(),
        at,
    };

    // Field 3, the state: one letter.
    let (state, _) = f.get(3)?;
    let mut chars = state.chars();
    let state = match (chars.next(), chars.next()) {
        (Some(c), None) if c.is_ascii_alphabetic() => c,
        (None, _) => return Err(at.err("state", Problem::Empty)),
        _ => return Err(at.err("state", Problem::Malformed)),
    };

    // All 52 fields must be there: name the first one missing.
    if let Some(&missing) = NAMES.get(f.values.len()) {
        return Err(at.err(missing, Problem::Missing));
    }
    // Every numeric field, returned or not, must be an integer.
    for (i, v) in f.values.iter().enumerate().skip(1) {
        let name = NAMES.get(i).copied().unwrap_or("field");
        let digits = v.strip_prefix('-').unwrap_or(v);
        if digits.is_empty() {
            return Err(at.err(name, Problem::Empty));
        }
        if !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(at.err(name, Problem::InvalidDigit));
        }
    }

    Ok(Stat {
        pid,
        comm: comm.to_owned(),
        state,
        ppid: f.int(4)?,
        pgrp: f.int(5)?,
        session: f.int(6)?,
        tty_nr: f.int(7)?,
        flags: lex::narrow(f.unsigned(9)?).at(at, "flags")?,
        num_threads: f.signed(20)?,
        start_time: f.unsigned(22)?,
        start_code: f.unsigned(26)?,
        end_code: f.unsigned(27)?,
        start_stack: f.unsigned(28)?,
        start_data: f.unsigned(45)?,
        end_data: f.unsigned(46)?,
        start_brk: f.unsigned(47)?,
        arg_start: f.unsigned(48)?,
        arg_end: f.unsigned(49)?,
        env_start: f.unsigned(50)?,
        env_end: f.unsigned(51)?,
        exit_code: f.int(52)?,
    })
}

#[cfg(test)]
mod tests {
    use super::super::testdata as td;
    use super::super::Location;
    use super::*;

    fn err(text: &str) -> ParseError {
        match parse_stat(text) {
            Err(e) => e,
            Ok(v) => panic!("accepted {text:?} as {v:?}"),
        }
    }

    fn at(field: &'static str, problem: Problem) -> ParseError {
        ParseError::new(FILE, Location::Line(1), field, problem)
    }

    /// The real sample with field `n` (proc(5) numbering, >= 3) replaced.
    fn with_field(n: usize, value: &str) -> String {
        let (head, tail) = td::STAT.rsplit_once(") ").unwrap_or_default();
        let mut fields: Vec<&str> = tail.trim_end().split(' ').collect();
        if let Some(f) = fields.get_mut(n - 3) {
            *f = value;
        }
        format!("{head}) {}\n", fields.join(" "))
    }

    #[test]
    fn procfs_stat_real_sample() -> Result<(), ParseError> {
        let s = parse_stat(td::STAT)?;
        assert_eq!(
            s,
            Stat {
                pid: 4351,
                comm: "a) x (b".into(),
                state: 'R',
                ppid: 4302,
                pgrp: 4302,
                session: 3055,
                tty_nr: 0,
                flags: 0x0040_0000, // PF_RANDOMIZE
                num_threads: 2,
                start_time: 41377,
                start_code: 94_146_062_749_696,
                end_code: 94_146_062_753_241,
                start_stack: 140_726_420_383_104,
                start_data: 94_146_062_761_424,
                end_data: 94_146_062_762_328,
                start_brk: 94_146_504_843_264,
                arg_start: 140_726_420_384_500,
                arg_end: 140_726_420_384_506,
                env_start: 140_726_420_384_506,
                env_end: 140_726_420_385_778,
                exit_code: 0,
            }
        );
        // Cross-check with maps of the same process: code in the executable's
        // r-x mapping, brk at [heap], stack inside [stack].
        assert_eq!(s.start_code >> 12, 0x55a0_16a0_9000 >> 12);
        assert_eq!(s.start_brk, 0x55a0_30fa_6000);
        assert!((0x7ffd_6c4a_2000..0x7ffd_6c4c_3000).contains(&s.start_stack));
        Ok(())
    }

    #[test]
    fn procfs_stat_real_comm_with_newline() -> Result<(), ParseError> {
        let s = parse_stat(td::STAT_NL)?;
        assert_eq!(s.comm, "x\n) (y z");
        assert_eq!((s.pid, s.state, s.num_threads), (11579, 'R', 1));
        Ok(())
    }

    #[test]
    fn procfs_stat_real_kthread() -> Result<(), ParseError> {
        let s = parse_stat(td::STAT_KTHREAD)?;
        assert_eq!(
            (s.pid, s.comm.as_str(), s.state, s.ppid),
            (2, "kthreadd", 'S', 0)
        );
        assert_eq!((s.start_code, s.start_stack, s.env_end), (0, 0, 0));
        Ok(())
    }

    #[test]
    fn procfs_stat_extra_fields_ignored() -> Result<(), ParseError> {
        let t = format!("{} 7 8\n", td::STAT.trim_end());
        assert_eq!(parse_stat(&t)?, parse_stat(td::STAT)?);
        Ok(())
    }

    #[test]
    fn procfs_stat_malformed() {
        assert_eq!(err(""), at("line", Problem::Truncated));
        assert_eq!(err("\n"), at("comm", Problem::Missing));
        assert_eq!(err(td::STAT.trim_end()), at("line", Problem::Truncated));
        assert_eq!(err("1 (x\n"), at("comm", Problem::Malformed));
        assert_eq!(err("1 (x)\n"), at("state", Problem::Missing));
        assert_eq!(err("1 (x) R\n"), at("ppid", Problem::Missing));
        assert_eq!(err("x (y) R 1\n"), at("pid", Problem::InvalidDigit));
        assert_eq!(err(" (y) R 1\n"), at("pid", Problem::Empty));
        assert_eq!(err("99999999999 (y) R 1\n"), at("pid", Problem::Overflow));

        // Drop the last field: exit_code missing.
        let short = td::STAT
            .trim_end()
            .rsplit_once(' ')
            .map(|(h, _)| format!("{h}\n"));
        assert_eq!(
            err(&short.unwrap_or_default()),
            at("exit_code", Problem::Missing)
        );

        for (n, value, field, problem) in [
            (3, "", "state", Problem::Empty),
            (3, "RS", "state", Problem::Malformed),
            (3, "1", "state", Problem::Malformed),
            (4, "", "ppid", Problem::Empty),
            (4, "2147483648", "ppid", Problem::Overflow),
            (7, "0x1", "tty_nr", Problem::InvalidDigit),
            (9, "-1", "flags", Problem::InvalidDigit),
            (9, "4294967296", "flags", Problem::Overflow),
            (20, "9223372036854775808", "num_threads", Problem::Overflow),
            (22, "18446744073709551616", "starttime", Problem::Overflow),
            (26, "-5", "startcode", Problem::InvalidDigit),
            (30, "1a", "kstkeip", Problem::InvalidDigit),
            (41, "-", "policy", Problem::Empty),
            (51, "+1", "env_end", Problem::InvalidDigit),
            (52, "-2147483649", "exit_code", Problem::Overflow),
        ] {
            assert_eq!(
                err(&with_field(n, value)),
                at(field, problem),
                "field {n} = {value:?}"
            );
        }
        // Two spaces between fields make an empty field.
        let t = td::STAT.replacen(" 4302 4302", "  4302 4302", 1);
        assert_eq!(err(&t), at("ppid", Problem::Empty));
    }
}
