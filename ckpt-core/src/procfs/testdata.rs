//! Real samples of the files the parsers read, captured on the development
//! machine (Linux 6.18, x86_64) and pasted verbatim. Trailing spaces and tabs
//! are significant and spelled out as escapes, so no editor can strip them.
//!
//! The capture program (C, run as root) set a comm of `a) x (b`, umask 027,
//! rlimits, signal state, three POSIX timers, two children and a second
//! thread, mapped the files described below, then copied its own /proc files.
//! This kernel is built without CONFIG_ANON_VMA_NAME, so `[anon:name]` lines
//! in the tests are written by hand after the kernel's format.

/// `/proc/self/maps` of a test program that mapped a file under a directory with
/// spaces, a deleted file, a memfd named "jit code", shared anonymous memory
/// (shown as `/dev/zero (deleted)`), a PROT_NONE guard and a thread stack.
pub(super) const MAPS: &str = "\
55a016a08000-55a016a09000 r--p 00000000 fe:00 10010809                   /tmp/samples/cap\n\
55a016a09000-55a016a0a000 r-xp 00001000 fe:00 10010809                   /tmp/samples/cap\n\
55a016a0a000-55a016a0b000 r--p 00002000 fe:00 10010809                   /tmp/samples/cap\n\
55a016a0b000-55a016a0c000 r--p 00002000 fe:00 10010809                   /tmp/samples/cap\n\
55a016a0c000-55a016a0d000 rw-p 00003000 fe:00 10010809                   /tmp/samples/cap\n\
55a030fa6000-55a030fc7000 rw-p 00000000 00:00 0                          [heap]\n\
7fef6657d000-7fef6657e000 ---p 00000000 00:00 0 \n\
7fef6657e000-7fef66d7e000 rw-p 00000000 00:00 0 \n\
7fef66d7e000-7fef66d81000 rw-p 00000000 00:00 0 \n\
7fef66d81000-7fef66da7000 r--p 00000000 fe:00 326279                     /usr/lib/x86_64-linux-gnu/libc.so.6\n\
7fef66da7000-7fef66efd000 r-xp 00026000 fe:00 326279                     /usr/lib/x86_64-linux-gnu/libc.so.6\n\
7fef66efd000-7fef66f50000 r--p 0017c000 fe:00 326279                     /usr/lib/x86_64-linux-gnu/libc.so.6\n\
7fef66f50000-7fef66f54000 r--p 001cf000 fe:00 326279                     /usr/lib/x86_64-linux-gnu/libc.so.6\n\
7fef66f54000-7fef66f56000 rw-p 001d3000 fe:00 326279                     /usr/lib/x86_64-linux-gnu/libc.so.6\n\
7fef66f56000-7fef66f63000 rw-p 00000000 00:00 0 \n\
7fef66f63000-7fef66f64000 r-xs 00000000 00:01 1026                       /memfd:jit code (deleted)\n\
7fef66f64000-7fef66f65000 rw-s 00000000 00:01 1025                       /dev/zero (deleted)\n\
7fef66f65000-7fef66f66000 ---p 00000000 00:00 0 \n\
7fef66f66000-7fef66f69000 rw-p 00000000 00:00 0 \n\
7fef66f69000-7fef66f6a000 r-xp 00000000 fe:00 10010881                   /tmp/samples/gone.bin (deleted)\n\
7fef66f6a000-7fef66f6c000 rw-s 00000000 fe:00 10010880                   /tmp/samples/dir with spaces/my file (1).bin\n\
7fef66f6c000-7fef66f6e000 rw-p 00000000 00:00 0 \n\
7fef66f6e000-7fef66f72000 r--p 00000000 00:00 0                          [vvar]\n\
7fef66f72000-7fef66f74000 r--p 00000000 00:00 0                          [vvar_vclock]\n\
7fef66f74000-7fef66f76000 r-xp 00000000 00:00 0                          [vdso]\n\
7fef66f76000-7fef66f77000 r--p 00000000 fe:00 325843                     /usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2\n\
7fef66f77000-7fef66f9d000 r-xp 00001000 fe:00 325843                     /usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2\n\
7fef66f9d000-7fef66fa7000 r--p 00027000 fe:00 325843                     /usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2\n\
7fef66fa7000-7fef66fa9000 r--p 00031000 fe:00 325843                     /usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2\n\
7fef66fa9000-7fef66fab000 rw-p 00033000 fe:00 325843                     /usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2\n\
7ffd6c4a2000-7ffd6c4c3000 rw-p 00000000 00:00 0                          [stack]\n\
ffffffffff600000-ffffffffff601000 --xp 00000000 00:00 0                  [vsyscall]\n";

