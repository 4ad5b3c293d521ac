/*
 * bigtree: process-tree workloads for benches/run.sh.
 *
 *   bigtree procs  NPROCS MIB_PER_PROC STATUS_FILE
 *   bigtree shared NPROCS MIB          STATUS_FILE
 *
 * The root calls setsid(), then forks NPROCS - 1 children (so the tree has
 * NPROCS processes, all in the root's session and process group).
 *
 * procs:  every process (the root too) maps MIB_PER_PROC MiB of private
 *         anonymous memory of its own, filled with the xorshift64* stream
 *         seeded by its index (0 for the root): NPROCS distinct,
 *         incompressible buffers.
 * shared: the root maps MIB MiB of MAP_SHARED | MAP_ANONYMOUS memory (plus
 *         one page for a marker), fills it with the stream, then forks; the
 *         children inherit that one region and each reads it all once (so
 *         every process has it resident and checks it sees the root's
 *         data). No process has other large memory.
 *
 * Each process computes a 64-bit checksum of its buffer (in shared mode,
 * of the shared region) and reports it in STATUS_FILE.d/ready.INDEX; the
 * root combines the NPROCS checksums, in index order, into one and writes
 * "ready PID COMBINED MIB" to STATUS_FILE (atomically: temp file, rename),
 * the line benches/run.sh reads for bigmem too. Then every process sleeps
 * in a loop.
 *
 * On SIGUSR1 the root checks the whole tree:
 *   1. it lists its children from /proc (their pids may have changed in a
 *      restore) and requires NPROCS - 1 of them;
 *   2. shared mode: it writes a fresh request number into the marker page;
 *   3. it sends SIGUSR2 to each child; each recomputes its checksum and
 *      writes "ok INDEX SUM" or "bad INDEX SUM EXPECTED" to
 *      STATUS_FILE.d/check.INDEX. In shared mode child 1 first copies the
 *      request number from the marker page into the reply slot: the root
 *      sees it only if the region is one object shared by both, not a copy;
 *   4. it recomputes its own checksum, waits (up to 60 s) for every
 *      child's answer, checks the reply slot, and writes
 *      "ok PID COMBINED" or "bad PID COMBINED EXPECTED [REASON]" to
 *      STATUS_FILE.check.
 *
 * A child exits when it finds itself reparented to init (its root died);
 * the harness kills the tree by process group and child list anyway.
 * Descriptors: /dev/null, the harness's stderr file, nothing else (every
 * inherited descriptor above 2 is closed); status files are opened only
 * while they are written.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define MAX_PROCS 4096
#define MARKER_MAGIC 0x6d61726b65720000ULL /* "marker" */

static volatile sig_atomic_t check_requested;

static void on_check(int sig)
{
	(void)sig;
	check_requested = 1;
}

/* FNV-1a style mixing over 64-bit words, order sensitive (as bigmem). */
static uint64_t checksum(const volatile uint64_t *w, size_t nwords)
{
	uint64_t h = 0xcbf29ce484222325ULL;
	for (size_t i = 0; i < nwords; i++) {
		h ^= w[i];
		h *= 0x100000001b3ULL;
	}
	return h;
}

static void fill(uint64_t *w, size_t n, uint64_t seed)
{
	uint64_t x = 0x9e3779b97f4a7c15ULL ^ seed;
	for (size_t i = 0; i < n; i++) {
		x ^= x >> 12;
		x ^= x << 25;
		x ^= x >> 27;
		w[i] = x * 0x2545f4914f6cdd1dULL;
	}
}

static int write_status(const char *path, const char *text)
{
	char tmp[4200];
	if (snprintf(tmp, sizeof tmp, "%s.tmp", path) >= (int)sizeof tmp)
		return -1;
	int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0)
		return -1;
	size_t len = strlen(text), off = 0;
	while (off < len) {
		ssize_t n = write(fd, text + off, len - off);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			close(fd);
			return -1;
		}
		off += (size_t)n;
	}
	if (close(fd) != 0)
		return -1;
	return rename(tmp, path);
}

/* Reads the first line of path into buf; 0 if it exists. */
static int read_line(const char *path, char *buf, size_t len)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	ssize_t n;
	do {
		n = read(fd, buf, len - 1);
	} while (n < 0 && errno == EINTR);
	close(fd);
	if (n <= 0)
		return -1;
	buf[n] = '\0';
	return 0;
}

static void nap_ms(long ms)
{
	struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L };
	(void)nanosleep(&ts, NULL);
}

static char dir[4096];

static void path_of(char *out, size_t len, const char *kind, unsigned long index)
{
	snprintf(out, len, "%s/%s.%lu", dir, kind, index);
}

/* Waits up to secs for path to exist and reads its line. */
static int wait_line(const char *path, char *buf, size_t len, int secs)
{
	for (int i = 0; i < secs * 100; i++) {
		if (read_line(path, buf, len) == 0)
			return 0;
		nap_ms(10);
	}
	return -1;
}

