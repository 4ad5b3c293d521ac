//! `/proc/PID/maps`: one line per VMA.
//!
//! ```text
//! 7fef66f6a000-7fef66f6c000 rw-s 00000000 fe:00 10010880                   /tmp/dir with spaces/f.bin
//! start-end                 perms offset  dev   inode    (padding)         path
//! ```
//!
//! The kernel prints `%08lx-%08lx %c%c%c%c %08llx %02x:%02x %lu ` and then,
//! for a named mapping, pads with spaces to 72 characters and adds one more
//! space, so the name starts in column 74 (later when the fields are wider). The path is the rest of the line after those spaces; it
//! may contain spaces, `(` and `)`. What the path can be:
//!
//! * `None`: anonymous memory without a name;
//! * `[heap]`, `[stack]`, `[vdso]`, `[vvar]`, `[vvar_vclock]`, `[vsyscall]`,
//!   `[anon:NAME]`, `[anon_shmem:NAME]`, ...: kept as printed, brackets included;
//! * a file path, possibly with the suffix ` (deleted)`, which sets
//!   [`MapsEntry::deleted`] and is stripped. Shared anonymous memory reads as
//!   `/dev/zero (deleted)` and a memfd as `/memfd:NAME (deleted)`.
//!
//! Two ambiguities the text cannot resolve, left to the caller (who can look
//! at `/proc/PID/map_files/` for the real identity):
//! * the kernel writes a newline in a file name as the four characters `\012`
//!   but does not escape backslashes, so the path is returned as printed;
//! * a file whose name really ends in ` (deleted)` looks deleted.
//!
//! Besides the format, the parser checks what the dump relies on: each
//! mapping's end is above its start, and mappings are in ascending address
//! order without overlap (a torn read of a changing process can break that).
//! An empty file (a kernel thread, a zombie) is an empty list.

use super::lex::{self, At, Context};
use super::{ParseError, Problem, ProcFile};

/// One line of `/proc/PID/maps`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MapsEntry {
    /// First address of the mapping.
    pub start: u64,
    /// One past the last address of the mapping.
    pub end: u64,
    /// `r` in the permissions.
    pub read: bool,
    /// `w` in the permissions.
    pub write: bool,
    /// `x` in the permissions.
    pub exec: bool,
    /// `s` (shared) rather than `p` (private) in the permissions.
    pub shared: bool,
    /// Offset into the file, in bytes (page offset << 12 for files).
    pub offset: u64,
    /// Major number of the device holding the file.
    pub dev_major: u32,
    /// Minor number of the device holding the file.
    pub dev_minor: u32,
    /// Inode of the file; 0 for anonymous memory.
    pub inode: u64,
    /// Path or pseudo-name, without the ` (deleted)` suffix; `None` when the
    /// line has none.
    pub path: Option<String>,
    /// The path had the ` (deleted)` suffix.
    pub deleted: bool,
}

const DELETED: &str = " (deleted)";

/// Parses the whole of `/proc/PID/maps`.
pub fn parse_maps(text: &str) -> Result<Vec<MapsEntry>, ParseError> {
    let mut entries: Vec<MapsEntry> = Vec::new();
    for (n, line) in lex::lines(ProcFile::Maps, text)? {
        let at = At::line(ProcFile::Maps, n);
        let entry = parse_line(line, at)?;
        check_order(entries.last(), &entry, at)?;
        entries.push(entry);
    }
    Ok(entries)
}

/// Checks `entry` starts at or above the end of `prev`.
pub(super) fn check_order(
    prev: Option<&MapsEntry>,
    entry: &MapsEntry,
    at: At,
) -> Result<(), ParseError> {
    match prev {
        Some(p) if entry.start < p.end => Err(at.err("start", Problem::Unordered)),
        _ => Ok(()),
    }
}