/// Nine complete VMA blocks, verbatim, from `/proc/self/smaps` of the same
/// program (32 VMAs in all; the others are omitted to keep the file short).
pub(super) const SMAPS: &str = "\
55a016a08000-55a016a09000 r--p 00000000 fe:00 10010809                   /tmp/samples/cap\n\
Size:                  4 kB\n\
KernelPageSize:        4 kB\n\
MMUPageSize:           4 kB\n\
Rss:                   4 kB\n\
Pss:                   1 kB\n\
Pss_Dirty:             1 kB\n\
Shared_Clean:          0 kB\n\
Shared_Dirty:          4 kB\n\
Private_Clean:         0 kB\n\
Private_Dirty:         0 kB\n\
Referenced:            4 kB\n\
Anonymous:             0 kB\n\
KSM:                   0 kB\n\
LazyFree:              0 kB\n\
AnonHugePages:         0 kB\n\
ShmemPmdMapped:        0 kB\n\
FilePmdMapped:         0 kB\n\
Shared_Hugetlb:        0 kB\n\
Private_Hugetlb:       0 kB\n\
Swap:                  0 kB\n\
SwapPss:               0 kB\n\
Locked:                0 kB\n\
THPeligible:           0\n\
VmFlags: rd mr mw me \n\
7fef66f63000-7fef66f64000 r-xs 00000000 00:01 1026                       /memfd:jit code (deleted)\n\
Size:                  4 kB\n\
KernelPageSize:        4 kB\n\
MMUPageSize:           4 kB\n\
Rss:                   0 kB\n\
Pss:                   0 kB\n\
Pss_Dirty:             0 kB\n\
Shared_Clean:          0 kB\n\
Shared_Dirty:          0 kB\n\
Private_Clean:         0 kB\n\
Private_Dirty:         0 kB\n\
Referenced:            0 kB\n\
Anonymous:             0 kB\n\
KSM:                   0 kB\n\
LazyFree:              0 kB\n\
AnonHugePages:         0 kB\n\
ShmemPmdMapped:        0 kB\n\
FilePmdMapped:         0 kB\n\
Shared_Hugetlb:        0 kB\n\
Private_Hugetlb:       0 kB\n\
Swap:                  0 kB\n\
SwapPss:               0 kB\n\
Locked:                0 kB\n\
THPeligible:           0\n\
VmFlags: rd ex sh mr mw me ms \n\
7fef66f64000-7fef66f65000 rw-s 00000000 00:01 1025                       /dev/zero (deleted)\n\
Size:                  4 kB\n\
KernelPageSize:        4 kB\n\
MMUPageSize:           4 kB\n\
Rss:                   4 kB\n\
Pss:                   4 kB\n\
Pss_Dirty:             0 kB\n\
Shared_Clean:          0 kB\n\
Shared_Dirty:          0 kB\n\
Private_Clean:         4 kB\n\
Private_Dirty:         0 kB\n\
Referenced:            4 kB\n\
Anonymous:             0 kB\n\
KSM:                   0 kB\n\
LazyFree:              0 kB\n\
AnonHugePages:         0 kB\n\
ShmemPmdMapped:        0 kB\n\
FilePmdMapped:         0 kB\n\
Shared_Hugetlb:        0 kB\n\
Private_Hugetlb:       0 kB\n\
Swap:                  0 kB\n\
SwapPss:               0 kB\n\
Locked:                4 kB\n\
THPeligible:           0\n\
VmFlags: rd wr sh mr mw me ms lo \n\
7fef66f69000-7fef66f6a000 r-xp 00000000 fe:00 10010881                   /tmp/samples/gone.bin (deleted)\n\
Size:                  4 kB\n\
KernelPageSize:        4 kB\n\
MMUPageSize:           4 kB\n\
Rss:                   0 kB\n\
Pss:                   0 kB\n\
Pss_Dirty:             0 kB\n\
Shared_Clean:          0 kB\n\
Shared_Dirty:          0 kB\n\
Private_Clean:         0 kB\n\
Private_Dirty:         0 kB\n\
Referenced:            0 kB\n\
Anonymous:             0 kB\n\
KSM:                   0 kB\n\
LazyFree:              0 kB\n\
AnonHugePages:         0 kB\n\
ShmemPmdMapped:        0 kB\n\
FilePmdMapped:         0 kB\n\
Shared_Hugetlb:        0 kB\n\
Private_Hugetlb:       0 kB\n\
Swap:                  0 kB\n\
SwapPss:               0 kB\n\
Locked:                0 kB\n\
THPeligible:           0\n\
VmFlags: rd ex mr mw me \n\
7fef66f6a000-7fef66f6c000 rw-s 00000000 fe:00 10010880                   /tmp/samples/dir with spaces/my file (1).bin\n\
Size:                  8 kB\n\
KernelPageSize:        4 kB\n\
MMUPageSize:           4 kB\n\
Rss:                   0 kB\n\
Pss:                   0 kB\n\
Pss_Dirty:             0 kB\n\
Shared_Clean:          0 kB\n\
Shared_Dirty:          0 kB\n\
Private_Clean:         0 kB\n\
Private_Dirty:         0 kB\n\
Referenced:            0 kB\n\
Anonymous:             0 kB\n\
KSM:                   0 kB\n\
LazyFree:              0 kB\n\
AnonHugePages:         0 kB\n\
ShmemPmdMapped:        0 kB\n\
FilePmdMapped:         0 kB\n\
Shared_Hugetlb:        0 kB\n\
Private_Hugetlb:       0 kB\n\
Swap:                  0 kB\n\
SwapPss:               0 kB\n\
Locked:                0 kB\n\
THPeligible:           0\n\
VmFlags: rd wr sh mr mw me ms \n\
7fef66f6e000-7fef66f72000 r--p 00000000 00:00 0                          [vvar]\n\
Size:                 16 kB\n\
KernelPageSize:        4 kB\n\
MMUPageSize:           4 kB\n\
Rss:                   0 kB\n\
Pss:                   0 kB\n\
Pss_Dirty:             0 kB\n\
Shared_Clean:          0 kB\n\
Shared_Dirty:          0 kB\n\
Private_Clean:         0 kB\n\
Private_Dirty:         0 kB\n\
Referenced:            0 kB\n\
Anonymous:             0 kB\n\
KSM:                   0 kB\n\
LazyFree:              0 kB\n\
AnonHugePages:         0 kB\n\
ShmemPmdMapped:        0 kB\n\
FilePmdMapped:         0 kB\n\
Shared_Hugetlb:        0 kB\n\
Private_Hugetlb:       0 kB\n\
Swap:                  0 kB\n\
SwapPss:               0 kB\n\
Locked:                0 kB\n\
THPeligible:           0\n\
VmFlags: rd mr pf io de dd \n\
7fef66f74000-7fef66f76000 r-xp 00000000 00:00 0                          [vdso]\n\
Size:                  8 kB\n\
KernelPageSize:        4 kB\n\
MMUPageSize:           4 kB\n\
Rss:                   4 kB\n\
Pss:                   0 kB\n\
Pss_Dirty:             0 kB\n\
Shared_Clean:          4 kB\n\
Shared_Dirty:          0 kB\n\
Private_Clean:         0 kB\n\
Private_Dirty:         0 kB\n\
Referenced:            4 kB\n\
Anonymous:             0 kB\n\
KSM:                   0 kB\n\
LazyFree:              0 kB\n\
AnonHugePages:         0 kB\n\
ShmemPmdMapped:        0 kB\n\
FilePmdMapped:         0 kB\n\
Shared_Hugetlb:        0 kB\n\
Private_Hugetlb:       0 kB\n\
Swap:                  0 kB\n\
SwapPss:               0 kB\n\
Locked:                0 kB\n\
THPeligible:           0\n\
VmFlags: rd ex mr mw me de \n\
7ffd6c4a2000-7ffd6c4c3000 rw-p 00000000 00:00 0                          [stack]\n\
Size:                132 kB\n\
KernelPageSize:        4 kB\n\
MMUPageSize:           4 kB\n\
Rss:                  28 kB\n\
Pss:                  22 kB\n\
Pss_Dirty:            22 kB\n\
Shared_Clean:          0 kB\n\
Shared_Dirty:          8 kB\n\
Private_Clean:         0 kB\n\
Private_Dirty:        20 kB\n\
Referenced:           28 kB\n\
Anonymous:            28 kB\n\
KSM:                   0 kB\n\
LazyFree:              0 kB\n\
AnonHugePages:         0 kB\n\
ShmemPmdMapped:        0 kB\n\
FilePmdMapped:         0 kB\n\
Shared_Hugetlb:        0 kB\n\
Private_Hugetlb:       0 kB\n\
Swap:                  0 kB\n\
SwapPss:               0 kB\n\
Locked:                0 kB\n\
THPeligible:           0\n\
VmFlags: rd wr mr mw me gd ac \n\
ffffffffff600000-ffffffffff601000 --xp 00000000 00:00 0                  [vsyscall]\n\
Size:                  4 kB\n\
KernelPageSize:        4 kB\n\
MMUPageSize:           4 kB\n\
Rss:                   0 kB\n\
Pss:                   0 kB\n\
Pss_Dirty:             0 kB\n\
Shared_Clean:          0 kB\n\
Shared_Dirty:          0 kB\n\
Private_Clean:         0 kB\n\
Private_Dirty:         0 kB\n\
Referenced:            0 kB\n\
Anonymous:             0 kB\n\
KSM:                   0 kB\n\
LazyFree:              0 kB\n\
AnonHugePages:         0 kB\n\
ShmemPmdMapped:        0 kB\n\
FilePmdMapped:         0 kB\n\
Shared_Hugetlb:        0 kB\n\
Private_Hugetlb:       0 kB\n\
Swap:                  0 kB\n\
SwapPss:               0 kB\n\
Locked:                0 kB\n\
THPeligible:           0\n\
VmFlags: ex \n";

