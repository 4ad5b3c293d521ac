/*
 * listeners: holds unix sockets connected to nothing (a server's listening
 * sockets, a bound datagram socket, unbound ones), waits to be checkpointed
 * and restored, then checks them itself by using them.
 *
 * Usage: listeners DIR
 *
 * Set-up creates:
 *   fd 60  a SOCK_STREAM socket bound to DIR/srv.sock, listening (backlog
 *          17), O_NONBLOCK
 *   fd 61  a SOCK_SEQPACKET socket bound to the abstract name
 *          "ckpt-listeners-<pid at set-up>", listening (backlog 5)
 *   fd 62  a SOCK_DGRAM socket bound to DIR/dg.sock, SO_PASSCRED on
 *   fd 63  an unbound SOCK_DGRAM socket
 *   fd 64  an unbound SOCK_STREAM socket
 * writes "ready\n" to DIR/ready and waits (sleeping in short steps) until
 * DIR/go exists. Then checks: each socket's type and bound name
 * (getsockname), SO_ACCEPTCONN on 60 and 61 only, O_NONBLOCK on 60 only,
 * SO_PASSCRED on 62; fd 64 connects to DIR/srv.sock and 60 accepts it, and
 * bytes go both ways; a new seqpacket socket connects to the abstract name
 * and 61 accepts it; fd 63 sends a datagram to DIR/dg.sock and 62 receives
 * it. Writes "OK\n" or "FAIL: <what>; ...\n" to DIR/result and exits 0.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
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
	perror(what);
	exit(1);
}

/* An address for a path, or for an abstract name when abs is set. */
static socklen_t addr(struct sockaddr_un *a, const char *name, int abs)
{
	memset(a, 0, sizeof *a);
	a->sun_family = AF_UNIX;
	if (abs) {
		size_t n = strlen(name);
		memcpy(a->sun_path + 1, name, n);
		return (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + n);
	}
	snprintf(a->sun_path, sizeof a->sun_path, "%s", name);
	return (socklen_t)sizeof *a;
}

static void make(int want, int type, const char *name, int abs, int backlog)
{
	int s = socket(AF_UNIX, type, 0);
	if (s < 0)
		die("socket");
	if (name) {
		struct sockaddr_un a;
		socklen_t len = addr(&a, name, abs);
		if (bind(s, (struct sockaddr *)&a, len) != 0)
			die("bind");
	}
	if (backlog && listen(s, backlog) != 0)
		die("listen");
	if (dup2(s, want) != want)
		die("dup2");
	close(s);
}

static int sockopt(int fd, int opt)
{
	int v = -1;
	socklen_t l = sizeof v;
	if (getsockopt(fd, SOL_SOCKET, opt, &v, &l) != 0)
		return -1;
	return v;
}

static void expect_name(int fd, int type, const char *name, int abs)
{
	if (sockopt(fd, SO_TYPE) != type)
		fail("fd %d: type %d, want %d", fd, sockopt(fd, SO_TYPE), type);
	struct sockaddr_un got;
	socklen_t len = sizeof got;
	memset(&got, 0, sizeof got);
	if (getsockname(fd, (struct sockaddr *)&got, &len) != 0) {
		fail("fd %d: getsockname: %s", fd, strerror(errno));
		return;
	}
	if (!name) {
		if (len != sizeof(sa_family_t))
			fail("fd %d: bound (length %u), want unbound", fd, (unsigned)len);
		return;
	}
	struct sockaddr_un want;
	socklen_t wl = addr(&want, name, abs);
	size_t cmp = abs ? wl : offsetof(struct sockaddr_un, sun_path) + strlen(name);
	if ((abs && len != wl) || memcmp(&got, &want, cmp) != 0)
		fail("fd %d: bound to another name (%s)", fd, got.sun_path[0] ? got.sun_path : "@...");
}

