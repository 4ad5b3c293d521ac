//! Pure parsers for the `/proc` files the dump engine reads.
//!
//! Owns: turning the text (or, for `auxv`, the bytes) of one `/proc` file into
//! typed values. Every function here is `input -> Result<T, ParseError>`: no
//! I/O, no unsafe, no allocation beyond the result, and no panic on any input
//! (enforced by the `clippy::indexing_slicing`, `clippy::arithmetic_side_effects`
//! and `clippy::panic` lints below, and by tests that feed every prefix and
//! many corruptions of real samples to every parser).
//!
//! Trusts: nothing. The files describe a process that may be hostile: its
//! comm, mapping names and file paths are chosen by it and may contain spaces,
//! `)` or newlines. Parsers are strict where the kernel's format is fixed
//! (Linux 6.18, x86_64): a line-oriented file must end with a newline (so a
//! short read is an error, not a silently shorter answer), numbers take only
//! the digits of their radix with no sign, `+` or whitespace, and required
//! fields must appear exactly once. Lines the caller does not need (new
//! `status` keys, extra `fdinfo` lines) are skipped.
//!
//! Not done here: reading the files, retrying on races, or deciding what a
//! value means for the dump (that belongs to `dump`).

// Production code only: tests index and panic freely.
#![cfg_attr(
    not(test),
    deny(
        clippy::indexing_slicing,
        clippy::arithmetic_side_effects,
        clippy::panic,
        clippy::unreachable,
        clippy::todo,
        clippy::unimplemented,
        clippy::string_slice,
        clippy::cast_possible_truncation,
        clippy::cast_possible_wrap,
        clippy::cast_sign_loss
    )
)]

use std::fmt;

pub mod auxv;
pub mod children;
pub mod fdinfo;
pub mod limits;
pub mod maps;
pub mod smaps;
pub mod stat;
pub mod status;
pub mod timers;
pub mod watches;

mod lex;

#[cfg(test)]
mod testdata;

/// Which `/proc` file a [`ParseError`] comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProcFile {
    /// `/proc/PID/maps`
    Maps,
    /// `/proc/PID/smaps`
    Smaps,
    /// `/proc/PID/status`
    Status,
    /// `/proc/PID/stat`
    Stat,
    /// `/proc/PID/fdinfo/FD`
    FdInfo,
    /// `/proc/PID/limits`
    Limits,
    /// `/proc/PID/auxv`
    Auxv,
    /// `/proc/PID/task/TID/children`
    Children,
    /// `/proc/PID/timers`
    Timers,
}

impl fmt::Display for ProcFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Maps => "/proc/PID/maps",
            Self::Smaps => "/proc/PID/smaps",
            Self::Status => "/proc/PID/status",
            Self::Stat => "/proc/PID/stat",
            Self::FdInfo => "/proc/PID/fdinfo/FD",
            Self::Limits => "/proc/PID/limits",
            Self::Auxv => "/proc/PID/auxv",
            Self::Children => "/proc/PID/task/TID/children",
            Self::Timers => "/proc/PID/timers",
        })
    }
}

/// Where in the file a [`ParseError`] was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Location {
    /// A 1-based line number (`stat` is one line: always line 1).
    Line(usize),
    /// A 0-based byte offset, for the binary `auxv`.
    Byte(usize),
    /// The file as a whole, e.g. a required line that never appeared.
    Whole,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Line(n) => write!(f, "line {n}"),
            Self::Byte(n) => write!(f, "byte {n}"),
            Self::Whole => f.write_str("whole file"),
        }
    }
}

