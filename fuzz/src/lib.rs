//! The bodies of the fuzz targets, as plain functions.
//!
//! Each `fuzz_targets/<name>.rs` is one line that hands libFuzzer's input to
//! the function of the same name here. The main workspace's `cargo test`
//! includes this file too (`tests/tests/fuzz_corpora.rs`) and replays every
//! committed seed corpus, `fuzz/seeds/<name>/*`, through [`TARGETS`], so a
//! crash once found and added to the seeds stays fixed without cargo-fuzz.
//!
//! Every body feeds the bytes to a parser of outside input the way the
//! helpers do (the dump reads `/proc` files with `String::from_utf8_lossy`;
//! the policy and `ckpt.toml` loaders refuse text that is not UTF-8) and
//! asserts what the parser promises of a result it accepts. A body must
//! never panic on any input: a panic is the finding.
//!
//! Trusts: nothing about the input. Depends only on the library crates.
#![forbid(unsafe_code)]

use std::path::Path;

use ckpt_core::procfs;

/// A fuzz body: must not panic on any input.
pub type Body = fn(&[u8]);

/// Every target of this directory but `image_reader` (whose body lives in
/// its own file), by name: the name of its `fuzz_targets/<name>.rs` and of
/// its seed directory `seeds/<name>/`.
pub const TARGETS: &[(&str, Body)] = &[
    ("policy_toml", policy_toml),
    ("ckpt_toml", ckpt_toml),
    ("proc_maps", proc_maps),
    ("proc_smaps", proc_smaps),
    ("proc_status", proc_status),
    ("proc_stat", proc_stat),
    ("proc_fdinfo", proc_fdinfo),
    ("proc_limits", proc_limits),
    ("proc_auxv", proc_auxv),
    ("proc_timers", proc_timers),
    ("proc_children", proc_children),
];

/// The admin policy (`policy.toml`, `policy.d/*.toml`, `policy check FILE`).
pub fn policy_toml(data: &[u8]) {
    if data.len() as u64 > ckpt_policy::MAX_POLICY_LEN {
        return; // the loader refuses it before parsing
    }
    let Ok(text) = std::str::from_utf8(data) else {
        return; // the loader refuses it before parsing
    };
    let Ok(policy) = ckpt_policy::parse_str(text, Path::new("fuzz.toml")) else {
        return;
    };
    let (users, groups) = policy.names();
    let _ = (users.len(), groups.len());
    let unique = |names: Vec<&str>| {
        let mut sorted = names.clone();
        sorted.sort_unstable();
        sorted.dedup();
        sorted.len() == names.len()
    };
    assert!(
        unique(policy.rules.iter().map(|r| r.name.as_str()).collect()),
        "accepted two rules with one name"
    );
    assert!(
        unique(policy.keys.iter().map(|k| k.name.as_str()).collect()),
        "accepted two keys with one name"
    );
    for rule in &policy.rules {
        assert!(
            !rule.signed_by.is_empty(),
            "accepted a rule without signed_by"
        );
    }
    for key in &policy.keys {
        assert!(
            policy.key_named(&key.name).is_some(),
            "a parsed key cannot be found by its own name"
        );
    }
}

/// The host signing configuration `<sysconfdir>/ckpt.toml`.
pub fn ckpt_toml(data: &[u8]) {
    if data.len() as u64 > ckpt_tpm::config::MAX_CONFIG_LEN {
        return; // the loader refuses it before parsing
    }
    let Ok(text) = std::str::from_utf8(data) else {
        return; // the loader reads it as UTF-8 text
    };
    let Ok(config) = ckpt_tpm::config::parse(text, Path::new("ckpt.toml")) else {
        return;
    };
    assert!(
        config.pcrs.windows(2).all(|w| w[0] < w[1]),
        "PCR list not strictly ascending: {:?}",
        config.pcrs
    );
}

fn text(data: &[u8]) -> std::borrow::Cow<'_, str> {
    String::from_utf8_lossy(data)
}

/// `/proc/PID/maps`.
pub fn proc_maps(data: &[u8]) {
    let Ok(maps) = procfs::maps::parse_maps(&text(data)) else {
        return;
    };
    for m in &maps {
        assert!(m.start < m.end, "accepted an empty or reversed mapping");
    }
    for w in maps.windows(2) {
        assert!(w[0].end <= w[1].start, "accepted overlapping mappings");
    }
}

/// `/proc/PID/smaps` (the `VmFlags` of each mapping).
pub fn proc_smaps(data: &[u8]) {
    let _ = procfs::smaps::parse_smaps_vmflags(&text(data));
}

/// `/proc/PID/status`.
pub fn proc_status(data: &[u8]) {
    let _ = procfs::status::parse_status(&text(data));
}

/// `/proc/PID/stat`.
pub fn proc_stat(data: &[u8]) {
    let _ = procfs::stat::parse_stat(&text(data));
}

/// `/proc/PID/fdinfo/FD`.
pub fn proc_fdinfo(data: &[u8]) {
    let _ = procfs::fdinfo::parse_fdinfo(&text(data));
}

/// `/proc/PID/limits`.
pub fn proc_limits(data: &[u8]) {
    let Ok(limits) = procfs::limits::parse_limits(&text(data)) else {
        return;
    };
    for (i, a) in limits.iter().enumerate() {
        assert!(
            limits.iter().skip(i + 1).all(|b| b.resource != a.resource),
            "accepted a resource twice"
        );
    }
}

/// `/proc/PID/auxv` (binary).
pub fn proc_auxv(data: &[u8]) {
    let Ok(words) = procfs::auxv::parse_auxv(data) else {
        return;
    };
    assert!(words.len() % 2 == 0, "odd number of auxv words");
    assert!(
        words.len() >= 2 && words[words.len() - 2] == 0,
        "accepted an auxv that does not end with AT_NULL"
    );
}

/// `/proc/PID/timers`.
pub fn proc_timers(data: &[u8]) {
    let _ = procfs::timers::count_posix_timers(&text(data));
}

/// `/proc/PID/task/TID/children`.
pub fn proc_children(data: &[u8]) {
    let _ = procfs::children::parse_children(&text(data));
}