/// `/proc/self/status` of the same program as root: two threads, comm
/// `a) x (b`, umask 027, SIGUSR2 pending and blocked, SIGPIPE ignored, SIGUSR1
/// caught, no_new_privs set.
pub(super) const STATUS: &str = "\
Name:\ta) x (b\n\
Umask:\t0027\n\
State:\tR (running)\n\
Tgid:\t4351\n\
Ngid:\t0\n\
Pid:\t4351\n\
PPid:\t4302\n\
TracerPid:\t0\n\
Uid:\t0\t0\t0\t0\n\
Gid:\t0\t0\t0\t0\n\
FDSize:\t256\n\
Groups:\t \n\
NStgid:\t4351\n\
NSpid:\t4351\n\
NSpgid:\t4302\n\
NSsid:\t3055\n\
Kthread:\t0\n\
VmPeak:\t   10708 kB\n\
VmSize:\t   10708 kB\n\
VmLck:\t       4 kB\n\
VmPin:\t       0 kB\n\
VmHWM:\t    1548 kB\n\
VmRSS:\t    1548 kB\n\
RssAnon:\t     120 kB\n\
RssFile:\t    1424 kB\n\
RssShmem:\t       4 kB\n\
VmData:\t    8428 kB\n\
VmStk:\t     132 kB\n\
VmExe:\t       4 kB\n\
VmLib:\t    1536 kB\n\
VmPTE:\t      40 kB\n\
VmSwap:\t       0 kB\n\
HugetlbPages:\t       0 kB\n\
CoreDumping:\t0\n\
THP_enabled:\t1\n\
untag_mask:\t0xffffffffffffffff\n\
Threads:\t2\n\
SigQ:\t4/96365\n\
SigPnd:\t0000000000000800\n\
ShdPnd:\t0000000000000000\n\
SigBlk:\t0000001000000800\n\
SigIgn:\t0000000000001000\n\
SigCgt:\t0000000100000200\n\
CapInh:\t0000000000000000\n\
CapPrm:\t000001fffeffffff\n\
CapEff:\t000001fffeffffff\n\
CapBnd:\t000001fffeffffff\n\
CapAmb:\t0000000000000000\n\
NoNewPrivs:\t1\n\
Seccomp:\t0\n\
Seccomp_filters:\t0\n\
Speculation_Store_Bypass:\tvulnerable\n\
SpeculationIndirectBranch:\talways enabled\n\
Cpus_allowed:\t3\n\
Cpus_allowed_list:\t0-1\n\
Mems_allowed:\t00000000,00000000,00000000,00000000,00000000,00000000,00000000,00000000,00000000,00000000,00000000,00000000,00000000,00000000,00000000,00000000,00000000,00000000,00000000,00000000,00000000,00000000,00000000,00000000,00000000,00000000,00000000,00000000,00000000,00000000,00000000,00000001\n\
Mems_allowed_list:\t0\n\
voluntary_ctxt_switches:\t2\n\
nonvoluntary_ctxt_switches:\t0\n";

