//! Syscall injection, typed: make a stopped, traced task run system calls
//! for us, with their arguments placed in its own memory.
//!
//! Owns: a scratch area in the target (mapped by the caller, or by
//! [`Injector::map_scratch`]) handed out by a bump allocator
//! ([`Injector::alloc`], [`Injector::reset`]); putting bytes, C strings and
//! plain kernel structs ([`structs`], each encoded explicitly, field by
//! field) into it; and running one syscall at a time
//! ([`Injector::syscall`]) with errors that name the syscall and the pid.
//! Trusts: the kernel, and the [`Tracee`] to be stopped at a point from
//! which it can inject. Nothing read back from the target is interpreted
//! here beyond the bytes of the struct asked for.
//!
//! No hand-placed offsets: every argument gets its own allocation, and an
//! allocation that does not fit fails with [`InjectError::ScratchFull`]
//! instead of overlapping another. Allocations live until the next
//! injected syscall has returned (its results can still be read back);
//! then the area is free again.

mod scratch;
pub mod structs;

use nix::errno::Errno;

use crate::ptrace::{PtraceError, Tracee};
use crate::sys;

pub use scratch::Scratch;
pub use structs::KernelStruct;

/// Why an injection failed; every variant names the target pid.
#[derive(Debug, thiserror::Error)]
pub enum InjectError {
    /// Driving the task, or the injected syscall itself, failed
    /// ([`PtraceError::Syscall`] names the syscall).
    #[error("pid {pid}: {source}")]
    Trace { pid: i32, source: PtraceError },
    /// Reading or writing the target's memory failed.
    #[error("pid {pid}: {what} at {addr:#x}: {errno}")]
    Memory {
        pid: i32,
        what: &'static str,
        addr: u64,
        errno: Errno,
    },
    /// The scratch area has no room left for `what` (or none is mapped).
    #[error("pid {pid}: no room in the scratch area for {what} ({len} bytes)")]
    ScratchFull {
        pid: i32,
        what: &'static str,
        len: u64,
    },
}

/// Runs syscalls inside a stopped tracee, with a scratch area for their
/// arguments. Borrows the tracee for as long as it injects.
pub struct Injector<'t> {
    tracee: &'t mut Tracee,
    scratch: Option<Scratch>,
    /// Whether the scratch area was mapped by [`Injector::map_scratch`]
    /// (and is unmapped by [`Injector::unmap_scratch`]).
    owned: bool,
    /// A trampoline mapped by [`Injector::map_trampoline`]: its address,
    /// and the syscall site and register template to go back to once it
    /// is unmapped.
    trampoline: Option<(u64, u64, libc::user_regs_struct)>,
}

/// Bytes of a page.
const PAGE: u64 = 4096;

/// The trampoline's code: `syscall; int3`.
const TRAMPOLINE: [u8; 3] = [0x0f, 0x05, 0xcc];

