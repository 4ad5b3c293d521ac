/*
 * fd_kinds: holds an eventfd, a semaphore eventfd, a signalfd and three
 * timerfds, waits to be checkpointed and restored, then checks them itself.
 *
 * Usage: fd_kinds DIR
 *
 * Set-up creates the fds, lets the short and the periodic timer fire (one
 * unread expiration each), writes "ready\n" to DIR/ready and waits (sleeping in short
 * steps) until DIR/go exists. The test sends SIGUSR1 (blocked here, so it
 * is queued for the signalfd) and then creates DIR/go. The workload checks
 * everything and writes "OK\n" or "FAIL: <what>; <what>...\n" to
 * DIR/result, then exits 0.
 *
 * What it sets up and later checks:
 *   eventfd     value 5, O_NONBLOCK, close-on-exec: reads 5, then EAGAIN
 *   semaphore   EFD_SEMAPHORE with value 3, blocking: reads 1 three times,
 *               then not readable
 *   signalfd    SIGUSR1 | SIGRTMIN+1, both blocked, SFD_NONBLOCK: the mask
 *               in fdinfo, the signals still blocked, and the SIGUSR1 sent
 *               after restore read from it
 *   periodic    CLOCK_MONOTONIC timerfd every 200 ms, TFD_NONBLOCK, fired
 *               and never read before the dump: has expirations, keeps
 *               ticking (read twice more after restore), same
 *               interval, clock in fdinfo
 *   far         CLOCK_MONOTONIC one-shot set with TFD_TIMER_ABSTIME 1000 s
 *               ahead: time left close to what it had at set-up (restore
 *               arms it relative to the time left at dump), not readable
 *   fired       CLOCK_BOOTTIME one-shot of 1 ms that fired before the dump
 *               and was not read: exactly 1 expiration, disarmed
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#define PERIOD_NS 200000000LL
#define FAR_S 1000

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
	fprintf(stderr, "fd_kinds: setup: %s: %s\n", what, strerror(errno));
	exit(1);
}

static long long ns_of(struct timespec t)
{
	return (long long)t.tv_sec * 1000000000LL + t.tv_nsec;
}

static void sleep_ms(long ms)
{
	struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

/* The value of "KEY" in /proc/self/fdinfo/FD, or "" */
static void fdinfo(int fd, const char *key, char *out, size_t n)
{
	char path[64], line[256];
	out[0] = 0;
	snprintf(path, sizeof path, "/proc/self/fdinfo/%d", fd);
	FILE *f = fopen(path, "r");
	if (!f)
		return;
	size_t kl = strlen(key);
	while (fgets(line, sizeof line, f)) {
		if (strncmp(line, key, kl) == 0 && line[kl] == ':') {
			char *v = line + kl + 1;
			while (*v == ' ' || *v == '\t')
				v++;
			v[strcspn(v, "\n")] = 0;
			snprintf(out, n, "%s", v);
		}
	}
	fclose(f);
}

static void check_flags(const char *name, int fd, int nonblock, int cloexec)
{
	int fl = fcntl(fd, F_GETFL);
	int fdfl = fcntl(fd, F_GETFD);
	if (fl < 0 || fdfl < 0) {
		fail("%s: fd %d not open", name, fd);
		return;
	}
	if (!!(fl & O_NONBLOCK) != nonblock)
		fail("%s: O_NONBLOCK %s", name, nonblock ? "lost" : "gained");
	if (!!(fdfl & FD_CLOEXEC) != cloexec)
		fail("%s: close-on-exec %s", name, cloexec ? "lost" : "gained");
}

