/*
 * checker: builds a process state with many distinct parts, waits to be
 * checkpointed and restored, then checks every part of it itself.
 *
 * Usage: checker DIR
 *
 * DIR must be writable by the user running the checker. Set-up creates files
 * in DIR, then writes "ready\n" to DIR/ready and waits. On SIGUSR1 (sent by
 * the test after the restore) it checks everything and writes "OK\n" or
 * "FAIL: <what>; <what>...\n" to DIR/result, then exits 0.
 *
 * What it sets up and later checks:
 *   memory   anonymous rw pages with a pattern, a large sparse anonymous
 *            region (touched pages patterned, untouched pages zero), a
 *            read-only region, a PROT_NONE guard page between two rw pages,
 *            a private file mapping with a copy-on-write change and a page
 *            written with zeros (file on disk unchanged), a MAP_SHARED file
 *            mapping (writes reach the file), private and shared anonymous
 *            regions with pages written with zeros (short and long runs of
 *            them, between and after pages of data),
 *            heap data (brk and mmap-sized malloc), stack data, the kernel's
 *            brk value; protections and paths via /proc/self/maps
 *   fds      a regular file read at an offset, an O_APPEND file, a dup of the
 *            first (shared offset), a close-on-exec fd, /dev/null, and no
 *            other fd than those and 0-2
 *   process  cwd, umask 027, comm, argv/env area, soft RLIMIT_NOFILE
 *   signals  SIGUSR1 handler with SA_RESTART|SA_ONSTACK|SA_SIGINFO and an
 *            sa_mask, SIGPIPE ignored, SIGUSR2 blocked, sigaltstack (the
 *            handler must run on it)
 *   cpu      general-purpose state across the wait, the vector registers
 *            (xmm/ymm/zmm and AVX-512 mask registers as the CPU has them)
 *            live across the blocking syscall, MXCSR and the x87 control
 *            word set to non-default values, and a double accumulation whose
 *            result is recomputed and compared bit for bit.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <time.h>
#include <unistd.h>

#define PAGE 4096UL
#define NOFILE_SOFT 200

/* ---- failure collection ------------------------------------------------ */

static char failures[8192];
static int nfail;

static void fail(const char *fmt, ...)
{
	size_t len = strlen(failures);
	if (len + 8 >= sizeof failures)
		return;
	if (nfail++)
		len += (size_t)snprintf(failures + len, sizeof failures - len, "; ");
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(failures + len, sizeof failures - len, fmt, ap);
	va_end(ap);
}

static void die(const char *what)
{
	fprintf(stderr, "checker: setup: %s: %s\n", what, strerror(errno));
	exit(1);
}

static unsigned char pat(size_t i, unsigned seed)
{
	return (unsigned char)((i * 131u + seed * 7u + (i >> 12)) & 0xff);
}

static void fill(unsigned char *p, size_t n, unsigned seed)
{
	for (size_t i = 0; i < n; i++)
		p[i] = pat(i, seed);
}

/* Checks p[0..n) against the pattern starting at pattern offset base. */
static int check_fill_at(const unsigned char *p, size_t n, unsigned seed, size_t base, const char *what)
{
	for (size_t i = 0; i < n; i++) {
		if (p[i] != pat(base + i, seed)) {
			fail("%s: byte %zu is 0x%02x, expected 0x%02x", what, i, p[i], pat(base + i, seed));
			return 0;
		}
	}
	return 1;
}

static int check_fill(const unsigned char *p, size_t n, unsigned seed, const char *what)
{
	return check_fill_at(p, n, seed, 0, what);
}

/* Checks that p[0..n) is all zeros. */
static int check_zero(const unsigned char *p, size_t n, const char *what)
{
	for (size_t i = 0; i < n; i++) {
		if (p[i] != 0) {
			fail("%s: byte %zu is 0x%02x, expected 0", what, i, p[i]);
			return 0;
		}
	}
	return 1;
}

/* ---- state that set-up records and the check compares against ---------- */

static char dir[PATH_MAX];
static char result_path[PATH_MAX + 16];
static char cwd_path[PATH_MAX + 16];
static char input_path[PATH_MAX + 16], append_path[PATH_MAX + 16];
static char cloexec_path[PATH_MAX + 16], private_path[PATH_MAX + 16];
static char shared_path[PATH_MAX + 16];

static unsigned char *anon_rw;         /* 3 pages, pattern 1 */
static unsigned char *sparse;          /* 4 MiB, every 16th page pattern 2 */
#define SPARSE_LEN (4UL << 20)
static unsigned char *ro;              /* 2 pages, pattern 3, PROT_READ */
static unsigned char *guarded;         /* 3 pages: rw, PROT_NONE, rw */
static unsigned char *priv_map;        /* 4 pages MAP_PRIVATE of private.dat */
static unsigned char *zeroed;          /* ZEROED_PAGES, pattern 8 or written zeros */
#define ZEROED_PAGES 96
static unsigned char *shzeroed;        /* 16 pages MAP_SHARED anonymous, pattern 9 or zeros */
#define SHZEROED_PAGES 16
static unsigned char *shared_map;      /* 2 pages MAP_SHARED of shared.dat */
static unsigned char *heap_small;      /* 100000 bytes, pattern 6 */
static unsigned char *heap_big;        /* 1 MiB (mmap'd by malloc), pattern 7 */
struct node { struct node *next; unsigned long value; };
static struct node *list;
static uintptr_t brk_at_setup;

static int fd_input, fd_append, fd_dup, fd_cloexec, fd_null;
static off_t append_size_at_setup;
static struct rlimit nofile_at_setup;
static unsigned char altstack[64 * 1024] __attribute__((aligned(16)));

static volatile sig_atomic_t got_usr1;
static volatile sig_atomic_t handler_on_altstack;
static volatile sig_atomic_t handler_info_ok;
static sigset_t handler_mask;

