//! `/proc/PID/status`: `Key:\tvalue` lines.
//!
//! Decimal except `Umask` (octal) and the `Sig*` / `Cap*` masks (hex). `Name`
//! is the comm with the kernel's two escapes undone (`\n` for a newline, `\\`
//! for a backslash); it can contain spaces, tabs, `)` and any other byte.
//! `Groups` is empty for a process with no supplementary groups. Every key of
//! [`Status`] must appear exactly once, except `Umask`, which kernels before
//! 4.7 lack. Keys this parser does not use are skipped, but every line must
//! still be a `Key:` line.

use super::lex::{self, set, At};
use super::{ParseError, Problem, ProcFile};

const FILE: ProcFile = ProcFile::Status;

/// The fields of `/proc/PID/status` the dump uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    /// `Name`: the comm, unescaped.
    pub name: String,
    /// `Umask`, when the kernel prints it.
    pub umask: Option<u32>,
    /// `State`: the one-letter state (`R`, `S`, `D`, `T`, `t`, `Z`, `X`, `I`, ...).
    pub state: char,
    /// `Tgid`.
    pub tgid: i32,
    /// `Pid`.
    pub pid: i32,
    /// `PPid`.
    pub ppid: i32,
    /// `TracerPid`: 0 when not traced.
    pub tracer_pid: i32,
    /// `Uid`: real, effective, saved, filesystem.
    pub uid: [u32; 4],
    /// `Gid`: real, effective, saved, filesystem.
    pub gid: [u32; 4],
    /// `Groups`: supplementary groups, in the kernel's (sorted) order.
    pub groups: Vec<u32>,
    /// `Threads`.
    pub threads: u32,
    /// `SigPnd`: signals pending for this thread.
    pub sig_pnd: u64,
    /// `ShdPnd`: signals pending for the thread group.
    pub shd_pnd: u64,
    /// `SigBlk`: blocked signals.
    pub sig_blk: u64,
    /// `SigIgn`: ignored signals.
    pub sig_ign: u64,
    /// `SigCgt`: caught signals.
    pub sig_cgt: u64,
    /// `CapInh`: inheritable capabilities.
    pub cap_inh: u64,
    /// `CapPrm`: permitted capabilities.
    pub cap_prm: u64,
    /// `CapEff`: effective capabilities.
    pub cap_eff: u64,
    /// `CapBnd`: bounding set.
    pub cap_bnd: u64,
    /// `CapAmb`: ambient capabilities.
    pub cap_amb: u64,
    /// `NoNewPrivs`.
    pub no_new_privs: bool,
    /// `Seccomp`: 0 disabled, 1 strict, 2 filter.
    pub seccomp: u32,
}

/// Fields as they are found; each `Some` at most once.
#[derive(Default)]
struct Seen {
    name: Option<String>,
    umask: Option<u32>,
    state: Option<char>,
    tgid: Option<i32>,
    pid: Option<i32>,
    ppid: Option<i32>,
    tracer_pid: Option<i32>,
    uid: Option<[u32; 4]>,
    gid: Option<[u32; 4]>,
    groups: Option<Vec<u32>>,
    threads: Option<u32>,
    sig_pnd: Option<u64>,
    shd_pnd: Option<u64>,
    sig_blk: Option<u64>,
    sig_ign: Option<u64>,
    sig_cgt: Option<u64>,
    cap_inh: Option<u64>,
    cap_prm: Option<u64>,
    cap_eff: Option<u64>,
    cap_bnd: Option<u64>,
    cap_amb: Option<u64>,
    no_new_privs: Option<bool>,
    seccomp: Option<u32>,
}

