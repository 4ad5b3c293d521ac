//! Thin safe wrappers around the raw kernel interfaces the engine needs and
//! that `nix` does not cover: pidfds, `process_vm_readv`/`writev` into a
//! buffer, `PAGEMAP_SCAN`, `kcmp`, extra ptrace requests (regsets, signal
//! mask, rseq configuration, peeksiginfo).
//!
//! Owns: nothing but the file descriptors it returns. Trusts: the kernel.
//! Every `unsafe` block here passes pointers to memory this module owns for
//! the whole call, with lengths taken from that same memory.

use std::fs::File;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use nix::errno::Errno;

/// `PAGEMAP_SCAN` ioctl number: `_IOWR('f', 16, struct pm_scan_arg)` (96 bytes).
const PAGEMAP_SCAN: libc::c_ulong = 0xc060_6610;
/// Page categories reported by `PAGEMAP_SCAN`.
pub const PAGE_IS_FILE: u64 = 1 << 2;
pub const PAGE_IS_PRESENT: u64 = 1 << 3;
pub const PAGE_IS_SWAPPED: u64 = 1 << 4;
pub const PAGE_IS_PFNZERO: u64 = 1 << 5;
/// Highest address `PAGEMAP_SCAN` accepts as an end.
pub const USER_ADDR_END: u64 = 0x7fff_ffff_f000;

const PTRACE_GETSIGMASK: libc::c_uint = 0x420a;
const PTRACE_SETSIGMASK: libc::c_uint = 0x420b;
const PTRACE_PEEKSIGINFO: libc::c_uint = 0x4209;
const PTRACE_GET_RSEQ_CONFIGURATION: libc::c_uint = 0x420f;
const PTRACE_PEEKSIGINFO_SHARED: u32 = 1;
/// `NT_X86_XSTATE` regset.
const NT_X86_XSTATE: libc::c_int = 0x202;
/// Largest xsave area we accept from the kernel.
pub const XSAVE_MAX: usize = 64 * 1024;

/// `struct pm_scan_arg` from `linux/fs.h`.
#[repr(C)]
#[derive(Default)]
struct PmScanArg {
    size: u64,
    flags: u64,
    start: u64,
    end: u64,
    walk_end: u64,
    vec: u64,
    vec_len: u64,
    max_pages: u64,
    category_inverted: u64,
    category_mask: u64,
    category_anyof_mask: u64,
    return_mask: u64,
}

/// `struct page_region` from `linux/fs.h`.
#[repr(C)]
#[derive(Default, Clone, Copy)]
struct PageRegion {
    start: u64,
    end: u64,
    categories: u64,
}

/// Which pages a scan selects.
#[derive(Debug, Clone, Copy)]
pub struct PageFilter {
    /// Pages must have none of these categories.
    pub exclude: u64,
    /// Pages must have at least one of these categories.
    pub any_of: u64,
}

/// Ranges `[start, end)` of pages in `[start, end)` of the address space of
/// the process whose `pagemap` is `pagemap`, selected by `filter`.
pub fn pagemap_scan(
    pagemap: &File,
    start: u64,
    end: u64,
    filter: PageFilter,
    out: &mut Vec<(u64, u64)>,
) -> Result<(), Errno> {
    let end = end.min(USER_ADDR_END);
    let mut regions = [PageRegion::default(); 256];
    let mut cursor = start;
    while cursor < end {
        let mut arg = PmScanArg {
            size: std::mem::size_of::<PmScanArg>() as u64,
            start: cursor,
            end,
            vec: regions.as_mut_ptr() as u64,
            vec_len: regions.len() as u64,
            category_inverted: filter.exclude,
            category_mask: filter.exclude,
            category_anyof_mask: filter.any_of,
            return_mask: PAGE_IS_PRESENT | PAGE_IS_SWAPPED | PAGE_IS_FILE | PAGE_IS_PFNZERO,
            ..PmScanArg::default()
        };
        // SAFETY: `arg` and `regions` live on this stack frame for the whole
        // call; `arg.vec`/`vec_len` describe exactly the `regions` array and
        // `arg.size` is the size of the struct the kernel reads.
        let n = unsafe {
            libc::ioctl(
                pagemap.as_raw_fd(),
                PAGEMAP_SCAN,
                &mut arg as *mut PmScanArg,
            )
        };
        let n = Errno::result(n)?;
        let filled = usize::try_from(n).unwrap_or(0).min(regions.len());
        for r in &regions[..filled] {
            match out.last_mut() {
                Some(last) if last.1 == r.start => last.1 = r.end,
                _ => out.push((r.start, r.end)),
            }
        }
        if arg.walk_end <= cursor {
            break;
        }
        cursor = arg.walk_end;
    }
    Ok(())
}