/// `/proc/self/status` of a forked child after PTRACE_TRACEME, setgroups(27, 100,
/// 65534), setresgid(100, 101, 102), setresuid(1000, 1001, 1002) and a seccomp
/// filter.
pub(super) const STATUS_CREDS: &str = "\
Name:\ta) x (b\n\
Umask:\t0027\n\
State:\tR (running)\n\
Tgid:\t4352\n\
Ngid:\t0\n\
Pid:\t4352\n\
PPid:\t4351\n\
TracerPid:\t4351\n\
Uid:\t1000\t1001\t1002\t1001\n\
Gid:\t100\t101\t102\t101\n\
FDSize:\t256\n\
Groups:\t27 100 65534 \n\
NStgid:\t4352\n\
NSpid:\t4352\n\
NSpgid:\t4302\n\
NSsid:\t3055\n\
Kthread:\t0\n\
VmPeak:\t    2376 kB\n\
VmSize:\t    2376 kB\n\
VmLck:\t       0 kB\n\
VmPin:\t       0 kB\n\
VmHWM:\t     644 kB\n\
VmRSS:\t     644 kB\n\
RssAnon:\t      96 kB\n\
RssFile:\t     548 kB\n\
RssShmem:\t       0 kB\n\
VmData:\t     104 kB\n\
VmStk:\t     132 kB\n\
VmExe:\t       4 kB\n\
VmLib:\t    1532 kB\n\
VmPTE:\t      36 kB\n\
VmSwap:\t       0 kB\n\
HugetlbPages:\t       0 kB\n\
CoreDumping:\t0\n\
THP_enabled:\t1\n\
untag_mask:\t0xffffffffffffffff\n\
Threads:\t1\n\
SigQ:\t0/96365\n\
SigPnd:\t0000000000000000\n\
ShdPnd:\t0000000000000000\n\
SigBlk:\t0000001000000800\n\
SigIgn:\t0000000000001000\n\
SigCgt:\t0000000000000200\n\
CapInh:\t0000000000000000\n\
CapPrm:\t0000000000000000\n\
CapEff:\t0000000000000000\n\
CapBnd:\t000001fffeffffff\n\
CapAmb:\t0000000000000000\n\
NoNewPrivs:\t1\n\
Seccomp:\t2\n\
Seccomp_filters:\t1\n\
Speculation_Store_Bypass:\tvulnerable\n\
SpeculationIndirectBranch:\talways enabled\n\
Cpus_allowed:\t3\n\
Cpus_allowed_list:\t0-1\n\
Mems_allowed:\t00000000,00000000,00000000,00000000,00000000,00000000,00000000,00000000,00000000,00000000,00000000,00000000,00000000,00000000,00000000,00000000,00000000,00000000,00000000,00000000,00000000,00000000,00000000,00000000,00000000,00000000,00000000,00000000,00000000,00000000,00000000,00000001\n\
Mems_allowed_list:\t0\n\
voluntary_ctxt_switches:\t0\n\
nonvoluntary_ctxt_switches:\t0\n";