/// Parses the whole of `/proc/PID/status`.
pub fn parse_status(text: &str) -> Result<Status, ParseError> {
    let mut s = Seen::default();
    for (n, line) in lex::lines(FILE, text)? {
        let at = At::line(FILE, n);
        let Some((key, raw)) = line.split_once(':') else {
            return Err(at.err("key", Problem::Malformed));
        };
        if key.is_empty() || key.contains([' ', '\t']) {
            return Err(at.err("key", Problem::Malformed));
        }
        // Every line the kernel prints has a tab after the colon.
        let value = || raw.strip_prefix('\t').ok_or(Problem::Malformed);
        match key {
            "Name" => set(&mut s.name, value().and_then(unescape_name), at, "Name")?,
            "Umask" => set(&mut s.umask, value().and_then(umask), at, "Umask")?,
            "State" => set(&mut s.state, value().and_then(state), at, "State")?,
            "Tgid" => set(&mut s.tgid, value().and_then(int), at, "Tgid")?,
            "Pid" => set(&mut s.pid, value().and_then(int), at, "Pid")?,
            "PPid" => set(&mut s.ppid, value().and_then(int), at, "PPid")?,
            "TracerPid" => set(&mut s.tracer_pid, value().and_then(int), at, "TracerPid")?,
            "Uid" => set(&mut s.uid, value().and_then(ids), at, "Uid")?,
            "Gid" => set(&mut s.gid, value().and_then(ids), at, "Gid")?,
            "Groups" => set(&mut s.groups, value().and_then(groups), at, "Groups")?,
            "Threads" => set(&mut s.threads, value().and_then(uint), at, "Threads")?,
            "SigPnd" => set(&mut s.sig_pnd, value().and_then(lex::hex), at, "SigPnd")?,
            "ShdPnd" => set(&mut s.shd_pnd, value().and_then(lex::hex), at, "ShdPnd")?,
            "SigBlk" => set(&mut s.sig_blk, value().and_then(lex::hex), at, "SigBlk")?,
            "SigIgn" => set(&mut s.sig_ign, value().and_then(lex::hex), at, "SigIgn")?,
            "SigCgt" => set(&mut s.sig_cgt, value().and_then(lex::hex), at, "SigCgt")?,
            "CapInh" => set(&mut s.cap_inh, value().and_then(lex::hex), at, "CapInh")?,
            "CapPrm" => set(&mut s.cap_prm, value().and_then(lex::hex), at, "CapPrm")?,
            "CapEff" => set(&mut s.cap_eff, value().and_then(lex::hex), at, "CapEff")?,
            "CapBnd" => set(&mut s.cap_bnd, value().and_then(lex::hex), at, "CapBnd")?,
            "CapAmb" => set(&mut s.cap_amb, value().and_then(lex::hex), at, "CapAmb")?,
            "NoNewPrivs" => set(
                &mut s.no_new_privs,
                value().and_then(lex::flag),
                at,
                "NoNewPrivs",
            )?,
            "Seccomp" => set(&mut s.seccomp, value().and_then(uint), at, "Seccomp")?,
            _ => {}
        }
    }

    let whole = At::whole(FILE);
    let need = |field: &'static str| whole.err(field, Problem::Missing);
    Ok(Status {
        name: s.name.ok_or_else(|| need("Name"))?,
        umask: s.umask,
        state: s.state.ok_or_else(|| need("State"))?,
        tgid: s.tgid.ok_or_else(|| need("Tgid"))?,
        pid: s.pid.ok_or_else(|| need("Pid"))?,
        ppid: s.ppid.ok_or_else(|| need("PPid"))?,
        tracer_pid: s.tracer_pid.ok_or_else(|| need("TracerPid"))?,
        uid: s.uid.ok_or_else(|| need("Uid"))?,
        gid: s.gid.ok_or_else(|| need("Gid"))?,
        groups: s.groups.ok_or_else(|| need("Groups"))?,
        threads: s.threads.ok_or_else(|| need("Threads"))?,
        sig_pnd: s.sig_pnd.ok_or_else(|| need("SigPnd"))?,
        shd_pnd: s.shd_pnd.ok_or_else(|| need("ShdPnd"))?,
        sig_blk: s.sig_blk.ok_or_else(|| need("SigBlk"))?,
        sig_ign: s.sig_ign.ok_or_else(|| need("SigIgn"))?,
        sig_cgt: s.sig_cgt.ok_or_else(|| need("SigCgt"))?,
        cap_inh: s.cap_inh.ok_or_else(|| need("CapInh"))?,
        cap_prm: s.cap_prm.ok_or_else(|| need("CapPrm"))?,
        cap_eff: s.cap_eff.ok_or_else(|| need("CapEff"))?,
        cap_bnd: s.cap_bnd.ok_or_else(|| need("CapBnd"))?,
        cap_amb: s.cap_amb.ok_or_else(|| need("CapAmb"))?,
        no_new_privs: s.no_new_privs.ok_or_else(|| need("NoNewPrivs"))?,
        seccomp: s.seccomp.ok_or_else(|| need("Seccomp"))?,
    })
}

/// Undoes `seq_escape_str(.., ESCAPE_SPACE | ESCAPE_SPECIAL, "\n\\")`: only a
/// newline (`\n`) and a backslash (`\\`) are escaped; any other byte is raw.
fn unescape_name(v: &str) -> Result<String, Problem> {
    let mut out = String::with_capacity(v.len());
    let mut chars = v.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.next() {
                Some('n') => out.push('\n'),
                Some('\\') => out.push('\\'),
                _ => return Err(Problem::Malformed),
            }
        } else {
            out.push(c);
        }
    }
    Ok(out)
}