static void on_usr1(int sig, siginfo_t *info, void *uctx)
{
	(void)uctx;
	char local;
	uintptr_t a = (uintptr_t)&local;
	handler_on_altstack = a >= (uintptr_t)altstack && a < (uintptr_t)altstack + sizeof altstack;
	handler_info_ok = sig == SIGUSR1 && info != NULL && info->si_signo == SIGUSR1;
	sigprocmask(SIG_BLOCK, NULL, &handler_mask);
	got_usr1 = 1;
}

/* ---- vector registers -------------------------------------------------- */

enum { VEC_SSE, VEC_AVX, VEC_AVX512 };
static int vec_kind;
static unsigned char vin[32 * 64] __attribute__((aligned(64)));
static unsigned char vout[32 * 64] __attribute__((aligned(64)));
static uint16_t kin[8], kout[8];

#define XMM_CLOBBERS "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", \
	"xmm8", "xmm9", "xmm10", "xmm11", "xmm12", "xmm13", "xmm14", "xmm15"

/*
 * Loads every vector register with a known pattern, makes the blocking
 * syscall (ppoll with a timeout and SIGUSR1 unblocked), then stores the
 * registers back. The kernel preserves them across the syscall and across
 * the signal handler, so any difference comes from the checkpoint/restore.
 */
