//! Thin safe wrappers around the raw kernel interfaces the engine needs and
//! that `nix` does not cover: pidfds, `process_vm_readv`/`writev` into a
//! buffer, `PAGEMAP_SCAN`, `kcmp`, extra ptrace requests (regsets, signal
//! mask, rseq configuration, peeksiginfo).
//!
//! Owns: nothing but the file descriptors it returns. Trusts: the kernel.
//! Every `unsafe` block here passes pointers to memory this module owns for
//! the whole call, with lengths taken from that same memory.

use std::fs::File;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

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
/// Have the allocator serve every allocation of `bytes` or more with a
/// mapping of its own, unmapped when freed (glibc `mallopt` with
/// `M_MMAP_THRESHOLD`, which also stops glibc from raising the threshold
/// as large blocks are freed): the heap then does not keep the
/// high-water mark of many such blocks. Returns whether glibc took it.
pub fn map_allocations_from(bytes: i32) -> bool {
    // SAFETY: `mallopt` takes two integers and changes only the
    // allocator's own setting; glibc serialises it against allocations.
    unsafe { libc::mallopt(libc::M_MMAP_THRESHOLD, bytes) == 1 }
}

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
    kcmp_same_file_in(pid, fd1, pid, fd2)
}

/// `KCMP_VM`, `KCMP_FILES`, `KCMP_FS`, `KCMP_SIGHAND`: what two
/// processes may share besides threads.
pub const KCMP_VM: libc::c_long = 1;
pub const KCMP_FILES: libc::c_long = 2;
pub const KCMP_FS: libc::c_long = 3;
pub const KCMP_SIGHAND: libc::c_long = 4;

/// Do processes `pid1` and `pid2` share the `kind` (`KCMP_VM`,
/// `KCMP_FILES`, `KCMP_FS`, `KCMP_SIGHAND`)?
pub fn kcmp_shared(pid1: i32, pid2: i32, kind: libc::c_long) -> Result<bool, Errno> {
    // SAFETY: integer arguments.
    let r = unsafe { libc::syscall(libc::SYS_kcmp, pid1, pid2, kind, 0, 0) };
    Ok(Errno::result(r)? == 0)
}

/// Do `pid1`'s fd `fd1` and `pid2`'s fd `fd2` refer to the same open file
/// description (`kcmp` with `KCMP_FILE`)?
pub fn kcmp_same_file_in(pid1: i32, fd1: i32, pid2: i32, fd2: i32) -> Result<bool, Errno> {
    const KCMP_FILE: libc::c_long = 0;
    // SAFETY: integer arguments.
    let r = unsafe {
        libc::syscall(
            libc::SYS_kcmp,
            pid1,
            pid2,
            KCMP_FILE,
            fd1 as libc::c_long,
            fd2 as libc::c_long,
        )
    };
    Ok(Errno::result(r)? == 0)
}

/// Is the file behind `pid`'s fd `fd` the target that `pid`'s epoll `efd`
/// holds as the `toff`-th entry added under fd number `tfd` (`kcmp` with
/// `KCMP_EPOLL_TFD`)? `ESRCH`/`EBADF`/`ENOENT` mean no such entry or fd.
pub fn kcmp_epoll_target(pid: i32, fd: i32, efd: i32, tfd: i32, toff: u32) -> Result<bool, Errno> {
    kcmp_epoll_target_in(pid, fd, pid, efd, tfd, toff)
}

/// [`kcmp_epoll_target`] with the file held by another process: `pid1`'s
/// fd `fd` against `pid2`'s epoll `efd`.
pub fn kcmp_epoll_target_in(
    pid1: i32,
    fd: i32,
    pid2: i32,
    efd: i32,
    tfd: i32,
    toff: u32,
) -> Result<bool, Errno> {
    const KCMP_EPOLL_TFD: libc::c_long = 7;
    // struct kcmp_epoll_slot { __u32 efd, tfd, toff; }
    let slot: [u32; 3] = [efd as u32, tfd as u32, toff];
    // SAFETY: `slot` is a live 12-byte struct the kernel only reads.
    let r = unsafe {
        libc::syscall(
            libc::SYS_kcmp,
            pid1,
            pid2,
            KCMP_EPOLL_TFD,
            fd as libc::c_long,
            slot.as_ptr() as libc::c_long,
        )
    };
    Ok(Errno::result(r)? == 0)
}