/// Parses one maps line (also the VMA header lines of `smaps`).
pub(super) fn parse_line(line: &str, at: At) -> Result<MapsEntry, ParseError> {
    let (range, rest) = split_field(line, at, "perms")?;
    let (start, end) = range
        .split_once('-')
        .ok_or_else(|| at.err("end", Problem::Missing))?;
    let start = lex::hex(start).at(at, "start")?;
    let end = lex::hex(end).at(at, "end")?;
    if end <= start {
        return Err(at.err("end", Problem::EmptyRange));
    }

    let (perms, rest) = split_field(rest, at, "offset")?;
    let [r, w, x, s] = perms.as_bytes() else {
        return Err(at.err("perms", Problem::Malformed));
    };
    let bit = |c: &u8, yes: u8| match *c {
        b'-' => Ok(false),
        c if c == yes => Ok(true),
        _ => Err(at.err("perms", Problem::Malformed)),
    };
    let (read, write, exec) = (bit(r, b'r')?, bit(w, b'w')?, bit(x, b'x')?);
    let shared = match s {
        b's' => true,
        b'p' => false,
        _ => return Err(at.err("perms", Problem::Malformed)),
    };

    let (offset, rest) = split_field(rest, at, "dev")?;
    let offset = lex::hex(offset).at(at, "offset")?;

    let (dev, rest) = split_field(rest, at, "inode")?;
    let (major, minor) = dev
        .split_once(':')
        .ok_or_else(|| at.err("dev", Problem::Malformed))?;
    let dev_major = lex::hex(major).and_then(lex::narrow).at(at, "dev")?;
    let dev_minor = lex::hex(minor).and_then(lex::narrow).at(at, "dev")?;

    // The kernel always prints a space after the inode; be lenient if a line
    // of an unnamed mapping lacks it.
    let (inode, name) = rest.split_once(' ').unwrap_or((rest, ""));
    let inode = lex::dec(inode).at(at, "inode")?;

    let name = name.trim_start_matches(' ');
    let (path, deleted) = if name.is_empty() {
        (None, false)
    } else {
        match name.strip_suffix(DELETED) {
            // `name` starts with a non-space, so `p` is never empty.
            Some(p) => (Some(p.to_owned()), true),
            None => (Some(name.to_owned()), false),
        }
    };

    Ok(MapsEntry {
        start,
        end,
        read,
        write,
        exec,
        shared,
        offset,
        dev_major,
        dev_minor,
        inode,
        path,
        deleted,
    })
}

/// Splits off one space-terminated field; `next` names the field that is
/// missing when there is no space.
fn split_field<'a>(
    s: &'a str,
    at: At,
    next: &'static str,
) -> Result<(&'a str, &'a str), ParseError> {
    s.split_once(' ')
        .ok_or_else(|| at.err(next, Problem::Missing))
}

#[cfg(test)]
mod tests {
    use super::super::testdata as td;
    use super::super::Location;
    use super::*;

    fn err(text: &str) -> ParseError {
        match parse_maps(text) {
            Err(e) => e,
            Ok(v) => panic!("accepted {text:?} as {v:?}"),
        }
    }

    fn at(line: usize, field: &'static str, problem: Problem) -> ParseError {
        ParseError::new(ProcFile::Maps, Location::Line(line), field, problem)
    }

