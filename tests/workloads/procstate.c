/*
 * procstate: sets process-wide settings kept by prctl, /proc and the
 * mappings' VmFlags, waits to be checkpointed and restored, then checks them
 * itself.
 *
 * Usage: procstate DIR
 *
 * Set-up (any failure exits 2 with a message: the test then fails loudly):
 *   oom_score_adj     raised to 500 through /proc/self/oom_score_adj
 *   child subreaper   prctl(PR_SET_CHILD_SUBREAPER, 1)
 *   parent-death sig  prctl(PR_SET_PDEATHSIG, SIGTERM)
 *   locked mapping    4 anonymous pages with a pattern, mlock()ed
 *   MADV_DONTFORK     2 anonymous pages with a pattern
 *   MADV_WIPEONFORK   2 anonymous pages with a pattern
 *   MADV_DONTDUMP     2 anonymous pages with a pattern
 *   MADV_HUGEPAGE, MADV_NOHUGEPAGE, MADV_MERGEABLE   2 pages each, likewise
 *   MADV_SEQUENTIAL, MADV_RANDOM                     2 pages each, likewise
 *   MAP_NORESERVE     2 anonymous pages mapped with it, likewise (VmFlags nr;
 *                     the kernel ignores it under vm.overcommit_memory=2,
 *                     and the set-up then fails)
 *                     (the kernel must offer THP and KSM: set-up fails
 *                     otherwise)
 * Each setting is read back once before "ready\n" is written to DIR/ready.
 *
 * On SIGUSR1 (sent by the test after the restore) it checks everything and
 * writes "OK\n" or "FAIL: <what>; <what>...\n" to DIR/result, then exits 0.
 * The parent-death signal is expected to be 0 after a restore: ckpt records
 * it but does not restore it (the parent it watched is not in the image);
 * `procstate DIR keep-pdeathsig` expects SIGTERM instead (the check of the
 * process before any dump).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <unistd.h>

#define PAGE 4096UL

static char failures[4096];
static int nfail;

static void fail(const char *fmt, ...)
{
	size_t used = strlen(failures);
	if (used + 4 >= sizeof failures)
		return;
	if (nfail++)
		used += (size_t)snprintf(failures + used, sizeof failures - used, "; ");
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(failures + used, sizeof failures - used, fmt, ap);
	va_end(ap);
}

static void die(const char *what)
{
	fprintf(stderr, "procstate: set-up: %s: %s\n", what, strerror(errno));
	exit(2);
}

struct area {
	const char *name;
	size_t pages;
	unsigned char *at;
	const char *flag; /* VmFlags mnemonic expected in smaps */
};

static struct area areas[] = {
	{"mlock", 4, NULL, "lo"},
	{"MADV_DONTFORK", 2, NULL, "dc"},
	{"MADV_WIPEONFORK", 2, NULL, "wf"},
	{"MADV_DONTDUMP", 2, NULL, "dd"},
	{"MADV_HUGEPAGE", 2, NULL, "hg"},
	{"MADV_NOHUGEPAGE", 2, NULL, "nh"},
	{"MADV_MERGEABLE", 2, NULL, "mg"},
	{"MADV_SEQUENTIAL", 2, NULL, "sr"},
	{"MADV_RANDOM", 2, NULL, "rr"},
	{"MAP_NORESERVE", 2, NULL, "nr"},
};
#define NAREAS (sizeof areas / sizeof areas[0])

static unsigned char pattern(size_t area, size_t i)
{
	return (unsigned char)(i * 7 + area * 31 + 1);
}

static int read_oom(void)
{
	char buf[32] = {0};
	int fd = open("/proc/self/oom_score_adj", O_RDONLY);
	if (fd < 0)
		return INT_MIN;
	ssize_t n = read(fd, buf, sizeof buf - 1);
	close(fd);
	return n > 0 ? atoi(buf) : INT_MIN;
}

/* Whether the smaps entry starting at `at` lists VmFlags mnemonic `flag`;
 * -1 if the mapping is not found. */
static int has_vmflag(void *at, const char *flag)
{
	FILE *f = fopen("/proc/self/smaps", "r");
	if (!f)
		return -1;
	char line[1024];
	int in = 0, found = -1;
	unsigned long start = (unsigned long)at;
	while (fgets(line, sizeof line, f)) {
		unsigned long s, e;
		if (sscanf(line, "%lx-%lx ", &s, &e) == 2 && strchr(line, '-') < strchr(line, ' ')) {
			in = s == start;
			continue;
		}
		if (in && strncmp(line, "VmFlags:", 8) == 0) {
			found = 0;
			for (char *t = strtok(line + 8, " \n"); t; t = strtok(NULL, " \n"))
				if (strcmp(t, flag) == 0)
					found = 1;
			break;
		}
	}
	fclose(f);
	return found;
}