/* The children of this process (every thread's list; it has one). */
static int list_children(pid_t *out, int max)
{
	char path[64], buf[65536];
	snprintf(path, sizeof path, "/proc/self/task/%ld/children", (long)getpid());
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	size_t off = 0;
	ssize_t n;
	while (off < sizeof buf - 1 && (n = read(fd, buf + off, sizeof buf - 1 - off)) != 0) {
		if (n < 0) {
			if (errno == EINTR)
				continue;
			close(fd);
			return -1;
		}
		off += (size_t)n;
	}
	close(fd);
	buf[off] = '\0';
	int count = 0;
	char *p = buf;
	while (*p != '\0') {
		char *end;
		long v = strtol(p, &end, 10);
		if (end == p)
			break;
		if (count < max)
			out[count] = (pid_t)v;
		count++;
		p = end;
		while (*p == ' ' || *p == '\n')
			p++;
	}
	return count;
}

struct wl {
	int shared;
	unsigned long nprocs, index, mib;
	volatile uint64_t *buf; /* the checked buffer */
	size_t nwords;
	volatile uint64_t *marker; /* shared mode: [0] request, [1] reply */
	uint64_t expected;
};

static void child_loop(struct wl *w)
{
	char path[4200], line[256];
	for (;;) {
		nap_ms(100);
		if (getppid() == 1)
			_exit(0);
		if (!check_requested)
			continue;
		check_requested = 0;
		if (w->shared && w->index == 1)
			w->marker[1] = w->marker[0] ^ MARKER_MAGIC;
		uint64_t got = checksum(w->buf, w->nwords);
		if (got == w->expected)
			snprintf(line, sizeof line, "ok %lu %016llx\n", w->index, (unsigned long long)got);
		else
			snprintf(line, sizeof line, "bad %lu %016llx %016llx\n", w->index,
				 (unsigned long long)got, (unsigned long long)w->expected);
		path_of(path, sizeof path, "check", w->index);
		(void)write_status(path, line);
	}
}

/* Root: check the whole tree, write STATUS.check. */
static void root_check(struct wl *w, const uint64_t *sums, uint64_t combined_expected,
		       const char *check_path, uint64_t request)
{
	char path[4200], line[512], reason[256] = "";
	static pid_t kids[MAX_PROCS];
	for (unsigned long i = 1; i < w->nprocs; i++) {
		path_of(path, sizeof path, "check", i);
		(void)unlink(path);
	}
	int nkids = list_children(kids, MAX_PROCS);
	if (nkids != (int)w->nprocs - 1)
		snprintf(reason, sizeof reason, "children=%d,want=%lu", nkids, w->nprocs - 1);
	if (w->shared) {
		w->marker[1] = 0;
		w->marker[0] = request;
	}
	for (int k = 0; k < nkids && k < MAX_PROCS; k++)
		(void)kill(kids[k], SIGUSR2);

	uint64_t h = 0xcbf29ce484222325ULL;
	uint64_t got = checksum(w->buf, w->nwords);
	int ok = got == w->expected;
	if (!ok && reason[0] == '\0')
		snprintf(reason, sizeof reason, "root-sum");
	h = (h ^ got) * 0x100000001b3ULL;
	for (unsigned long i = 1; i < w->nprocs; i++) {
		char word[16];
		unsigned long idx;
		unsigned long long sum;
		path_of(path, sizeof path, "check", i);
		if (wait_line(path, line, sizeof line, 60) != 0 ||
		    sscanf(line, "%15s %lu %llx", word, &idx, &sum) != 3 || idx != i) {
			ok = 0;
			if (reason[0] == '\0')
				snprintf(reason, sizeof reason, "no-answer-from-child-%lu", i);
			h = (h ^ 0) * 0x100000001b3ULL;
			continue;
		}
		if (strcmp(word, "ok") != 0 || sum != sums[i]) {
			ok = 0;
			if (reason[0] == '\0')
				snprintf(reason, sizeof reason, "child-%lu-sum", i);
		}
		h = (h ^ (uint64_t)sum) * 0x100000001b3ULL;
	}
	if (w->shared && w->nprocs > 1 && w->marker[1] != (request ^ MARKER_MAGIC)) {
		ok = 0;
		if (reason[0] == '\0')
			snprintf(reason, sizeof reason, "marker-not-shared");
	}
	if (ok)
		snprintf(line, sizeof line, "ok %ld %016llx\n", (long)getpid(), (unsigned long long)h);
	else
		snprintf(line, sizeof line, "bad %ld %016llx %016llx %s\n", (long)getpid(),
			 (unsigned long long)h, (unsigned long long)combined_expected, reason);
	(void)write_status(check_path, line);
}

static volatile uint64_t *map_filled(size_t bytes, int shared, uint64_t seed)
{
	uint64_t *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE,
			   (shared ? MAP_SHARED : MAP_PRIVATE) | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		return NULL;
	(void)madvise(p, bytes, MADV_NOHUGEPAGE);
	fill(p, bytes / sizeof(uint64_t), seed);
	return p;
}

