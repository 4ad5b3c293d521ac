//! `/proc/PID/smaps`: for each VMA, its maps line (the header) followed by
//! `Key:   value` lines, one of which is `VmFlags:`.
//!
//! ```text
//! 7ffd6c4a2000-7ffd6c4c3000 rw-p 00000000 00:00 0                          [stack]
//! Size:                132 kB
//! ...
//! VmFlags: rd wr mr mw me gd ac
//! ```
//!
//! Only the VmFlags are extracted (the dump needs them for what maps does not
//! show: `gd` grows-down, `lo` locked, `dd` do-not-dump, `nh` no-huge-page,
//! ...). Headers are parsed and checked exactly as [`super::maps`] lines are,
//! ascending order included. Each header must be followed by exactly one
//! `VmFlags:` line before the next header; each flag is the kernel's
//! two-character mnemonic (lowercase letters or digits). Other keys are not
//! interpreted, only checked to be `Key:` lines. An empty file is an empty
//! list.

use super::lex::{self, At};
use super::maps::{self, MapsEntry};
use super::{ParseError, Problem, ProcFile};
use crate::model::VmFlags;

const FILE: ProcFile = ProcFile::Smaps;

/// Parses `/proc/PID/smaps` into `(VMA start, VmFlags mnemonics)`, one pair per
/// VMA, in file order.
pub fn parse_smaps_vmflags(text: &str) -> Result<Vec<(u64, VmFlags)>, ParseError> {
    let mut out: Vec<(u64, VmFlags)> = Vec::new();
    // The current VMA: its start, the line of its header, its flags once seen.
    let mut current: Option<(u64, usize, Option<VmFlags>)> = None;
    let mut prev: Option<MapsEntry> = None;

    for (n, line) in lex::lines(FILE, text)? {
        let at = At::line(FILE, n);
        let first = line.split(' ').next().unwrap_or_default();
        if first.contains('-') {
            // A VMA header: close the previous VMA, then open this one.
            if let Some(done) = current.take() {
                out.push(finish(done)?);
            }
            let entry = maps::parse_line(line, at)?;
            maps::check_order(prev.as_ref(), &entry, at)?;
            current = Some((entry.start, n, None));
            prev = Some(entry);
            continue;
        }

        let Some((key, value)) = line.split_once(':') else {
            return Err(at.err("key", Problem::Malformed));
        };
        if key.is_empty() || key.contains(' ') {
            return Err(at.err("key", Problem::Malformed));
        }
        let Some((_, _, flags)) = current.as_mut() else {
            // A key line before any header.
            return Err(at.err("header", Problem::Missing));
        };
        if key == "VmFlags" {
            if flags.is_some() {
                return Err(at.err("VmFlags", Problem::Duplicate));
            }
            *flags = Some(parse_flags(value, at)?);
        }
    }
    if let Some(done) = current.take() {
        out.push(finish(done)?);
    }
    Ok(out)
}

fn finish(
    (start, header_line, flags): (u64, usize, Option<VmFlags>),
) -> Result<(u64, VmFlags), ParseError> {
    let flags =
        flags.ok_or_else(|| At::line(FILE, header_line).err("VmFlags", Problem::Missing))?;
    Ok((start, flags))
}

fn parse_flags(value: &str, at: At) -> Result<VmFlags, ParseError> {
    let well_formed = |code: &str| {
        code.len() == 2
            && code
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
    };
    if !value.split_ascii_whitespace().all(well_formed) {
        return Err(at.err("VmFlags", Problem::Malformed));
    }
    Ok(VmFlags::new(value.split_ascii_whitespace()))
}

#[cfg(test)]
mod tests {
    use super::super::testdata as td;
    use super::super::Location;
    use super::*;

    fn err(text: &str) -> ParseError {
        match parse_smaps_vmflags(text) {
            Err(e) => e,
            Ok(v) => panic!("accepted {text:?} as {v:?}"),
        }
    }

    fn at(line: usize, field: &'static str, problem: Problem) -> ParseError {
        ParseError::new(FILE, Location::Line(line), field, problem)
    }

