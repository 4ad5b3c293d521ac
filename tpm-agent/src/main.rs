//! `ckpt-tpm-agent`: the TPM operations of `ckpt-sign`, in a program of
//! their own, so that the setuid helper neither links nor loads libtss2
//! and libcrypto (about 1.8 MiB of memory and 2.4 ms of start-up on every
//! dump, TPM or not).
//!
//! Installed root-owned, mode 0755, NOT setuid, in the directory fixed at
//! build time (`CKPT_LIBEXECDIR`, default `/usr/lib/ckpt`). `ckpt-sign`
//! starts it only when a dump, `keygen --tpm` or a quote needs the TPM,
//! after checking that the file is a root-owned regular file that group
//! and others cannot write, as root in all its ids (so the caller can
//! neither signal, trace nor read it), with no supplementary groups, the
//! environment `TSS2_LOG=all+none` and nothing else, in a session of its
//! own, stdin and stdout a socket to `ckpt-sign`, stderr `/dev/null`, and
//! no other fd. It makes itself non-dumpable first.
//!
//! It serves typed requests on that socket (`ckpt_tpm::serve`) and exits
//! when `ckpt-sign` closes it. It trusts nothing in the requests (each is
//! checked before the TPM sees it). Run by anyone but root, or with stdin
//! not a socket, it refuses to start (exit 3 and 2) and does nothing.
#![forbid(unsafe_code)]

use std::io::Write as _;
use std::os::fd::AsRawFd as _;
use std::process::ExitCode;

use nix::sys::stat::{fstat, SFlag};

const PROG: &str = "ckpt-tpm-agent";

fn main() -> ExitCode {
    let (uid, euid) = (nix::unistd::getuid(), nix::unistd::geteuid());
    if !uid.is_root() || !euid.is_root() {
        let _ = writeln!(
            std::io::stderr(),
            "{PROG}: refusing to run: only ckpt-sign starts this program, as root \
             (you are uid {uid})"
        );
        return ExitCode::from(3);
    }
    let stdin = std::io::stdin();
    let is_socket = fstat(stdin.as_raw_fd())
        .map(|st| SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFSOCK)
        .unwrap_or(false);
    if !is_socket {
        let _ = writeln!(
            std::io::stderr(),
            "{PROG}: refusing to run: standard input is not a socket (only ckpt-sign \
             starts this program)"
        );
        return ExitCode::from(2);
    }
    // Not dumpable: no core file or same-uid /proc access to the
    // authorization values it holds (it is root, so the caller has none).
    if nix::sys::prctl::set_dumpable(false).is_err() {
        let _ = writeln!(std::io::stderr(), "{PROG}: cannot make itself non-dumpable");
        return ExitCode::from(1);
    }
    // ckpt-sign sets exactly this; make sure of it before libtss2 loads
    // anything (the process has a single thread here).
    std::env::set_var(ckpt_tpm::TSS2_LOG_QUIET.0, ckpt_tpm::TSS2_LOG_QUIET.1);
    let mut input = stdin.lock();
    let mut output = std::io::stdout().lock();
    match ckpt_tpm::serve::serve(&mut input, &mut output) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "{PROG}: {e}");
            ExitCode::from(1)
        }
    }
}
