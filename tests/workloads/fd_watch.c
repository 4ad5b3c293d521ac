/*
 * fd_watch: holds an epoll instance, an inotify instance and file locks,
 * waits to be checkpointed and restored, then checks them itself.
 *
 * Usage: fd_watch DIR MODE
 *
 * MODE "all" sets everything up, writes "ready\n" to DIR/ready and waits
 * (sleeping in short steps) until DIR/go exists; then it checks and writes
 * "OK\n" or "FAIL: <what>; <what>...\n" to DIR/result, and exits 0.
 *
 *   epoll     entries for: an eventfd (EPOLLIN, data 0x1111222233334444);
 *             the same eventfd under a second fd (EPOLLOUT|EPOLLET, 0x22);
 *             a periodic 100 ms timerfd (EPOLLIN, 0x33); an eventfd added
 *             EPOLLOUT|EPOLLONESHOT and disarmed by one epoll_wait (0x44);
 *             an eventfd added under fd A, then dup'ed to B and A closed
 *             (EPOLLIN, 0x55); a second epoll holding an eventfd
 *             (EPOLLIN, 0x66) added to the first (EPOLLIN, 0x77); an
 *             eventfd added EPOLLIN|EPOLLEXCLUSIVE (0x88).
 *             After restore: the first epoll's fdinfo lists the same
 *             (tfd, events, data) entries as before the dump; after
 *             writing to the eventfds and letting the timer fire,
 *             epoll_wait reports 0x1111222233334444, 0x33, 0x55, 0x77
 *             and 0x88 with EPOLLIN, never 0x44 (disarmed), and the inner
 *             epoll reports 0x66.
 *   inotify   watches DIR/w1 (IN_CREATE, wd 1), a throw-away watch
 *             removed again (wd 2), DIR/w2 (IN_CREATE|IN_DELETE, wd 3)
 *             and the file DIR/file (IN_MODIFY, wd 4); the queue is empty
 *             before "ready". After restore: the same wds in fdinfo, and
 *             creating DIR/w1/new, DIR/w2/new and writing DIR/file give
 *             events with wds 1, 3 and 4.
 *   locks     flock LOCK_EX on DIR/lk1; POSIX write lock on bytes 10-19
 *             and read lock from 100 to EOF on DIR/lk2; OFD write lock on
 *             bytes 0-9 of DIR/lk3; flock LOCK_SH on DIR/lk4. After
 *             restore a child process sees each conflict (flock LOCK_NB
 *             fails, F_GETLK reports the parent's pid, F_OFD_GETLK a
 *             lock); the parent releases them and a second child finds
 *             them free.
 *
 * Refusal modes (write "ready\n" and, for "closed", the pid to kill on a
 * second line, then sleep):
 *   closed    an epoll whose target fd was closed while a grandchild
 *             process keeps the eventfd alive;
 *   gone      an inotify (the lowest fd) watching a directory that was
 *             removed while an fd keeps it alive;
 *   pending   an inotify with an unread event.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/file.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <sys/timerfd.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static char failures[8192];
static int nfail;
static const char *dir;

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
	fprintf(stderr, "fd_watch: setup: %s: %s\n", what, strerror(errno));
	exit(1);
}

static void sleep_ms(long ms)
{
	struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

static char *in_dir(const char *name)
{
	static char buf[8][4096];
	static int i;
	char *b = buf[i++ % 8];
	snprintf(b, 4096, "%s/%s", dir, name);
	return b;
}

static void ready(const char *extra)
{
	FILE *r = fopen(in_dir("ready.tmp"), "w");
	if (!r || fprintf(r, "ready\n%s", extra) < 0 || fclose(r) != 0)
		die("ready");
	if (rename(in_dir("ready.tmp"), in_dir("ready")) != 0)
		die("rename ready");
}

/* The "tfd: N events: X data: Y" part of each entry in fdinfo, sorted. */
static void epoll_entries(int ep, char *out, size_t n)
{
	char path[64], buf[8192];
	snprintf(path, sizeof path, "/proc/self/fdinfo/%d", ep);
	int f = open(path, O_RDONLY);
	ssize_t len = f >= 0 ? read(f, buf, sizeof buf - 1) : -1;
	if (f >= 0)
		close(f);
	buf[len > 0 ? len : 0] = 0;
	char *lines[64];
	int count = 0;
	for (char *l = strtok(buf, "\n"); l && count < 64; l = strtok(NULL, "\n")) {
		if (strncmp(l, "tfd:", 4) == 0) {
			char *pos = strstr(l, " pos:");
			if (pos)
				*pos = 0;
			lines[count++] = l;
		}
	}
	for (int i = 0; i < count; i++)
		for (int j = i + 1; j < count; j++)
			if (strcmp(lines[i], lines[j]) > 0) {
				char *t = lines[i];
				lines[i] = lines[j];
				lines[j] = t;
			}
	out[0] = 0;
	for (int i = 0; i < count; i++) {
		strncat(out, lines[i], n - strlen(out) - 2);
		strncat(out, "\n", n - strlen(out) - 1);
	}
}

