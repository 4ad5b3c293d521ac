/*
 * bigmem: benchmark workload for benches/run.sh.
 *
 *   bigmem MIB STATUS_FILE [THREADS]
 *
 * Maps MIB MiB of anonymous memory and fills every byte with a pseudo-random
 * stream (xorshift64*), so that neither zero-page detection nor compression
 * can shrink a checkpoint of it. It computes a 64-bit checksum of the buffer,
 * writes "ready PID CHECKSUM MIB" to STATUS_FILE (atomically: temp file then
 * rename), and then sleeps in a loop.
 *
 * On SIGUSR1 it recomputes the checksum over the whole buffer and writes
 * "ok PID CHECKSUM" (or "bad PID CHECKSUM EXPECTED") to STATUS_FILE.check.
 * After a restore, the harness compares that checksum with the one written
 * at start-up: same value means the restored memory is intact.
 *
 * With THREADS > 1 (benches/run.sh: BENCH_THREADS) it starts THREADS-1 more
 * threads once the buffer is filled, each parked in a nanosleep loop, so a
 * multi-threaded process of the same size can be compared.
 *
 * Deliberately simple otherwise: regular-file / /dev/null descriptors only,
 * no sockets, no children. It closes every descriptor above 2 it
 * inherited, and calls setsid() itself so it does not share a session with
 * the harness.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
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

static void *parked(void *arg)
{
	(void)arg;
	for (;;) {
		struct timespec ts = { .tv_sec = 1, .tv_nsec = 0 };
		(void)nanosleep(&ts, NULL);
	}
	return NULL;
}

int main(int argc, char **argv)
{
	if (argc != 3 && argc != 4) {
		fprintf(stderr, "usage: %s MIB STATUS_FILE [THREADS]\n", argc > 0 ? argv[0] : "bigmem");
		return 2;
	}
	unsigned long threads = 1;
	if (argc == 4) {
		char *tend;
		threads = strtoul(argv[3], &tend, 10);
		if (*tend != '\0' || threads == 0 || threads > 4096) {
			fprintf(stderr, "bigmem: bad thread count '%s'\n", argv[3]);
			return 2;
		}
	}
	char *end;
	unsigned long mib = strtoul(argv[1], &end, 10);
	if (*end != '\0' || mib == 0 || mib > (1UL << 20)) {
		fprintf(stderr, "bigmem: bad size '%s'\n", argv[1]);
		return 2;
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
	uint64_t *buf = mmap(NULL, bytes, PROT_READ | PROT_WRITE,
			     MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (buf == MAP_FAILED) {
		perror("bigmem: mmap");
		return 1;
	}
	/* No transparent huge pages: keep the layout ordinary 4 KiB pages. */
	(void)madvise(buf, bytes, MADV_NOHUGEPAGE);

	uint64_t x = 0x9e3779b97f4a7c15ULL ^ (uint64_t)mib;
	for (size_t i = 0; i < nwords; i++) {
		x ^= x >> 12;
		x ^= x << 25;
		x ^= x >> 27;
		buf[i] = x * 0x2545f4914f6cdd1dULL;
	}
	const uint64_t expected = checksum(buf, nwords);
	for (unsigned long t = 1; t < threads; t++) {
		pthread_t th;
		if (pthread_create(&th, NULL, parked, NULL) != 0) {
			fprintf(stderr, "bigmem: pthread_create failed\n");
			return 1;
		}
	}

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