/// Largest file handle the kernel hands out (`MAX_HANDLE_SZ`).
pub const MAX_HANDLE_SZ: usize = 128;
/// `AT_HANDLE_FID`: a handle that identifies the inode (the encoding
/// fdinfo shows for fsnotify marks), not necessarily one to open by.
const AT_HANDLE_FID: libc::c_int = 0x200;

/// `struct file_handle` with room for the largest handle.
#[repr(C)]
struct RawHandle {
    bytes: u32,
    kind: i32,
    data: [u8; MAX_HANDLE_SZ],
}

/// The identifying file handle (`name_to_handle_at` with
/// `AT_HANDLE_FID`) of the file `fd` refers to: its type and bytes.
pub fn fid_handle_of(fd: BorrowedFd<'_>) -> Result<(i32, Vec<u8>), Errno> {
    let mut h = RawHandle {
        bytes: MAX_HANDLE_SZ as u32,
        kind: 0,
        data: [0; MAX_HANDLE_SZ],
    };
    let mut mount_id: libc::c_int = 0;
    // SAFETY: `h` is a file_handle with `bytes` bytes of room after its
    // header; the empty path with AT_EMPTY_PATH names `fd` itself.
    let r = unsafe {
        libc::syscall(
            libc::SYS_name_to_handle_at,
            fd.as_raw_fd(),
            c"".as_ptr(),
            &mut h as *mut RawHandle,
            &mut mount_id as *mut libc::c_int,
            libc::AT_EMPTY_PATH | AT_HANDLE_FID,
        )
    };
    Errno::result(r)?;
    let n = (h.bytes as usize).min(MAX_HANDLE_SZ);
    Ok((h.kind, h.data[..n].to_vec()))
}

