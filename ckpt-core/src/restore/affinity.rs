//! The restorer's CPU while it builds processes. The build is a long
//! exchange of ptrace stops and wake-ups with each stub; with the
//! restorer and the stubs on two CPUs, every wake-up of the other, idle,
//! CPU costs more than the work it wakes up for (in a VM, an
//! inter-processor interrupt and a halt exit). So the restorer's main
//! thread is pinned to the CPU it runs on for the build; every stub
//! inherits that, and gives itself back the restorer's own mask before
//! its threads are created (step 11 of the build), so a restored process
//! ends with the mask it would have had without the pin, the caller's
//! (a zombie, before it exits).
//! Threads the restorer starts to fill memory give themselves the mask
//! back first, to run on every CPU; a tree's fill thread, which fills one
//! process while the pinned thread builds the next, goes to the other
//! CPUs ([`Pinned::elsewhere`]): left free to run anywhere, it gained
//! nothing (most likely it ran on the pinned CPU, taking turns with the
//! main thread).
//!
//! Owns: the restorer thread's mask during the build. Trusts: nothing
//! from the image (no mask is saved there).

use nix::errno::Errno;
use nix::sched::{sched_getaffinity, sched_getcpu, sched_setaffinity, CpuSet};
use nix::unistd::Pid;

use super::{Builder, RestoreError};
use crate::inject::{errno_of, InjectError, Injector};

/// Bytes of the kernel's CPU mask passed to `sched_setaffinity`.
const MASK_BYTES: usize = 128;

/// The calling thread pinned to one CPU, and the mask it had before.
pub(super) struct Pinned {
    original: CpuSet,
    /// The CPU the thread is pinned to.
    cpu: usize,
    /// `original` as the kernel's bitmap (bit `n` of byte `n / 8` for
    /// CPU `n`, a little-endian array of longs).
    mask: [u8; MASK_BYTES],
}

impl Pinned {
    /// Pins the calling thread to the CPU it runs on. `None` (nothing
    /// changed) when it may run on one CPU only anyway, or when the
    /// kernel says no.
    pub(super) fn here() -> Option<Pinned> {
        let me = Pid::from_raw(0);
        let original = sched_getaffinity(me).ok()?;
        let mut mask = [0u8; MASK_BYTES];
        let mut allowed = 0;
        for cpu in 0..CpuSet::count().min(MASK_BYTES * 8) {
            if original.is_set(cpu).unwrap_or(false) {
                allowed += 1;
                if let Some(b) = mask.get_mut(cpu / 8) {
                    *b |= 1 << (cpu % 8);
                }
            }
        }
        if allowed < 2 {
            return None;
        }
        let cpu = sched_getcpu().ok()?;
        let mut one = CpuSet::new();
        one.set(cpu).ok()?;
        sched_setaffinity(me, &one).ok()?;
        Some(Pinned {
            original,
            cpu,
            mask,
        })
    }

    /// Makes the task behind `inj` give itself the restorer's own mask
    /// (an injected `sched_setaffinity(0, ...)`); returns the syscall's
    /// result (negative: an errno).
    pub(super) fn give_back(&self, inj: &mut Injector<'_>) -> Result<i64, InjectError> {
        let at = inj.put_bytes(&self.mask, "writing the CPU mask")?;
        inj.syscall_raw(
            libc::SYS_sched_setaffinity,
            [0, MASK_BYTES as u64, at, 0, 0, 0],
        )
    }

    /// Gives the calling thread (one the restorer started while pinned)
    /// the mask back. Best effort: a thread that stays pinned is only
    /// slower.
    pub(super) fn release_thread(&self) {
        let _ = sched_setaffinity(Pid::from_raw(0), &self.original);
    }

    /// Puts the calling thread (one the restorer started while pinned) on
    /// the restorer's other CPUs, away from the pinned one. Best effort.
    pub(super) fn elsewhere(&self) {
        let mut others = self.original;
        if others.unset(self.cpu).is_ok() {
            let _ = sched_setaffinity(Pid::from_raw(0), &others);
        } else {
            self.release_thread();
        }
    }
}

impl Drop for Pinned {
    /// The restorer's thread gets its mask back.
    fn drop(&mut self) {
        self.release_thread();
    }
}

impl Builder<'_> {
    /// Gives the stub the restorer's own CPU mask back (it inherited the
    /// pin): what the restored process would have had without it. A
    /// failure (a cpuset changed meanwhile) is a notice: the process then
    /// runs on the restorer's CPU only.
    pub(super) fn give_back_cpus(&mut self) -> Result<(), RestoreError> {
        let Some(pinned) = self.pinned else {
            return Ok(());
        };
        let r = pinned.give_back(&mut self.inj)?;
        if r < 0 {
            let errno: Errno = errno_of(r);
            self.notices.push(format!(
                "the CPUs restored process {} may run on were not given back ({errno}): it runs on one CPU",
                self.pid()
            ));
        }
        Ok(())
    }
}
