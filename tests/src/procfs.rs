//! Minimal /proc readers for the tests (parsed here, not with a library, so
//! the tests do not share code with the engine they check).

use std::collections::BTreeMap;
use std::fs;

/// The fields of `/proc/PID/stat` the tests use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stat {
    pub state: char,
    pub ppid: i32,
    pub pgrp: i32,
    pub session: i32,
    /// Clock ticks since boot; with the pid, identifies the process.
    pub start_time: u64,
}

/// Parses `/proc/PID/stat`; `None` if the process does not exist.
pub fn stat(pid: i32) -> Option<Stat> {
    let text = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_stat(&text)
}

/// Parses the text of a stat file. The comm field may hold spaces and ')',
/// so the fields are counted from the last ')'.
pub fn parse_stat(text: &str) -> Option<Stat> {
    let rest = &text[text.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // f[0] is field 3 (state); field N is f[N - 3].
    Some(Stat {
        state: f.first()?.chars().next()?,
        ppid: f.get(1)?.parse().ok()?,
        pgrp: f.get(2)?.parse().ok()?,
        session: f.get(3)?.parse().ok()?,
        start_time: f.get(19)?.parse().ok()?,
    })
}

/// `/proc/PID/status` as key → value (value trimmed).
pub fn status(pid: i32) -> Option<BTreeMap<String, String>> {
    let text = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    Some(
        text.lines()
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.to_string(), v.trim().to_string()))
            .collect(),
    )
}

/// `/proc/PID/cmdline` split at NULs.
pub fn cmdline(pid: i32) -> Option<Vec<String>> {
    let raw = fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    Some(
        raw.split(|&b| b == 0)
            .filter(|a| !a.is_empty())
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect(),
    )
}

/// All pids in /proc.
pub fn pids() -> Vec<i32> {
    fs::read_dir("/proc")
        .map(|rd| {
            rd.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// `/proc/PID/comm` without its newline ("" if the process is gone).
pub fn comm(pid: i32) -> String {
    fs::read_to_string(format!("/proc/{pid}/comm"))
        .unwrap_or_default()
        .trim_end()
        .to_string()
}

/// The children of `pid` (every thread's `children` list).
pub fn children(pid: i32) -> Vec<i32> {
    let mut out = Vec::new();
    let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) else {
        return out;
    };
    for t in tasks.flatten() {
        let text = fs::read_to_string(t.path().join("children")).unwrap_or_default();
        out.extend(
            text.split_whitespace()
                .filter_map(|s| s.parse::<i32>().ok()),
        );
    }
    out
}

/// `root` and every live descendant, each parent before its children.
pub fn descendants(root: i32) -> Vec<i32> {
    let mut out = Vec::new();
    let mut todo = vec![root];
    while let Some(pid) = todo.pop() {
        if stat(pid).is_none() {
            continue;
        }
        out.push(pid);
        todo.extend(children(pid));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_with_odd_comm() {
        let s = "42 (a) b (c)) S 1 42 42 0 -1 4194560 0 0 0 0 0 0 0 0 20 0 1 0 12345 0 0";
        let st = parse_stat(s).expect("parses");
        assert_eq!(
            st,
            Stat {
                state: 'S',
                ppid: 1,
                pgrp: 42,
                session: 42,
                start_time: 12345
            }
        );
    }

    #[test]
    fn own_stat() {
        let me = std::process::id() as i32;
        let st = stat(me).expect("own stat");
        // The main thread's state: this test runs on another thread.
        assert!(st.state.is_ascii_alphabetic(), "{st:?}");
        assert!(st.start_time > 0 && st.ppid > 0, "{st:?}");
        assert!(status(me).expect("own status").contains_key("Uid"));
    }
}
