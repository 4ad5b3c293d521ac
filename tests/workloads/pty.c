/*
 * pty: holds a pseudo-terminal pair of its own and checks, after it was
 * checkpointed and restored, that the pair is still one terminal with the
 * same settings and that it is still its controlling terminal.
 *
 * Usage: pty DIR [lost]
 *
 * Started in its own session (setsid, no controlling terminal). Set-up:
 * opens /dev/ptmx as fd 10 (the master) and its slave as fd 11 (read-write,
 * blocking) and again as fd 12 (read-write, O_NONBLOCK); puts the terminal
 * in raw mode with VMIN 1 and VTIME 0 and a window of 37 rows by 101
 * columns (5 by 7 pixels); makes the slave its controlling terminal
 * (TIOCSCTTY) with its own group in the foreground, and opens /dev/tty
 * as fd 13; turns packet mode on on
 * the master and exclusive mode on on the slave, whose permission bits it
 * sets to 0640. With "lost", it also
 * writes "unread" (6 bytes) to the master, which stay queued for the
 * slave. Writes "/dev/pts/N\n" (the slave's name) to DIR/before, "ready\n"
 * to DIR/ready and waits (sleeping in short steps) until DIR/go exists.
 *
 * Then checks: fds 10, 11, 12 are a master and two descriptions of its
 * slave (TIOCGPTN names the device of 11 and 12); 12 is still O_NONBLOCK
 * and 11 is not; the termios is the one set (every flag, the line and
 * every control character) and still raw; the window size is 37x101 (5x7);
 * packet mode and exclusive mode are on, the slave unlocked, its mode
 * 0640 and its owner the process's uid; the session
 * is its own (getsid(0) == getpid()) and the slave is its controlling
 * terminal: tcgetsid(11) == getpid(), tcgetpgrp(11) == getpgrp(), the
 * tty_nr of /proc/self/stat is the slave's device, and /dev/tty opens (once
 * exclusive mode is turned off: it refuses that open too) and is that
 * terminal; with "lost", nothing is queued for the slave any more
 * (the 6 bytes were not saved); "ping" written to the master is read on
 * the slave, and "pong" written to the slave is read on the master after
 * packet mode's data byte; so is "tty!" written to fd 13, which is /dev/tty
 * (5:0) and answers for the pty. Writes the slave's name now to DIR/after, then
 * "OK\n" or "FAIL: <what>; ...\n" to DIR/result and exits 0.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

static char failures[8192];
static int nfail;

static void fail(const char *fmt, ...)
{
	size_t used = strlen(failures);
	if (used + 4 >= sizeof failures)
		return;
	if (nfail++)
		strcat(failures, "; ");
	used = strlen(failures);
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(failures + used, sizeof failures - used, fmt, ap);
	va_end(ap);
}

static void die(const char *what)
{
	fprintf(stderr, "pty: %s: %s\n", what, strerror(errno));
	exit(1);
}

static void write_file(const char *path, const char *text)
{
	char tmp[4200];
	snprintf(tmp, sizeof tmp, "%s.tmp", path);
	FILE *f = fopen(tmp, "w");
	if (!f || fputs(text, f) < 0 || fclose(f) != 0 || rename(tmp, path) != 0)
		die(path);
}

/* Reads exactly `want` bytes from `fd` within two seconds. */
static int read_within(int fd, char *buf, size_t want)
{
	size_t got = 0;
	while (got < want) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		if (poll(&p, 1, 2000) != 1)
			return (int)got;
		ssize_t n = read(fd, buf + got, want - got);
		if (n <= 0)
			return (int)got;
		got += (size_t)n;
	}
	return (int)got;
}

static int get_int(int fd, unsigned long req)
{
	int v = -1;
	if (ioctl(fd, req, &v) != 0)
		return -1;
	return v;
}

