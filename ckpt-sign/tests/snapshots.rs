//! Snapshot tests of `ckpt-sign`'s output and exit codes (`tests/cmd/*.toml`,
//! with the expected `.stdout` and `.stderr` beside each case): `--help`
//! of each command, usage errors.
//!
//! They run the binary cargo built, not setuid, as whoever runs the tests:
//! nothing here depends on privilege, on the host or on the time. After an
//! intended change of the output, `TRYCMD=overwrite cargo test -p ckpt-sign
//! --test snapshots` rewrites the expected files; review the diff.

#[test]
fn cli_snapshots() {
    trycmd::TestCases::new().case("tests/cmd/*.toml");
}