/// What was wrong with the field a [`ParseError`] names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Problem {
    /// The field (or required line) is absent.
    Missing,
    /// The field is present but empty.
    Empty,
    /// The field has a character that is not a digit of its radix.
    InvalidDigit,
    /// The number does not fit the field's type.
    Overflow,
    /// The value is well-formed but outside what the kernel can print there
    /// (a umask above 0777, a pid of 0, a flag that is not 0 or 1, ...).
    OutOfRange,
    /// The field does not have the kernel's shape (separator, permission
    /// characters, escape sequence, ...).
    Malformed,
    /// The field or line appears more than once.
    Duplicate,
    /// A row or key this parser does not know, where every one must be known.
    Unknown,
    /// There is more text after the last field.
    Trailing,
    /// The text stops inside a line (no final newline or separator): a short
    /// read, not a complete file.
    Truncated,
    /// A mapping's end is not above its start.
    EmptyRange,
    /// A mapping starts below the end of the one before it.
    Unordered,
    /// The byte length is not a whole number of entries.
    BadLength,
    /// The terminating entry (AT_NULL) never appears.
    Unterminated,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Missing => "missing",
            Self::Empty => "empty",
            Self::InvalidDigit => "invalid digit",
            Self::Overflow => "number too large",
            Self::OutOfRange => "value out of range",
            Self::Malformed => "malformed",
            Self::Duplicate => "appears more than once",
            Self::Unknown => "unknown",
            Self::Trailing => "unexpected trailing data",
            Self::Truncated => "truncated",
            Self::EmptyRange => "end is not above start",
            Self::Unordered => "overlaps or precedes the previous mapping",
            Self::BadLength => "length is not a whole number of entries",
            Self::Unterminated => "no AT_NULL terminator",
        })
    }
}

/// A `/proc` file did not have the expected form.
///
/// Names the file kind, where in it, which field, and what was wrong. It
/// carries none of the file's text: that text is chosen by the target process
/// and does not belong in logs unescaped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
#[error("{file}: {location}: field `{field}`: {problem}")]
pub struct ParseError {
    /// The kind of file being parsed.
    pub file: ProcFile,
    /// Where in it.
    pub location: Location,
    /// The field, as the kernel or proc(5) names it (`SigBlk`, `start_code`,
    /// `perms`, `Max open files`, ...).
    pub field: &'static str,
    /// What was wrong.
    pub problem: Problem,
}

impl ParseError {
    pub(crate) const fn new(
        file: ProcFile,
        location: Location,
        field: &'static str,
        problem: Problem,
    ) -> Self {
        Self {
            file,
            location,
            field,
            problem,
        }
    }

    /// The 1-based line number, if the error is tied to a line.
    pub fn line(&self) -> Option<usize> {
        match self.location {
            Location::Line(n) => Some(n),
            Location::Byte(_) | Location::Whole => None,
        }
    }
}

#[cfg(test)]
mod tests {
    //! Properties that hold for every parser: no panic on any prefix or on
    //! single-byte corruptions of real samples, and a truncated text is never
    //! accepted as complete.

    use super::testdata as td;
    use super::*;

    type Parser = fn(&str) -> bool;

    fn all_text_samples() -> Vec<(&'static str, &'static str, Parser)> {
        vec![
            ("maps", td::MAPS, |t| maps::parse_maps(t).is_ok()),
            ("smaps", td::SMAPS, |t| {
                smaps::parse_smaps_vmflags(t).is_ok()
            }),
            ("status", td::STATUS, |t| status::parse_status(t).is_ok()),
            ("status creds", td::STATUS_CREDS, |t| {
                status::parse_status(t).is_ok()
            }),
            ("status nl", td::STATUS_NL, |t| {
                status::parse_status(t).is_ok()
            }),
            ("status kthread", td::STATUS_KTHREAD, |t| {
                status::parse_status(t).is_ok()
            }),
            ("stat", td::STAT, |t| stat::parse_stat(t).is_ok()),
            ("stat nl", td::STAT_NL, |t| stat::parse_stat(t).is_ok()),
            ("stat kthread", td::STAT_KTHREAD, |t| {
                stat::parse_stat(t).is_ok()
            }),
            ("fdinfo append", td::FDINFO_APPEND, |t| {
                fdinfo::parse_fdinfo(t).is_ok()
            }),
            ("fdinfo rw", td::FDINFO_RW, |t| {
                fdinfo::parse_fdinfo(t).is_ok()
            }),
            ("fdinfo eventfd", td::FDINFO_EVENTFD, |t| {
                fdinfo::parse_fdinfo(t).is_ok()
            }),
            ("fdinfo timerfd", td::FDINFO_TIMERFD, |t| {
                fdinfo::parse_fdinfo(t).is_ok()
            }),
            ("fdinfo inotify", td::FDINFO_INOTIFY, |t| {
                fdinfo::parse_fdinfo(t).is_ok()
            }),
            ("limits", td::LIMITS, |t| limits::parse_limits(t).is_ok()),
            ("limits default", td::LIMITS_DEFAULT, |t| {
                limits::parse_limits(t).is_ok()
            }),
            ("children", td::CHILDREN, |t| {
                children::parse_children(t).is_ok()
            }),
            ("timers", td::TIMERS, |t| {
                timers::count_posix_timers(t).is_ok()
            }),
        ]
    }