/* Accept on listener l (waiting up to 2 s if it is non-blocking). */
static int accept_one(int l)
{
	struct pollfd p = {.fd = l, .events = POLLIN};
	if (poll(&p, 1, 2000) != 1)
		return -1;
	return accept4(l, NULL, NULL, SOCK_CLOEXEC);
}

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: listeners DIR\n");
		return 2;
	}
	close_range(3, ~0U, 0);
	const char *dir = argv[1];
	char ready[4096], go[4096], result[4096], srv[4096], dg[4096], abs[64];
	snprintf(ready, sizeof ready, "%s/ready", dir);
	snprintf(go, sizeof go, "%s/go", dir);
	snprintf(result, sizeof result, "%s/result", dir);
	snprintf(srv, sizeof srv, "%s/srv.sock", dir);
	snprintf(dg, sizeof dg, "%s/dg.sock", dir);
	snprintf(abs, sizeof abs, "ckpt-listeners-%d", (int)getpid());
	unlink(srv);
	unlink(dg);

	make(60, SOCK_STREAM, srv, 0, 17);
	if (fcntl(60, F_SETFL, O_NONBLOCK) != 0)
		die("O_NONBLOCK");
	make(61, SOCK_SEQPACKET, abs, 1, 5);
	make(62, SOCK_DGRAM, dg, 0, 0);
	int one = 1;
	if (setsockopt(62, SOL_SOCKET, SO_PASSCRED, &one, sizeof one) != 0)
		die("SO_PASSCRED");
	make(63, SOCK_DGRAM, NULL, 0, 0);
	make(64, SOCK_STREAM, NULL, 0, 0);

	FILE *r = fopen(ready, "w");
	if (!r || fputs("ready\n", r) < 0 || fclose(r) != 0)
		die("ready");
	struct stat st;
	while (stat(go, &st) != 0) {
		struct timespec ts = {0, 20000000};
		nanosleep(&ts, NULL);
	}

	expect_name(60, SOCK_STREAM, srv, 0);
	expect_name(61, SOCK_SEQPACKET, abs, 1);
	expect_name(62, SOCK_DGRAM, dg, 0);
	expect_name(63, SOCK_DGRAM, NULL, 0);
	expect_name(64, SOCK_STREAM, NULL, 0);
	for (int fd = 60; fd <= 64; fd++) {
		int want = fd == 60 || fd == 61;
		if (sockopt(fd, SO_ACCEPTCONN) != want)
			fail("fd %d: SO_ACCEPTCONN %d, want %d", fd, sockopt(fd, SO_ACCEPTCONN), want);
		int nb = (fcntl(fd, F_GETFL) & O_NONBLOCK) != 0;
		if (nb != (fd == 60))
			fail("fd %d: O_NONBLOCK %d", fd, nb);
	}
	if (sockopt(62, SO_PASSCRED) != 1)
		fail("fd 62: SO_PASSCRED lost");

	/* The stream server. */
	struct sockaddr_un a;
	socklen_t len = addr(&a, srv, 0);
	if (connect(64, (struct sockaddr *)&a, len) != 0) {
		fail("connect to %s: %s", srv, strerror(errno));
	} else {
		int c = accept_one(60);
		char buf[16];
		if (c < 0)
			fail("fd 60: accept: %s", strerror(errno));
		else if (write(64, "ping", 4) != 4 || read(c, buf, sizeof buf) != 4 ||
			 write(c, "pong", 4) != 4 || read(64, buf, sizeof buf) != 4 ||
			 memcmp(buf, "pong", 4) != 0)
			fail("stream server: no ping-pong");
		if (c >= 0)
			close(c);
	}
	/* The seqpacket server on the abstract name. */
	int q = socket(AF_UNIX, SOCK_SEQPACKET, 0);
	len = addr(&a, abs, 1);
	if (q < 0 || connect(q, (struct sockaddr *)&a, len) != 0) {
		fail("connect to @%s: %s", abs, strerror(errno));
	} else {
		int c = accept_one(61);
		char buf[16];
		if (c < 0 || send(q, "pkt", 3, 0) != 3 || recv(c, buf, sizeof buf, 0) != 3)
			fail("seqpacket server: no packet");
		if (c >= 0)
			close(c);
	}
	/* The datagram socket. */
	len = addr(&a, dg, 0);
	char buf[16];
	if (sendto(63, "dgram", 5, 0, (struct sockaddr *)&a, len) != 5)
		fail("sendto %s: %s", dg, strerror(errno));
	else if (recv(62, buf, sizeof buf, MSG_DONTWAIT) != 5 || memcmp(buf, "dgram", 5) != 0)
		fail("fd 62: no datagram");

	FILE *out = fopen(result, "w");
	if (!out)
		die("result");
	if (nfail)
		fprintf(out, "FAIL: %s\n", failures);
	else
		fputs("OK\n", out);
	fclose(out);
	return 0;
}