/// Open the file behind handle (`kind`, `bytes`) on the file system of
/// `mount_fd` (`open_by_handle_at`, `O_PATH`); needs
/// `CAP_DAC_READ_SEARCH`.
pub fn open_by_handle(mount_fd: BorrowedFd<'_>, kind: i32, bytes: &[u8]) -> Result<OwnedFd, Errno> {
    if bytes.len() > MAX_HANDLE_SZ {
        return Err(Errno::EINVAL);
    }
    let mut h = RawHandle {
        bytes: bytes.len() as u32,
        kind,
        data: [0; MAX_HANDLE_SZ],
    };
    h.data[..bytes.len()].copy_from_slice(bytes);
    // SAFETY: `h` is a complete file_handle the kernel only reads.
    let r = unsafe {
        libc::syscall(
            libc::SYS_open_by_handle_at,
            mount_fd.as_raw_fd(),
            &mut h as *mut RawHandle,
            libc::O_PATH | libc::O_CLOEXEC,
        )
    };
    let fd = Errno::result(r)?;
    // SAFETY: the kernel just returned this new fd; we own it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// Bytes waiting to be read on `fd` (`FIONREAD`).
pub fn bytes_readable(fd: BorrowedFd<'_>) -> Result<u64, Errno> {
    let mut n: libc::c_int = 0;
    // SAFETY: FIONREAD writes one int to the live `n`.
    let r = unsafe { libc::ioctl(fd.as_raw_fd(), libc::FIONREAD, &mut n as *mut libc::c_int) };
    Errno::result(r)?;
    Ok(u64::try_from(n).unwrap_or(0))
}

/// `waitpid(pid, &status, __WALL)`, retried on `EINTR`: the raw status
/// word, for stops nix cannot describe (a real-time signal's).
pub fn waitpid_raw(pid: i32) -> Result<i32, Errno> {
    loop {
        let mut status: libc::c_int = 0;
        // SAFETY: `status` is a valid, writable int for the call's
        // duration; the other arguments are plain integers.
        let r = unsafe { libc::waitpid(pid, &mut status, libc::__WALL) };
        if r >= 0 {
            return Ok(status);
        }
        match Errno::last() {
            Errno::EINTR => continue,
            e => return Err(e),
        }
    }
}

/// Send signal `sig` to thread `tid` of process `tgid` again: with the
/// `siginfo` it first came with (`rt_tgsigqueueinfo`: a timer's or a
/// queued signal's value reaches the thread as before), or, when there is
/// none or the kernel refuses it (a kernel-made `siginfo`), plain
/// (`tgkill`).
pub fn resend_signal(
    tgid: i32,
    tid: i32,
    sig: i32,
    info: Option<&libc::siginfo_t>,
) -> Result<(), Errno> {
    if let Some(info) = info {
        // SAFETY: `info` points to a valid `siginfo_t` for the whole call;
        // the other arguments are plain integers.
        let r = unsafe {
            libc::syscall(
                libc::SYS_rt_tgsigqueueinfo,
                tgid,
                tid,
                sig,
                info as *const libc::siginfo_t,
            )
        };
        if r == 0 {
            return Ok(());
        }
    }
    // SAFETY: plain integer arguments.
    let r = unsafe { libc::syscall(libc::SYS_tgkill, tgid, tid, sig) };
    if r == 0 {
        Ok(())
    } else {
        Err(Errno::last())
    }
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

/// Starts writeback of `len` bytes of `file` from `offset`
/// (`sync_file_range` with `SYNC_FILE_RANGE_WRITE` only): it neither
/// waits for the writes nor makes anything durable, and it does not
/// consume a write error (the caller's later `fsync` still reports it).
pub fn start_writeback(file: BorrowedFd<'_>, offset: u64, len: u64) -> Result<(), Errno> {
    let offset = i64::try_from(offset).map_err(|_| Errno::EINVAL)?;
    let len = i64::try_from(len).map_err(|_| Errno::EINVAL)?;
    // SAFETY: no memory is passed; the descriptor is borrowed for the call.
    let r = unsafe {
        libc::sync_file_range(file.as_raw_fd(), offset, len, libc::SYNC_FILE_RANGE_WRITE)
    };
    Errno::result(r).map(drop)
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
    // Kept for the whole dump, one per thread: not the 64 KiB asked for.
    buf.shrink_to_fit();
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

/// `fcntl(fd, F_GETPIPE_SZ)`: a pipe's capacity in bytes.
pub fn pipe_size(fd: &OwnedFd) -> Result<u32, Errno> {
    // SAFETY: integer arguments on a descriptor we own.
    let r = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETPIPE_SZ) };
    let r = Errno::result(r)?;
    u32::try_from(r).map_err(|_| Errno::EINVAL)
}

/// `fcntl(fd, F_SETPIPE_SZ, size)`: the capacity the kernel gave.
pub fn set_pipe_size(fd: &OwnedFd, size: u32) -> Result<u32, Errno> {
    let size = libc::c_int::try_from(size).map_err(|_| Errno::EINVAL)?;
    // SAFETY: integer arguments on a descriptor we own.
    let r = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETPIPE_SZ, size) };
    let r = Errno::result(r)?;
    u32::try_from(r).map_err(|_| Errno::EINVAL)
}

/// `pipe2(O_CLOEXEC | O_NONBLOCK)`: (read end, write end).
pub fn scratch_pipe() -> Result<(OwnedFd, OwnedFd), Errno> {
    let mut fds = [-1 as RawFd; 2];
    // SAFETY: `fds` is two ints this function owns for the call.
    let r = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC | libc::O_NONBLOCK) };
    Errno::result(r)?;
    // SAFETY: the kernel just returned these two new descriptors; we own them.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// `tee(from, to, len, SPLICE_F_NONBLOCK)`: bytes duplicated from the pipe
/// `from` into the pipe `to` without consuming them (0: `from` is empty).
pub fn tee(from: &OwnedFd, to: &OwnedFd, len: usize) -> Result<usize, Errno> {
    // SAFETY: integer arguments on descriptors we own.
    let r = unsafe {
        libc::tee(
            from.as_raw_fd(),
            to.as_raw_fd(),
            len,
            libc::SPLICE_F_NONBLOCK,
        )
    };
    let r = Errno::result(r)?;
    usize::try_from(r).map_err(|_| Errno::EINVAL)
}

/// `poll` for `events` on `fd` without waiting: the revents.
pub fn poll_now(fd: &OwnedFd, events: i16) -> Result<i16, Errno> {
    let mut p = libc::pollfd {
        fd: fd.as_raw_fd(),
        events,
        revents: 0,
    };
    // SAFETY: one pollfd this function owns for the call, timeout 0.
    let r = unsafe { libc::poll(&mut p, 1, 0) };
    Errno::result(r)?;
    Ok(p.revents)
}