/// `/proc/self/status` of a process whose comm is `x<newline>) (y z`: the kernel
/// escapes the newline as `\n`.
pub(super) const STATUS_NL: &str = "\
Name:\tx\\n) (y z\n\
Umask:\t0022\n\
State:\tR (running)\n\
Tgid:\t11579\n\
Ngid:\t0\n\
Pid:\t11579\n\
PPid:\t11571\n\
TracerPid:\t0\n\
Uid:\t0\t0\t0\t0\n\
Gid:\t0\t0\t0\t0\n\
FDSize:\t256\n\
Groups:\t \n\
NStgid:\t11579\n\
NSpid:\t11579\n\
NSpgid:\t11571\n\
NSsid:\t3055\n\
Kthread:\t0\n\
VmPeak:\t    2380 kB\n\
VmSize:\t    2344 kB\n\
VmLck:\t       0 kB\n\
VmPin:\t       0 kB\n\
VmHWM:\t    1112 kB\n\
VmRSS:\t    1112 kB\n\
RssAnon:\t      96 kB\n\
RssFile:\t    1016 kB\n\
RssShmem:\t       0 kB\n\
VmData:\t      92 kB\n\
VmStk:\t     132 kB\n\
VmExe:\t       4 kB\n\
VmLib:\t    1528 kB\n\
VmPTE:\t      40 kB\n\
VmSwap:\t       0 kB\n\
HugetlbPages:\t       0 kB\n\
CoreDumping:\t0\n\
THP_enabled:\t1\n\
untag_mask:\t0xffffffffffffffff\n\
Threads:\t1\n\
SigQ:\t0/96365\n\
SigPnd:\t0000000000000000\n\
ShdPnd:\t0000000000000000\n\
SigBlk:\t0000000000000000\n\
SigIgn:\t0000000000000000\n\
SigCgt:\t0000000000000000\n\
CapInh:\t0000000000000000\n\
CapPrm:\t000001fffeffffff\n\
CapEff:\t000001fffeffffff\n\
CapBnd:\t000001fffeffffff\n\
CapAmb:\t0000000000000000\n\
NoNewPrivs:\t0\n\
Seccomp:\t0\n\
Seccomp_filters:\t0\n\
Speculation_Store_Bypass:\tvulnerable\n\
SpeculationIndirectBranch:\talways enabled\n\
Cpus_allowed:\t3\n\
Cpus_allowed_list:\t0-1\n\
Mems_allowed:\t00000000,00000000,00000000,00000000,00000000,00000000,00000000,00000000,00000000,00000000,00000000,00000000,00000000,00000000,00000000,00000000,00000000,00000000,00000000,00000000,00000000,00000000,00000000,00000000,00000000,00000000,00000000,00000000,00000000,00000000,00000000,00000001\n\
Mems_allowed_list:\t0\n\
voluntary_ctxt_switches:\t0\n\
nonvoluntary_ctxt_switches:\t1\n";