fn umask(v: &str) -> Result<u32, Problem> {
    let m = lex::oct(v)?;
    if m > 0o777 {
        return Err(Problem::OutOfRange);
    }
    lex::narrow(m)
}

/// `R (running)`: the letter, then a space and a description.
fn state(v: &str) -> Result<char, Problem> {
    let mut chars = v.chars();
    match (chars.next(), chars.next()) {
        (None, _) => Err(Problem::Empty),
        (Some(c), None | Some(' ')) if c.is_ascii_alphabetic() => Ok(c),
        _ => Err(Problem::Malformed),
    }
}

fn int(v: &str) -> Result<i32, Problem> {
    lex::dec_signed(v).and_then(lex::narrow_signed)
}

fn uint(v: &str) -> Result<u32, Problem> {
    lex::dec(v).and_then(lex::narrow)
}

/// Four tab-separated ids: real, effective, saved, filesystem.
fn ids(v: &str) -> Result<[u32; 4], Problem> {
    let mut it = v.split('\t');
    let mut next = || it.next().ok_or(Problem::Missing).and_then(uint);
    let ids = [next()?, next()?, next()?, next()?];
    if it.next().is_some() {
        return Err(Problem::Trailing);
    }
    Ok(ids)
}

/// Space-separated gids, each followed by a space; a lone space when empty.
fn groups(v: &str) -> Result<Vec<u32>, Problem> {
    v.split_ascii_whitespace().map(uint).collect()
}

#[cfg(test)]
mod tests {
    use super::super::testdata as td;
    use super::super::Location;
    use super::*;

    const ALL_CAPS: u64 = 0x0000_01ff_feff_ffff;

    fn err(text: &str) -> ParseError {
        match parse_status(text) {
            Err(e) => e,
            Ok(v) => panic!("accepted {text:?} as {v:?}"),
        }
    }

    fn at(line: usize, field: &'static str, problem: Problem) -> ParseError {
        ParseError::new(FILE, Location::Line(line), field, problem)
    }

    /// The real sample with line `key` replaced by `replacement` (or removed
    /// when `replacement` is empty).
    fn with_line(key: &str, replacement: &str) -> String {
        let mut out = String::new();
        for line in td::STATUS.lines() {
            if line.starts_with(&format!("{key}:")) {
                if !replacement.is_empty() {
                    out.push_str(replacement);
                    out.push('\n');
                }
            } else {
                out.push_str(line);
                out.push('\n');
            }
        }
        out
    }

    fn line_of(key: &str) -> usize {
        td::STATUS
            .lines()
            .position(|l| l.starts_with(&format!("{key}:")))
            .map_or(0, |i| i + 1)
    }

    #[test]
    fn procfs_status_real_sample() -> Result<(), ParseError> {
        let s = parse_status(td::STATUS)?;
        assert_eq!(
            s,
            Status {
                name: "a) x (b".into(),
                umask: Some(0o027),
                state: 'R',
                tgid: 4351,
                pid: 4351,
                ppid: 4302,
                tracer_pid: 0,
                uid: [0; 4],
                gid: [0; 4],
                groups: vec![],
                threads: 2,
                sig_pnd: 1 << (12 - 1), // SIGUSR2, raised
                shd_pnd: 0,
                sig_blk: (1 << (12 - 1)) | (1 << (37 - 1)), // SIGUSR2, SIGRTMIN+3
                sig_ign: 1 << (13 - 1),                     // SIGPIPE
                sig_cgt: (1 << (10 - 1)) | (1 << (33 - 1)), // SIGUSR1, glibc's SIGCANCEL
                cap_inh: 0,
                cap_prm: ALL_CAPS,
                cap_eff: ALL_CAPS,
                cap_bnd: ALL_CAPS,
                cap_amb: 0,
                no_new_privs: true,
                seccomp: 0,
            }
        );
        Ok(())
    }

    #[test]
    fn procfs_status_real_creds_sample() -> Result<(), ParseError> {
        let s = parse_status(td::STATUS_CREDS)?;
        assert_eq!(s.uid, [1000, 1001, 1002, 1001]);
        assert_eq!(s.gid, [100, 101, 102, 101]);
        assert_eq!(s.groups, [27, 100, 65534]);
        assert_eq!(s.tracer_pid, s.ppid);
        assert_eq!((s.cap_prm, s.cap_eff, s.cap_bnd), (0, 0, ALL_CAPS));
        assert!(s.no_new_privs);
        assert_eq!(s.seccomp, 2);
        assert_eq!(s.threads, 1);
        Ok(())
    }