    #[test]
    fn procfs_maps_real_sample() -> Result<(), ParseError> {
        let m = parse_maps(td::MAPS)?;
        assert_eq!(m.len(), 32);
        assert_eq!(
            m[0],
            MapsEntry {
                start: 0x55a0_16a0_8000,
                end: 0x55a0_16a0_9000,
                read: true,
                write: false,
                exec: false,
                shared: false,
                offset: 0,
                dev_major: 0xfe,
                dev_minor: 0,
                inode: 10_010_809,
                path: Some("/tmp/samples/cap".into()),
                deleted: false,
            }
        );
        assert_eq!(m[1].offset, 0x1000);
        assert!(m[1].read && m[1].exec && !m[1].write);
        assert_eq!(m[5].path.as_deref(), Some("[heap]"));

        // Anonymous (trailing space after the inode, no name).
        assert_eq!(m[6].path, None);
        assert!(!m[6].read && !m[6].write && !m[6].exec && !m[6].shared);
        assert_eq!(m[6].inode, 0);

        // memfd and shared anonymous memory: deleted, shared, device 00:01.
        assert_eq!(m[15].path.as_deref(), Some("/memfd:jit code"));
        assert!(m[15].deleted && m[15].shared && m[15].exec);
        assert_eq!(
            (m[15].dev_major, m[15].dev_minor, m[15].inode),
            (0, 1, 1026)
        );
        assert_eq!(m[16].path.as_deref(), Some("/dev/zero"));
        assert!(m[16].deleted && m[16].shared && m[16].write);

        // A deleted file and a path with spaces and parentheses.
        assert_eq!(m[19].path.as_deref(), Some("/tmp/samples/gone.bin"));
        assert!(m[19].deleted && !m[19].shared);
        assert_eq!(
            m[20].path.as_deref(),
            Some("/tmp/samples/dir with spaces/my file (1).bin")
        );
        assert!(!m[20].deleted && m[20].shared);

        let names: Vec<_> = m.iter().filter_map(|e| e.path.as_deref()).collect();
        for special in ["[vvar]", "[vvar_vclock]", "[vdso]", "[stack]", "[vsyscall]"] {
            assert!(names.contains(&special), "{special}");
        }
        let vsyscall = &m[31];
        assert_eq!(vsyscall.start, 0xffff_ffff_ff60_0000);
        assert!(vsyscall.exec && !vsyscall.read);
        Ok(())
    }

    #[test]
    fn procfs_maps_hand_written_names() -> Result<(), ParseError> {
        // CONFIG_ANON_VMA_NAME is off on the capture machine: these follow the
        // kernel's format (name in column 74, or after one space when the fields are wide).
        let text = "\
7f0000000000-7f0000003000 rw-p 00000000 00:00 0                          [anon:ckpt arena]\n\
7f0000003000-7f0000004000 rw-s 00000000 00:01 7                          [anon_shmem:ring]\n\
7f0000004000-7f0000005000 r--p 00000000 fe:00 12345678901234567890 /a  (deleted)\n\
7f0000005000-7f0000006000 r--p 00000000 103:0f 1 /x\\012y\n\
7f0000006000-7f0000007000 r--p 00000000 00:00 0\n";
        let m = parse_maps(text)?;
        assert_eq!(m[0].path.as_deref(), Some("[anon:ckpt arena]"));
        assert_eq!(m[1].path.as_deref(), Some("[anon_shmem:ring]"));
        // Trailing spaces of a name are kept; only the suffix goes.
        assert_eq!(m[2].path.as_deref(), Some("/a "));
        assert!(m[2].deleted);
        assert_eq!(m[2].inode, 12_345_678_901_234_567_890);
        assert_eq!((m[3].dev_major, m[3].dev_minor), (0x103, 0xf));
        assert_eq!(m[3].path.as_deref(), Some("/x\\012y"));
        assert_eq!(m[4].path, None);
        Ok(())
    }

    #[test]
    fn procfs_maps_empty_is_no_mappings() -> Result<(), ParseError> {
        assert_eq!(parse_maps("")?, vec![]);
        Ok(())
    }