/* The wds listed in an inotify's fdinfo, sorted, as "1,3,4". */
static void inotify_wds(int in, char *out, size_t n)
{
	char path[64], buf[8192];
	snprintf(path, sizeof path, "/proc/self/fdinfo/%d", in);
	int f = open(path, O_RDONLY);
	ssize_t len = f >= 0 ? read(f, buf, sizeof buf - 1) : -1;
	if (f >= 0)
		close(f);
	buf[len > 0 ? len : 0] = 0;
	int wds[64], count = 0;
	for (char *p = buf; (p = strstr(p, "inotify wd:")) && count < 64; p++)
		wds[count++] = (int)strtol(p + 11, NULL, 16);
	for (int i = 0; i < count; i++)
		for (int j = i + 1; j < count; j++)
			if (wds[i] > wds[j]) {
				int t = wds[i];
				wds[i] = wds[j];
				wds[j] = t;
			}
	out[0] = 0;
	for (int i = 0; i < count; i++)
		snprintf(out + strlen(out), n - strlen(out), "%s%d", i ? "," : "", wds[i]);
}

static void bump(int fd, const char *what)
{
	uint64_t one = 1;
	if (write(fd, &one, 8) != 8)
		fail("write to %s: %s", what, strerror(errno));
}

static int lock(int fd, int cmd, short type, off_t start, off_t len)
{
	struct flock fl = {.l_type = type, .l_whence = SEEK_SET, .l_start = start, .l_len = len};
	return fcntl(fd, cmd, &fl);
}

/* What F_GETLK / F_OFD_GETLK reports for a lock of `type` on the range. */
static struct flock probe(int fd, int cmd, short type, off_t start, off_t len)
{
	struct flock fl = {.l_type = type, .l_whence = SEEK_SET, .l_start = start, .l_len = len};
	if (fcntl(fd, cmd, &fl) != 0)
		fl.l_type = -1;
	return fl;
}

/* In a child: do the locks conflict (held) or not (released)? Returns
 * a bitmask of the checks that failed. */
static int child_lock_checks(int held)
{
	int bad = 0;
	int l1 = open(in_dir("lk1"), O_RDWR), l2 = open(in_dir("lk2"), O_RDWR);
	int l3 = open(in_dir("lk3"), O_RDWR), l4 = open(in_dir("lk4"), O_RDWR);
	if (l1 < 0 || l2 < 0 || l3 < 0 || l4 < 0)
		return 1 << 15;
	int r = flock(l1, LOCK_EX | LOCK_NB);
	if (held ? !(r < 0 && errno == EWOULDBLOCK) : r != 0)
		bad |= 1;
	struct flock f = probe(l2, F_GETLK, F_WRLCK, 10, 10);
	if (held ? !(f.l_type == F_WRLCK && f.l_pid == getppid() && f.l_start == 10 && f.l_len == 10)
		 : f.l_type != F_UNLCK)
		bad |= 2;
	f = probe(l2, F_GETLK, F_WRLCK, 200, 1);
	if (held ? !(f.l_type == F_RDLCK && f.l_pid == getppid() && f.l_start == 100 && f.l_len == 0)
		 : f.l_type != F_UNLCK)
		bad |= 4;
	f = probe(l2, F_GETLK, F_RDLCK, 100, 0);
	if (f.l_type != F_UNLCK)
		bad |= 8;
	f = probe(l2, F_GETLK, F_WRLCK, 50, 10);
	if (f.l_type != F_UNLCK)
		bad |= 16;
	f = probe(l3, F_OFD_GETLK, F_WRLCK, 5, 1);
	if (held ? !(f.l_type == F_WRLCK && f.l_start == 0 && f.l_len == 10) : f.l_type != F_UNLCK)
		bad |= 32;
	r = flock(l4, LOCK_EX | LOCK_NB);
	if (held ? !(r < 0 && errno == EWOULDBLOCK) : r != 0)
		bad |= 64;
	if (held && flock(l4, LOCK_SH | LOCK_NB) != 0)
		bad |= 128;
	return bad;
}