int main(int argc, char **argv)
{
	if (argc != 5 || (strcmp(argv[1], "procs") != 0 && strcmp(argv[1], "shared") != 0)) {
		fprintf(stderr, "usage: bigtree procs|shared NPROCS MIB STATUS_FILE\n");
		return 2;
	}
	struct wl w = { .shared = strcmp(argv[1], "shared") == 0 };
	char *end;
	w.nprocs = strtoul(argv[2], &end, 10);
	if (*end != '\0' || w.nprocs == 0 || w.nprocs > MAX_PROCS) {
		fprintf(stderr, "bigtree: bad process count '%s'\n", argv[2]);
		return 2;
	}
	w.mib = strtoul(argv[3], &end, 10);
	if (*end != '\0' || w.mib == 0 || w.mib > (1UL << 20)) {
		fprintf(stderr, "bigtree: bad size '%s'\n", argv[3]);
		return 2;
	}
	const char *status = argv[4];
	char check_path[4200], path[4200], line[512];
	if (snprintf(check_path, sizeof check_path, "%s.check", status) >= (int)sizeof check_path ||
	    snprintf(dir, sizeof dir, "%s.d", status) >= (int)sizeof dir)
		return 2;

	(void)close_range(3, ~0U, 0);
	(void)setsid();
	if (mkdir(dir, 0755) != 0 && errno != EEXIST) {
		perror("bigtree: mkdir");
		return 1;
	}

	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = on_check;
	sigemptyset(&sa.sa_mask);
	/* The root answers SIGUSR1 (from the harness), children SIGUSR2. */
	if (sigaction(SIGUSR1, &sa, NULL) != 0) {
		perror("bigtree: sigaction");
		return 1;
	}
	signal(SIGUSR2, SIG_IGN);

	size_t bytes = w.mib << 20;
	w.nwords = bytes / sizeof(uint64_t);
	if (w.shared) {
		/* One region: the data, then one page holding the marker. */
		volatile uint64_t *region = mmap(NULL, bytes + 4096, PROT_READ | PROT_WRITE,
						 MAP_SHARED | MAP_ANONYMOUS, -1, 0);
		if (region == MAP_FAILED) {
			perror("bigtree: mmap");
			return 1;
		}
		(void)madvise((void *)region, bytes + 4096, MADV_NOHUGEPAGE);
		fill((uint64_t *)region, w.nwords, (uint64_t)w.mib);
		w.buf = region;
		w.marker = region + w.nwords;
		w.marker[0] = w.marker[1] = 0;
		w.expected = checksum(w.buf, w.nwords);
	}

	for (unsigned long i = 1; i < w.nprocs; i++) {
		pid_t pid = fork();
		if (pid < 0) {
			perror("bigtree: fork");
			kill(0, SIGKILL);
			return 1;
		}
		if (pid == 0) {
			w.index = i;
			if (sigaction(SIGUSR2, &sa, NULL) != 0)
				_exit(1);
			signal(SIGUSR1, SIG_IGN);
			if (!w.shared) {
				w.buf = map_filled(bytes, 0, i);
				if (w.buf == NULL)
					_exit(1);
				w.expected = checksum(w.buf, w.nwords);
			} else if (checksum(w.buf, w.nwords) != w.expected) {
				_exit(1);
			}
			snprintf(line, sizeof line, "%016llx\n", (unsigned long long)w.expected);
			path_of(path, sizeof path, "ready", i);
			if (write_status(path, line) != 0)
				_exit(1);
			child_loop(&w);
		}
	}
	if (!w.shared) {
		w.buf = map_filled(bytes, 0, 0);
		if (w.buf == NULL) {
			perror("bigtree: mmap");
			kill(0, SIGKILL);
			return 1;
		}
		w.expected = checksum(w.buf, w.nwords);
	}

	/* Collect every child's checksum. */
	uint64_t *sums = calloc(w.nprocs, sizeof *sums);
	if (sums == NULL) {
		kill(0, SIGKILL);
		return 1;
	}
	sums[0] = w.expected;
	uint64_t h = 0xcbf29ce484222325ULL;
	h = (h ^ sums[0]) * 0x100000001b3ULL;
	for (unsigned long i = 1; i < w.nprocs; i++) {
		unsigned long long v;
		path_of(path, sizeof path, "ready", i);
		if (wait_line(path, line, sizeof line, 600) != 0 || sscanf(line, "%llx", &v) != 1) {
			fprintf(stderr, "bigtree: child %lu never became ready\n", i);
			kill(0, SIGKILL);
			return 1;
		}
		sums[i] = v;
		h = (h ^ sums[i]) * 0x100000001b3ULL;
	}
	const uint64_t combined = h;
	snprintf(line, sizeof line, "ready %ld %016llx %lu\n", (long)getpid(),
		 (unsigned long long)combined, w.mib);
	if (write_status(status, line) != 0) {
		perror("bigtree: write status");
		kill(0, SIGKILL);
		return 1;
	}

	uint64_t request = 0;
	for (;;) {
		nap_ms(100);
		if (check_requested) {
			check_requested = 0;
			request++;
			root_check(&w, sums, combined, check_path, request);
		}
	}
}