    fn flags(s: &[&str]) -> VmFlags {
        VmFlags::new(s.iter().copied())
    }

    #[test]
    fn procfs_smaps_real_sample() -> Result<(), ParseError> {
        let v = parse_smaps_vmflags(td::SMAPS)?;
        let starts: Vec<u64> = v.iter().map(|(s, _)| *s).collect();
        assert_eq!(
            starts,
            [
                0x55a0_16a0_8000,
                0x7fef_66f6_3000,
                0x7fef_66f6_4000,
                0x7fef_66f6_9000,
                0x7fef_66f6_a000,
                0x7fef_66f6_e000,
                0x7fef_66f7_4000,
                0x7ffd_6c4a_2000,
                0xffff_ffff_ff60_0000,
            ]
        );
        assert_eq!(v[0].1, flags(&["rd", "mr", "mw", "me"]));
        // memfd mapped shared and executable.
        assert_eq!(v[1].1, flags(&["rd", "ex", "sh", "mr", "mw", "me", "ms"]));
        // mlock()ed shared anonymous memory.
        assert_eq!(
            v[2].1,
            flags(&["rd", "wr", "sh", "mr", "mw", "me", "ms", "lo"])
        );
        assert_eq!(v[5].1, flags(&["rd", "mr", "pf", "io", "de", "dd"]));
        assert_eq!(v[7].1, flags(&["rd", "wr", "mr", "mw", "me", "gd", "ac"]));
        assert_eq!(v[8].1, flags(&["ex"]));
        Ok(())
    }

    #[test]
    fn procfs_smaps_empty_and_minimal() -> Result<(), ParseError> {
        assert!(parse_smaps_vmflags("")?.is_empty());
        let v = parse_smaps_vmflags("1000-2000 rw-p 0 0:0 0 \nSize: 4 kB\nVmFlags: \n")?;
        assert_eq!(v, vec![(0x1000, VmFlags::default())]);
        Ok(())
    }

    #[test]
    fn procfs_smaps_malformed() {
        let h1 = "1000-2000 rw-p 00000000 00:00 0 \n";
        let h2 = "2000-3000 rw-p 00000000 00:00 0 \n";
        assert_eq!(err("Size: 4 kB\n"), at(1, "header", Problem::Missing));
        assert_eq!(err(h1), at(1, "VmFlags", Problem::Missing));
        assert_eq!(
            err(&format!("{h1}Size: 4 kB\n{h2}VmFlags: rd\n")),
            at(1, "VmFlags", Problem::Missing)
        );
        assert_eq!(
            err(&format!("{h1}VmFlags: rd\nVmFlags: rd\n")),
            at(3, "VmFlags", Problem::Duplicate)
        );
        assert_eq!(
            err(&format!("{h1}VmFlags: rd w\n")),
            at(2, "VmFlags", Problem::Malformed)
        );
        assert_eq!(
            err(&format!("{h1}VmFlags: rdx\n")),
            at(2, "VmFlags", Problem::Malformed)
        );
        assert_eq!(
            err(&format!("{h1}VmFlags: RD\n")),
            at(2, "VmFlags", Problem::Malformed)
        );
        assert_eq!(
            err(&format!("{h1}VmFlags: rd")),
            at(2, "line", Problem::Truncated)
        );
        assert_eq!(
            err(&format!("{h1}Size 4 kB\n")),
            at(2, "key", Problem::Malformed)
        );
        assert_eq!(err(&format!("{h1}\n")), at(2, "key", Problem::Malformed));
        assert_eq!(err(&format!("{h1}: 4\n")), at(2, "key", Problem::Malformed));
        assert_eq!(
            err("1000-2000 rw-x 0 0:0 0\nVmFlags: rd\n"),
            at(1, "perms", Problem::Malformed)
        );
        assert_eq!(
            err(&format!("{h2}VmFlags: rd\n{h1}VmFlags: rd\n")),
            at(3, "start", Problem::Unordered)
        );
        assert!(parse_smaps_vmflags(&format!("{h1}VmFlags: rd\n{h2}VmFlags: rd\n")).is_ok());
    }
}