/// `pidfd_open(pid, 0)`.
pub fn pidfd_open(pid: i32) -> Result<OwnedFd, Errno> {
    // SAFETY: plain syscall with integer arguments.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    let fd = Errno::result(fd)?;
    let fd = RawFd::try_from(fd).map_err(|_| Errno::EBADF)?;
    // SAFETY: the kernel just returned this new descriptor; we own it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `pidfd_send_signal(pidfd, sig, NULL, 0)`; `sig == 0` only checks liveness.
pub fn pidfd_send_signal(pidfd: &OwnedFd, sig: i32) -> Result<(), Errno> {
    // SAFETY: integer arguments and a NULL siginfo pointer, which the
    // syscall accepts.
    let r = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            sig,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    };
    Errno::result(r).map(drop)
}

/// `pidfd_getfd(pidfd, targetfd, 0)`: a duplicate of another process's fd.
pub fn pidfd_getfd(pidfd: &OwnedFd, target_fd: i32) -> Result<OwnedFd, Errno> {
    // SAFETY: integer arguments.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_getfd, pidfd.as_raw_fd(), target_fd, 0) };
    let fd = Errno::result(fd)?;
    let fd = RawFd::try_from(fd).map_err(|_| Errno::EBADF)?;
    // SAFETY: the kernel just returned this new descriptor; we own it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `kcmp(pid1, pid2, KCMP_FILE, fd1, fd2)`: 0 when both fds share one open
/// file description.
pub fn kcmp_same_file(pid: i32, fd1: i32, fd2: i32) -> Result<bool, Errno> {
    const KCMP_FILE: libc::c_long = 0;
    // SAFETY: integer arguments.
    let r = unsafe {
        libc::syscall(
            libc::SYS_kcmp,
            pid,
            pid,
            KCMP_FILE,
            fd1 as libc::c_long,
            fd2 as libc::c_long,
        )
    };
    Ok(Errno::result(r)? == 0)
}

/// Read `buf.len()` bytes at `addr` of process `pid` (`process_vm_readv`).
/// Returns the number of bytes read (short on a fault).
pub fn vm_read(pid: i32, addr: u64, buf: &mut [u8]) -> Result<usize, Errno> {
    let local = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    let remote = libc::iovec {
        iov_base: addr as *mut libc::c_void,
        iov_len: buf.len(),
    };
    // SAFETY: `local` describes `buf`, which we borrow mutably for the call;
    // the remote iovec is only interpreted in the other process.
    let n = unsafe { libc::process_vm_readv(pid, &local, 1, &remote, 1, 0) };
    Ok(usize::try_from(Errno::result(n)?).unwrap_or(0))
}

/// Write `buf` at `addr` of process `pid` (`process_vm_writev`).
pub fn vm_write(pid: i32, addr: u64, buf: &[u8]) -> Result<usize, Errno> {
    let local = libc::iovec {
        iov_base: buf.as_ptr() as *mut libc::c_void,
        iov_len: buf.len(),
    };
    let remote = libc::iovec {
        iov_base: addr as *mut libc::c_void,
        iov_len: buf.len(),
    };
    // SAFETY: `local` describes `buf`, borrowed for the call; the kernel only
    // reads from it. The remote iovec is interpreted in the other process.
    let n = unsafe { libc::process_vm_writev(pid, &local, 1, &remote, 1, 0) };
    Ok(usize::try_from(Errno::result(n)?).unwrap_or(0))
}

/// Raw ptrace with pointer-sized arguments.
///
/// # Safety
/// `addr` and `data` must be integers or pointers to live buffers large
/// enough for what `req` reads or writes there.
unsafe fn ptrace_raw(
    req: libc::c_uint,
    pid: i32,
    addr: usize,
    data: usize,
) -> Result<libc::c_long, Errno> {
    // SAFETY: guaranteed by this function's contract.
    let r = unsafe {
        libc::ptrace(
            req,
            pid,
            addr as *mut libc::c_void,
            data as *mut libc::c_void,
        )
    };
    Errno::result(r)
}

/// `PTRACE_GETREGSET(NT_X86_XSTATE)`: the xsave area, exactly as long as the
/// kernel reports.
pub fn get_xstate(pid: i32) -> Result<Vec<u8>, Errno> {
    let mut buf = vec![0u8; XSAVE_MAX];
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // SAFETY: `data` points at `iov`, which describes `buf`; both outlive the call.
    unsafe {
        ptrace_raw(
            libc::PTRACE_GETREGSET,
            pid,
            NT_X86_XSTATE as usize,
            &mut iov as *mut _ as usize,
        )
    }?;
    let len = iov.iov_len.min(XSAVE_MAX);
    buf.truncate(len);
    Ok(buf)
}

/// `PTRACE_SETREGSET(NT_X86_XSTATE)`.
pub fn set_xstate(pid: i32, xsave: &[u8]) -> Result<(), Errno> {
    let mut copy = xsave.to_vec();
    let mut iov = libc::iovec {
        iov_base: copy.as_mut_ptr().cast(),
        iov_len: copy.len(),
    };
    // SAFETY: `data` points at `iov`, which describes `copy`; both outlive the call.
    unsafe {
        ptrace_raw(
            libc::PTRACE_SETREGSET,
            pid,
            NT_X86_XSTATE as usize,
            &mut iov as *mut _ as usize,
        )
    }
    .map(drop)
}

/// `PTRACE_GETREGS`.
pub fn get_regs(pid: i32) -> Result<libc::user_regs_struct, Errno> {
    let mut regs = std::mem::MaybeUninit::<libc::user_regs_struct>::zeroed();
    // SAFETY: `data` points at a `user_regs_struct` on this frame.
    unsafe { ptrace_raw(libc::PTRACE_GETREGS, pid, 0, regs.as_mut_ptr() as usize) }?;
    // SAFETY: zero-initialised plain-old-data, filled by the kernel.
    Ok(unsafe { regs.assume_init() })
}

/// `PTRACE_SETREGS`.
pub fn set_regs(pid: i32, regs: &libc::user_regs_struct) -> Result<(), Errno> {
    // SAFETY: `data` points at a `user_regs_struct` borrowed for the call.
    unsafe { ptrace_raw(libc::PTRACE_SETREGS, pid, 0, regs as *const _ as usize) }.map(drop)
}

/// `PTRACE_GETSIGMASK`.
pub fn get_sigmask(pid: i32) -> Result<u64, Errno> {
    let mut mask: u64 = 0;
    // SAFETY: `addr` is the mask size (8), `data` points at a u64 on this frame.
    unsafe { ptrace_raw(PTRACE_GETSIGMASK, pid, 8, &mut mask as *mut u64 as usize) }?;
    Ok(mask)
}

/// `PTRACE_SETSIGMASK`.
pub fn set_sigmask(pid: i32, mask: u64) -> Result<(), Errno> {
    // SAFETY: `addr` is the mask size (8), `data` points at a u64 on this frame.
    unsafe { ptrace_raw(PTRACE_SETSIGMASK, pid, 8, &mask as *const u64 as usize) }.map(drop)
}

/// `struct ptrace_rseq_configuration`.
#[repr(C)]
#[derive(Default)]
struct RseqConfig {
    rseq_abi_pointer: u64,
    rseq_abi_size: u32,
    signature: u32,
    flags: u32,
    pad: u32,
}

/// `PTRACE_GET_RSEQ_CONFIGURATION`: (pointer, size, signature), or `None`
/// when the task has no rseq registration.
pub fn get_rseq(pid: i32) -> Result<Option<(u64, u32, u32)>, Errno> {
    let mut cfg = RseqConfig::default();
    // SAFETY: `addr` is the struct size, `data` points at it on this frame.
    unsafe {
        ptrace_raw(
            PTRACE_GET_RSEQ_CONFIGURATION,
            pid,
            std::mem::size_of::<RseqConfig>(),
            &mut cfg as *mut _ as usize,
        )
    }?;
    if cfg.rseq_abi_pointer == 0 {
        Ok(None)
    } else {
        Ok(Some((
            cfg.rseq_abi_pointer,
            cfg.rseq_abi_size,
            cfg.signature,
        )))
    }
}

/// `struct ptrace_peeksiginfo_args`.
#[repr(C)]
struct PeekSiginfoArgs {
    off: u64,
    flags: u32,
    nr: i32,
}

/// Size of a raw `siginfo_t`.
pub const SIGINFO_SIZE: usize = 128;

/// `PTRACE_PEEKSIGINFO`: every queued signal, private or shared, without
/// dequeuing it. At most `max` entries.
pub fn peek_siginfo(pid: i32, shared: bool, max: usize) -> Result<Vec<Vec<u8>>, Errno> {
    let mut out = Vec::new();
    let mut buf = [0u8; SIGINFO_SIZE];
    while out.len() < max {
        let mut args = PeekSiginfoArgs {
            off: out.len() as u64,
            flags: if shared { PTRACE_PEEKSIGINFO_SHARED } else { 0 },
            nr: 1,
        };
        // SAFETY: `addr` points at `args`, `data` at a buffer for one siginfo.
        let n = unsafe {
            ptrace_raw(
                PTRACE_PEEKSIGINFO,
                pid,
                &mut args as *mut _ as usize,
                buf.as_mut_ptr() as usize,
            )
        }?;
        if n <= 0 {
            break;
        }
        out.push(buf.to_vec());
    }
    Ok(out)
}

/// `PTRACE_SEIZE` with options.
pub fn seize(pid: i32, options: libc::c_int) -> Result<(), Errno> {
    // SAFETY: integer `addr` and `data` (the options word).
    unsafe { ptrace_raw(libc::PTRACE_SEIZE, pid, 0, options as usize) }.map(drop)
}

/// Read `buf.len()` bytes at `addr` through `/proc/PID/mem` (works on
/// pages `process_vm_readv` cannot read, such as `PROT_NONE`).
pub fn mem_read(mem: &File, addr: u64, buf: &mut [u8]) -> std::io::Result<()> {
    use std::os::unix::fs::FileExt;
    mem.read_exact_at(buf, addr)
}

/// `get_robust_list(pid)`: the task's robust futex list (head, len).
pub fn get_robust_list(pid: i32) -> Result<(u64, u64), Errno> {
    let mut head: u64 = 0;
    let mut len: libc::size_t = 0;
    // SAFETY: both out-pointers point at locals on this frame, of the sizes
    // the syscall writes (a pointer and a size_t).
    let r = unsafe {
        libc::syscall(
            libc::SYS_get_robust_list,
            pid,
            &mut head as *mut u64,
            &mut len as *mut libc::size_t,
        )
    };
    Errno::result(r)?;
    Ok((head, len as u64))
}

/// How many threads this process has (`/proc/self/task`).
pub fn thread_count() -> Result<usize, Errno> {
    let errno = |e: std::io::Error| Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO));
    let mut n = 0usize;
    for entry in std::fs::read_dir("/proc/self/task").map_err(errno)? {
        entry.map_err(errno)?;
        n = n.saturating_add(1);
    }
    Ok(n)
}