int main(int argc, char **argv)
{
	if (argc < 2 || argc > 3 || (argc == 3 && strcmp(argv[2], "lost") != 0)) {
		fprintf(stderr, "usage: pty DIR [lost]\n");
		return 2;
	}
	const char *dir = argv[1];
	int lost = argc == 3;
	char ready[4096], go[4096], result[4096], before[4096], after[4096];
	snprintf(ready, sizeof ready, "%s/ready", dir);
	snprintf(go, sizeof go, "%s/go", dir);
	snprintf(result, sizeof result, "%s/result", dir);
	snprintf(before, sizeof before, "%s/before", dir);
	snprintf(after, sizeof after, "%s/after", dir);

	int m = posix_openpt(O_RDWR | O_NOCTTY);
	if (m < 0 || grantpt(m) != 0 || unlockpt(m) != 0)
		die("posix_openpt");
	char name[256];
	if (ptsname_r(m, name, sizeof name) != 0)
		die("ptsname");
	int s = open(name, O_RDWR | O_NOCTTY);
	int s2 = open(name, O_RDWR | O_NOCTTY | O_NONBLOCK);
	if (s < 0 || s2 < 0)
		die(name);
	if (dup2(m, 10) != 10 || dup2(s, 11) != 11 || dup2(s2, 12) != 12)
		die("dup2");
	close(m);
	close(s);
	close(s2);

	struct termios set;
	if (tcgetattr(11, &set) != 0)
		die("tcgetattr");
	cfmakeraw(&set);
	set.c_cc[VMIN] = 1;
	set.c_cc[VTIME] = 0;
	set.c_cc[VINTR] = 0x07; /* unusual, to be seen again */
	if (tcsetattr(11, TCSANOW, &set) != 0 || tcgetattr(11, &set) != 0)
		die("tcsetattr");
	struct winsize ws = { .ws_row = 37, .ws_col = 101, .ws_xpixel = 5, .ws_ypixel = 7 };
	if (ioctl(11, TIOCSWINSZ, &ws) != 0)
		die("TIOCSWINSZ");
	if (ioctl(11, TIOCSCTTY, 0) != 0)
		die("TIOCSCTTY");
	if (tcsetpgrp(11, getpgrp()) != 0)
		die("tcsetpgrp");
	int t13 = open("/dev/tty", O_RDWR);
	if (t13 < 0 || dup2(t13, 13) != 13)
		die("/dev/tty");
	close(t13);
	int one = 1;
	if (ioctl(10, TIOCPKT, &one) != 0)
		die("TIOCPKT");
	if (ioctl(11, TIOCEXCL) != 0)
		die("TIOCEXCL");
	if (fchmod(11, 0640) != 0)
		die("fchmod");
	if (lost && write(10, "unread", 6) != 6)
		die("write unread");
	char line[300];
	snprintf(line, sizeof line, "%s\n", name);
	write_file(before, line);
	write_file(ready, "ready\n");

	struct timespec step = { 0, 20 * 1000 * 1000 };
	while (access(go, F_OK) != 0)
		nanosleep(&step, NULL);

	/* The pair. */
	struct stat s11, s12, s10;
	if (fstat(10, &s10) != 0 || !S_ISCHR(s10.st_mode) || major(s10.st_rdev) != 5 ||
	    minor(s10.st_rdev) != 2)
		fail("fd 10 is not a pty master");
	int index = get_int(10, TIOCGPTN);
	if (fstat(11, &s11) != 0 || fstat(12, &s12) != 0)
		fail("fstat of the slaves: %s", strerror(errno));
	else {
		unsigned want_major = 136 + (unsigned)index / 256, want_minor = (unsigned)index % 256;
		if (index < 0 || major(s11.st_rdev) != want_major || minor(s11.st_rdev) != want_minor)
			fail("fd 11 (%u:%u) is not the slave of fd 10 (pts %d)", major(s11.st_rdev),
			     minor(s11.st_rdev), index);
		if (s12.st_rdev != s11.st_rdev)
			fail("fd 12 is not the same terminal as fd 11");
	}
	struct stat s13;
	if (fstat(13, &s13) != 0 || !S_ISCHR(s13.st_mode) || s13.st_rdev != makedev(5, 0))
		fail("fd 13 is not /dev/tty");
	else {
		struct winsize w13;
		if (ioctl(13, TIOCGWINSZ, &w13) != 0 || w13.ws_col != 101)
			fail("fd 13 (/dev/tty) is not the pty");
	}
	if ((s11.st_mode & 07777) != 0640)
		fail("the slave's mode is %o, not 640", s11.st_mode & 07777);
	if (s11.st_uid != getuid())
		fail("the slave belongs to uid %u", s11.st_uid);
	if (!(fcntl(12, F_GETFL) & O_NONBLOCK))
		fail("fd 12 lost O_NONBLOCK");
	if (fcntl(11, F_GETFL) & O_NONBLOCK)
		fail("fd 11 became O_NONBLOCK");
	if ((fcntl(11, F_GETFL) & O_ACCMODE) != O_RDWR || (fcntl(10, F_GETFL) & O_ACCMODE) != O_RDWR)
		fail("fds 10 and 11 are not read-write");
	char now[256];
	if (ptsname_r(10, now, sizeof now) != 0)
		fail("ptsname: %s", strerror(errno));

	/* The settings. */
	struct termios t;
	if (tcgetattr(11, &t) != 0)
		fail("tcgetattr: %s", strerror(errno));
	else {
		if (t.c_iflag != set.c_iflag || t.c_oflag != set.c_oflag || t.c_cflag != set.c_cflag ||
		    t.c_lflag != set.c_lflag || t.c_line != set.c_line)
			fail("termios flags %o %o %o %o, not %o %o %o %o", t.c_iflag, t.c_oflag,
			     t.c_cflag, t.c_lflag, set.c_iflag, set.c_oflag, set.c_cflag, set.c_lflag);
		if (memcmp(t.c_cc, set.c_cc, sizeof t.c_cc) != 0)
			fail("control characters differ (VINTR %#x)", t.c_cc[VINTR]);
		if (t.c_lflag & (ICANON | ECHO))
			fail("not raw any more");
		if (cfgetospeed(&t) != cfgetospeed(&set))
			fail("speed changed");
	}
	struct winsize w;
	if (ioctl(12, TIOCGWINSZ, &w) != 0)
		fail("TIOCGWINSZ: %s", strerror(errno));
	else if (w.ws_row != 37 || w.ws_col != 101 || w.ws_xpixel != 5 || w.ws_ypixel != 7)
		fail("window %ux%u (%ux%u), not 37x101 (5x7)", w.ws_row, w.ws_col, w.ws_xpixel,
		     w.ws_ypixel);
	if (get_int(10, TIOCGPKT) != 1)
		fail("packet mode is off");
	if (get_int(11, TIOCGEXCL) != 1)
		fail("the slave is not exclusive");
	if (get_int(10, TIOCGPTLCK) != 0)
		fail("the slave is locked");

	/* The controlling terminal. */
	if (getsid(0) != getpid())
		fail("getsid %d, not its own %d", getsid(0), getpid());
	if (tcgetsid(11) != getpid())
		fail("tcgetsid %d, not %d", tcgetsid(11), getpid());
	if (tcgetpgrp(11) != getpgrp())
		fail("foreground group %d, not %d", tcgetpgrp(11), getpgrp());
	FILE *st = fopen("/proc/self/stat", "r");
	char buf[1024] = "";
	if (!st || !fgets(buf, sizeof buf, st))
		fail("/proc/self/stat");
	if (st)
		fclose(st);
	char *rp = strrchr(buf, ')');
	int tty_nr = -1;
	if (rp)
		sscanf(rp + 2, "%*c %*d %*d %*d %d", &tty_nr);
	if ((dev_t)tty_nr != ((major(s11.st_rdev) << 8) | minor(s11.st_rdev)))
		fail("tty_nr %#x is not the slave", tty_nr);
	/* Exclusive mode refuses every new open, /dev/tty's too: off now. */
	if (ioctl(11, TIOCNXCL) != 0)
		fail("TIOCNXCL: %s", strerror(errno));
	int tty = open("/dev/tty", O_RDWR);
	if (tty < 0)
		fail("/dev/tty: %s", strerror(errno));
	else {
		struct winsize w2;
		if (ioctl(tty, TIOCGWINSZ, &w2) != 0 || w2.ws_col != 101)
			fail("/dev/tty is not the pty");
		close(tty);
	}

	/* Queued bytes: lost. */
	int inq = get_int(12, FIONREAD);
	if (inq != 0)
		fail("%d bytes queued for the slave after restore", inq);

	/* Data, both ways. */
	char in[16] = "";
	if (write(10, "ping", 4) != 4)
		fail("write to the master: %s", strerror(errno));
	else if (read_within(11, in, 4) != 4 || memcmp(in, "ping", 4) != 0)
		fail("the slave read %.4s, not ping", in);
	memset(in, 0, sizeof in);
	if (write(13, "tty!", 4) != 4)
		fail("write to /dev/tty (fd 13): %s", strerror(errno));
	else if (read_within(10, in, 5) != 5 || in[0] != 0 || memcmp(in + 1, "tty!", 4) != 0)
		fail("the master read %#x %.4s from fd 13, not 0 tty!", in[0], in + 1);
	memset(in, 0, sizeof in);
	if (write(11, "pong", 4) != 4)
		fail("write to the slave: %s", strerror(errno));
	else if (read_within(10, in, 5) != 5 || in[0] != 0 || memcmp(in + 1, "pong", 4) != 0)
		fail("the master read %#x %.4s, not 0 pong", in[0], in + 1);

	snprintf(line, sizeof line, "%s\n", now);
	write_file(after, line);
	char out[sizeof failures + 16];
	if (nfail)
		snprintf(out, sizeof out, "FAIL: %s\n", failures);
	else
		snprintf(out, sizeof out, "OK\n");
	write_file(result, out);
	return 0;
}