static long vec_wait(const struct timespec *ts, const sigset_t *mask)
{
	long ret;
	register long r10 __asm__("r10") = (long)mask;
	register long r8 __asm__("r8") = 8;
	if (vec_kind == VEC_AVX512) {
		__asm__ volatile(
			"vmovdqu64 0*64(%[in]), %%zmm0\n vmovdqu64 1*64(%[in]), %%zmm1\n"
			"vmovdqu64 2*64(%[in]), %%zmm2\n vmovdqu64 3*64(%[in]), %%zmm3\n"
			"vmovdqu64 4*64(%[in]), %%zmm4\n vmovdqu64 5*64(%[in]), %%zmm5\n"
			"vmovdqu64 6*64(%[in]), %%zmm6\n vmovdqu64 7*64(%[in]), %%zmm7\n"
			"vmovdqu64 8*64(%[in]), %%zmm8\n vmovdqu64 9*64(%[in]), %%zmm9\n"
			"vmovdqu64 10*64(%[in]), %%zmm10\n vmovdqu64 11*64(%[in]), %%zmm11\n"
			"vmovdqu64 12*64(%[in]), %%zmm12\n vmovdqu64 13*64(%[in]), %%zmm13\n"
			"vmovdqu64 14*64(%[in]), %%zmm14\n vmovdqu64 15*64(%[in]), %%zmm15\n"
			"vmovdqu64 16*64(%[in]), %%zmm16\n vmovdqu64 17*64(%[in]), %%zmm17\n"
			"vmovdqu64 18*64(%[in]), %%zmm18\n vmovdqu64 19*64(%[in]), %%zmm19\n"
			"vmovdqu64 20*64(%[in]), %%zmm20\n vmovdqu64 21*64(%[in]), %%zmm21\n"
			"vmovdqu64 22*64(%[in]), %%zmm22\n vmovdqu64 23*64(%[in]), %%zmm23\n"
			"vmovdqu64 24*64(%[in]), %%zmm24\n vmovdqu64 25*64(%[in]), %%zmm25\n"
			"vmovdqu64 26*64(%[in]), %%zmm26\n vmovdqu64 27*64(%[in]), %%zmm27\n"
			"vmovdqu64 28*64(%[in]), %%zmm28\n vmovdqu64 29*64(%[in]), %%zmm29\n"
			"vmovdqu64 30*64(%[in]), %%zmm30\n vmovdqu64 31*64(%[in]), %%zmm31\n"
			"kmovw 2(%[kin]), %%k1\n kmovw 4(%[kin]), %%k2\n kmovw 6(%[kin]), %%k3\n"
			"kmovw 8(%[kin]), %%k4\n kmovw 10(%[kin]), %%k5\n kmovw 12(%[kin]), %%k6\n"
			"kmovw 14(%[kin]), %%k7\n"
			"syscall\n"
			"vmovdqu64 %%zmm0, 0*64(%[out])\n vmovdqu64 %%zmm1, 1*64(%[out])\n"
			"vmovdqu64 %%zmm2, 2*64(%[out])\n vmovdqu64 %%zmm3, 3*64(%[out])\n"
			"vmovdqu64 %%zmm4, 4*64(%[out])\n vmovdqu64 %%zmm5, 5*64(%[out])\n"
			"vmovdqu64 %%zmm6, 6*64(%[out])\n vmovdqu64 %%zmm7, 7*64(%[out])\n"
			"vmovdqu64 %%zmm8, 8*64(%[out])\n vmovdqu64 %%zmm9, 9*64(%[out])\n"
			"vmovdqu64 %%zmm10, 10*64(%[out])\n vmovdqu64 %%zmm11, 11*64(%[out])\n"
			"vmovdqu64 %%zmm12, 12*64(%[out])\n vmovdqu64 %%zmm13, 13*64(%[out])\n"
			"vmovdqu64 %%zmm14, 14*64(%[out])\n vmovdqu64 %%zmm15, 15*64(%[out])\n"
			"vmovdqu64 %%zmm16, 16*64(%[out])\n vmovdqu64 %%zmm17, 17*64(%[out])\n"
			"vmovdqu64 %%zmm18, 18*64(%[out])\n vmovdqu64 %%zmm19, 19*64(%[out])\n"
			"vmovdqu64 %%zmm20, 20*64(%[out])\n vmovdqu64 %%zmm21, 21*64(%[out])\n"
			"vmovdqu64 %%zmm22, 22*64(%[out])\n vmovdqu64 %%zmm23, 23*64(%[out])\n"
			"vmovdqu64 %%zmm24, 24*64(%[out])\n vmovdqu64 %%zmm25, 25*64(%[out])\n"
			"vmovdqu64 %%zmm26, 26*64(%[out])\n vmovdqu64 %%zmm27, 27*64(%[out])\n"
			"vmovdqu64 %%zmm28, 28*64(%[out])\n vmovdqu64 %%zmm29, 29*64(%[out])\n"
			"vmovdqu64 %%zmm30, 30*64(%[out])\n vmovdqu64 %%zmm31, 31*64(%[out])\n"
			"kmovw %%k1, 2(%[kout])\n kmovw %%k2, 4(%[kout])\n kmovw %%k3, 6(%[kout])\n"
			"kmovw %%k4, 8(%[kout])\n kmovw %%k5, 10(%[kout])\n kmovw %%k6, 12(%[kout])\n"
			"kmovw %%k7, 14(%[kout])\n"
			"vzeroupper\n"
			: "=a"(ret)
			: "a"((long)SYS_ppoll), "D"(0L), "S"(0L), "d"(ts), "r"(r10), "r"(r8),
			  [in] "r"(vin), [out] "r"(vout), [kin] "r"(kin), [kout] "r"(kout)
			: "rcx", "r11", "memory", XMM_CLOBBERS);
	} else if (vec_kind == VEC_AVX) {
		__asm__ volatile(
			"vmovdqu 0*32(%[in]), %%ymm0\n vmovdqu 1*32(%[in]), %%ymm1\n"
			"vmovdqu 2*32(%[in]), %%ymm2\n vmovdqu 3*32(%[in]), %%ymm3\n"
			"vmovdqu 4*32(%[in]), %%ymm4\n vmovdqu 5*32(%[in]), %%ymm5\n"
			"vmovdqu 6*32(%[in]), %%ymm6\n vmovdqu 7*32(%[in]), %%ymm7\n"
			"vmovdqu 8*32(%[in]), %%ymm8\n vmovdqu 9*32(%[in]), %%ymm9\n"
			"vmovdqu 10*32(%[in]), %%ymm10\n vmovdqu 11*32(%[in]), %%ymm11\n"
			"vmovdqu 12*32(%[in]), %%ymm12\n vmovdqu 13*32(%[in]), %%ymm13\n"
			"vmovdqu 14*32(%[in]), %%ymm14\n vmovdqu 15*32(%[in]), %%ymm15\n"
			"syscall\n"
			"vmovdqu %%ymm0, 0*32(%[out])\n vmovdqu %%ymm1, 1*32(%[out])\n"
			"vmovdqu %%ymm2, 2*32(%[out])\n vmovdqu %%ymm3, 3*32(%[out])\n"
			"vmovdqu %%ymm4, 4*32(%[out])\n vmovdqu %%ymm5, 5*32(%[out])\n"
			"vmovdqu %%ymm6, 6*32(%[out])\n vmovdqu %%ymm7, 7*32(%[out])\n"
			"vmovdqu %%ymm8, 8*32(%[out])\n vmovdqu %%ymm9, 9*32(%[out])\n"
			"vmovdqu %%ymm10, 10*32(%[out])\n vmovdqu %%ymm11, 11*32(%[out])\n"
			"vmovdqu %%ymm12, 12*32(%[out])\n vmovdqu %%ymm13, 13*32(%[out])\n"
			"vmovdqu %%ymm14, 14*32(%[out])\n vmovdqu %%ymm15, 15*32(%[out])\n"
			"vzeroupper\n"
			: "=a"(ret)
			: "a"((long)SYS_ppoll), "D"(0L), "S"(0L), "d"(ts), "r"(r10), "r"(r8),
			  [in] "r"(vin), [out] "r"(vout)
			: "rcx", "r11", "memory", XMM_CLOBBERS);
	} else {
		__asm__ volatile(
			"movdqu 0*16(%[in]), %%xmm0\n movdqu 1*16(%[in]), %%xmm1\n"
			"movdqu 2*16(%[in]), %%xmm2\n movdqu 3*16(%[in]), %%xmm3\n"
			"movdqu 4*16(%[in]), %%xmm4\n movdqu 5*16(%[in]), %%xmm5\n"
			"movdqu 6*16(%[in]), %%xmm6\n movdqu 7*16(%[in]), %%xmm7\n"
			"movdqu 8*16(%[in]), %%xmm8\n movdqu 9*16(%[in]), %%xmm9\n"
			"movdqu 10*16(%[in]), %%xmm10\n movdqu 11*16(%[in]), %%xmm11\n"
			"movdqu 12*16(%[in]), %%xmm12\n movdqu 13*16(%[in]), %%xmm13\n"
			"movdqu 14*16(%[in]), %%xmm14\n movdqu 15*16(%[in]), %%xmm15\n"
			"syscall\n"
			"movdqu %%xmm0, 0*16(%[out])\n movdqu %%xmm1, 1*16(%[out])\n"
			"movdqu %%xmm2, 2*16(%[out])\n movdqu %%xmm3, 3*16(%[out])\n"
			"movdqu %%xmm4, 4*16(%[out])\n movdqu %%xmm5, 5*16(%[out])\n"
			"movdqu %%xmm6, 6*16(%[out])\n movdqu %%xmm7, 7*16(%[out])\n"
			"movdqu %%xmm8, 8*16(%[out])\n movdqu %%xmm9, 9*16(%[out])\n"
			"movdqu %%xmm10, 10*16(%[out])\n movdqu %%xmm11, 11*16(%[out])\n"
			"movdqu %%xmm12, 12*16(%[out])\n movdqu %%xmm13, 13*16(%[out])\n"
			"movdqu %%xmm14, 14*16(%[out])\n movdqu %%xmm15, 15*16(%[out])\n"
			: "=a"(ret)
			: "a"((long)SYS_ppoll), "D"(0L), "S"(0L), "d"(ts), "r"(r10), "r"(r8),
			  [in] "r"(vin), [out] "r"(vout)
			: "rcx", "r11", "memory", XMM_CLOBBERS);
	}
	return ret;
}