/// The number of threads of this process once threads that were already
/// joined are gone. A joined thread can stay listed in `/proc/self/task`
/// for a moment after the join returned (the kernel wakes the joiner when
/// it clears the thread's tid, before it unhashes the exiting thread), so
/// while more than one thread is listed this polls for up to one second.
pub fn settled_thread_count() -> Result<usize, Errno> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(1);
    loop {
        let n = thread_count()?;
        if n <= 1 || std::time::Instant::now() >= deadline {
            return Ok(n);
        }
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
}

/// `struct clone_args` (the fields up to `set_tid_size`).
#[repr(C)]
#[derive(Default)]
struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
    set_tid: u64,
    set_tid_size: u64,
}

/// `clone3` like `fork`, asking for pid `pid` (`set_tid`). Returns 0 in the
/// child and the child's pid in the parent.
///
/// # Safety
/// Same contract as `fork`: the caller must be single-threaded, and the
/// child may only make async-signal-safe calls before it execs or exits.
pub unsafe fn fork_with_pid(pid: i32) -> Result<i32, Errno> {
    let tids: [libc::pid_t; 1] = [pid];
    let args = CloneArgs {
        exit_signal: libc::SIGCHLD as u64,
        set_tid: tids.as_ptr() as u64,
        set_tid_size: 1,
        ..CloneArgs::default()
    };
    // SAFETY: `args` and `tids` outlive the call; with no CLONE_VM and no
    // stack the child runs on a copy of this address space, like fork. The
    // rest is the caller's contract.
    let r = unsafe {
        libc::syscall(
            libc::SYS_clone3,
            &args as *const CloneArgs,
            std::mem::size_of::<CloneArgs>(),
        )
    };
    let r = Errno::result(r)?;
    i32::try_from(r).map_err(|_| Errno::EINVAL)
}