static int run_child(int held)
{
	pid_t c = fork();
	if (c == 0)
		_exit(child_lock_checks(held));
	int st = 0;
	if (c < 0 || waitpid(c, &st, 0) != c || !WIFEXITED(st))
		return 1 << 14;
	return WEXITSTATUS(st);
}

static int mode_all(void)
{
	/* epoll */
	int ep = epoll_create1(EPOLL_CLOEXEC);
	int e1 = eventfd(0, EFD_NONBLOCK);
	int e1b = dup(e1);
	int tf = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK);
	int e3 = eventfd(0, 0);
	int e4 = eventfd(0, EFD_NONBLOCK);
	int ep2 = epoll_create1(0);
	int e5 = eventfd(0, EFD_NONBLOCK);
	int e6 = eventfd(0, EFD_NONBLOCK);
	if (ep < 0 || e1 < 0 || e1b < 0 || tf < 0 || e3 < 0 || e4 < 0 || ep2 < 0 || e5 < 0 || e6 < 0)
		die("creating fds");
	struct itimerspec its = {{0, 100000000}, {0, 100000000}};
	if (timerfd_settime(tf, 0, &its, NULL) != 0)
		die("timerfd_settime");
	struct epoll_event ev;
#define ADD(e, fd, evs, d)                                                     \
	do {                                                                   \
		ev.events = (evs);                                             \
		ev.data.u64 = (d);                                             \
		if (epoll_ctl((e), EPOLL_CTL_ADD, (fd), &ev) != 0)             \
			die("epoll_ctl " #fd);                                 \
	} while (0)
	ADD(ep, e1, EPOLLIN, 0x1111222233334444ULL);
	ADD(ep, e1b, EPOLLOUT | EPOLLET, 0x22);
	ADD(ep, tf, EPOLLIN, 0x33);
	ADD(ep, e3, EPOLLOUT | EPOLLONESHOT, 0x44);
	ADD(ep, e4, EPOLLIN, 0x55);
	ADD(ep2, e5, EPOLLIN, 0x66);
	ADD(ep, ep2, EPOLLIN, 0x77);
	ADD(ep, e6, EPOLLIN | EPOLLEXCLUSIVE, 0x88);
	/* Disarm the one-shot entry (and take the edge-triggered one). */
	struct epoll_event out[16];
	if (epoll_wait(ep, out, 16, 0) < 1)
		die("epoll_wait to disarm");
	/* e4 lives on under another number only. */
	int e4b = fcntl(e4, F_DUPFD, 40);
	if (e4b < 0 || close(e4) != 0)
		die("moving e4");
	/* Stop the timer from here to the check, then restart it. */
	struct itimerspec off = {{0, 0}, {0, 0}};
	timerfd_settime(tf, 0, &off, NULL);
	uint64_t ticks;
	while (read(tf, &ticks, 8) == 8)
		;
	char before[4096];
	epoll_entries(ep, before, sizeof before);

	/* inotify */
	int in = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
	if (in < 0 || mkdir(in_dir("w1"), 0755) != 0 || mkdir(in_dir("w2"), 0755) != 0 ||
	    mkdir(in_dir("spare"), 0755) != 0)
		die("inotify set-up");
	int fw = open(in_dir("file"), O_WRONLY | O_CREAT | O_TRUNC, 0644);
	if (fw < 0)
		die("file");
	close(fw);
	int wd1 = inotify_add_watch(in, in_dir("w1"), IN_CREATE);
	int wd2 = inotify_add_watch(in, in_dir("spare"), IN_CREATE);
	inotify_rm_watch(in, wd2);
	int wd3 = inotify_add_watch(in, in_dir("w2"), IN_CREATE | IN_DELETE);
	int wd4 = inotify_add_watch(in, in_dir("file"), IN_MODIFY);
	if (wd1 != 1 || wd2 != 2 || wd3 != 3 || wd4 != 4)
		die("unexpected wds");
	char evbuf[4096];
	while (read(in, evbuf, sizeof evbuf) > 0)
		;
	char wds_before[256];
	inotify_wds(in, wds_before, sizeof wds_before);

	/* locks */
	int l1 = open(in_dir("lk1"), O_RDWR | O_CREAT, 0644);
	int l2 = open(in_dir("lk2"), O_RDWR | O_CREAT, 0644);
	int l3 = open(in_dir("lk3"), O_RDWR | O_CREAT, 0644);
	int l4 = open(in_dir("lk4"), O_RDONLY | O_CREAT, 0644);
	if (l1 < 0 || l2 < 0 || l3 < 0 || l4 < 0)
		die("lock files");
	if (flock(l1, LOCK_EX) != 0 || lock(l2, F_SETLK, F_WRLCK, 10, 10) != 0 ||
	    lock(l2, F_SETLK, F_RDLCK, 100, 0) != 0 || lock(l3, F_OFD_SETLK, F_WRLCK, 0, 10) != 0 ||
	    flock(l4, LOCK_SH) != 0)
		die("taking locks");
	int pre = run_child(1);
	if (pre != 0) {
		fprintf(stderr, "fd_watch: lock checks fail before the dump: %#x\n", pre);
		exit(1);
	}

	ready("");
	struct stat st;
	while (stat(in_dir("go"), &st) != 0)
		sleep_ms(20);

	/* epoll after restore */
	char after[4096];
	epoll_entries(ep, after, sizeof after);
	if (strcmp(before, after) != 0)
		fail("epoll entries differ: before {%s} after {%s}", before, after);
	bump(e1, "eventfd");
	bump(e4b, "moved eventfd");
	bump(e5, "inner eventfd");
	bump(e6, "exclusive eventfd");
	timerfd_settime(tf, 0, &its, NULL);
	sleep_ms(250);
	int n = epoll_wait(ep, out, 16, 1000);
	uint64_t want[] = {0x1111222233334444ULL, 0x33, 0x55, 0x77, 0x88};
	for (size_t w = 0; w < sizeof want / sizeof want[0]; w++) {
		int seen = 0;
		for (int i = 0; i < n; i++)
			if (out[i].data.u64 == want[w] && (out[i].events & EPOLLIN))
				seen = 1;
		if (!seen)
			fail("epoll_wait did not report data %#llx with EPOLLIN (%d events)",
			     (unsigned long long)want[w], n);
	}
	for (int i = 0; i < n; i++)
		if (out[i].data.u64 == 0x44)
			fail("the disarmed one-shot entry fired (events %#x)", out[i].events);
	n = epoll_wait(ep2, out, 16, 0);
	if (n != 1 || out[0].data.u64 != 0x66 || !(out[0].events & EPOLLIN))
		fail("the inner epoll reported %d events (first data %#llx)", n,
		     n > 0 ? (unsigned long long)out[0].data.u64 : 0ULL);

	/* inotify after restore */
	char wds_after[256];
	inotify_wds(in, wds_after, sizeof wds_after);
	if (strcmp(wds_before, wds_after) != 0)
		fail("inotify wds differ: before %s after %s", wds_before, wds_after);
	if (mkdir(in_dir("w1/new"), 0755) != 0 || mkdir(in_dir("w2/new"), 0755) != 0)
		fail("mkdir in watched dirs: %s", strerror(errno));
	fw = open(in_dir("file"), O_WRONLY | O_APPEND);
	if (fw < 0 || write(fw, "x", 1) != 1)
		fail("writing the watched file");
	if (fw >= 0)
		close(fw);
	sleep_ms(50);
	int got1 = 0, got3 = 0, got4 = 0;
	ssize_t len;
	while ((len = read(in, evbuf, sizeof evbuf)) > 0) {
		for (char *p = evbuf; p < evbuf + len;) {
			struct inotify_event *e = (struct inotify_event *)p;
			if (e->wd == 1 && (e->mask & IN_CREATE) && e->len && !strcmp(e->name, "new"))
				got1 = 1;
			else if (e->wd == 3 && (e->mask & IN_CREATE) && e->len &&
				 !strcmp(e->name, "new"))
				got3 = 1;
			else if (e->wd == 4 && (e->mask & IN_MODIFY))
				got4 = 1;
			else
				fail("unexpected inotify event wd %d mask %#x", e->wd, e->mask);
			p += sizeof *e + e->len;
		}
	}
	if (!got1 || !got3 || !got4)
		fail("inotify events missing: wd1 %d wd3 %d wd4 %d", got1, got3, got4);

	/* locks after restore */
	int held = run_child(1);
	if (held != 0)
		fail("lock checks while held failed: %#x", held);
	if (flock(l1, LOCK_UN) != 0 || lock(l2, F_SETLK, F_UNLCK, 0, 0) != 0 ||
	    lock(l3, F_OFD_SETLK, F_UNLCK, 0, 0) != 0 || flock(l4, LOCK_UN) != 0)
		fail("releasing the locks: %s", strerror(errno));
	int freed = run_child(0);
	if (freed != 0)
		fail("lock checks after release failed: %#x", freed);

	FILE *r = fopen(in_dir("result"), "w");
	if (!r)
		die("result");
	if (nfail)
		fprintf(r, "FAIL: %s\n", failures);
	else
		fputs("OK\n", r);
	fclose(r);
	return 0;
}

