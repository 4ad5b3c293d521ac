//! Replays every committed fuzz seed corpus through its fuzz body, so CI
//! (`cargo test --workspace`) runs every target's corpus without cargo-fuzz.
//!
//! The bodies are the functions of `fuzz/src/lib.rs` (the fuzz crate is its
//! own workspace; this includes the same file). A panic in a body is a
//! failure naming the seed. A target without seeds, or a fuzz target whose
//! body is not listed here, fails too, so no corpus is silently left out.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

#[path = "../../fuzz/src/lib.rs"]
mod bodies;

/// Targets whose body is not in `fuzz/src/lib.rs` (replayed elsewhere).
const ELSEWHERE: &[&str] = &["image_reader"];

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz")
}

fn seeds(target: &str) -> Vec<PathBuf> {
    let dir = fuzz_dir().join("seeds").join(target);
    let mut files: Vec<PathBuf> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("directory entry").path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

#[test]
fn every_seed_of_every_target_replays_without_a_panic() {
    let mut replayed = 0;
    for (target, body) in bodies::TARGETS {
        let files = seeds(target);
        assert!(!files.is_empty(), "fuzz target {target} has no seeds");
        for file in files {
            let data = fs::read(&file).expect("read seed");
            if std::panic::catch_unwind(|| body(&data)).is_err() {
                panic!("fuzz target {target} panics on {}", file.display());
            }
            replayed += 1;
        }
    }
    assert!(
        replayed >= 2 * bodies::TARGETS.len(),
        "only {replayed} seeds"
    );
}

#[test]
fn every_fuzz_target_has_a_replayed_body() {
    let dir = fuzz_dir().join("fuzz_targets");
    let on_disk: BTreeSet<String> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("directory entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "rs"))
        .map(|p| p.file_stem().unwrap().to_string_lossy().into_owned())
        .filter(|name| !ELSEWHERE.contains(&name.as_str()))
        .collect();
    let listed: BTreeSet<String> = bodies::TARGETS
        .iter()
        .map(|(name, _)| (*name).to_owned())
        .collect();
    assert_eq!(
        on_disk, listed,
        "fuzz_targets/*.rs and bodies::TARGETS differ"
    );
}

/// The bodies must tell a valid sample from garbage the way the parsers do:
/// a replay that accepted nothing would prove little.
#[test]
fn seeds_of_real_files_parse() {
    use ckpt_core::procfs;
    let read = |t: &str, f: &str| fs::read(fuzz_dir().join("seeds").join(t).join(f)).unwrap();
    let text = |t: &str, f: &str| String::from_utf8(read(t, f)).unwrap();
    procfs::maps::parse_maps(&text("proc_maps", "maps")).expect("maps seed");
    procfs::smaps::parse_smaps_vmflags(&text("proc_smaps", "smaps")).expect("smaps seed");
    procfs::status::parse_status(&text("proc_status", "status")).expect("status seed");
    procfs::stat::parse_stat(&text("proc_stat", "stat")).expect("stat seed");
    procfs::fdinfo::parse_fdinfo(&text("proc_fdinfo", "stdin")).expect("fdinfo seed");
    procfs::limits::parse_limits(&text("proc_limits", "limits")).expect("limits seed");
    procfs::auxv::parse_auxv(&read("proc_auxv", "sleep")).expect("auxv seed");
    assert_eq!(
        procfs::timers::count_posix_timers(&text("proc_timers", "timers")).expect("timers seed"),
        3
    );
    procfs::children::parse_children(&text("proc_children", "children")).expect("children seed");
    ckpt_policy::parse_str(&text("policy_toml", "valid.toml"), Path::new("valid.toml"))
        .expect("policy seed");
    ckpt_tpm::config::parse(&text("ckpt_toml", "doc-0.toml"), Path::new("doc-0.toml"))
        .expect("ckpt.toml seed");
}