static size_t vec_bytes(void)
{
	return vec_kind == VEC_AVX512 ? 32 * 64 : vec_kind == VEC_AVX ? 16 * 32 : 16 * 16;
}

static const char *vec_name(void)
{
	return vec_kind == VEC_AVX512 ? "zmm" : vec_kind == VEC_AVX ? "ymm" : "xmm";
}

/* ---- floating point ---------------------------------------------------- */

/* Round toward zero, flush-to-zero, all exceptions masked. */
#define MXCSR_SET 0xffc0u
/* x87: round down (RC=01), 53-bit precision (PC=10), exceptions masked. */
#define FPUCW_SET 0x067fu

__attribute__((noinline)) static double accumulate(double acc, unsigned long rounds)
{
	for (unsigned long i = 0; i < rounds; i++)
		acc = acc * 0.9999999 + 1.0 / (double)(i + 3);
	return acc;
}

static unsigned get_mxcsr(void)
{
	unsigned v;
	__asm__ volatile("stmxcsr %0" : "=m"(v));
	return v;
}

static void set_mxcsr(unsigned v)
{
	__asm__ volatile("ldmxcsr %0" : : "m"(v));
}

static unsigned short get_fpucw(void)
{
	unsigned short v;
	__asm__ volatile("fnstcw %0" : "=m"(v));
	return v;
}

static void set_fpucw(unsigned short v)
{
	__asm__ volatile("fldcw %0" : : "m"(v));
}

/* ---- /proc helpers ----------------------------------------------------- */

/* Finds the /proc/self/maps line covering addr: perms and path. */
static int find_map(const void *addr, char perms[5], char *path, size_t pathlen)
{
	FILE *f = fopen("/proc/self/maps", "re");
	if (!f)
		return 0;
	char line[PATH_MAX + 256];
	int found = 0;
	uintptr_t a = (uintptr_t)addr;
	while (fgets(line, sizeof line, f)) {
		unsigned long lo, hi;
		char p[5] = { 0 };
		int off = 0;
		if (sscanf(line, "%lx-%lx %4s %*s %*s %*s%n", &lo, &hi, p, &off) < 3)
			continue;
		if (a >= lo && a < hi) {
			memcpy(perms, p, 5);
			const char *s = line + off;
			while (*s == ' ')
				s++;
			snprintf(path, pathlen, "%s", s);
			path[strcspn(path, "\n")] = 0;
			found = 1;
			break;
		}
	}
	fclose(f);
	return found;
}

static void check_map(const void *addr, const char *perms, const char *path_suffix, const char *what)
{
	char p[5], path[PATH_MAX];
	if (!find_map(addr, p, path, sizeof path)) {
		fail("%s: no mapping at %p", what, addr);
		return;
	}
	if (strcmp(p, perms) != 0)
		fail("%s: protection %s, expected %s", what, p, perms);
	if (path_suffix) {
		size_t n = strlen(path), m = strlen(path_suffix);
		if (n < m || strcmp(path + n - m, path_suffix) != 0)
			fail("%s: mapped path '%s', expected one ending in '%s'", what, path, path_suffix);
	} else if (path[0] != 0) {
		fail("%s: expected anonymous mapping, found '%s'", what, path);
	}
}

static void read_self_file(const char *name, char *buf, size_t len, ssize_t *got)
{
	*got = -1;
	int fd = open(name, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return;
	*got = read(fd, buf, len);
	close(fd);
}

/* ---- set-up ------------------------------------------------------------ */

static void write_file(const char *path, const unsigned char *data, size_t n)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0 || write(fd, data, n) != (ssize_t)n || close(fd) != 0)
		die(path);
}

static void setup_files(void)
{
	static unsigned char buf[64 * 1024];
	fill(buf, sizeof buf, 11);
	write_file(input_path, buf, sizeof buf);
	fill(buf, 4 * PAGE, 12);
	write_file(private_path, buf, 4 * PAGE);
	fill(buf, 2 * PAGE, 13);
	write_file(shared_path, buf, 2 * PAGE);
	write_file(cloexec_path, (const unsigned char *)"cloexec\n", 8);
	write_file(append_path, (const unsigned char *)"first line\n", 11);
}

static void setup_fds(void)
{
	fd_input = open(input_path, O_RDONLY);
	if (fd_input < 0)
		die("open input");
	char tmp[1000];
	if (read(fd_input, tmp, sizeof tmp) != (ssize_t)sizeof tmp)
		die("read input");
	fd_dup = dup(fd_input);
	if (fd_dup < 0)
		die("dup");
	fd_append = open(append_path, O_WRONLY | O_APPEND);
	if (fd_append < 0 || write(fd_append, "second line\n", 12) != 12)
		die("append");
	struct stat st;
	if (fstat(fd_append, &st) != 0)
		die("fstat append");
	append_size_at_setup = st.st_size;
	fd_cloexec = open(cloexec_path, O_RDONLY | O_CLOEXEC);
	if (fd_cloexec < 0)
		die("open cloexec");
	fd_null = open("/dev/null", O_RDWR);
	if (fd_null < 0)
		die("open /dev/null");
}

/* Pages of `zeroed` written with zeros: 3 of every 8 (short runs
 * between pages of data), and pages 40-71 (a long run). */
static int zeroed_page(size_t i)
{
	return i % 8 < 3 || (i >= 40 && i < 72);
}

/* Pages of `shzeroed` written with zeros: page 1, and pages 4 to the end. */
static int shzeroed_page(size_t i)
{
	return i == 1 || i >= 4;
}