/// `/proc/2/status` (kthreadd).
pub(super) const STATUS_KTHREAD: &str = "\
Name:\tkthreadd\n\
Umask:\t0022\n\
State:\tS (sleeping)\n\
Tgid:\t2\n\
Ngid:\t0\n\
Pid:\t2\n\
PPid:\t0\n\
TracerPid:\t0\n\
Uid:\t0\t0\t0\t0\n\
Gid:\t0\t0\t0\t0\n\
FDSize:\t64\n\
Groups:\t \n\
NStgid:\t2\n\
NSpid:\t2\n\
NSpgid:\t0\n\
NSsid:\t0\n\
Kthread:\t1\n\
Threads:\t1\n\
SigQ:\t0/96365\n\
SigPnd:\t0000000000000000\n\
ShdPnd:\t0000000000000000\n\
SigBlk:\t0000000000000000\n\
SigIgn:\tffffffffffffffff\n\
SigCgt:\t0000000000000000\n\
CapInh:\t0000000000000000\n\
CapPrm:\t000001ffffffffff\n\
CapEff:\t000001ffffffffff\n\
CapBnd:\t000001ffffffffff\n\
CapAmb:\t0000000000000000\n\
NoNewPrivs:\t0\n\
Seccomp:\t0\n\
Seccomp_filters:\t0\n\
Speculation_Store_Bypass:\tvulnerable\n\
SpeculationIndirectBranch:\talways enabled\n\
Cpus_allowed:\t3\n\
Cpus_allowed_list:\t0-1\n\
Mems_allowed:\t00000000,00000000,00000000,00000000,00000000,00000000,00000000,00000000,00000000,00000000,00000000,00000000,00000000,00000000,00000000,00000000,00000000,00000000,00000000,00000000,00000000,00000000,00000000,00000000,00000000,00000000,00000000,00000000,00000000,00000000,00000000,00000001\n\
Mems_allowed_list:\t0\n\
voluntary_ctxt_switches:\t62\n\
nonvoluntary_ctxt_switches:\t0\n";

