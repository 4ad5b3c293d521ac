/*
 * bigmem: benchmark workload for benches/run.sh.
 *
 *   bigmem MIB STATUS_FILE [THREADS [DATA [RESERVE_MIB]]]
 *
 * With RESERVE_MIB > MIB, the mapping is RESERVE_MIB MiB (MAP_NORESERVE) of
 * which only the first MIB MiB are touched: address space reserved but
 * never used, which a checkpoint should not pay for.
 * Maps MIB MiB of anonymous memory and fills every byte with a pseudo-random
 * stream (xorshift64*), so that neither zero-page detection nor compression
 * can shrink a checkpoint of it. With DATA "text" instead (default
 * "random"), the memory is compressible like a program's heap of strings:
 * of every 8 pages, 3 are written with zeros and 5 hold lines of words
 * (picked by the same stream from a small vocabulary) and numbers. With THREADS > 1 (default 1) the buffer is
 * cut into THREADS slices; THREADS - 1 extra threads each fill one slice
 * (the main thread fills the first) and then stay alive, waking every 100 ms
 * like the main thread, so that a checkpoint has THREADS live threads. It computes a 64-bit checksum of the buffer,
 * writes "ready PID CHECKSUM MIB" to STATUS_FILE (atomically: temp file then
 * rename), and then sleeps in a loop.
 *
 * On SIGUSR1 it recomputes the checksum over the whole buffer and writes
 * "ok PID CHECKSUM" (or "bad PID CHECKSUM EXPECTED") to STATUS_FILE.check.
 * After a restore, the harness compares that checksum with the one written
 * at start-up: same value means the restored memory is intact.
 *
 * Deliberately simple so that a checkpointer supporting only processes
 * with regular-file / /dev/null descriptors can handle it: no sockets, no
 * children, no threads unless asked for. It closes every descriptor above 2 it
 * inherited, and calls setsid() itself so it does not share a session with
 * the harness.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

static volatile sig_atomic_t check_requested;

static void on_usr1(int sig)
{
	(void)sig;
	check_requested = 1;
}

/* FNV-1a style mixing over 64-bit words, order sensitive. */
static uint64_t checksum(const uint64_t *w, size_t nwords)
{
	uint64_t h = 0xcbf29ce484222325ULL;
	for (size_t i = 0; i < nwords; i++) {
		h ^= w[i];
		h *= 0x100000001b3ULL;
	}
	return h;
}

/* Fills words [0, n) of w with the xorshift64* stream seeded by seed. */
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

/* Fills words [0, n) of w with text and zero pages, from the same stream. */
static void fill_text(uint64_t *w, size_t n, uint64_t seed)
{
	static const char *const words[] = {
		"the", "of", "and", "checkpoint", "process", "memory", "page", "signed",
		"image", "restore", "kernel", "thread", "value", "key", "None", "True",
		"False", "object", "list", "dict", "string", "self", "return", "import",
		"def", "class", "for", "in", "while", "lambda", "yield", "with",
	};
	uint64_t x = 0x9e3779b97f4a7c15ULL ^ seed;
	char *p = (char *)w;
	size_t len = n * sizeof(uint64_t);
	for (size_t page = 0; page * 4096 < len; page++) {
		char *at = p + page * 4096;
		size_t room = len - page * 4096 < 4096 ? len - page * 4096 : 4096;
		if (page % 8 < 3) {
			memset(at, 0, room);
			continue;
		}
		size_t i = 0;
		int col = 0;
		while (i < room) {
			x ^= x >> 12;
			x ^= x << 25;
			x ^= x >> 27;
			uint64_t r = x * 0x2545f4914f6cdd1dULL;
			char tok[32];
			int k;
			if ((r & 7) == 0)
				k = snprintf(tok, sizeof tok, "%u", (unsigned)(r >> 40) % 100000);
			else
				k = snprintf(tok, sizeof tok, "%s", words[(r >> 8) % (sizeof words / sizeof *words)]);
			for (int j = 0; j < k && i < room; j++)
				at[i++] = tok[j];
			if (i < room)
				at[i++] = ++col % 12 == 0 ? '\n' : ' ';
		}
	}
}

/* The fill the workload uses: fill (random) or fill_text. */
static void (*fill_fn)(uint64_t *, size_t, uint64_t) = fill;

struct slice {
	uint64_t *w;
	size_t n;
	uint64_t seed;
	pthread_mutex_t *lock;
	pthread_cond_t *cond;
	unsigned *filled;
};

/* An extra thread: fill its slice, report, then idle forever. */
static void *slice_thread(void *arg)
{
	struct slice *s = arg;
	fill_fn(s->w, s->n, s->seed);
	pthread_mutex_lock(s->lock);
	(*s->filled)++;
	pthread_cond_signal(s->cond);
	pthread_mutex_unlock(s->lock);
	for (;;) {
		struct timespec ts = { .tv_sec = 0, .tv_nsec = 100 * 1000 * 1000 };
		(void)nanosleep(&ts, NULL);
	}
	return NULL;
}

