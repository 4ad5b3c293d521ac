//! x86_64 register state: conversion between the saved form
//! ([`crate::model::GpRegs`]) and the kernel's `user_regs_struct`, the
//! syscall-restart fix-up, and the xsave feature words.
//!
//! Trusts nothing: xsave buffers are length-checked before any field is read.

use crate::model::GpRegs;

/// `-ERESTARTSYS`, `-ERESTARTNOINTR`, `-ERESTARTNOHAND`, `-ERESTART_RESTARTBLOCK`.
const ERESTARTSYS: i64 = -512;
const ERESTARTNOINTR: i64 = -513;
const ERESTARTNOHAND: i64 = -514;
const ERESTART_RESTARTBLOCK: i64 = -516;
/// `__NR_restart_syscall`.
const NR_RESTART_SYSCALL: u64 = 219;
/// Length of the `syscall` instruction.
const SYSCALL_INSN_LEN: u64 = 2;

/// Offset of the kernel's XCR0 in an `NT_X86_XSTATE` regset: word 0 of the
/// fxsave area's software-reserved bytes (`USER_XSTATE_XCR0_WORD`), and of
/// `XSTATE_BV` in the xsave header.
const SW_XFEATURES_OFFSET: usize = 464;
const XSTATE_BV_OFFSET: usize = 512;

/// Convert the kernel's register block to the saved form.
pub fn from_user_regs(r: &libc::user_regs_struct) -> GpRegs {
    GpRegs {
        r15: r.r15,
        r14: r.r14,
        r13: r.r13,
        r12: r.r12,
        rbp: r.rbp,
        rbx: r.rbx,
        r11: r.r11,
        r10: r.r10,
        r9: r.r9,
        r8: r.r8,
        rax: r.rax,
        rcx: r.rcx,
        rdx: r.rdx,
        rsi: r.rsi,
        rdi: r.rdi,
        orig_rax: r.orig_rax,
        rip: r.rip,
        cs: r.cs,
        eflags: r.eflags,
        rsp: r.rsp,
        ss: r.ss,
        fs_base: r.fs_base,
        gs_base: r.gs_base,
        ds: r.ds,
        es: r.es,
        fs: r.fs,
        gs: r.gs,
    }
}

/// Convert the saved form to the kernel's register block. Segment selectors
/// come from `current` (the live task), never from the image: the kernel
/// rejects or misuses foreign selectors, and they carry no process state.
pub fn to_user_regs(g: &GpRegs, current: &libc::user_regs_struct) -> libc::user_regs_struct {
    let mut r = *current;
    r.r15 = g.r15;
    r.r14 = g.r14;
    r.r13 = g.r13;
    r.r12 = g.r12;
    r.rbp = g.rbp;
    r.rbx = g.rbx;
    r.r11 = g.r11;
    r.r10 = g.r10;
    r.r9 = g.r9;
    r.r8 = g.r8;
    r.rax = g.rax;
    r.rcx = g.rcx;
    r.rdx = g.rdx;
    r.rsi = g.rsi;
    r.rdi = g.rdi;
    r.orig_rax = g.orig_rax;
    r.rip = g.rip;
    r.eflags = g.eflags;
    r.rsp = g.rsp;
    r.fs_base = g.fs_base;
    r.gs_base = g.gs_base;
    r
}

/// Which kind of task the registers will be resumed in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResumeIn {
    /// The original task, which still has its kernel restart block.
    Original,
    /// A new task built by restore (no restart block).
    Restored,
}

/// `nanosleep` and `clock_nanosleep`.
const NR_NANOSLEEP: u64 = 35;
const NR_CLOCK_NANOSLEEP: u64 = 230;
/// `TIMER_ABSTIME`.
const TIMER_ABSTIME: u64 = 1;

/// A relative sleep interrupted with `-ERESTART_RESTARTBLOCK` had the
/// time it had left written to its `rem` argument by the kernel (when the
/// caller passed one): re-issued from that, it sleeps what it had left,
/// not its full length again. `nanosleep(req, rem)`: `req` becomes `rem`;
/// `clock_nanosleep(clock, flags, req, rem)` without `TIMER_ABSTIME`: the
/// same. Without a `rem` the full length is slept again.
fn resume_sleep_from_remaining(r: &mut libc::user_regs_struct) {
    match r.orig_rax {
        NR_NANOSLEEP if r.rsi != 0 => r.rdi = r.rsi,
        NR_CLOCK_NANOSLEEP if r.rsi & TIMER_ABSTIME == 0 && r.r10 != 0 => r.rdx = r.r10,
        _ => {}
    }
}