/// `/proc/self/stat` of the two-threaded program whose comm is `a) x (b`.
pub(super) const STAT: &str = "\
4351 (a) x (b) R 4302 4302 3055 0 -1 4194304 116 22 0 0 0 0 0 0 20 0 2 0 41377 10964992 340 18446744073709551615 94146062749696 94146062753241 140726420383104 0 0 2048 2048 4096 512 0 0 0 17 1 0 0 0 0 0 94146062761424 94146062762328 94146504843264 140726420384500 140726420384506 140726420384506 140726420385778 0\n";

/// `/proc/self/stat` of a process whose comm is `x<newline>) (y z`: unescaped here.
pub(super) const STAT_NL: &str = "\
11579 (x\n\
) (y z) R 11571 11571 3055 0 -1 4194304 75 0 0 0 0 0 0 0 20 0 1 0 53531 2400256 254 18446744073709551615 93923431321600 93923431322261 140724370264848 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0 93923431333328 93923431333936 93924054839296 140724370270967 140724370270972 140724370270972 140724370272243 0\n";

/// `/proc/2/stat` (kthreadd): no mm, so every address field is 0.
pub(super) const STAT_KTHREAD: &str = "\
2 (kthreadd) S 0 0 0 0 -1 2129984 0 0 0 0 0 0 0 0 20 0 1 0 30 0 0 18446744073709551615 0 0 0 0 0 0 0 2147483647 0 1 0 0 0 1 0 0 0 0 0 0 0 0 0 0 0 0 0\n";

/// fdinfo of a regular file opened `O_RDWR | O_APPEND` after writing 6 bytes.
pub(super) const FDINFO_APPEND: &str = "\
pos:\t6\n\
flags:\t0102002\n\
mnt_id:\t27\n\
ino:\t10010882\n";

/// fdinfo of a regular file opened `O_RDWR | O_CREAT | O_TRUNC` (the mapped one).
pub(super) const FDINFO_RW: &str = "\
pos:\t0\n\
flags:\t0100002\n\
mnt_id:\t27\n\
ino:\t10010880\n";

/// fdinfo of `eventfd(5, EFD_CLOEXEC | EFD_NONBLOCK)`.
pub(super) const FDINFO_EVENTFD: &str = "\
pos:\t0\n\
flags:\t02004002\n\
mnt_id:\t17\n\
ino:\t1038\n\
eventfd-count:                5\n\
eventfd-id: 1\n\
eventfd-semaphore: 0\n";

/// fdinfo of `signalfd(-1, {SIGUSR1, SIGRTMIN+1}, SFD_NONBLOCK)`.
pub(super) const FDINFO_SIGNALFD: &str = "\
pos:\t0\n\
flags:\t04002\n\
mnt_id:\t17\n\
ino:\t1038\n\
sigmask:\t0000000400000200\n";

/// fdinfo of an armed CLOCK_MONOTONIC timerfd.
pub(super) const FDINFO_TIMERFD: &str = "\
pos:\t0\n\
flags:\t02\n\
mnt_id:\t17\n\
ino:\t1038\n\
clockid: 1\n\
ticks: 0\n\
settime flags: 00\n\
it_value: (99, 897295226)\n\
it_interval: (1, 0)\n";

/// fdinfo of an inotify instance with one watch.
pub(super) const FDINFO_INOTIFY: &str = "\
pos:\t0\n\
flags:\t00\n\
mnt_id:\t17\n\
ino:\t1038\n\
inotify wd:1 ino:98c09d sdev:fe00000 mask:300 ignored_mask:0 fhandle-bytes:8 fhandle-type:1 f_handle:9dc098006304914f\n";