static int write_status(const char *path, const char *text)
{
	char tmp[4096];
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

int main(int argc, char **argv)
{
	if (argc < 3 || argc > 6) {
		fprintf(stderr, "usage: %s MIB STATUS_FILE [THREADS [random|text [RESERVE_MIB]]]\n", argc > 0 ? argv[0] : "bigmem");
		return 2;
	}
	char *end;
	unsigned long mib = strtoul(argv[1], &end, 10);
	if (*end != '\0' || mib == 0 || mib > (1UL << 20)) {
		fprintf(stderr, "bigmem: bad size '%s'\n", argv[1]);
		return 2;
	}
	unsigned long nthreads = 1;
	unsigned long reserve_mib = 0;
	if (argc == 6) {
		reserve_mib = strtoul(argv[5], &end, 10);
		if (*end != '\0' || reserve_mib > (1UL << 27)) {
			fprintf(stderr, "bigmem: bad reservation '%s'\n", argv[5]);
			return 2;
		}
	}
	if (argc >= 5) {
		if (strcmp(argv[4], "text") == 0) {
			fill_fn = fill_text;
		} else if (strcmp(argv[4], "random") != 0) {
			fprintf(stderr, "bigmem: bad data kind '%s'\n", argv[4]);
			return 2;
		}
	}
	if (argc >= 4) {
		nthreads = strtoul(argv[3], &end, 10);
		if (*end != '\0' || nthreads == 0 || nthreads > 1024) {
			fprintf(stderr, "bigmem: bad thread count '%s'\n", argv[3]);
			return 2;
		}
	}
	const char *status = argv[2];
	char check_path[4096];
	if (snprintf(check_path, sizeof check_path, "%s.check", status) >= (int)sizeof check_path)
		return 2;

	/* Drop whatever descriptors the harness's parent leaked (pipes from a
	 * job runner, say): a checkpointer may refuse fds it cannot restore. */
	(void)close_range(3, ~0U, 0);
	(void)setsid();

	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = on_usr1;
	sigemptyset(&sa.sa_mask);
	if (sigaction(SIGUSR1, &sa, NULL) != 0) {
		perror("bigmem: sigaction");
		return 1;
	}

	size_t bytes = (size_t)mib << 20;
	size_t nwords = bytes / sizeof(uint64_t);
	size_t mapped = reserve_mib > mib ? (size_t)reserve_mib << 20 : bytes;
	uint64_t *buf = mmap(NULL, mapped, PROT_READ | PROT_WRITE,
			     MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (buf == MAP_FAILED) {
		perror("bigmem: mmap");
		return 1;
	}
	/* No transparent huge pages: keep the layout ordinary 4 KiB pages. */
	(void)madvise(buf, mapped, MADV_NOHUGEPAGE);

	if (nthreads == 1) {
		fill_fn(buf, nwords, (uint64_t)mib);
	} else {
		static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
		static pthread_cond_t cond = PTHREAD_COND_INITIALIZER;
		unsigned filled = 0;
		size_t per = nwords / nthreads;
		struct slice *slices = calloc(nthreads, sizeof *slices);
		if (slices == NULL) {
			perror("bigmem: calloc");
			return 1;
		}
		for (unsigned long t = 0; t < nthreads; t++) {
			size_t first = t * per;
			size_t n = t + 1 == nthreads ? nwords - first : per;
			slices[t] = (struct slice){ buf + first, n, (uint64_t)mib + t, &lock, &cond, &filled };
		}
		for (unsigned long t = 1; t < nthreads; t++) {
			pthread_t th;
			int err = pthread_create(&th, NULL, slice_thread, &slices[t]);
			if (err != 0) {
				fprintf(stderr, "bigmem: pthread_create: %s\n", strerror(err));
				return 1;
			}
		}
		fill_fn(slices[0].w, slices[0].n, slices[0].seed);
		pthread_mutex_lock(&lock);
		while (filled + 1 < nthreads)
			pthread_cond_wait(&cond, &lock);
		pthread_mutex_unlock(&lock);
	}
	const uint64_t expected = checksum(buf, nwords);

	char line[256];
	snprintf(line, sizeof line, "ready %ld %016llx %lu\n", (long)getpid(),
		 (unsigned long long)expected, mib);
	if (write_status(status, line) != 0) {
		perror("bigmem: write status");
		return 1;
	}

	for (;;) {
		struct timespec ts = { .tv_sec = 0, .tv_nsec = 100 * 1000 * 1000 };
		(void)nanosleep(&ts, NULL); /* EINTR is fine: loop. */
		if (check_requested) {
			check_requested = 0;
			uint64_t got = checksum(buf, nwords);
			if (got == expected)
				snprintf(line, sizeof line, "ok %ld %016llx\n",
					 (long)getpid(), (unsigned long long)got);
			else
				snprintf(line, sizeof line, "bad %ld %016llx %016llx\n",
					 (long)getpid(), (unsigned long long)got,
					 (unsigned long long)expected);
			(void)write_status(check_path, line);
		}
	}
}
