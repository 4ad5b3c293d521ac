//! Plain kernel structs as the x86_64 kernel lays them out, encoded to and
//! decoded from bytes field by field (native endianness, explicit padding),
//! so that what goes into the target is exactly what the kernel reads.
//!
//! Owns only the layouts; trusts nothing (decoding takes any bytes).

/// A struct with a fixed kernel layout.
pub trait KernelStruct: Sized {
    /// Size in bytes, as the kernel reads or writes it.
    const SIZE: usize;
    /// What errors call it ("writing open_how", ...).
    const WHAT: &'static str;
    /// The kernel's bytes for `self` (exactly [`KernelStruct::SIZE`]).
    fn encode(&self) -> Vec<u8>;
    /// From the kernel's bytes (shorter input reads as zeros).
    fn decode(b: &[u8]) -> Self;
}

fn put(out: &mut Vec<u8>, words: &[u64]) {
    for w in words {
        out.extend_from_slice(&w.to_ne_bytes());
    }
}

fn word(b: &[u8], i: usize) -> u64 {
    let mut a = [0u8; 8];
    if let Some(s) = b.get(i * 8..i * 8 + 8) {
        a.copy_from_slice(s);
    }
    u64::from_ne_bytes(a)
}

/// `struct open_how` (openat2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpenHow {
    pub flags: u64,
    pub mode: u64,
    pub resolve: u64,
}

/// `RESOLVE_NO_SYMLINKS`.
pub const RESOLVE_NO_SYMLINKS: u64 = 0x04;

impl KernelStruct for OpenHow {
    const SIZE: usize = 24;
    const WHAT: &'static str = "writing open_how";
    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(Self::SIZE);
        put(&mut out, &[self.flags, self.mode, self.resolve]);
        out
    }
    fn decode(b: &[u8]) -> Self {
        OpenHow {
            flags: word(b, 0),
            mode: word(b, 1),
            resolve: word(b, 2),
        }
    }
}

/// The kernel's `struct sigaction` on x86_64 (`rt_sigaction`, 8-byte mask).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KSigAction {
    pub handler: u64,
    pub flags: u64,
    pub restorer: u64,
    pub mask: u64,
}

impl KernelStruct for KSigAction {
    const SIZE: usize = 32;
    const WHAT: &'static str = "writing sigaction";
    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(Self::SIZE);
        put(
            &mut out,
            &[self.handler, self.flags, self.restorer, self.mask],
        );
        out
    }
    fn decode(b: &[u8]) -> Self {
        KSigAction {
            handler: word(b, 0),
            flags: word(b, 1),
            restorer: word(b, 2),
            mask: word(b, 3),
        }
    }
}

/// `stack_t` (sigaltstack): pointer, `int` flags padded to 8, size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StackT {
    pub sp: u64,
    pub flags: i32,
    pub size: u64,
}

impl KernelStruct for StackT {
    const SIZE: usize = 24;
    const WHAT: &'static str = "writing sigaltstack";
    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(Self::SIZE);
        put(&mut out, &[self.sp, self.flags as u32 as u64, self.size]);
        out
    }
    fn decode(b: &[u8]) -> Self {
        StackT {
            sp: word(b, 0),
            flags: word(b, 1) as u32 as i32,
            size: word(b, 2),
        }
    }
}

/// `struct rlimit64` (prlimit64).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rlimit64 {
    pub cur: u64,
    pub max: u64,
}

impl KernelStruct for Rlimit64 {
    const SIZE: usize = 16;
    const WHAT: &'static str = "writing rlimit";
    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(Self::SIZE);
        put(&mut out, &[self.cur, self.max]);
        out
    }
    fn decode(b: &[u8]) -> Self {
        Rlimit64 {
            cur: word(b, 0),
            max: word(b, 1),
        }
    }
}

/// `struct itimerval`: interval and value, each seconds and microseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ITimerVal {
    pub interval_us: u64,
    pub value_us: u64,
}

impl KernelStruct for ITimerVal {
    const SIZE: usize = 32;
    const WHAT: &'static str = "writing itimer";
    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(Self::SIZE);
        let (i, v) = (self.interval_us, self.value_us);
        put(
            &mut out,
            &[i / 1_000_000, i % 1_000_000, v / 1_000_000, v % 1_000_000],
        );
        out
    }
    fn decode(b: &[u8]) -> Self {
        let us = |sec: u64, usec: u64| sec.saturating_mul(1_000_000).saturating_add(usec);
        ITimerVal {
            interval_us: us(word(b, 0), word(b, 1)),
            value_us: us(word(b, 2), word(b, 3)),
        }
    }
}

/// `struct itimerspec` (`timerfd_settime`): interval and value, each
/// seconds and nanoseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ITimerSpec {
    pub interval_ns: u64,
    pub value_ns: u64,
}