static _Noreturn void mode_closed(void)
{
	int ep = epoll_create1(0);
	int e = eventfd(0, 0);
	struct epoll_event ev = {.events = EPOLLIN, .data.u64 = 1};
	if (ep < 0 || e < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, e, &ev) != 0)
		die("epoll");
	int p[2];
	if (pipe(p) != 0)
		die("pipe");
	pid_t c = fork();
	if (c == 0) {
		pid_t g = fork();
		if (g == 0) {
			close(p[0]);
			close(p[1]);
			for (;;)
				pause();
		}
		if (write(p[1], &g, sizeof g) != sizeof g)
			_exit(1);
		_exit(0);
	}
	pid_t g = 0;
	if (c < 0 || read(p[0], &g, sizeof g) != sizeof g || waitpid(c, NULL, 0) != c)
		die("grandchild");
	close(p[0]);
	close(p[1]);
	close(e);
	char extra[32];
	snprintf(extra, sizeof extra, "%d\n", g);
	ready(extra);
	for (;;)
		pause();
}

static _Noreturn void mode_gone(void)
{
	int in = inotify_init1(IN_NONBLOCK);
	if (in < 0 || mkdir(in_dir("gone"), 0755) != 0)
		die("inotify");
	if (inotify_add_watch(in, in_dir("gone"), IN_CREATE) != 1)
		die("watch");
	int keep = open(in_dir("gone"), O_RDONLY | O_DIRECTORY);
	if (keep < 0 || rmdir(in_dir("gone")) != 0)
		die("rmdir");
	char buf[4096];
	sleep_ms(50);
	while (read(in, buf, sizeof buf) > 0)
		;
	ready("");
	for (;;)
		pause();
}

static _Noreturn void mode_pending(void)
{
	int in = inotify_init1(IN_NONBLOCK);
	if (in < 0 || mkdir(in_dir("p"), 0755) != 0)
		die("inotify");
	if (inotify_add_watch(in, in_dir("p"), IN_CREATE) != 1)
		die("watch");
	if (mkdir(in_dir("p/x"), 0755) != 0)
		die("mkdir p/x");
	ready("");
	for (;;)
		pause();
}

int main(int argc, char **argv)
{
	if (argc != 3) {
		fprintf(stderr, "usage: fd_watch DIR all|closed|gone|pending\n");
		return 2;
	}
	dir = argv[1];
	if (!strcmp(argv[2], "all"))
		return mode_all();
	if (!strcmp(argv[2], "closed"))
		mode_closed();
	if (!strcmp(argv[2], "gone"))
		mode_gone();
	if (!strcmp(argv[2], "pending"))
		mode_pending();
	return 2;
}