/// `getsockopt(fd, level, opt)` for an int option at any level
/// (`SOL_IP`, `SOL_IPV6`, `SOL_TCP`, ...).
pub fn sock_opt_at(fd: &OwnedFd, level: libc::c_int, opt: libc::c_int) -> Result<i32, Errno> {
    let mut v: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: `v` and `len` are this function's, `len` gives `v`'s size.
    let r = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            level,
            opt,
            (&mut v as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    Errno::result(r)?;
    Ok(v)
}

/// `getsockopt(fd, level, opt)` into `buf`: the length the kernel filled.
pub fn sock_opt_bytes(
    fd: &OwnedFd,
    level: libc::c_int,
    opt: libc::c_int,
    buf: &mut [u8],
) -> Result<usize, Errno> {
    let mut len = libc::socklen_t::try_from(buf.len()).map_err(|_| Errno::EINVAL)?;
    // SAFETY: `buf` is the caller's for the call, `len` is its length.
    let r = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            level,
            opt,
            buf.as_mut_ptr().cast(),
            &mut len,
        )
    };
    Errno::result(r)?;
    Ok((len as usize).min(buf.len()))
}

/// `getsockopt(fd, SOL_SOCKET, opt)` for an int option.
pub fn sock_opt(fd: &OwnedFd, opt: libc::c_int) -> Result<i32, Errno> {
    let mut v: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: `v` and `len` are this function's, `len` gives `v`'s size.
    let r = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            opt,
            (&mut v as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    Errno::result(r)?;
    Ok(v)
}

/// `setsockopt(fd, SOL_SOCKET, opt, value)` for an int option.
pub fn set_sock_opt(fd: &OwnedFd, opt: libc::c_int, value: i32) -> Result<(), Errno> {
    let v: libc::c_int = value;
    // SAFETY: `v` is this function's, the length is its size.
    let r = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            opt,
            (&v as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    Errno::result(r).map(drop)
}

/// `recv(fd, buf, MSG_PEEK | MSG_DONTWAIT | MSG_TRUNC)`: the length of the
/// message (or the bytes) at the socket's peek offset, at most `buf.len()`
/// of them copied into `buf`.
pub fn recv_peek(fd: &OwnedFd, buf: &mut [u8]) -> Result<usize, Errno> {
    // SAFETY: `buf` is the caller's for the call, with its own length.
    let r = unsafe {
        libc::recv(
            fd.as_raw_fd(),
            buf.as_mut_ptr().cast(),
            buf.len(),
            libc::MSG_PEEK | libc::MSG_DONTWAIT | libc::MSG_TRUNC,
        )
    };
    let r = Errno::result(r)?;
    usize::try_from(r).map_err(|_| Errno::EINVAL)
}

/// `recvmsg(fd, MSG_PEEK | MSG_DONTWAIT | MSG_TRUNC)` on a unix datagram
/// socket: the datagram's length (may exceed `buf`) and the bytes of the
/// sender's `sun_path` (empty: the sender was not bound; a leading NUL:
/// an abstract name).
pub fn recv_peek_from(fd: &OwnedFd, buf: &mut [u8]) -> Result<(usize, Vec<u8>), Errno> {
    // SAFETY: an all-zero sockaddr_un is a valid value.
    let mut addr: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // SAFETY: an all-zero msghdr is a valid value; its pointers are set below.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_name = (&mut addr as *mut libc::sockaddr_un).cast();
    msg.msg_namelen = std::mem::size_of::<libc::sockaddr_un>() as libc::socklen_t;
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    // SAFETY: `msg` points at `addr`, `iov` and `buf`, all live and
    // writable for the call, with their sizes.
    let r = unsafe {
        libc::recvmsg(
            fd.as_raw_fd(),
            &mut msg,
            libc::MSG_PEEK | libc::MSG_DONTWAIT | libc::MSG_TRUNC,
        )
    };
    let r = Errno::result(r)?;
    let n = usize::try_from(r).map_err(|_| Errno::EINVAL)?;
    let path_len = (msg.msg_namelen as usize)
        .saturating_sub(2)
        .min(addr.sun_path.len());
    let name = addr.sun_path[..path_len].iter().map(|&c| c as u8).collect();
    Ok((n, name))
}

/// `ioctl(fd, SIOCOUTQ)`: the bytes a unix socket sent that its peer has
/// not read yet.
pub fn bytes_unsent(fd: &OwnedFd) -> Result<usize, Errno> {
    let mut n: libc::c_int = 0;
    // SAFETY: `n` is this function's int, which SIOCOUTQ (TIOCOUTQ) fills in.
    let r = unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCOUTQ, &mut n) };
    Errno::result(r)?;
    usize::try_from(n).map_err(|_| Errno::EINVAL)
}