impl KernelStruct for ITimerSpec {
    const SIZE: usize = 32;
    const WHAT: &'static str = "writing itimerspec";
    fn encode(&self) -> Vec<u8> {
        const NS: u64 = 1_000_000_000;
        let mut out = Vec::with_capacity(Self::SIZE);
        let (i, v) = (self.interval_ns, self.value_ns);
        put(&mut out, &[i / NS, i % NS, v / NS, v % NS]);
        out
    }
    fn decode(b: &[u8]) -> Self {
        let ns = |sec: u64, nsec: u64| sec.saturating_mul(1_000_000_000).saturating_add(nsec);
        ITimerSpec {
            interval_ns: ns(word(b, 0), word(b, 1)),
            value_ns: ns(word(b, 2), word(b, 3)),
        }
    }
}

/// `struct flock` (`F_SETLK`, `F_OFD_SETLK`): always `SEEK_SET`, `l_pid`
/// 0 (what `F_OFD_SETLK` requires).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Flock {
    /// `F_RDLCK` (0) or `F_WRLCK` (1).
    pub kind: i16,
    pub start: i64,
    /// 0: to the end of the file.
    pub len: i64,
}

impl KernelStruct for Flock {
    const SIZE: usize = 32;
    const WHAT: &'static str = "writing flock";
    fn encode(&self) -> Vec<u8> {
        // short l_type, short l_whence, 4 bytes of padding, off_t l_start,
        // off_t l_len, pid_t l_pid, 4 bytes of padding.
        let mut out = Vec::with_capacity(Self::SIZE);
        out.extend_from_slice(&self.kind.to_ne_bytes());
        out.extend_from_slice(&(libc::SEEK_SET as i16).to_ne_bytes());
        out.extend_from_slice(&[0; 4]);
        out.extend_from_slice(&self.start.to_ne_bytes());
        out.extend_from_slice(&self.len.to_ne_bytes());
        out.extend_from_slice(&[0; 8]);
        out
    }
    fn decode(b: &[u8]) -> Self {
        let mut k = [0u8; 2];
        if let Some(s) = b.get(0..2) {
            k.copy_from_slice(s);
        }
        Flock {
            kind: i16::from_ne_bytes(k),
            start: word(b, 1) as i64,
            len: word(b, 2) as i64,
        }
    }
}

/// `struct epoll_event` (packed on x86_64: a u32 then a u64).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EpollEvent {
    pub events: u32,
    pub data: u64,
}

impl KernelStruct for EpollEvent {
    const SIZE: usize = 12;
    const WHAT: &'static str = "writing epoll_event";
    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(Self::SIZE);
        out.extend_from_slice(&self.events.to_ne_bytes());
        out.extend_from_slice(&self.data.to_ne_bytes());
        out
    }
    fn decode(b: &[u8]) -> Self {
        let mut e = [0u8; 4];
        let mut d = [0u8; 8];
        if let (Some(x), Some(y)) = (b.get(0..4), b.get(4..12)) {
            e.copy_from_slice(x);
            d.copy_from_slice(y);
        }
        EpollEvent {
            events: u32::from_ne_bytes(e),
            data: u64::from_ne_bytes(d),
        }
    }
}

/// `struct prctl_mm_map` (`PR_SET_MM_MAP`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PrctlMmMap {
    /// start_code, end_code, start_data, end_data, start_brk, brk,
    /// start_stack, arg_start, arg_end, env_start, env_end
    pub fields: [u64; 11],
    /// Address of the auxv words in the target.
    pub auxv: u64,
    /// Size of the auxv in bytes.
    pub auxv_size: u32,
    /// fd of the new exe link, or -1 (`u32::MAX`) to keep it.
    pub exe_fd: u32,
}

impl KernelStruct for PrctlMmMap {
    const SIZE: usize = 104;
    const WHAT: &'static str = "writing mm map";
    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(Self::SIZE);
        put(&mut out, &self.fields);
        put(&mut out, &[self.auxv]);
        out.extend_from_slice(&self.auxv_size.to_ne_bytes());
        out.extend_from_slice(&self.exe_fd.to_ne_bytes());
        out
    }
    fn decode(b: &[u8]) -> Self {
        let mut fields = [0u64; 11];
        for (i, f) in fields.iter_mut().enumerate() {
            *f = word(b, i);
        }
        let u32_at = |i: usize| {
            let mut a = [0u8; 4];
            if let Some(s) = b.get(i..i + 4) {
                a.copy_from_slice(s);
            }
            u32::from_ne_bytes(a)
        };
        PrctlMmMap {
            fields,
            auxv: word(b, 11),
            auxv_size: u32_at(96),
            exe_fd: u32_at(100),
        }
    }
}

/// `struct __user_cap_header_struct` followed by two
/// `struct __user_cap_data_struct` (capability version 3, 64 bits): the
/// header at offset 0 and the data at offset 8, as `capset` takes them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CapSet {
    pub effective: u64,
    pub permitted: u64,
    pub inheritable: u64,
}