    /// Every parser accepts its full real samples.
    #[test]
    fn procfs_every_sample_parses() {
        for (name, text, parse) in all_text_samples() {
            assert!(parse(text), "{name}: full sample rejected");
        }
        assert!(auxv::parse_auxv(&td::auxv_bytes()).is_ok());
    }

    /// Every prefix of every sample: no panic, and a prefix that stops inside
    /// a line (for `children`: inside a pid) is never accepted.
    #[test]
    fn procfs_never_panics_on_prefixes() {
        for (name, text, parse) in all_text_samples() {
            let terminator = if name == "children" { ' ' } else { '\n' };
            for (i, _) in text.char_indices().chain([(text.len(), ' ')]) {
                let Some(prefix) = text.get(..i) else {
                    continue;
                };
                let ok = parse(prefix);
                if ok && !prefix.is_empty() {
                    assert!(
                        prefix.ends_with(terminator),
                        "{name}: accepted a prefix cut inside a line: {prefix:?}"
                    );
                }
            }
        }
        let bytes = td::auxv_bytes();
        for i in 0..bytes.len() {
            let prefix = bytes.get(..i).unwrap_or_default();
            // The only terminated auxv is the whole one.
            assert!(
                auxv::parse_auxv(prefix).is_err(),
                "auxv prefix {i} accepted"
            );
        }
    }

    /// Every character of every sample replaced by two of a handful of
    /// characters that matter to the formats (rotating, so each substitute
    /// lands on every kind of position), and deleted: no panic.
    #[test]
    fn procfs_never_panics_on_corruptions() {
        const SUBSTITUTES: [char; 8] = ['\n', ' ', '\t', ')', ':', '-', 'z', '9'];
        for (_, text, parse) in all_text_samples() {
            let mut buf = String::with_capacity(text.len());
            for (k, (i, c)) in text.char_indices().enumerate() {
                let (Some(head), Some(tail)) = (text.get(..i), text.get(i + c.len_utf8()..)) else {
                    continue;
                };
                let subs = [k % 8, (k + 3) % 8].map(|j| SUBSTITUTES.get(j).copied());
                for sub in subs.into_iter().chain([None]) {
                    buf.clear();
                    buf.push_str(head);
                    buf.extend(sub);
                    buf.push_str(tail);
                    let _ = parse(&buf);
                }
            }
        }
        let bytes = td::auxv_bytes();
        for i in 0..bytes.len() {
            for sub in [0x00, 0xff, 0x01] {
                let mut b = bytes.clone();
                if let Some(x) = b.get_mut(i) {
                    *x = sub;
                }
                let _ = auxv::parse_auxv(&b);
            }
        }
    }

    /// Odd inputs that are not derived from samples.
    #[test]
    fn procfs_never_panics_on_odd_inputs() {
        let odd = [
            "",
            "\n",
            "\n\n",
            " ",
            ")",
            "(",
            "()",
            ":",
            "-",
            "\u{0}",
            "é\n",
            "\u{10ffff})",
            "ffffffffffffffffffffffffff-0 rwxp 0 0:0 0\n",
            "0-1 rwxp 0 0:0 0 \u{0}(deleted)\n",
        ];
        for (_, _, parse) in all_text_samples() {
            for text in odd {
                let _ = parse(text);
            }
        }
    }

    #[test]
    fn procfs_error_display_names_file_line_and_field() {
        let e = ParseError::new(
            ProcFile::Status,
            Location::Line(7),
            "SigBlk",
            Problem::Overflow,
        );
        assert_eq!(
            e.to_string(),
            "/proc/PID/status: line 7: field `SigBlk`: number too large"
        );
        assert_eq!(e.line(), Some(7));
    }
}