/// `ioctl(fd, FIONREAD)`: the bytes a pipe or stream socket holds.
pub fn bytes_queued(fd: &OwnedFd) -> Result<usize, Errno> {
    let mut n: libc::c_int = 0;
    // SAFETY: `n` is this function's int, which FIONREAD fills in.
    let r = unsafe { libc::ioctl(fd.as_raw_fd(), libc::FIONREAD, &mut n) };
    Errno::result(r)?;
    usize::try_from(n).map_err(|_| Errno::EINVAL)
}

/// `PTRACE_SECCOMP_GET_FILTER`.
const PTRACE_SECCOMP_GET_FILTER: libc::c_uint = 0x420c;
/// `PTRACE_SECCOMP_GET_METADATA`.
const PTRACE_SECCOMP_GET_METADATA: libc::c_uint = 0x420d;
/// Most instructions in one classic BPF program (`BPF_MAXINSNS`).
pub const BPF_MAXINSNS: usize = 4096;

/// `PTRACE_SECCOMP_GET_FILTER`: the seccomp filter `index` of the stopped
/// tracee `pid` (0 is the most recently installed) as its raw `struct
/// sock_filter` array (8 bytes per instruction); `ENOENT` past the oldest.
/// Needs `CAP_SYS_ADMIN` in the tracer.
pub fn seccomp_filter(pid: i32, index: usize) -> Result<Vec<u8>, Errno> {
    // SAFETY: a NULL buffer asks only for the instruction count.
    let n = unsafe { ptrace_raw(PTRACE_SECCOMP_GET_FILTER, pid, index, 0) }?;
    let n = usize::try_from(n).map_err(|_| Errno::EINVAL)?;
    if n == 0 || n > BPF_MAXINSNS {
        return Err(Errno::E2BIG);
    }
    let mut buf = vec![0u8; n * 8];
    // SAFETY: `buf` holds `n` sock_filter entries, the count the kernel
    // just reported for this filter; the tracee is stopped, and a filter
    // never changes once installed.
    let got = unsafe {
        ptrace_raw(
            PTRACE_SECCOMP_GET_FILTER,
            pid,
            index,
            buf.as_mut_ptr() as usize,
        )
    }?;
    if usize::try_from(got).ok() != Some(n) {
        return Err(Errno::EAGAIN);
    }
    Ok(buf)
}

/// `PTRACE_SECCOMP_GET_METADATA`: the `SECCOMP_FILTER_FLAG_*` flags the
/// kernel keeps for filter `index` of `pid` (only `LOG` today).
pub fn seccomp_filter_flags(pid: i32, index: usize) -> Result<u64, Errno> {
    // struct seccomp_metadata { __u64 filter_off; __u64 flags; }
    let mut md = [index as u64, 0u64];
    // SAFETY: `data` points at `md`, 16 bytes, the size passed in `addr`.
    unsafe {
        ptrace_raw(
            PTRACE_SECCOMP_GET_METADATA,
            pid,
            std::mem::size_of_val(&md),
            md.as_mut_ptr() as usize,
        )
    }?;
    Ok(md[1])
}

/// `struct sched_attr` as far as `SCHED_ATTR_SIZE_VER0` (48 bytes): policy,
/// flags, nice, priority, and the deadline parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SchedAttr {
    pub policy: u32,
    pub flags: u64,
    pub nice: i32,
    pub priority: u32,
    pub runtime: u64,
    pub deadline: u64,
    pub period: u64,
}

/// Size of [`SchedAttr`] as the kernel reads and writes it.
pub const SCHED_ATTR_SIZE: usize = 48;