/// `_LINUX_CAPABILITY_VERSION_3`.
const CAP_VERSION_3: u32 = 0x2008_0522;

impl CapSet {
    /// Offset of the data part from the header.
    pub const DATA_OFFSET: u64 = 8;
}

impl KernelStruct for CapSet {
    const SIZE: usize = 32;
    const WHAT: &'static str = "writing capabilities";
    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(Self::SIZE);
        out.extend_from_slice(&CAP_VERSION_3.to_ne_bytes());
        out.extend_from_slice(&0i32.to_ne_bytes());
        for half in [0, 32] {
            for set in [self.effective, self.permitted, self.inheritable] {
                out.extend_from_slice(&((set >> half) as u32).to_ne_bytes());
            }
        }
        out
    }
    fn decode(b: &[u8]) -> Self {
        let u32_at = |i: usize| {
            let mut a = [0u8; 4];
            if let Some(s) = b.get(i..i + 4) {
                a.copy_from_slice(s);
            }
            u64::from(u32::from_ne_bytes(a))
        };
        let set = |k: usize| u32_at(8 + 4 * k) | (u32_at(20 + 4 * k) << 32);
        CapSet {
            effective: set(0),
            permitted: set(1),
            inheritable: set(2),
        }
    }
}

/// `struct sigevent` (`timer_create`): the value, signal and notification,
/// and the thread for `SIGEV_THREAD_ID`; the rest of its 64 bytes zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SigEvent {
    pub value: u64,
    pub signo: i32,
    pub notify: i32,
    pub tid: i32,
}

impl KernelStruct for SigEvent {
    const SIZE: usize = 64;
    const WHAT: &'static str = "writing sigevent";
    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(Self::SIZE);
        out.extend_from_slice(&self.value.to_ne_bytes());
        out.extend_from_slice(&self.signo.to_ne_bytes());
        out.extend_from_slice(&self.notify.to_ne_bytes());
        out.extend_from_slice(&self.tid.to_ne_bytes());
        out.resize(Self::SIZE, 0);
        out
    }
    fn decode(b: &[u8]) -> Self {
        let i32_at = |o: usize| {
            let mut a = [0u8; 4];
            if let Some(s) = b.get(o..o + 4) {
                a.copy_from_slice(s);
            }
            i32::from_ne_bytes(a)
        };
        SigEvent {
            value: word(b, 0),
            signo: i32_at(8),
            notify: i32_at(12),
            tid: i32_at(16),
        }
    }
}

/// Encode `words` as native-endian bytes (a `u64` array in the target).
pub fn words_to_bytes(w: &[u64]) -> Vec<u8> {
    w.iter().flat_map(|x| x.to_ne_bytes()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip<T: KernelStruct + PartialEq + std::fmt::Debug>(v: T) {
        let b = v.encode();
        assert_eq!(b.len(), T::SIZE, "{}", T::WHAT);
        assert_eq!(T::decode(&b), v, "{}", T::WHAT);
    }

    #[test]
    fn layouts_match_the_kernel() {
        round_trip(OpenHow {
            flags: 0o2000000,
            mode: 0,
            resolve: RESOLVE_NO_SYMLINKS,
        });
        round_trip(KSigAction {
            handler: 1,
            flags: 0x0400_0000,
            restorer: 3,
            mask: 1 << 9,
        });
        round_trip(StackT {
            sp: 0x7000,
            flags: -2,
            size: 8192,
        });
        round_trip(Rlimit64 {
            cur: 1,
            max: u64::MAX,
        });
        round_trip(ITimerVal {
            interval_us: 1_500_000,
            value_us: 7,
        });
        round_trip(PrctlMmMap {
            fields: [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11],
            auxv: 0x1000,
            auxv_size: 16,
            exe_fd: u32::MAX,
        });
        round_trip(CapSet {
            effective: 1 << 40 | 1,
            permitted: u64::MAX,
            inheritable: 0,
        });
        round_trip(SigEvent {
            value: u64::MAX,
            signo: 34,
            notify: 4,
            tid: 1234,
        });
        assert_eq!(std::mem::size_of::<libc::sigevent>(), SigEvent::SIZE);
        // The kernel's own sizes for the libc equivalents.
        assert_eq!(std::mem::size_of::<libc::stack_t>(), StackT::SIZE);
        assert_eq!(std::mem::size_of::<libc::rlimit64>(), Rlimit64::SIZE);
        assert_eq!(std::mem::size_of::<libc::itimerval>(), ITimerVal::SIZE);
        // sigaltstack flags sit in the low 4 bytes of the second word.
        let b = StackT {
            sp: 0,
            flags: 1,
            size: 0,
        }
        .encode();
        assert_eq!(&b[8..16], &1u64.to_ne_bytes());
    }
}