static void check(int want_pdeathsig)
{
	int oom = read_oom();
	if (oom != 500)
		fail("oom_score_adj %d, expected 500", oom);
	int v = -1;
	if (prctl(PR_GET_CHILD_SUBREAPER, &v, 0, 0, 0) != 0)
		fail("PR_GET_CHILD_SUBREAPER: %s", strerror(errno));
	else if (v != 1)
		fail("child subreaper %d, expected 1", v);
	v = -1;
	if (prctl(PR_GET_PDEATHSIG, &v, 0, 0, 0) != 0)
		fail("PR_GET_PDEATHSIG: %s", strerror(errno));
	else if (v != want_pdeathsig)
		fail("parent-death signal %d, expected %d", v, want_pdeathsig);
	for (size_t a = 0; a < NAREAS; a++) {
		struct area *ar = &areas[a];
		for (size_t i = 0; i < ar->pages * PAGE; i++)
			if (ar->at[i] != pattern(a, i)) {
				fail("%s area: byte %zu differs", ar->name, i);
				break;
			}
		int h = has_vmflag(ar->at, ar->flag);
		if (h < 0)
			fail("%s area %p: not found in smaps", ar->name, (void *)ar->at);
		else if (h == 0)
			fail("%s area %p: VmFlags lacks %s", ar->name, (void *)ar->at, ar->flag);
	}
	/* The locked pages are counted as such. */
	FILE *f = fopen("/proc/self/status", "r");
	long lck = -1;
	if (f) {
		char line[256];
		while (fgets(line, sizeof line, f))
			if (sscanf(line, "VmLck: %ld kB", &lck) == 1)
				break;
		fclose(f);
	}
	if (lck < (long)(areas[0].pages * PAGE / 1024))
		fail("VmLck %ld kB, expected at least %lu kB", lck, areas[0].pages * PAGE / 1024);
}

static volatile sig_atomic_t asked;

static void on_usr1(int sig)
{
	(void)sig;
	asked = 1;
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		fprintf(stderr, "usage: procstate DIR [keep-pdeathsig]\n");
		return 2;
	}
	const char *dir = argv[1];
	/* Inherited fds (a test runner's jobserver pipe) are not ours. */
	close_range(3, ~0U, 0);

	int fd = open("/proc/self/oom_score_adj", O_WRONLY);
	if (fd < 0 || write(fd, "500", 3) != 3 || close(fd) != 0)
		die("writing 500 to /proc/self/oom_score_adj");
	if (prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0)
		die("PR_SET_CHILD_SUBREAPER");
	if (prctl(PR_SET_PDEATHSIG, SIGTERM, 0, 0, 0) != 0)
		die("PR_SET_PDEATHSIG");

	static const int advice[NAREAS] = {-1,		  MADV_DONTFORK,   MADV_WIPEONFORK, MADV_DONTDUMP,
					   MADV_HUGEPAGE, MADV_NOHUGEPAGE, MADV_MERGEABLE,
					   MADV_SEQUENTIAL, MADV_RANDOM,     -2};
	for (size_t a = 0; a < NAREAS; a++) {
		struct area *ar = &areas[a];
		/* advice -1: mlock; -2: MAP_NORESERVE at mmap; else madvise. */
		int extra = advice[a] == -2 ? MAP_NORESERVE : 0;
		ar->at = mmap(NULL, ar->pages * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | extra, -1, 0);
		if (ar->at == MAP_FAILED)
			die("mmap");
		for (size_t i = 0; i < ar->pages * PAGE; i++)
			ar->at[i] = pattern(a, i);
		if (advice[a] == -1) {
			if (mlock(ar->at, ar->pages * PAGE) != 0)
				die("mlock");
		} else if (advice[a] == -2) {
			/* Nothing more: the flag came with the mapping. */
		} else if (madvise(ar->at, ar->pages * PAGE, advice[a]) != 0) {
			die(ar->name);
		}
	}
	/* Guard pages between the areas would not stop the kernel from merging
	 * neighbours with equal flags; the flags differ, so each area is its own
	 * mapping. Check the set-up once, before the dump. */
	check(SIGTERM);
	if (nfail) {
		fprintf(stderr, "procstate: set-up check: %s\n", failures);
		return 2;
	}
	nfail = 0;
	failures[0] = 0;

	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = on_usr1;
	sigemptyset(&sa.sa_mask);
	if (sigaction(SIGUSR1, &sa, NULL) != 0)
		die("sigaction");
	sigset_t block, wait;
	sigemptyset(&block);
	sigaddset(&block, SIGUSR1);
	sigprocmask(SIG_BLOCK, &block, &wait);
	sigdelset(&wait, SIGUSR1);

	char path[PATH_MAX + 16];
	snprintf(path, sizeof path, "%s/ready", dir);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	if (fd < 0 || write(fd, "ready\n", 6) != 6 || close(fd) != 0)
		die("writing ready");

	while (!asked)
		sigsuspend(&wait);

	int keep = argc > 2 && strcmp(argv[2], "keep-pdeathsig") == 0;
	check(keep ? SIGTERM : 0);
	char out[4200];
	int n = nfail ? snprintf(out, sizeof out, "FAIL: %s\n", failures) : snprintf(out, sizeof out, "OK\n");
	char tmp[PATH_MAX + 16], result[PATH_MAX + 16];
	snprintf(tmp, sizeof tmp, "%s/result.tmp", dir);
	snprintf(result, sizeof result, "%s/result", dir);
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	if (fd < 0 || write(fd, out, (size_t)n) != n || close(fd) != 0 || rename(tmp, result) != 0)
		return 3;
	return 0;
}