impl SchedAttr {
    /// The kernel's bytes.
    pub fn encode(&self) -> [u8; SCHED_ATTR_SIZE] {
        let mut b = [0u8; SCHED_ATTR_SIZE];
        b[0..4].copy_from_slice(&(SCHED_ATTR_SIZE as u32).to_ne_bytes());
        b[4..8].copy_from_slice(&self.policy.to_ne_bytes());
        b[8..16].copy_from_slice(&self.flags.to_ne_bytes());
        b[16..20].copy_from_slice(&self.nice.to_ne_bytes());
        b[20..24].copy_from_slice(&self.priority.to_ne_bytes());
        b[24..32].copy_from_slice(&self.runtime.to_ne_bytes());
        b[32..40].copy_from_slice(&self.deadline.to_ne_bytes());
        b[40..48].copy_from_slice(&self.period.to_ne_bytes());
        b
    }

    /// From the kernel's bytes.
    pub fn decode(b: &[u8; SCHED_ATTR_SIZE]) -> SchedAttr {
        let u32_at = |o: usize| u32::from_ne_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]]);
        let u64_at = |o: usize| {
            let mut a = [0u8; 8];
            a.copy_from_slice(&b[o..o + 8]);
            u64::from_ne_bytes(a)
        };
        SchedAttr {
            policy: u32_at(4),
            flags: u64_at(8),
            nice: u32_at(16) as i32,
            priority: u32_at(20),
            runtime: u64_at(24),
            deadline: u64_at(32),
            period: u64_at(40),
        }
    }
}

/// `sched_getattr(tid, ...)`: the scheduling attributes of thread `tid`
/// (any visible thread; no permission is needed to read them).
pub fn sched_getattr(tid: i32) -> Result<SchedAttr, Errno> {
    let mut b = [0u8; SCHED_ATTR_SIZE];
    // SAFETY: `b` is SCHED_ATTR_SIZE bytes, the size passed.
    let r = unsafe {
        libc::syscall(
            libc::SYS_sched_getattr,
            tid,
            b.as_mut_ptr(),
            SCHED_ATTR_SIZE as libc::c_uint,
            0 as libc::c_uint,
        )
    };
    Errno::result(r)?;
    Ok(SchedAttr::decode(&b))
}