static int readable(int fd, int timeout_ms)
{
	struct pollfd p = {.fd = fd, .events = POLLIN};
	return poll(&p, 1, timeout_ms) == 1 && (p.revents & POLLIN);
}

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: fd_kinds DIR\n");
		return 2;
	}
	const char *dir = argv[1];
	char ready[4096], go[4096], result[4096];
	snprintf(ready, sizeof ready, "%s/ready", dir);
	snprintf(go, sizeof go, "%s/go", dir);
	snprintf(result, sizeof result, "%s/result", dir);
	/* Whatever the test runner leaked (a jobserver pipe) is not ours. */
	close_range(3, ~0U, 0);

	int efd = eventfd(5, EFD_NONBLOCK | EFD_CLOEXEC);
	if (efd < 0)
		die("eventfd");
	int sem = eventfd(3, EFD_SEMAPHORE);
	if (sem < 0)
		die("eventfd(semaphore)");

	sigset_t mask;
	sigemptyset(&mask);
	sigaddset(&mask, SIGUSR1);
	sigaddset(&mask, SIGRTMIN + 1);
	if (sigprocmask(SIG_BLOCK, &mask, NULL) != 0)
		die("sigprocmask");
	int sfd = signalfd(-1, &mask, SFD_NONBLOCK);
	if (sfd < 0)
		die("signalfd");

	int tper = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK);
	if (tper < 0)
		die("timerfd_create(periodic)");
	struct itimerspec per = {{0, PERIOD_NS}, {0, PERIOD_NS}};
	if (timerfd_settime(tper, 0, &per, NULL) != 0)
		die("timerfd_settime(periodic)");

	int tfar = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC);
	if (tfar < 0)
		die("timerfd_create(far)");
	struct timespec now;
	clock_gettime(CLOCK_MONOTONIC, &now);
	struct itimerspec far = {{0, 0}, {now.tv_sec + FAR_S, now.tv_nsec}};
	if (timerfd_settime(tfar, TFD_TIMER_ABSTIME, &far, NULL) != 0)
		die("timerfd_settime(far)");

	int tshot = timerfd_create(CLOCK_BOOTTIME, 0);
	if (tshot < 0)
		die("timerfd_create(fired)");
	struct itimerspec shot = {{0, 0}, {0, 1000000}};
	if (timerfd_settime(tshot, 0, &shot, NULL) != 0)
		die("timerfd_settime(fired)");
	/* Both the short and the periodic timer fire before "ready": one
	 * unread expiration each, and no time left (the kernel re-arms the
	 * periodic one only when it is read). */
	sleep_ms(300);

	struct itimerspec cur;
	if (timerfd_gettime(tfar, &cur) != 0)
		die("timerfd_gettime(far)");
	long long far_left = ns_of(cur.it_value);

	FILE *r = fopen(ready, "w");
	if (!r || fputs("ready\n", r) < 0 || fclose(r) != 0)
		die("ready");

	struct stat st;
	while (stat(go, &st) != 0)
		sleep_ms(20);

	/* eventfd */
	check_flags("eventfd", efd, 1, 1);
	uint64_t v = 0;
	if (read(efd, &v, 8) != 8)
		fail("eventfd: read: %s", strerror(errno));
	else if (v != 5)
		fail("eventfd: read %llu, want 5", (unsigned long long)v);
	if (read(efd, &v, 8) != -1 || errno != EAGAIN)
		fail("eventfd: a second read did not fail with EAGAIN");

	/* semaphore */
	check_flags("semaphore", sem, 0, 0);
	for (int i = 0; i < 3; i++) {
		if (!readable(sem, 0)) {
			fail("semaphore: not readable at read %d", i + 1);
			break;
		}
		if (read(sem, &v, 8) != 8 || v != 1)
			fail("semaphore: read %d gave %llu, want 1", i + 1, (unsigned long long)v);
	}
	if (readable(sem, 0))
		fail("semaphore: still readable after 3 reads");

	/* signalfd */
	check_flags("signalfd", sfd, 1, 0);
	char buf[128];
	fdinfo(sfd, "sigmask", buf, sizeof buf);
	if (strcmp(buf, "0000000400000200") != 0)
		fail("signalfd: fdinfo sigmask '%s', want 0000000400000200", buf);
	sigset_t blocked;
	sigprocmask(SIG_BLOCK, NULL, &blocked);
	if (!sigismember(&blocked, SIGUSR1) || !sigismember(&blocked, SIGRTMIN + 1))
		fail("signalfd: its signals are no longer blocked");
	if (!readable(sfd, 5000)) {
		fail("signalfd: the SIGUSR1 sent after restore did not arrive");
	} else {
		struct signalfd_siginfo si;
		if (read(sfd, &si, sizeof si) != sizeof si)
			fail("signalfd: read: %s", strerror(errno));
		else if (si.ssi_signo != SIGUSR1)
			fail("signalfd: read signal %u, want %d", si.ssi_signo, SIGUSR1);
	}

	/* periodic timer */
	check_flags("periodic timerfd", tper, 1, 0);
	fdinfo(tper, "clockid", buf, sizeof buf);
	if (strcmp(buf, "1") != 0)
		fail("periodic timerfd: clockid '%s', want 1", buf);
	if (timerfd_gettime(tper, &cur) != 0 || ns_of(cur.it_interval) != PERIOD_NS)
		fail("periodic timerfd: interval %lld ns, want %lld", ns_of(cur.it_interval),
		     PERIOD_NS);
	if (read(tper, &v, 8) != 8 || v < 1)
		fail("periodic timerfd: no expiration since before the dump (%s)",
		     strerror(errno));
	for (int i = 0; i < 2; i++) {
		if (!readable(tper, 2000)) {
			fail("periodic timerfd: stopped ticking after restore");
			break;
		}
		if (read(tper, &v, 8) != 8 || v < 1)
			fail("periodic timerfd: read after restore: %s", strerror(errno));
	}

	/* far timer */
	check_flags("far timerfd", tfar, 0, 1);
	if (timerfd_gettime(tfar, &cur) != 0) {
		fail("far timerfd: gettime: %s", strerror(errno));
	} else {
		long long left = ns_of(cur.it_value);
		if (left > far_left || left < far_left - 120LL * 1000000000LL)
			fail("far timerfd: %lld ns left, had %lld ns before the dump", left,
			     far_left);
		if (ns_of(cur.it_interval) != 0)
			fail("far timerfd: gained an interval");
	}
	if (readable(tfar, 0))
		fail("far timerfd: fired");

	/* fired one-shot */
	check_flags("fired timerfd", tshot, 0, 0);
	fdinfo(tshot, "clockid", buf, sizeof buf);
	if (strcmp(buf, "7") != 0)
		fail("fired timerfd: clockid '%s', want 7 (BOOTTIME)", buf);
	if (!readable(tshot, 0)) {
		fail("fired timerfd: its unread expiration was lost");
	} else if (read(tshot, &v, 8) != 8 || v != 1) {
		fail("fired timerfd: read %llu expirations, want 1", (unsigned long long)v);
	}
	if (timerfd_gettime(tshot, &cur) != 0 || ns_of(cur.it_value) != 0)
		fail("fired timerfd: armed again");

	FILE *out = fopen(result, "w");
	if (!out)
		return 1;
	if (nfail)
		fprintf(out, "FAIL: %s\n", failures);
	else
		fputs("OK\n", out);
	return fclose(out) == 0 ? 0 : 1;
}
