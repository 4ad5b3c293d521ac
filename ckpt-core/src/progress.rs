//! Progress of a long dump or restore, for a caller that shows it.
//!
//! Owns: the observer type only. The engine never prints: the image writer
//! calls the observer with the bytes of each chunk it takes
//! ([`ImageWriter::observe`](crate::image::ImageWriter::observe)), the image
//! reader with the bytes of each chunk it reads and checks
//! ([`ImageReader::observe`](crate::image::ImageReader::observe)); what is
//! drawn, where and when is the binary's business. Trusts: nothing; an
//! observer that panics aborts the helper like any panic.

use std::sync::Arc;

/// Told of the bytes of chunk data done since its last call (from any
/// thread: the reader checks chunks on two).
pub type Observer = Arc<dyn Fn(u64) + Send + Sync>;

/// An estimate of the memory a dump of `pid` writes: its resident pages
/// that are not backed by a file (`/proc/PID/statm`: resident less
/// shared, in pages). `None` when it cannot be read. For a progress bar's
/// total only: the dump writes what it finds, whatever this said.
pub fn resident_anon_bytes(pid: i32) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/statm")).ok()?;
    let mut f = text.split_ascii_whitespace().skip(1);
    let resident: u64 = f.next()?.parse().ok()?;
    let shared: u64 = f.next()?.parse().ok()?;
    let page = nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE).ok()??;
    let page = u64::try_from(page).ok().filter(|&p| p > 0)?;
    resident.saturating_sub(shared).checked_mul(page)
}