/// `PTRACE_SETOPTIONS` with `PTRACE_O_TRACESYSGOOD | PTRACE_O_SUSPEND_SECCOMP`:
/// the tracee's seccomp filters do not apply while it is traced by us
/// (needs `CAP_SYS_ADMIN` in the tracer; ends when it is detached).
pub fn suspend_seccomp(pid: i32) -> Result<(), Errno> {
    const PTRACE_O_SUSPEND_SECCOMP: usize = 1 << 21;
    let opts = libc::PTRACE_O_TRACESYSGOOD as usize | PTRACE_O_SUSPEND_SECCOMP;
    // SAFETY: integer arguments only.
    unsafe { ptrace_raw(libc::PTRACE_SETOPTIONS, pid, 0, opts) }.map(drop)
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

/// Whether the file behind `fd` carries file capabilities (a
/// `security.capability` extended attribute).
pub fn has_file_caps(fd: &impl AsRawFd) -> bool {
    let name = c"security.capability";
    // SAFETY: a NUL-terminated name, no buffer (size 0: only the length is
    // asked for).
    let r = unsafe { libc::fgetxattr(fd.as_raw_fd(), name.as_ptr(), std::ptr::null_mut(), 0) };
    r >= 0
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

/// Terminal `ioctl` requests the engine uses (x86_64 encodings).
pub mod tty_ioctl {
    /// `TIOCGPTN`: a pseudo-terminal master's index.
    pub const TIOCGPTN: u64 = 0x8004_5430;
    /// `TIOCGPTPEER`: open the master's slave (argument: open flags).
    pub const TIOCGPTPEER: u64 = 0x5441;
    /// `TIOCGPTLCK` / `TIOCSPTLCK`: the slave's lock.
    pub const TIOCGPTLCK: u64 = 0x8004_5439;
    pub const TIOCSPTLCK: u64 = 0x4004_5431;
    /// `TIOCGPKT` / `TIOCPKT`: packet mode.
    pub const TIOCGPKT: u64 = 0x8004_5438;
    pub const TIOCPKT: u64 = 0x5420;
    /// `TIOCGEXCL` / `TIOCEXCL`: exclusive mode.
    pub const TIOCGEXCL: u64 = 0x8004_5440;
    pub const TIOCEXCL: u64 = 0x540c;
    /// `TIOCGSID`, `TIOCGPGRP`, `TIOCSPGRP`, `TIOCSCTTY`.
    pub const TIOCGSID: u64 = 0x5429;
    pub const TIOCGPGRP: u64 = 0x540f;
    pub const TIOCSPGRP: u64 = 0x5410;
    pub const TIOCSCTTY: u64 = 0x540e;
    /// `TIOCGDEV`: the device number of the terminal behind a `/dev/tty`.
    pub const TIOCGDEV: u64 = 0x8004_5432;
    /// `TIOCINQ` (`FIONREAD`) and `TIOCOUTQ`: bytes queued.
    pub const TIOCINQ: u64 = 0x541b;
    pub const TIOCOUTQ: u64 = 0x5411;
    /// `TCGETS2` / `TCSETS2` (`struct termios2`, [`TERMIOS2_SIZE`] bytes).
    pub const TCGETS2: u64 = 0x802c_542a;
    pub const TCSETS2: u64 = 0x402c_542b;
    /// `TIOCGWINSZ` / `TIOCSWINSZ` (`struct winsize`, 8 bytes).
    pub const TIOCGWINSZ: u64 = 0x5413;
    pub const TIOCSWINSZ: u64 = 0x5414;
    /// Size of `struct termios2`.
    pub const TERMIOS2_SIZE: usize = 44;
}

/// An `ioctl` on `fd` that writes one `int` through its argument
/// (`TIOCGPTN`, `TIOCGPKT`, `TIOCGSID`, `TIOCINQ`, ...).
pub fn ioctl_get_int(fd: BorrowedFd<'_>, request: u64) -> Result<i32, Errno> {
    let mut v: libc::c_int = 0;
    // SAFETY: every request passed here writes exactly one int through
    // its argument, which points at `v`, alive for the call.
    let r = unsafe { libc::ioctl(fd.as_raw_fd(), request as libc::Ioctl, &mut v) };
    Errno::result(r)?;
    Ok(v)
}

/// `TCGETS2` on a terminal: its `struct termios2`, as bytes.
pub fn tty_termios2(fd: BorrowedFd<'_>) -> Result<[u8; tty_ioctl::TERMIOS2_SIZE], Errno> {
    let mut b = [0u8; tty_ioctl::TERMIOS2_SIZE];
    // SAFETY: TCGETS2 writes a struct termios2 (TERMIOS2_SIZE bytes) into
    // the buffer, which is that long and alive for the call.
    let r = unsafe {
        libc::ioctl(
            fd.as_raw_fd(),
            tty_ioctl::TCGETS2 as libc::Ioctl,
            b.as_mut_ptr(),
        )
    };
    Errno::result(r)?;
    Ok(b)
}

/// `TIOCGWINSZ` on a terminal: rows, columns, x and y pixels.
pub fn tty_winsize(fd: BorrowedFd<'_>) -> Result<[u16; 4], Errno> {
    let mut w = [0u16; 4];
    // SAFETY: TIOCGWINSZ writes a struct winsize (four u16) into `w`,
    // which is that long and alive for the call.
    let r = unsafe {
        libc::ioctl(
            fd.as_raw_fd(),
            tty_ioctl::TIOCGWINSZ as libc::Ioctl,
            w.as_mut_ptr(),
        )
    };
    Errno::result(r)?;
    Ok(w)
}

/// `TIOCGPTPEER` on a pseudo-terminal master: a new description of its
/// slave, opened with `flags` (no path is looked up).
pub fn pty_peer(master: BorrowedFd<'_>, flags: i32) -> Result<OwnedFd, Errno> {
    // SAFETY: TIOCGPTPEER takes its argument as an integer (open flags).
    let r = unsafe {
        libc::ioctl(
            master.as_raw_fd(),
            tty_ioctl::TIOCGPTPEER as libc::Ioctl,
            flags as libc::c_ulong,
        )
    };
    let fd = Errno::result(r)?;
    // SAFETY: the kernel just returned this new descriptor; we own it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}