    #[test]
    fn procfs_status_real_escaped_name_and_kthread() -> Result<(), ParseError> {
        assert_eq!(parse_status(td::STATUS_NL)?.name, "x\n) (y z");
        let k = parse_status(td::STATUS_KTHREAD)?;
        assert_eq!(
            (k.name.as_str(), k.state, k.pid, k.ppid),
            ("kthreadd", 'S', 2, 0)
        );
        Ok(())
    }

    #[test]
    fn procfs_status_name_escapes() {
        assert_eq!(unescape_name("a\\\\b\\nc\td"), Ok("a\\b\nc\td".to_owned()));
        assert_eq!(unescape_name(" lead"), Ok(" lead".to_owned()));
        assert_eq!(unescape_name("a\\t"), Err(Problem::Malformed));
        assert_eq!(unescape_name("a\\"), Err(Problem::Malformed));
        let t = with_line("Name", "Name:\t x\\\\");
        assert_eq!(parse_status(&t).map(|s| s.name), Ok(" x\\".to_owned()));
        let t = with_line("Name", "Name:\t");
        assert_eq!(parse_status(&t).map(|s| s.name), Ok(String::new()));
    }

    #[test]
    fn procfs_status_optional_umask() {
        let t = with_line("Umask", "");
        assert_eq!(parse_status(&t).map(|s| s.umask), Ok(None));
    }

    #[test]
    fn procfs_status_malformed() {
        assert_eq!(
            err(""),
            ParseError::new(FILE, Location::Whole, "Name", Problem::Missing)
        );
        let cut = td::STATUS.trim_end_matches('\n');
        assert_eq!(err(cut).problem, Problem::Truncated);
        assert_eq!(
            err("Name:\tx\nno colon here\n"),
            at(2, "key", Problem::Malformed)
        );
        assert_eq!(err("Name:x\n"), at(1, "Name", Problem::Malformed));

        for (key, bad, problem) in [
            ("Umask", "Umask:\t0800", Problem::InvalidDigit),
            ("Umask", "Umask:\t01000", Problem::OutOfRange),
            ("Umask", "Umask:\t", Problem::Empty),
            ("State", "State:\t", Problem::Empty),
            ("State", "State:\tRunning", Problem::Malformed),
            ("State", "State:\t? (x)", Problem::Malformed),
            ("Pid", "Pid:\t2147483648", Problem::Overflow),
            ("Pid", "Pid:\t 1", Problem::InvalidDigit),
            ("Pid", "Pid: 1", Problem::Malformed),
            ("Uid", "Uid:\t0\t0\t0", Problem::Missing),
            ("Uid", "Uid:\t0\t0\t0\t0\t0", Problem::Trailing),
            ("Uid", "Uid:\t0\t0\t0\t4294967296", Problem::Overflow),
            ("Gid", "Gid:\t0\t-1\t0\t0", Problem::InvalidDigit),
            ("Groups", "Groups:\t1 x ", Problem::InvalidDigit),
            ("Threads", "Threads:\t-1", Problem::InvalidDigit),
            ("SigBlk", "SigBlk:\t1ffffffffffffffff", Problem::Overflow),
            ("SigBlk", "SigBlk:\t00000000000000g0", Problem::InvalidDigit),
            ("CapEff", "CapEff:\t0x1", Problem::InvalidDigit),
            ("NoNewPrivs", "NoNewPrivs:\t2", Problem::OutOfRange),
            ("Seccomp", "Seccomp:\t4294967296", Problem::Overflow),
        ] {
            assert_eq!(
                err(&with_line(key, bad)),
                at(line_of(key), key, problem),
                "{bad:?}"
            );
        }

        for key in [
            "Name",
            "State",
            "Tgid",
            "Pid",
            "PPid",
            "TracerPid",
            "Uid",
            "Gid",
            "Groups",
            "Threads",
            "SigPnd",
            "ShdPnd",
            "SigBlk",
            "SigIgn",
            "SigCgt",
            "CapInh",
            "CapPrm",
            "CapEff",
            "CapBnd",
            "CapAmb",
            "NoNewPrivs",
            "Seccomp",
        ] {
            assert_eq!(
                err(&with_line(key, "")),
                ParseError::new(FILE, Location::Whole, key, Problem::Missing)
            );
        }

        let dup = format!("{}SigBlk:\t0\n", td::STATUS);
        let n = td::STATUS.lines().count() + 1;
        assert_eq!(err(&dup), at(n, "SigBlk", Problem::Duplicate));
    }
}