static void setup_memory(void)
{
	anon_rw = mmap(NULL, 3 * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (anon_rw == MAP_FAILED)
		die("mmap anon");
	fill(anon_rw, 3 * PAGE, 1);

	sparse = mmap(NULL, SPARSE_LEN, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (sparse == MAP_FAILED)
		die("mmap sparse");
	for (size_t off = 0; off < SPARSE_LEN; off += 16 * PAGE)
		fill(sparse + off, PAGE, 2 + (unsigned)(off / PAGE));

	ro = mmap(NULL, 2 * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (ro == MAP_FAILED)
		die("mmap ro");
	fill(ro, 2 * PAGE, 3);
	if (mprotect(ro, 2 * PAGE, PROT_READ) != 0)
		die("mprotect ro");

	guarded = mmap(NULL, 3 * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (guarded == MAP_FAILED)
		die("mmap guarded");
	fill(guarded, PAGE, 4);
	fill(guarded + 2 * PAGE, PAGE, 5);
	if (mprotect(guarded + PAGE, PAGE, PROT_NONE) != 0)
		die("mprotect guard");

	int fd = open(private_path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		die("open private");
	priv_map = mmap(NULL, 4 * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
	if (priv_map == MAP_FAILED)
		die("mmap private");
	close(fd);
	/* Copy-on-write change to page 1, and page 3 written with zeros (its
	 * copy must be saved: the file under it is not zero). */
	fill(priv_map + PAGE, PAGE, 21);
	memset(priv_map + 3 * PAGE, 0, PAGE);

	zeroed = mmap(NULL, ZEROED_PAGES * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (zeroed == MAP_FAILED)
		die("mmap zeroed");
	fill(zeroed, ZEROED_PAGES * PAGE, 8);
	for (size_t i = 0; i < ZEROED_PAGES; i++)
		if (zeroed_page(i))
			memset(zeroed + i * PAGE, 0, PAGE);
	shzeroed = mmap(NULL, SHZEROED_PAGES * PAGE, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (shzeroed == MAP_FAILED)
		die("mmap shzeroed");
	fill(shzeroed, SHZEROED_PAGES * PAGE, 9);
	for (size_t i = 0; i < SHZEROED_PAGES; i++)
		if (shzeroed_page(i))
			memset(shzeroed + i * PAGE, 0, PAGE);

	fd = open(shared_path, O_RDWR | O_CLOEXEC);
	if (fd < 0)
		die("open shared");
	shared_map = mmap(NULL, 2 * PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (shared_map == MAP_FAILED)
		die("mmap shared");
	close(fd);
	fill(shared_map, PAGE, 22); /* reaches the file */

	heap_small = malloc(100000);
	heap_big = malloc(1 << 20);
	if (!heap_small || !heap_big)
		die("malloc");
	fill(heap_small, 100000, 6);
	fill(heap_big, 1 << 20, 7);
	for (unsigned long i = 0; i < 100; i++) {
		struct node *n = malloc(sizeof *n);
		if (!n)
			die("malloc node");
		n->value = i * i + 17;
		n->next = list;
		list = n;
	}
	brk_at_setup = (uintptr_t)syscall(SYS_brk, 0);
}

static void setup_signals(void)
{
	stack_t ss = { .ss_sp = altstack, .ss_size = sizeof altstack, .ss_flags = 0 };
	if (sigaltstack(&ss, NULL) != 0)
		die("sigaltstack");
	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_sigaction = on_usr1;
	sa.sa_flags = SA_SIGINFO | SA_RESTART | SA_ONSTACK;
	sigemptyset(&sa.sa_mask);
	sigaddset(&sa.sa_mask, SIGINT);
	sigaddset(&sa.sa_mask, SIGQUIT);
	sigaddset(&sa.sa_mask, SIGRTMIN + 3);
	if (sigaction(SIGUSR1, &sa, NULL) != 0)
		die("sigaction USR1");
	signal(SIGPIPE, SIG_IGN);
	sigset_t block;
	sigemptyset(&block);
	sigaddset(&block, SIGUSR2);
	if (sigprocmask(SIG_SETMASK, &block, NULL) != 0)
		die("sigprocmask");
}

/* ---- checks ------------------------------------------------------------ */

static void check_memory(const unsigned char *stack_data, size_t stack_len)
{
	check_fill(anon_rw, 3 * PAGE, 1, "anonymous rw region");
	check_map(anon_rw, "rw-p", NULL, "anonymous rw region");

	for (size_t off = 0; off < SPARSE_LEN; off += PAGE) {
		if (off % (16 * PAGE) == 0) {
			if (!check_fill(sparse + off, PAGE, 2 + (unsigned)(off / PAGE), "sparse region touched page"))
				break;
		} else {
			size_t i;
			for (i = 0; i < PAGE && sparse[off + i] == 0; i++)
				;
			if (i < PAGE) {
				fail("sparse region: untouched page at offset %zu is not zero", off);
				break;
			}
		}
	}

	check_fill(ro, 2 * PAGE, 3, "read-only region");
	check_map(ro, "r--p", NULL, "read-only region");

	check_fill(guarded, PAGE, 4, "page before the guard");
	check_fill(guarded + 2 * PAGE, PAGE, 5, "page after the guard");
	check_map(guarded, "rw-p", NULL, "page before the guard");
	check_map(guarded + PAGE, "---p", NULL, "guard page");
	check_map(guarded + 2 * PAGE, "rw-p", NULL, "page after the guard");

	check_fill(priv_map, PAGE, 12, "private file mapping page 0");
	check_fill(priv_map + PAGE, PAGE, 21, "private file mapping page 1 (copy-on-write change)");
	check_fill_at(priv_map + 2 * PAGE, PAGE, 12, 2 * PAGE, "private file mapping page 2");
	check_zero(priv_map + 3 * PAGE, PAGE, "private file mapping page 3 (written with zeros)");
	for (size_t i = 0; i < ZEROED_PAGES; i++) {
		int ok = zeroed_page(i)
			? check_zero(zeroed + i * PAGE, PAGE, "anonymous page written with zeros")
			: check_fill_at(zeroed + i * PAGE, PAGE, 8, i * PAGE, "anonymous page between zero pages");
		if (!ok)
			break;
	}
	for (size_t i = 0; i < SHZEROED_PAGES; i++) {
		int ok = shzeroed_page(i)
			? check_zero(shzeroed + i * PAGE, PAGE, "shared anonymous page written with zeros")
			: check_fill_at(shzeroed + i * PAGE, PAGE, 9, i * PAGE, "shared anonymous page between zero pages");
		if (!ok)
			break;
	}
	check_map(priv_map, "rw-p", "/private.dat", "private file mapping");
	{
		/* The file itself must not carry the private change. */
		static unsigned char buf[4 * PAGE];
		int fd = open(private_path, O_RDONLY | O_CLOEXEC);
		if (fd < 0 || pread(fd, buf, sizeof buf, 0) != (ssize_t)sizeof buf)
			fail("private.dat: cannot read back: %s", strerror(errno));
		else
			check_fill(buf, sizeof buf, 12, "private.dat on disk");
		if (fd >= 0)
			close(fd);
	}

	check_fill(shared_map, PAGE, 22, "shared file mapping page 0");
	check_map(shared_map, "rw-s", "/shared.dat", "shared file mapping");
	{
		/* Still shared with the file: a write now must reach it. */
		static unsigned char buf[2 * PAGE];
		fill(shared_map + PAGE, PAGE, 23);
		int fd = open(shared_path, O_RDONLY | O_CLOEXEC);
		if (fd < 0 || pread(fd, buf, sizeof buf, 0) != (ssize_t)sizeof buf) {
			fail("shared.dat: cannot read back: %s", strerror(errno));
		} else {
			check_fill(buf, PAGE, 22, "shared.dat on disk page 0");
			check_fill(buf + PAGE, PAGE, 23, "shared.dat on disk after a write through the mapping");
		}
		if (fd >= 0)
			close(fd);
	}

	check_fill(heap_small, 100000, 6, "heap (brk) data");
	check_fill(heap_big, 1 << 20, 7, "heap (mmap) data");
	unsigned long n = 0;
	for (struct node *p = list; p; p = p->next, n++) {
		if (p->value != (99 - n) * (99 - n) + 17) {
			fail("heap list node %lu has value %lu", n, p->value);
			break;
		}
	}
	if (n != 100)
		fail("heap list has %lu nodes, expected 100", n);
	uintptr_t b = (uintptr_t)syscall(SYS_brk, 0);
	if (b != brk_at_setup)
		fail("brk is %#lx, expected %#lx", (unsigned long)b, (unsigned long)brk_at_setup);
	void *more = malloc(300000);
	void *small = malloc(64);
	if (!more || !small)
		fail("malloc after restore failed");
	else
		memset(more, 0x5a, 300000);
	free(more);
	free(small);

	check_fill(stack_data, stack_len, 8, "stack data");
}

static void check_fd(int fd, const char *path, int accmode, int flags_set, int cloexec, off_t offset, const char *what)
{
	char link[64], target[PATH_MAX];
	snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
	ssize_t n = readlink(link, target, sizeof target - 1);
	if (n < 0) {
		fail("%s (fd %d): not open: %s", what, fd, strerror(errno));
		return;
	}
	target[n] = 0;
	if (strcmp(target, path) != 0)
		fail("%s (fd %d): refers to '%s', expected '%s'", what, fd, target, path);
	int fl = fcntl(fd, F_GETFL);
	if ((fl & O_ACCMODE) != accmode)
		fail("%s (fd %d): access mode %d, expected %d", what, fd, fl & O_ACCMODE, accmode);
	if ((fl & (O_APPEND | O_NONBLOCK)) != flags_set)
		fail("%s (fd %d): status flags %#x, expected %#x", what, fd, fl & (O_APPEND | O_NONBLOCK), flags_set);
	int fdfl = fcntl(fd, F_GETFD);
	if (!!(fdfl & FD_CLOEXEC) != cloexec)
		fail("%s (fd %d): close-on-exec is %d, expected %d", what, fd, !!(fdfl & FD_CLOEXEC), cloexec);
	if (offset >= 0) {
		off_t at = lseek(fd, 0, SEEK_CUR);
		if (at != offset)
			fail("%s (fd %d): offset %lld, expected %lld", what, fd, (long long)at, (long long)offset);
	}
}

static void check_fds(void)
{
	check_fd(fd_input, input_path, O_RDONLY, 0, 0, 1000, "input file");
	check_fd(fd_dup, input_path, O_RDONLY, 0, 0, 1000, "dup of input file");
	/* Shared file description: reading through the dup moves the original. */
	char buf[10];
	if (read(fd_dup, buf, sizeof buf) != (ssize_t)sizeof buf)
		fail("dup of input file: read failed");
	else
		check_fill_at((unsigned char *)buf, sizeof buf, 11, 1000, "input file read at offset 1000");
	off_t at = lseek(fd_input, 0, SEEK_CUR);
	if (at != 1010)
		fail("input file and its dup no longer share an offset (original at %lld after reading 10 bytes through the dup)", (long long)at);

	struct stat st;
	check_fd(fd_append, append_path, O_WRONLY, O_APPEND, 0, append_size_at_setup, "O_APPEND file");
	if (write(fd_append, "third line\n", 11) != 11)
		fail("O_APPEND file: write failed: %s", strerror(errno));
	else if (fstat(fd_append, &st) != 0 || st.st_size != append_size_at_setup + 11)
		fail("O_APPEND file: size %lld after a write, expected %lld", (long long)st.st_size,
		     (long long)append_size_at_setup + 11);

	check_fd(fd_cloexec, cloexec_path, O_RDONLY, 0, 1, 0, "close-on-exec file");
	check_fd(fd_null, "/dev/null", O_RDWR, 0, 0, -1, "/dev/null");
	if (fstat(fd_null, &st) != 0 || !S_ISCHR(st.st_mode) || st.st_rdev != makedev(1, 3))
		fail("/dev/null fd is not the null device");

	/* No fd beyond 0-2 and ours (a leaked restorer fd would show here). */
	DIR *d = opendir("/proc/self/fd");
	if (!d) {
		fail("cannot list /proc/self/fd");
		return;
	}
	struct dirent *e;
	while ((e = readdir(d))) {
		if (e->d_name[0] == '.')
			continue;
		int fd = atoi(e->d_name);
		if (fd <= 2 || fd == dirfd(d) || fd == fd_input || fd == fd_dup || fd == fd_append ||
		    fd == fd_cloexec || fd == fd_null)
			continue;
		char link[64], target[PATH_MAX];
		snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
		ssize_t n = readlink(link, target, sizeof target - 1);
		target[n < 0 ? 0 : n] = 0;
		fail("unexpected fd %d open (%s)", fd, target);
	}
	closedir(d);
}

static void check_process(int argc, char **argv)
{
	char buf[PATH_MAX];
	if (!getcwd(buf, sizeof buf))
		fail("getcwd: %s", strerror(errno));
	else if (strcmp(buf, cwd_path) != 0)
		fail("cwd is '%s', expected '%s'", buf, cwd_path);

	mode_t old = umask(027);
	if (old != 027)
		fail("umask is %03o, expected 027", (unsigned)old);

	char comm[64] = { 0 };
	ssize_t n;
	read_self_file("/proc/self/comm", comm, sizeof comm - 1, &n);
	if (n < 0 || strcmp(comm, "ckpt-checker\n") != 0)
		fail("comm is '%s', expected 'ckpt-checker'", comm);

	if (argc != 2 || strcmp(argv[1], dir) != 0)
		fail("argv changed");
	const char *e = getenv("CKPT_CHECKER_ENV");
	if (!e || strcmp(e, "value-42") != 0)
		fail("environment variable CKPT_CHECKER_ENV is '%s'", e ? e : "(unset)");
	char cmdline[PATH_MAX * 2] = { 0 };
	read_self_file("/proc/self/cmdline", cmdline, sizeof cmdline - 1, &n);
	size_t l0 = strlen(argv[0]);
	if (n != (ssize_t)(l0 + 1 + strlen(argv[1]) + 1) || strcmp(cmdline, argv[0]) != 0 ||
	    strcmp(cmdline + l0 + 1, argv[1]) != 0)
		fail("/proc/self/cmdline does not show the saved argv");

	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
		fail("getrlimit: %s", strerror(errno));
	else if (rl.rlim_cur != NOFILE_SOFT || rl.rlim_max != nofile_at_setup.rlim_max)
		fail("RLIMIT_NOFILE is %llu/%llu, expected %d/%llu", (unsigned long long)rl.rlim_cur,
		     (unsigned long long)rl.rlim_max, NOFILE_SOFT, (unsigned long long)nofile_at_setup.rlim_max);
}

static void check_signals(void)
{
	if (!handler_on_altstack)
		fail("SIGUSR1 handler did not run on the alternate signal stack");
	if (!handler_info_ok)
		fail("SIGUSR1 handler got a wrong siginfo");
	for (int s = 1; s < NSIG; s++) {
		int want = s == SIGUSR1 || s == SIGUSR2 || s == SIGINT || s == SIGQUIT || s == SIGRTMIN + 3;
		if (s == SIGKILL || s == SIGSTOP || (s > 31 && s < SIGRTMIN))
			continue;
		if (sigismember(&handler_mask, s) != want) {
			fail("signal %d %s blocked while the handler ran", s, want ? "was not" : "was");
			break;
		}
	}

	struct sigaction sa;
	if (sigaction(SIGUSR1, NULL, &sa) != 0) {
		fail("sigaction(SIGUSR1): %s", strerror(errno));
	} else {
		if (!(sa.sa_flags & SA_SIGINFO) || sa.sa_sigaction != on_usr1)
			fail("SIGUSR1 handler is not the one installed");
		int flags = sa.sa_flags & (SA_SIGINFO | SA_RESTART | SA_ONSTACK | SA_NODEFER | SA_RESETHAND);
		if (flags != (SA_SIGINFO | SA_RESTART | SA_ONSTACK))
			fail("SIGUSR1 sa_flags %#x, expected %#x", flags, SA_SIGINFO | SA_RESTART | SA_ONSTACK);
		for (int s = 1; s < NSIG; s++) {
			if (s == SIGKILL || s == SIGSTOP || (s > 31 && s < SIGRTMIN))
				continue;
			int want = s == SIGINT || s == SIGQUIT || s == SIGRTMIN + 3;
			if (sigismember(&sa.sa_mask, s) != want) {
				fail("SIGUSR1 sa_mask: signal %d %s", s, want ? "missing" : "unexpected");
				break;
			}
		}
	}
	if (sigaction(SIGPIPE, NULL, &sa) != 0 || sa.sa_handler != SIG_IGN)
		fail("SIGPIPE is no longer ignored");
	if (sigaction(SIGTERM, NULL, &sa) != 0 || sa.sa_handler != SIG_DFL)
		fail("SIGTERM is no longer SIG_DFL");

	sigset_t cur;
	sigprocmask(SIG_BLOCK, NULL, &cur);
	for (int s = 1; s < NSIG; s++) {
		if (s == SIGKILL || s == SIGSTOP || (s > 31 && s < SIGRTMIN))
			continue;
		if (sigismember(&cur, s) != (s == SIGUSR2)) {
			fail("signal mask: signal %d %s", s, s == SIGUSR2 ? "not blocked" : "blocked");
			break;
		}
	}

	stack_t ss;
	if (sigaltstack(NULL, &ss) != 0)
		fail("sigaltstack: %s", strerror(errno));
	else if (ss.ss_sp != altstack || ss.ss_size != sizeof altstack || ss.ss_flags != 0)
		fail("sigaltstack is %p/%zu/%d, expected %p/%zu/0", ss.ss_sp, ss.ss_size, ss.ss_flags,
		     (void *)altstack, sizeof altstack);
}

int main(int argc, char **argv)
{
	if (argc != 2 || argv[1][0] != '/') {
		fprintf(stderr, "usage: checker ABSOLUTE-DIR\n");
		return 2;
	}
	/* Only what this program opens itself: no fd inherited from whoever started it. */
	close_range(3, ~0U, 0);
	snprintf(dir, sizeof dir, "%s", argv[1]);
	snprintf(result_path, sizeof result_path, "%s/result", dir);
	snprintf(cwd_path, sizeof cwd_path, "%s/cwd", dir);
	snprintf(input_path, sizeof input_path, "%s/input.dat", dir);
	snprintf(append_path, sizeof append_path, "%s/append.log", dir);
	snprintf(cloexec_path, sizeof cloexec_path, "%s/cloexec.dat", dir);
	snprintf(private_path, sizeof private_path, "%s/private.dat", dir);
	snprintf(shared_path, sizeof shared_path, "%s/shared.dat", dir);

	__builtin_cpu_init();
	vec_kind = __builtin_cpu_supports("avx512f") ? VEC_AVX512 : __builtin_cpu_supports("avx") ? VEC_AVX : VEC_SSE;
	for (size_t i = 0; i < sizeof vin; i++)
		vin[i] = (unsigned char)(i * 37 + 101);
	for (int i = 0; i < 8; i++)
		kin[i] = (uint16_t)(0x1111 * (i + 1) ^ 0x5a5a);

	if (mkdir(cwd_path, 0755) != 0 && errno != EEXIST)
		die("mkdir cwd");
	setup_files();
	setup_fds();
	setup_memory();
	unsigned char stack_data[16384];
	fill(stack_data, sizeof stack_data, 8);
	if (chdir(cwd_path) != 0)
		die("chdir");
	umask(027);
	if (prctl(PR_SET_NAME, "ckpt-checker") != 0)
		die("PR_SET_NAME");
	if (getrlimit(RLIMIT_NOFILE, &nofile_at_setup) != 0)
		die("getrlimit");
	struct rlimit rl = { NOFILE_SOFT, nofile_at_setup.rlim_max };
	if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
		die("setrlimit");
	setup_signals();

	set_mxcsr(MXCSR_SET);
	set_fpucw(FPUCW_SET);

	{
		static const unsigned char ready[] = "ready\n";
		char ready_path[PATH_MAX + 16];
		snprintf(ready_path, sizeof ready_path, "%s/ready", dir);
		write_file(ready_path, ready, sizeof ready - 1);
	}

	/*
	 * Wait for SIGUSR1. Each round does a burst of floating-point work
	 * (state live in registers while interrupted in user mode) and then
	 * waits 2 ms in ppoll with the vector registers loaded.
	 */
	sigset_t waitmask;
	sigprocmask(SIG_BLOCK, NULL, &waitmask);
	sigdelset(&waitmask, SIGUSR1);
	double acc = 1.0;
	unsigned long rounds = 0;
	int vec_bad = 0;
	while (!got_usr1) {
		acc = accumulate(acc, 20000);
		rounds++;
		/* ppoll writes the time left back: a fresh timeout every round. */
		struct timespec ts = { 0, 2 * 1000 * 1000 };
		memset(vout, 0, sizeof vout);
		memset(kout, 0, sizeof kout);
		long r = vec_wait(&ts, &waitmask);
		if (r != 0 && r != -EINTR && !vec_bad) {
			vec_bad = 1;
			fail("ppoll returned %ld", r);
		}
		if (!vec_bad && memcmp(vin, vout, vec_bytes()) != 0) {
			vec_bad = 1;
			size_t i;
			for (i = 0; i < vec_bytes() && vin[i] == vout[i]; i++)
				;
			fail("%s registers changed across the wait (first at byte %zu: %s%zu)", vec_name(), i,
			     vec_name(), i / (vec_bytes() / (vec_kind == VEC_AVX512 ? 32 : 16)));
		}
		if (!vec_bad && vec_kind == VEC_AVX512 && memcmp(kin + 1, kout + 1, 14) != 0) {
			vec_bad = 1;
			fail("AVX-512 mask registers changed across the wait");
		}
	}

	/* Checks run in order; results are collected, not stopped at the first. */
	unsigned mx = get_mxcsr() & ~0x3fu; /* ignore sticky exception flags */
	if (mx != MXCSR_SET)
		fail("MXCSR is %#x, expected %#x", mx, MXCSR_SET);
	unsigned short cw = get_fpucw();
	if ((cw & 0x1f3f) != (FPUCW_SET & 0x1f3f))
		fail("x87 control word is %#x, expected %#x", cw, FPUCW_SET);
	double expect = accumulate(1.0, 0);
	for (unsigned long i = 0; i < rounds; i++)
		expect = accumulate(expect, 20000);
	if (memcmp(&expect, &acc, sizeof acc) != 0)
		fail("floating-point accumulation after %lu rounds is %.17g, recomputed %.17g", rounds, acc, expect);

	check_memory(stack_data, sizeof stack_data);
	check_fds();
	check_process(argc, argv);
	check_signals();

	char out[sizeof failures + 16];
	int n = nfail ? snprintf(out, sizeof out, "FAIL: %s\n", failures) : snprintf(out, sizeof out, "OK\n");
	char tmp_path[PATH_MAX + 32];
	snprintf(tmp_path, sizeof tmp_path, "%s/result.tmp", dir);
	int fd = open(tmp_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0 || write(fd, out, (size_t)n) != n || close(fd) != 0 || rename(tmp_path, result_path) != 0)
		return 1;
	return 0;
}
