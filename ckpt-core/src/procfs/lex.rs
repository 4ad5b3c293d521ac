//! Lexing shared by the parsers: lines, and numbers as the kernel spells them.
//!
//! Numbers are digits of their radix only: no sign (except in
//! [`dec_signed`]), no `+`, no `0x`, no whitespace, not empty. The standard
//! library's `from_str_radix` accepts a leading `+`, so it is not used.

use super::{Location, ParseError, Problem, ProcFile};

/// A position in one file, to build [`ParseError`]s from.
#[derive(Debug, Clone, Copy)]
pub(super) struct At {
    pub(super) file: ProcFile,
    pub(super) location: Location,
}

impl At {
    pub(super) const fn line(file: ProcFile, line: usize) -> Self {
        Self {
            file,
            location: Location::Line(line),
        }
    }

    pub(super) const fn whole(file: ProcFile) -> Self {
        Self {
            file,
            location: Location::Whole,
        }
    }

    pub(super) const fn err(self, field: &'static str, problem: Problem) -> ParseError {
        ParseError::new(self.file, self.location, field, problem)
    }
}

/// Attaches the position and field name to a bare [`Problem`].
pub(super) trait Context<T> {
    fn at(self, at: At, field: &'static str) -> Result<T, ParseError>;
}

impl<T> Context<T> for Result<T, Problem> {
    fn at(self, at: At, field: &'static str) -> Result<T, ParseError> {
        self.map_err(|p| at.err(field, p))
    }
}

/// The lines of a newline-terminated text, numbered from 1.
///
/// An empty text has no lines. A non-empty text that does not end with `\n`
/// was cut short (a partial read): that is an error on its last line.
pub(super) fn lines(
    file: ProcFile,
    text: &str,
) -> Result<impl Iterator<Item = (usize, &str)>, ParseError> {
    let body = if text.is_empty() {
        None
    } else {
        let last_line = text.matches('\n').count().saturating_add(1);
        Some(
            text.strip_suffix('\n')
                .ok_or_else(|| At::line(file, last_line).err("line", Problem::Truncated))?,
        )
    };
    Ok(body
        .into_iter()
        .flat_map(|b| b.split('\n'))
        .enumerate()
        .map(|(i, l)| (i.saturating_add(1), l)))
}

/// An unsigned number in `radix`.
pub(super) fn digits(s: &str, radix: u32) -> Result<u64, Problem> {
    if s.is_empty() {
        return Err(Problem::Empty);
    }
    s.chars().try_fold(0u64, |acc, c| {
        let d = c.to_digit(radix).ok_or(Problem::InvalidDigit)?;
        acc.checked_mul(u64::from(radix))
            .and_then(|v| v.checked_add(u64::from(d)))
            .ok_or(Problem::Overflow)
    })
}

pub(super) fn dec(s: &str) -> Result<u64, Problem> {
    digits(s, 10)
}

pub(super) fn hex(s: &str) -> Result<u64, Problem> {
    digits(s, 16)
}

pub(super) fn oct(s: &str) -> Result<u64, Problem> {
    digits(s, 8)
}

/// A decimal number with an optional leading `-` (the kernel's `%d`, `%ld`).
pub(super) fn dec_signed(s: &str) -> Result<i64, Problem> {
    match s.strip_prefix('-') {
        None => i64::try_from(dec(s)?).map_err(|_| Problem::Overflow),
        Some(magnitude) => {
            let m = i128::from(dec(magnitude)?);
            0i128
                .checked_sub(m)
                .and_then(|v| i64::try_from(v).ok())
                .ok_or(Problem::Overflow)
        }
    }
}

/// Narrows a parsed number to the field's type.
pub(super) fn narrow<T: TryFrom<u64>>(v: u64) -> Result<T, Problem> {
    T::try_from(v).map_err(|_| Problem::Overflow)
}

/// Narrows a parsed signed number to the field's type.
pub(super) fn narrow_signed<T: TryFrom<i64>>(v: i64) -> Result<T, Problem> {
    T::try_from(v).map_err(|_| Problem::Overflow)
}

/// `0` or `1` as a flag.
pub(super) fn flag(s: &str) -> Result<bool, Problem> {
    match s {
        "0" => Ok(false),
        "1" => Ok(true),
        "" => Err(Problem::Empty),
        _ => Err(Problem::OutOfRange),
    }
}

/// Stores a key's value the first time the key is seen; a second sighting
/// is [`Problem::Duplicate`].
pub(super) fn set<T>(
    slot: &mut Option<T>,
    value: Result<T, Problem>,
    at: At,
    field: &'static str,
) -> Result<(), ParseError> {
    if slot.is_some() {
        return Err(at.err(field, Problem::Duplicate));
    }
    *slot = Some(value.at(at, field)?);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn procfs_lex_numbers() {
        assert_eq!(dec("0"), Ok(0));
        assert_eq!(dec("18446744073709551615"), Ok(u64::MAX));
        assert_eq!(dec("18446744073709551616"), Err(Problem::Overflow));
        assert_eq!(dec("+1"), Err(Problem::InvalidDigit));
        assert_eq!(dec(" 1"), Err(Problem::InvalidDigit));
        assert_eq!(dec("1 "), Err(Problem::InvalidDigit));
        assert_eq!(dec(""), Err(Problem::Empty));
        assert_eq!(dec("١"), Err(Problem::InvalidDigit)); // Arabic-Indic one
        assert_eq!(hex("ffffffffffffffff"), Ok(u64::MAX));
        assert_eq!(hex("1ffffffffffffffff"), Err(Problem::Overflow));
        assert_eq!(hex("0x1"), Err(Problem::InvalidDigit));
        assert_eq!(hex("g"), Err(Problem::InvalidDigit));
        assert_eq!(oct("0102002"), Ok(0o102002));
        assert_eq!(oct("8"), Err(Problem::InvalidDigit));
        assert_eq!(dec_signed("-1"), Ok(-1));
        assert_eq!(dec_signed("-9223372036854775808"), Ok(i64::MIN));
        assert_eq!(dec_signed("-9223372036854775809"), Err(Problem::Overflow));
        assert_eq!(dec_signed("9223372036854775808"), Err(Problem::Overflow));
        assert_eq!(dec_signed("-"), Err(Problem::Empty));
        assert_eq!(dec_signed("--1"), Err(Problem::InvalidDigit));
        assert_eq!(narrow::<u32>(1 << 32), Err(Problem::Overflow));
        assert_eq!(narrow_signed::<i32>(-(1 << 31)), Ok(i32::MIN));
        assert_eq!(flag("2"), Err(Problem::OutOfRange));
    }

    #[test]
    fn procfs_lex_lines() {
        let f = ProcFile::Maps;
        assert_eq!(lines(f, "").map(Iterator::count), Ok(0));
        let got: Vec<_> = lines(f, "a\n\nb\n").into_iter().flatten().collect();
        assert_eq!(got, [(1, "a"), (2, ""), (3, "b")]);
        let e = lines(f, "a\nb").err();
        assert_eq!(
            e,
            Some(ParseError::new(
                f,
                Location::Line(2),
                "line",
                Problem::Truncated
            ))
        );
    }
}