impl<'t> Injector<'t> {
    /// Inject into `tracee`; no scratch area yet.
    pub fn new(tracee: &'t mut Tracee) -> Injector<'t> {
        Injector {
            tracee,
            scratch: None,
            owned: false,
            trampoline: None,
        }
    }

    pub fn pid(&self) -> i32 {
        self.tracee.pid()
    }

    /// The tracee itself, for what is not an injection (registers, the
    /// syscall site).
    pub fn tracee(&mut self) -> &mut Tracee {
        self.tracee
    }

    /// Use `len` bytes at `base`, already mapped read-write in the target,
    /// as the scratch area.
    pub fn use_scratch(&mut self, base: u64, len: u64) {
        self.scratch = Some(Scratch::new(base, len));
        self.owned = false;
    }

    /// Map `len` bytes of anonymous read-write memory anywhere in the
    /// target and use them as the scratch area.
    pub fn map_scratch(&mut self, len: u64) -> Result<u64, InjectError> {
        let base = self.syscall(
            "mmap(scratch)",
            libc::SYS_mmap,
            [
                0,
                len,
                (libc::PROT_READ | libc::PROT_WRITE) as u64,
                (libc::MAP_PRIVATE | libc::MAP_ANONYMOUS) as u64,
                u64::MAX,
                0,
            ],
        )?;
        self.scratch = Some(Scratch::new(base, len));
        self.owned = true;
        Ok(base)
    }

    /// Map a trampoline (`syscall; int3`) and a scratch page after it,
    /// anywhere in the target, and inject from the trampoline from now on:
    /// one `PTRACE_CONT` per syscall instead of two stops, and a
    /// [`Injector::syscall_batch`] in one. Returns the trampoline's
    /// address (the scratch page is the one after it), or `None` when the
    /// target may not map memory both writable and executable
    /// (memory-deny-write-execute, a security module): then nothing is
    /// mapped, and the caller maps a plain scratch area with
    /// [`Injector::map_scratch`]. [`Injector::unmap_scratch`] unmaps both
    /// pages and goes back to the syscall site used before.
    pub fn map_trampoline(&mut self) -> Result<Option<u64>, InjectError> {
        let (site, template) = self.tracee.syscall_site();
        let Some(template) = template else {
            return Ok(None);
        };
        let r = self.syscall_raw(
            libc::SYS_mmap,
            [
                0,
                2 * PAGE,
                (libc::PROT_READ | libc::PROT_WRITE | libc::PROT_EXEC) as u64,
                (libc::MAP_PRIVATE | libc::MAP_ANONYMOUS) as u64,
                u64::MAX,
                0,
            ],
        )?;
        if (-4095..0).contains(&r) {
            return match errno_of(r) {
                Errno::EACCES | Errno::EPERM => Ok(None),
                errno => Err(InjectError::Trace {
                    pid: self.pid(),
                    source: PtraceError::Syscall {
                        pid: self.pid(),
                        name: "mmap(trampoline)",
                        errno,
                    },
                }),
            };
        }
        let base = r as u64;
        self.scratch = Some(Scratch::new(base + PAGE, PAGE));
        self.owned = true;
        self.trampoline = Some((base, site, template));
        self.write(base, &TRAMPOLINE, "writing the trampoline")?;
        self.tracee.set_trap_site(base, template);
        Ok(Some(base))
    }

    /// Unmap a scratch area mapped by [`Injector::map_scratch`] (or the
    /// trampoline and scratch of [`Injector::map_trampoline`]); forget any
    /// other.
    pub fn unmap_scratch(&mut self) -> Result<(), InjectError> {
        let owned = std::mem::take(&mut self.owned);
        if let Some((base, site, template)) = self.trampoline.take() {
            self.scratch = None;
            // The munmap runs from the trampoline it removes: stop at its
            // exit, before the `int3` that is gone, then inject from the
            // old site again.
            self.tracee.stop_at_syscall_exit();
            let r = self.syscall(
                "munmap(trampoline)",
                libc::SYS_munmap,
                [base, 2 * PAGE, 0, 0, 0, 0],
            );
            self.tracee.set_syscall_site(site, template);
            return r.map(|_| ());
        }
        if let (Some(s), true) = (self.scratch.take(), owned) {
            self.syscall(
                "munmap(scratch)",
                libc::SYS_munmap,
                [s.base(), s.len(), 0, 0, 0, 0],
            )?;
        }
        Ok(())
    }

    /// Free every allocation (the next one starts at the area's base).
    pub fn reset(&mut self) {
        if let Some(s) = self.scratch.as_mut() {
            s.reset();
        }
    }

    /// `len` bytes of scratch at a multiple of `align`; the target address.
    pub fn alloc(&mut self, len: u64, align: u64, what: &'static str) -> Result<u64, InjectError> {
        let pid = self.pid();
        self.scratch
            .as_mut()
            .and_then(|s| s.alloc(len, align))
            .ok_or(InjectError::ScratchFull { pid, what, len })
    }

    /// Copy `bytes` into fresh scratch (8-byte aligned); their address.
    pub fn put_bytes(&mut self, bytes: &[u8], what: &'static str) -> Result<u64, InjectError> {
        let at = self.alloc(bytes.len() as u64, 8, what)?;
        self.write(at, bytes, what)?;
        Ok(at)
    }

    /// `s` with a terminating NUL in fresh scratch; its address. The
    /// caller checks that `s` holds no NUL of its own.
    pub fn put_cstr(&mut self, s: &str, what: &'static str) -> Result<u64, InjectError> {
        let mut b = Vec::with_capacity(s.len() + 1);
        b.extend_from_slice(s.as_bytes());
        b.push(0);
        self.put_bytes(&b, what)
    }

    /// A kernel struct, encoded by [`KernelStruct::encode`], in fresh
    /// scratch; its address.
    pub fn put_struct<T: KernelStruct>(&mut self, value: &T) -> Result<u64, InjectError> {
        self.put_bytes(&value.encode(), T::WHAT)
    }

    /// Zeroed scratch for a struct the kernel fills in; its address.
    pub fn alloc_struct<T: KernelStruct>(&mut self) -> Result<u64, InjectError> {
        let at = self.alloc(T::SIZE as u64, 8, T::WHAT)?;
        self.write(at, &vec![0u8; T::SIZE], T::WHAT)?;
        Ok(at)
    }

    /// Read back a struct the kernel wrote at `at`.
    pub fn get_struct<T: KernelStruct>(&self, at: u64) -> Result<T, InjectError> {
        let b = self.read(at, T::SIZE, "reading back a kernel struct")?;
        Ok(T::decode(&b))
    }

    /// Write `data` at `addr` in the target, all of it.
    pub fn write(&self, addr: u64, data: &[u8], what: &'static str) -> Result<(), InjectError> {
        let pid = self.pid();
        let n = sys::vm_write(pid, addr, data).map_err(|errno| InjectError::Memory {
            pid,
            what,
            addr,
            errno,
        })?;
        if n != data.len() {
            return Err(InjectError::Memory {
                pid,
                what,
                addr: addr + n as u64,
                errno: Errno::EFAULT,
            });
        }
        Ok(())
    }

    /// Read `len` bytes at `addr` in the target, all of them.
    pub fn read(&self, addr: u64, len: usize, what: &'static str) -> Result<Vec<u8>, InjectError> {
        let pid = self.pid();
        let mut b = vec![0u8; len];
        let n = sys::vm_read(pid, addr, &mut b).map_err(|errno| InjectError::Memory {
            pid,
            what,
            addr,
            errno,
        })?;
        if n != len {
            return Err(InjectError::Memory {
                pid,
                what,
                addr: addr + n as u64,
                errno: Errno::EFAULT,
            });
        }
        Ok(b)
    }

    /// Inject syscall `nr` (called `name` in errors); a negative result is
    /// an error naming it.
    pub fn syscall(
        &mut self,
        name: &'static str,
        nr: libc::c_long,
        args: [u64; 6],
    ) -> Result<u64, InjectError> {
        let pid = self.pid();
        let r = self.tracee.syscall(name, nr, args);
        self.reset();
        r.map_err(|source| InjectError::Trace { pid, source })
    }

    /// Inject syscall `nr` and return its raw result (a negative errno on
    /// failure) for callers that handle failure themselves.
    pub fn syscall_raw(&mut self, nr: libc::c_long, args: [u64; 6]) -> Result<i64, InjectError> {
        let pid = self.pid();
        let r = self.tracee.syscall_raw(nr, args);
        self.reset();
        r.map_err(|source| InjectError::Trace { pid, source })
    }
}

impl Injector<'_> {
    /// Inject `calls` in order (in one round trip from a trampoline) and
    /// return their raw results, stopping after the first that fails (see
    /// [`Tracee::syscall_batch`]). Their arguments in the scratch area stay
    /// in place until all have run.
    pub fn syscall_batch(
        &mut self,
        calls: &[(libc::c_long, [u64; 6])],
    ) -> Result<Vec<i64>, InjectError> {
        let pid = self.pid();
        let r = self.tracee.syscall_batch(calls);
        self.reset();
        r.map_err(|source| InjectError::Trace { pid, source })
    }
}

/// The errno of a raw syscall result `r < 0`.
pub fn errno_of(r: i64) -> Errno {
    Errno::from_raw(i32::try_from(-r).unwrap_or(libc::EIO))
}