    #[test]
    fn procfs_maps_malformed() {
        let ok = "00400000-00401000 r-xp 00000000 fe:00 1 /bin/x\n";
        assert!(parse_maps(ok).is_ok());

        assert_eq!(err("\n"), at(1, "perms", Problem::Missing));
        assert_eq!(
            err("00400000-00401000 r-xp 00000000 fe:00 1 /bin/x"),
            at(1, "line", Problem::Truncated)
        );
        assert_eq!(err("00400000-00401000\n"), at(1, "perms", Problem::Missing));
        assert_eq!(
            err("00400000 r-xp 0 0:0 0\n"),
            at(1, "end", Problem::Missing)
        );
        assert_eq!(
            err("0040000g-00401000 r-xp 0 0:0 0\n"),
            at(1, "start", Problem::InvalidDigit)
        );
        assert_eq!(
            err("-00401000 r-xp 0 0:0 0\n"),
            at(1, "start", Problem::Empty)
        );
        assert_eq!(
            err("00400000-10000000000000000 r-xp 0 0:0 0\n"),
            at(1, "end", Problem::Overflow)
        );
        assert_eq!(
            err("00401000-00401000 r-xp 0 0:0 0\n"),
            at(1, "end", Problem::EmptyRange)
        );
        assert_eq!(
            err("00402000-00401000 r-xp 0 0:0 0\n"),
            at(1, "end", Problem::EmptyRange)
        );
        assert_eq!(err("0-1 r-x 0 0:0 0\n"), at(1, "perms", Problem::Malformed));
        assert_eq!(
            err("0-1 r-xpp 0 0:0 0\n"),
            at(1, "perms", Problem::Malformed)
        );
        assert_eq!(
            err("0-1 w-xp 0 0:0 0\n"),
            at(1, "perms", Problem::Malformed)
        );
        assert_eq!(
            err("0-1 r-xq 0 0:0 0\n"),
            at(1, "perms", Problem::Malformed)
        );
        assert_eq!(err("0-1 r-xp 0 0:0 0\u{301}\n").field, "inode");
        assert_eq!(err("0-1 rwxp\n"), at(1, "offset", Problem::Missing));
        assert_eq!(err("0-1 rwxp 0\n"), at(1, "dev", Problem::Missing));
        assert_eq!(err("0-1 rwxp 0 0:0\n"), at(1, "inode", Problem::Missing));
        assert_eq!(err("0-1 rwxp 0 00 0\n"), at(1, "dev", Problem::Malformed));
        assert_eq!(
            err("0-1 rwxp 0 100000000:0 0\n"),
            at(1, "dev", Problem::Overflow)
        );
        assert_eq!(err("0-1 rwxp 0 0: 0\n"), at(1, "dev", Problem::Empty));
        assert_eq!(
            err("0-1 rwxp -1 0:0 0\n"),
            at(1, "offset", Problem::InvalidDigit)
        );
        assert_eq!(
            err("0-1 rwxp 0 0:0 x /a\n"),
            at(1, "inode", Problem::InvalidDigit)
        );
        assert_eq!(err("0-1 rwxp 0 0:0  /a\n"), at(1, "inode", Problem::Empty));
        assert_eq!(
            err("0-1 rwxp 0 0:0 18446744073709551616\n"),
            at(1, "inode", Problem::Overflow)
        );
        // Two spaces where one belongs.
        assert_eq!(
            err("0-1  rwxp 0 0:0 0\n"),
            at(1, "perms", Problem::Malformed)
        );
        // Order: overlapping or descending mappings.
        assert_eq!(
            err("1000-3000 rw-p 0 0:0 0\n2000-4000 rw-p 0 0:0 0\n"),
            at(2, "start", Problem::Unordered)
        );
        assert_eq!(
            err("3000-4000 rw-p 0 0:0 0\n1000-2000 rw-p 0 0:0 0\n"),
            at(2, "start", Problem::Unordered)
        );
        // Adjacent mappings are fine.
        assert!(parse_maps("1000-2000 rw-p 0 0:0 0\n2000-3000 r--p 0 0:0 0\n").is_ok());
        // A blank line inside the file.
        assert_eq!(
            err("1000-2000 rw-p 0 0:0 0\n\n2000-3000 r--p 0 0:0 0\n"),
            at(2, "perms", Problem::Missing)
        );
        // Only the suffix: a path of " (deleted)" alone is a name, not a flag.
        let m = parse_maps("0-1 rwxp 0 0:0 0 (deleted)\n");
        assert_eq!(
            m.map(|v| (v[0].path.clone(), v[0].deleted)),
            Ok((Some("(deleted)".into()), false))
        );
    }
}