/// The fix-up the kernel would apply when returning to user space from an
/// interrupted syscall with no handler to run. Resuming from a syscall-exit
/// stop skips the kernel's own restart handling, so we apply it: restartable
/// syscalls are re-executed; `-ERESTART_RESTARTBLOCK` goes through
/// `restart_syscall` in the original task (its restart block is intact)
/// and re-issues the original syscall in a restored one: a restored task's
/// restart block is a copy of whichever task created it, so
/// `restart_syscall` there would run *that* task's restart (a sleep of the
/// wrong length, or `EINTR`). Its arguments are intact in the registers;
/// a relative `nanosleep`/`clock_nanosleep` given a `rem` sleeps the time
/// it had left ([`resume_sleep_from_remaining`]), other relative timeouts
/// start again from their full length (at least as long), absolute
/// deadlines are exact. `orig_rax` becomes -1 so
/// nothing is fixed up twice. A call that had already returned `-EINTR`
/// at the freeze (`epoll_wait`, `sigtimedwait`: the kernel does not
/// restart them after a stop) keeps that result, as under `SIGSTOP`.
pub fn restart_fixup(r: &mut libc::user_regs_struct, resume: ResumeIn) {
    let in_syscall = (r.orig_rax as i64) >= 0;
    if in_syscall {
        match r.rax as i64 {
            ERESTARTSYS | ERESTARTNOINTR | ERESTARTNOHAND => {
                r.rax = r.orig_rax;
                r.rip = r.rip.wrapping_sub(SYSCALL_INSN_LEN);
            }
            ERESTART_RESTARTBLOCK => match resume {
                ResumeIn::Original => {
                    r.rax = NR_RESTART_SYSCALL;
                    r.rip = r.rip.wrapping_sub(SYSCALL_INSN_LEN);
                }
                ResumeIn::Restored => {
                    resume_sleep_from_remaining(r);
                    r.rax = r.orig_rax;
                    r.rip = r.rip.wrapping_sub(SYSCALL_INSN_LEN);
                }
            },
            _ => {}
        }
    }
    r.orig_rax = u64::MAX;
}

/// The xsave features enabled by the kernel (XCR0), from an `NT_X86_XSTATE`
/// buffer.
pub fn xsave_enabled_features(xsave: &[u8]) -> Option<u64> {
    read_u64(xsave, SW_XFEATURES_OFFSET)
}

/// The features with live state in this buffer (`XSTATE_BV`).
pub fn xsave_features_in_use(xsave: &[u8]) -> Option<u64> {
    read_u64(xsave, XSTATE_BV_OFFSET)
}

fn read_u64(buf: &[u8], at: usize) -> Option<u64> {
    let bytes = buf.get(at..at.checked_add(8)?)?;
    let arr: [u8; 8] = bytes.try_into().ok()?;
    Some(u64::from_le_bytes(arr))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn regs() -> libc::user_regs_struct {
        // SAFETY: user_regs_struct is plain integers; all-zero is valid.
        unsafe { std::mem::zeroed() }
    }

    #[test]
    fn restartable_syscall_is_rewound() {
        let mut r = regs();
        r.orig_rax = 34; // pause
        r.rax = (-514i64) as u64;
        r.rip = 0x1002;
        restart_fixup(&mut r, ResumeIn::Restored);
        assert_eq!((r.rax, r.rip, r.orig_rax), (34, 0x1000, u64::MAX));
    }

    #[test]
    fn restart_block_depends_on_task() {
        let mut a = regs();
        a.orig_rax = 35;
        a.rax = (-516i64) as u64;
        a.rip = 0x2002;
        let mut b = a;
        restart_fixup(&mut a, ResumeIn::Original);
        assert_eq!((a.rax, a.rip), (219, 0x2000));
        restart_fixup(&mut b, ResumeIn::Restored);
        assert_eq!((b.rax, b.rip), (35, 0x2000));
    }

    #[test]
    fn a_restored_relative_sleep_resumes_from_its_remaining_time() {
        let mut n = regs();
        n.orig_rax = NR_NANOSLEEP;
        n.rax = (-516i64) as u64;
        n.rdi = 0x7000; // req
        n.rsi = 0x7010; // rem
        restart_fixup(&mut n, ResumeIn::Restored);
        assert_eq!((n.rax, n.rdi, n.rsi), (NR_NANOSLEEP, 0x7010, 0x7010));
        // clock_nanosleep: relative with rem, absolute, and without rem.
        let mut c = regs();
        c.orig_rax = NR_CLOCK_NANOSLEEP;
        c.rax = (-516i64) as u64;
        c.rdx = 0x8000;
        c.r10 = 0x8010;
        let (mut abs, mut norem) = (c, c);
        restart_fixup(&mut c, ResumeIn::Restored);
        assert_eq!(c.rdx, 0x8010);
        abs.rsi = TIMER_ABSTIME;
        restart_fixup(&mut abs, ResumeIn::Restored);
        assert_eq!(abs.rdx, 0x8000);
        norem.r10 = 0;
        restart_fixup(&mut norem, ResumeIn::Restored);
        assert_eq!(norem.rdx, 0x8000);
        // The original task keeps its restart block: nothing rewritten.
        let mut o = regs();
        o.orig_rax = NR_NANOSLEEP;
        o.rax = (-516i64) as u64;
        o.rdi = 0x7000;
        o.rsi = 0x7010;
        restart_fixup(&mut o, ResumeIn::Original);
        assert_eq!((o.rax, o.rdi), (219, 0x7000));
    }

    #[test]
    fn not_in_syscall_is_untouched() {
        let mut r = regs();
        r.orig_rax = u64::MAX;
        r.rax = (-512i64) as u64;
        r.rip = 0x3000;
        restart_fixup(&mut r, ResumeIn::Restored);
        assert_eq!((r.rax as i64, r.rip), (-512, 0x3000));
    }

    #[test]
    fn short_xsave_has_no_features() {
        assert_eq!(xsave_enabled_features(&[0u8; 100]), None);
        let mut buf = vec![0u8; 576];
        buf[464..472].copy_from_slice(&7u64.to_le_bytes());
        buf[512..520].copy_from_slice(&3u64.to_le_bytes());
        assert_eq!(xsave_enabled_features(&buf), Some(7));
        assert_eq!(xsave_features_in_use(&buf), Some(3));
    }
}