/// `/proc/self/limits` after setrlimit(RLIMIT_NOFILE, 1024/4096) and
/// setrlimit(RLIMIT_CPU, 3600/unlimited).
pub(super) const LIMITS: &str = "\
Limit                     Soft Limit           Hard Limit           Units     \n\
Max cpu time              3600                 unlimited            seconds   \n\
Max file size             unlimited            unlimited            bytes     \n\
Max data size             unlimited            unlimited            bytes     \n\
Max stack size            8388608              unlimited            bytes     \n\
Max core file size        0                    unlimited            bytes     \n\
Max resident set          unlimited            unlimited            bytes     \n\
Max processes             96365                96365                processes \n\
Max open files            1024                 4096                 files     \n\
Max locked memory         8388608              8388608              bytes     \n\
Max address space         unlimited            unlimited            bytes     \n\
Max file locks            unlimited            unlimited            locks     \n\
Max pending signals       96365                96365                signals   \n\
Max msgqueue size         819200               819200               bytes     \n\
Max nice priority         0                    0                    \n\
Max realtime priority     0                    0                    \n\
Max realtime timeout      unlimited            unlimited            us        \n";

/// `/proc/self/limits` of `cat` in this session.
pub(super) const LIMITS_DEFAULT: &str = "\
Limit                     Soft Limit           Hard Limit           Units     \n\
Max cpu time              unlimited            unlimited            seconds   \n\
Max file size             unlimited            unlimited            bytes     \n\
Max data size             unlimited            unlimited            bytes     \n\
Max stack size            8388608              unlimited            bytes     \n\
Max core file size        0                    unlimited            bytes     \n\
Max resident set          unlimited            unlimited            bytes     \n\
Max processes             96365                96365                processes \n\
Max open files            20000                20000                files     \n\
Max locked memory         8388608              8388608              bytes     \n\
Max address space         unlimited            unlimited            bytes     \n\
Max file locks            unlimited            unlimited            locks     \n\
Max pending signals       96365                96365                signals   \n\
Max msgqueue size         819200               819200               bytes     \n\
Max nice priority         0                    0                    \n\
Max realtime priority     0                    0                    \n\
Max realtime timeout      unlimited            unlimited            us        \n";

/// `/proc/self/task/TID/children` of the program with two forked children
/// (no trailing newline: the kernel prints `"%d "` per child).
pub(super) const CHILDREN: &str = "\
4354 4355 ";

/// `/proc/self/timers` with three POSIX timers (SIGRTMIN+0..2).
pub(super) const TIMERS: &str = "\
ID: 2\n\
signal: 36/0000000000000000\n\
notify: signal/pid.4351\n\
ClockID: 0\n\
ID: 1\n\
signal: 35/0000000000000000\n\
notify: signal/pid.4351\n\
ClockID: 1\n\
ID: 0\n\
signal: 34/0000000000000000\n\
notify: signal/pid.4351\n\
ClockID: 0\n";

/// `/proc/self/auxv` of the program, as its native-endian u64 words (x86_64:
/// little-endian), 23 pairs ending with AT_NULL.
pub(super) const AUXV_WORDS: &[u64] = &[
    0x21,
    0x7fef66f74000,
    0x33,
    0x6f0,
    0x10,
    0x178bfbff,
    0x6,
    0x1000,
    0x11,
    0x64,
    0x3,
    0x55a016a08040,
    0x4,
    0x38,
    0x5,
    0xd,
    0x7,
    0x7fef66f76000,
    0x8,
    0x0,
    0x9,
    0x55a016a092d0,
    0xb,
    0x0,
    0xc,
    0x0,
    0xd,
    0x0,
    0xe,
    0x0,
    0x17,
    0x0,
    0x19,
    0x7ffd6c4c2829,
    0x1a,
    0x2,
    0x1f,
    0x7ffd6c4c2ff2,
    0xf,
    0x7ffd6c4c2839,
    0x1b,
    0x1c,
    0x1c,
    0x20,
    0x0,
    0x0,
];

/// The auxv sample as the file's bytes.
pub(super) fn auxv_bytes() -> Vec<u8> {
    AUXV_WORDS.iter().flat_map(|w| w.to_ne_bytes()).collect()
}