/// `fcntl(fd, F_GET_SEALS)`: the seals of a memfd (`EINVAL` for a file
/// that cannot be sealed).
pub fn get_seals(fd: &impl AsRawFd) -> Result<u32, Errno> {
    // SAFETY: integer arguments on a descriptor the caller holds.
    let r = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GET_SEALS) };
    Errno::result(r).map(|s| s as u32)
}

/// `fcntl(fd, F_ADD_SEALS, seals)`.
pub fn add_seals(fd: &impl AsRawFd, seals: u32) -> Result<(), Errno> {
    // SAFETY: integer arguments on a descriptor the caller holds.
    let r = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_ADD_SEALS, seals as libc::c_int) };
    Errno::result(r).map(drop)
}

/// `fstatfs(fd).f_type`: the magic number of the filesystem behind `fd`.
pub fn fs_magic(fd: &impl AsRawFd) -> Result<libc::__fsword_t, Errno> {
    let mut st = std::mem::MaybeUninit::<libc::statfs>::zeroed();
    // SAFETY: `st` is a writable statfs the kernel fills on success.
    let r = unsafe { libc::fstatfs(fd.as_raw_fd(), st.as_mut_ptr()) };
    Errno::result(r)?;
    // SAFETY: fstatfs succeeded, so `st` is initialised.
    Ok(unsafe { st.assume_init() }.f_type)
}

/// `fcntl(fd, F_GETFL)`: the status flags of the description.
pub fn status_flags(fd: &impl AsRawFd) -> Result<i32, Errno> {
    // SAFETY: integer arguments on a descriptor the caller holds.
    let r = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFL) };
    Errno::result(r)
}
