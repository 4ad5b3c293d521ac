//! Size caps for everything read from an image, checked before anything is
//! allocated or decoded. An image that exceeds one is rejected as malformed
//! ([`crate::image::ImageError::TooLarge`]); the writer refuses to produce
//! one.

/// Largest manifest (CBOR bytes) an image may have: 64 MiB. The chunk list
/// dominates a real manifest: about 49 bytes per chunk, so
/// [`MAX_CHUNKS`] chunks need 49 MiB. Length alone does not bound the memory
/// decoding takes: see [`MAX_MANIFEST_DECODED`].
pub const MAX_MANIFEST_LEN: u64 = 64 << 20;

/// Most memory (bytes) the decoded manifest or signature block may take:
/// 256 MiB, charged before each allocation is made (see
/// `image::budget`). A manifest at every other cap at once (2^20 chunks,
/// 65,536 mappings with 30 `VmFlags` each) needs about 230 MiB; a real
/// one, a few MiB. Peak memory of a reader is therefore at most the
/// manifest bytes (64 MiB), this budget, and one string being decoded
/// (bounded by the manifest length): about 400 MiB in the worst case,
/// well under the 1 GiB address-space limit the helpers accept at start-up.
pub const MAX_MANIFEST_DECODED: u64 = 256 << 20;

/// Most entries in any one CBOR array or map of the manifest or signature
/// block: 2^20 (the longest real list is the chunk list, [`MAX_CHUNKS`]).
/// Checked as each entry is decoded, before it is stored.
pub const MAX_CBOR_COLLECTION_LEN: u64 = 1 << 20;

/// Largest signature block (CBOR bytes): 64 KiB.
pub const MAX_SIGBLOCK_LEN: u64 = 64 << 10;

/// Largest single chunk of memory data: 8 MiB.
pub const MAX_CHUNK_LEN: u64 = 8 << 20;

/// Most chunks an image may list: 2^20.
pub const MAX_CHUNKS: u64 = 1 << 20;

/// Deepest nesting of CBOR arrays, maps and tags accepted when decoding the
/// manifest or the signature block (a valid manifest needs fewer than 10).
pub const MAX_CBOR_DEPTH: usize = 32;

// Caps of the semantic validation (`image::validate`): what a real process
// can have, not what fits in a manifest. Each entry restore acts on costs
// an injected syscall.

/// Most mappings an image may list (the kernel's default
/// `vm.max_map_count` is 65,530).
pub const MAX_VMAS: usize = 65_536;

/// Most file descriptors one task may have in an image.
pub const MAX_FDS: usize = 65_536;

/// Most processes (tasks) an image may list.
pub const MAX_TASKS: usize = 4096;

/// Most entries of an image's file table (open file descriptions of all
/// its tasks).
pub const MAX_FILES: usize = 65_536;

/// Most byte spaces an image may list (a memory space per task, and the
/// content of each memfd or unlinked file).
pub const MAX_SPACES: usize = MAX_TASKS + MAX_FILES;

/// Most supplementary groups (the kernel's `NGROUPS_MAX`).
pub const MAX_GROUPS: usize = 65_536;

/// Most threads an image may list (and a dump takes: more are refused,
/// naming the count). Each thread's xsave area is in the manifest: 4096
/// threads with an 11008-byte AMX area still fit [`MAX_MANIFEST_LEN`] and
/// [`MAX_MANIFEST_DECODED`].
pub const MAX_THREADS: usize = 4096;

/// Most robust futexes one thread may own in an image (the kernel walks at
/// most `ROBUST_LIST_LIMIT`, 2048, list entries, plus the pending one).
pub const MAX_ROBUST_FUTEXES: usize = 2049;

/// Most `VmFlags` mnemonics on one mapping (the kernel has about 40).
pub const MAX_VM_FLAGS: usize = 64;

/// Longest string in the process state (paths: the kernel's `PATH_MAX`).
pub const MAX_IMAGE_STRING_LEN: usize = 4096;

/// Lowest address a mapping may start at.
pub const MIN_MAP_ADDR: u64 = 0x10000;

/// Size range of a saved xsave area: the legacy area and the xsave header
/// (576 bytes) up to 64 KiB.
pub const MIN_XSAVE_LEN: usize = 576;
/// See [`MIN_XSAVE_LEN`].
pub const MAX_XSAVE_LEN: usize = 64 << 10;

/// Most signal dispositions (signals 1..=64 but SIGKILL and SIGSTOP).
pub const MAX_SIGACTIONS: usize = 64;

/// Most resource limits (`RLIM_NLIMITS` is 16).
pub const MAX_RLIMITS: usize = 16;

/// Most interval timers (real, virtual, prof).
pub const MAX_ITIMERS: usize = 3;

/// Most instructions in one seccomp filter (`BPF_MAXINSNS`).
pub const MAX_SECCOMP_INSNS_PER_FILTER: usize = 4096;

/// Most instructions in a seccomp chain, each filter counting 4 more
/// (`MAX_INSNS_PER_PATH`).
pub const MAX_SECCOMP_INSNS: usize = 32768;

/// Most POSIX timers (`timer_create`; the kernel's own bound is memory and
/// `RLIMIT_SIGPENDING`, which defaults to a few thousand).
pub const MAX_POSIX_TIMERS: usize = 4096;

/// Most queued signals per thread (a thread's and its process's queue, each
/// saved up to 4,096).
pub const MAX_PENDING_SIGNALS: usize = 2 * 4096;

/// Most auxiliary-vector words (`AT_VECTOR_SIZE` pairs and then some).
pub const MAX_AUXV_WORDS: usize = 128;

/// Most epoll interest-list entries in an image, all epoll instances
/// together.
pub const MAX_EPOLL_TARGETS: usize = 65_536;

/// Most inotify watches in an image, all instances together.
pub const MAX_INOTIFY_WATCHES: usize = 65_536;

/// Highest inotify watch descriptor restore recreates: wds are handed out
/// in turn, so reaching wd `n` takes `n` watches added (and the unused
/// ones removed) in the new instance.
pub const MAX_INOTIFY_WD: i32 = 65_536;

/// Most file locks (flock, POSIX, OFD) in an image.
pub const MAX_FILE_LOCKS: usize = 65_536;
/// Largest pipe or FIFO (`F_GETPIPE_SZ`) an image may hold; the bytes it
/// holds are at most its size.
pub const MAX_PIPE_SIZE: usize = 16 << 20;

/// Longest packet in a packet-mode (`O_DIRECT`) pipe: one page (`PIPE_BUF`).
pub const PIPE_PACKET_MAX: usize = 4096;

/// Most messages queued on one unix socket an image may hold.
pub const MAX_SOCKET_MESSAGES: usize = 65_536;

/// Most bytes queued on one unix socket an image may hold.
pub const MAX_SOCKET_QUEUE: usize = 16 << 20;

/// The largest listen backlog an image may ask for (the kernel caps it at
/// `net.core.somaxconn`, 4096 by default, anyway).
pub const MAX_LISTEN_BACKLOG: u32 = 1 << 16;

/// The longest unix socket name: `sun_path` holds 108 bytes, with the
/// terminating NUL of a path or the leading NUL of an abstract name.
pub const MAX_UNIX_NAME: usize = 107;

/// Most bytes queued in pipes, FIFOs and sockets, all together, an image
/// may hold (they are in the manifest, which is at most
/// [`MAX_MANIFEST_LEN`] long).
pub const MAX_QUEUED_BYTES: usize = 32 << 20;
