/*
 * inet: a server's TCP and UDP sockets (IPv4 and IPv6), held while it is
 * checkpointed and restored, then checked by the workload itself and used
 * by the test from outside.
 *
 * Usage: inet DIR [PORT]
 *
 * Set-up creates (every port chosen by the kernel):
 *   fd 10  TCP listener on 127.0.0.1 (on PORT when given), backlog 7, SO_REUSEADDR, SO_KEEPALIVE,
 *          TCP_NODELAY, SO_RCVBUF set to 50000, O_NONBLOCK
 *   fd 11  TCP listener on [::1], IPV6_V6ONLY on, SO_REUSEPORT, backlog 3,
 *          close-on-exec
 *   fd 12  TCP listener on [::] with IPV6_V6ONLY off (dual stack),
 *          TCP_DEFER_ACCEPT 5, backlog 5
 *   fd 13  UDP socket bound to 127.0.0.1, SO_BROADCAST
 *   fd 14  UDP socket bound to [::1], connected to fd 15's address
 *   fd 15  UDP socket bound to [::1]
 *   fd 16  TCP socket, unbound
 *   fd 17  TCP socket bound to 127.0.0.1, not listening
 * writes "ready\n<port 10> <port 11> <port 12> <port 13>\n" to DIR/ready
 * and waits (sleeping in short steps) until DIR/go exists.
 *
 * Then checks: each socket's family, type, address and port
 * (getsockname) and peer (getpeername) against what set-up recorded in
 * memory, SO_ACCEPTCONN on 10-12 only, the options read back at set-up
 * (SO_REUSEADDR, SO_REUSEPORT, SO_KEEPALIVE, SO_BROADCAST, IPV6_V6ONLY,
 * TCP_NODELAY, TCP_DEFER_ACCEPT, SO_RCVBUF), O_NONBLOCK on 10 only,
 * FD_CLOEXEC on 11 only. Then serves: accepts one connection on each of
 * 10, 11 and 12 (within 10 s each; the test connects to 12 over IPv4),
 * reads a line and writes it back; receives one datagram on 13 (the first
 * one it gets must be "late": one sent before the dump is not kept) and
 * answers "pong" to its sender; 15 sends to 14, which receives it, and 14
 * sends (no address) to its peer 15. Writes "OK\n" or "FAIL: <what>; ...\n"
 * to DIR/result and exits 0.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
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

static int getopt_int(int fd, int level, int opt)
{
	int v = -1;
	socklen_t l = sizeof v;
	if (getsockopt(fd, level, opt, &v, &l) != 0)
		return -1;
	return v;
}

static void setopt(int fd, int level, int opt, int v, const char *what)
{
	if (setsockopt(fd, level, opt, &v, sizeof v) != 0)
		die(what);
}

/* Addresses recorded at set-up, kept in memory across the checkpoint. */
static struct sockaddr_storage name[18], peer[18];
static socklen_t namelen[18], peerlen[18];

/* The options checked, as read back at set-up. */
struct opt {
	int fd, level, opt;
	const char *what;
	int want;
};
static struct opt opts[] = {
	{10, SOL_SOCKET, SO_REUSEADDR, "SO_REUSEADDR", 0},
	{10, SOL_SOCKET, SO_KEEPALIVE, "SO_KEEPALIVE", 0},
	{10, IPPROTO_TCP, TCP_NODELAY, "TCP_NODELAY", 0},
	{10, SOL_SOCKET, SO_RCVBUF, "SO_RCVBUF", 0},
	{10, SOL_SOCKET, SO_REUSEPORT, "SO_REUSEPORT", 0},
	{11, SOL_SOCKET, SO_REUSEPORT, "SO_REUSEPORT", 0},
	{11, IPPROTO_IPV6, IPV6_V6ONLY, "IPV6_V6ONLY", 0},
	{11, SOL_SOCKET, SO_REUSEADDR, "SO_REUSEADDR", 0},
	{12, IPPROTO_IPV6, IPV6_V6ONLY, "IPV6_V6ONLY", 0},
	{12, IPPROTO_TCP, TCP_DEFER_ACCEPT, "TCP_DEFER_ACCEPT", 0},
	{12, IPPROTO_TCP, TCP_NODELAY, "TCP_NODELAY", 0},
	{13, SOL_SOCKET, SO_BROADCAST, "SO_BROADCAST", 0},
	{14, SOL_SOCKET, SO_BROADCAST, "SO_BROADCAST", 0},
	{14, IPPROTO_IPV6, IPV6_V6ONLY, "IPV6_V6ONLY", 0},
	{17, SOL_SOCKET, SO_RCVBUF, "SO_RCVBUF", 0},
};
#define NOPTS (sizeof opts / sizeof opts[0])

static void make(int want, int family, int type)
{
	int s = socket(family, type, 0);
	if (s < 0)
		die("socket");
	if (dup2(s, want) != want)
		die("dup2");
	close(s);
}

static void bind_port(int fd, int family, const char *ip, int port)
{
	struct sockaddr_storage a;
	memset(&a, 0, sizeof a);
	socklen_t len;
	if (family == AF_INET) {
		struct sockaddr_in *v4 = (struct sockaddr_in *)&a;
		v4->sin_family = AF_INET;
		if (inet_pton(AF_INET, ip, &v4->sin_addr) != 1)
			die("inet_pton");
		v4->sin_port = htons((unsigned short)port);
		len = sizeof *v4;
	} else {
		struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)&a;
		v6->sin6_family = AF_INET6;
		if (inet_pton(AF_INET6, ip, &v6->sin6_addr) != 1)
			die("inet_pton6");
		len = sizeof *v6;
	}
	if (bind(fd, (struct sockaddr *)&a, len) != 0)
		die("bind");
}

static void bind_to(int fd, int family, const char *ip)
{
	bind_port(fd, family, ip, 0);
}

static int port_of(int fd)
{
	struct sockaddr_storage a;
	socklen_t l = sizeof a;
	if (getsockname(fd, (struct sockaddr *)&a, &l) != 0)
		return -1;
	if (a.ss_family == AF_INET)
		return ntohs(((struct sockaddr_in *)&a)->sin_port);
	return ntohs(((struct sockaddr_in6 *)&a)->sin6_port);
}

static void record(int fd)
{
	namelen[fd] = sizeof name[fd];
	if (getsockname(fd, (struct sockaddr *)&name[fd], &namelen[fd]) != 0)
		die("getsockname");
	peerlen[fd] = sizeof peer[fd];
	if (getpeername(fd, (struct sockaddr *)&peer[fd], &peerlen[fd]) != 0)
		peerlen[fd] = 0;
}

static void expect_same(int fd)
{
	struct sockaddr_storage a;
	socklen_t l = sizeof a;
	if (getsockname(fd, (struct sockaddr *)&a, &l) != 0)
		fail("fd %d: getsockname: %s", fd, strerror(errno));
	else if (l != namelen[fd] || memcmp(&a, &name[fd], l) != 0)
		fail("fd %d: bound to another address or port (port %d)", fd, port_of(fd));
	l = sizeof a;
	if (getpeername(fd, (struct sockaddr *)&a, &l) != 0)
		l = 0;
	if (l != peerlen[fd] || memcmp(&a, &peer[fd], l) != 0)
		fail("fd %d: another peer (length %u, want %u)", fd, (unsigned)l,
		     (unsigned)peerlen[fd]);
}

/* Wait up to ms for fd to be readable. */
static int readable(int fd, int ms)
{
	struct pollfd p = {.fd = fd, .events = POLLIN};
	return poll(&p, 1, ms) == 1;
}

static void echo_one(int l)
{
	if (!readable(l, 10000)) {
		fail("fd %d: no connection to accept", l);
		return;
	}
	int c = accept4(l, NULL, NULL, SOCK_CLOEXEC);
	if (c < 0) {
		fail("fd %d: accept: %s", l, strerror(errno));
		return;
	}
	char buf[256];
	size_t got = 0;
	while (got < sizeof buf && readable(c, 5000)) {
		ssize_t n = read(c, buf + got, sizeof buf - got);
		if (n <= 0)
			break;
		got += (size_t)n;
		if (memchr(buf, '\n', got))
			break;
	}
	if (got == 0 || !memchr(buf, '\n', got))
		fail("fd %d: no line from the client", l);
	else if (write(c, buf, got) != (ssize_t)got)
		fail("fd %d: echo: %s", l, strerror(errno));
	close(c);
}

int main(int argc, char **argv)
{
	if (argc != 2 && argc != 3) {
		fprintf(stderr, "usage: inet DIR [PORT]\n");
		return 2;
	}
	close_range(3, ~0U, 0);
	const char *dir = argv[1];
	char ready[4096], go[4096], result[4096];
	snprintf(ready, sizeof ready, "%s/ready", dir);
	snprintf(go, sizeof go, "%s/go", dir);
	snprintf(result, sizeof result, "%s/result", dir);

	make(10, AF_INET, SOCK_STREAM);
	setopt(10, SOL_SOCKET, SO_REUSEADDR, 1, "SO_REUSEADDR");
	setopt(10, SOL_SOCKET, SO_KEEPALIVE, 1, "SO_KEEPALIVE");
	setopt(10, IPPROTO_TCP, TCP_NODELAY, 1, "TCP_NODELAY");
	setopt(10, SOL_SOCKET, SO_RCVBUF, 50000, "SO_RCVBUF");
	bind_port(10, AF_INET, "127.0.0.1", argc == 3 ? atoi(argv[2]) : 0);
	if (listen(10, 7) != 0 || fcntl(10, F_SETFL, O_NONBLOCK) != 0)
		die("listen 10");

	make(11, AF_INET6, SOCK_STREAM);
	setopt(11, IPPROTO_IPV6, IPV6_V6ONLY, 1, "IPV6_V6ONLY");
	setopt(11, SOL_SOCKET, SO_REUSEPORT, 1, "SO_REUSEPORT");
	bind_to(11, AF_INET6, "::1");
	if (listen(11, 3) != 0 || fcntl(11, F_SETFD, FD_CLOEXEC) != 0)
		die("listen 11");

	make(12, AF_INET6, SOCK_STREAM);
	setopt(12, IPPROTO_IPV6, IPV6_V6ONLY, 0, "IPV6_V6ONLY off");
	setopt(12, IPPROTO_TCP, TCP_DEFER_ACCEPT, 5, "TCP_DEFER_ACCEPT");
	bind_to(12, AF_INET6, "::");
	if (listen(12, 5) != 0)
		die("listen 12");

	make(13, AF_INET, SOCK_DGRAM);
	setopt(13, SOL_SOCKET, SO_BROADCAST, 1, "SO_BROADCAST");
	bind_to(13, AF_INET, "127.0.0.1");

	make(14, AF_INET6, SOCK_DGRAM);
	make(15, AF_INET6, SOCK_DGRAM);
	bind_to(14, AF_INET6, "::1");
	bind_to(15, AF_INET6, "::1");
	{
		struct sockaddr_storage a;
		socklen_t l = sizeof a;
		if (getsockname(15, (struct sockaddr *)&a, &l) != 0 ||
		    connect(14, (struct sockaddr *)&a, l) != 0)
			die("connect 14");
	}

	make(16, AF_INET, SOCK_STREAM);
	make(17, AF_INET, SOCK_STREAM);
	bind_to(17, AF_INET, "127.0.0.1");

	for (int fd = 10; fd <= 17; fd++)
		record(fd);
	for (size_t i = 0; i < NOPTS; i++)
		opts[i].want = getopt_int(opts[i].fd, opts[i].level, opts[i].opt);
	int type[18];
	for (int fd = 10; fd <= 17; fd++)
		type[fd] = getopt_int(fd, SOL_SOCKET, SO_TYPE);

	FILE *r = fopen(ready, "w");
	if (!r || fprintf(r, "ready\n%d %d %d %d\n", port_of(10), port_of(11), port_of(12),
			  port_of(13)) < 0 ||
	    fclose(r) != 0)
		die("ready");
	struct stat st;
	while (stat(go, &st) != 0) {
		struct timespec ts = {0, 20000000};
		nanosleep(&ts, NULL);
	}

	for (int fd = 10; fd <= 17; fd++) {
		expect_same(fd);
		if (getopt_int(fd, SOL_SOCKET, SO_TYPE) != type[fd])
			fail("fd %d: type %d, want %d", fd, getopt_int(fd, SOL_SOCKET, SO_TYPE),
			     type[fd]);
		int want = fd >= 10 && fd <= 12;
		if (type[fd] == SOCK_STREAM && getopt_int(fd, SOL_SOCKET, SO_ACCEPTCONN) != want)
			fail("fd %d: SO_ACCEPTCONN %d, want %d", fd,
			     getopt_int(fd, SOL_SOCKET, SO_ACCEPTCONN), want);
		int nb = (fcntl(fd, F_GETFL) & O_NONBLOCK) != 0;
		if (nb != (fd == 10))
			fail("fd %d: O_NONBLOCK %d", fd, nb);
		int ce = (fcntl(fd, F_GETFD) & FD_CLOEXEC) != 0;
		if (ce != (fd == 11))
			fail("fd %d: FD_CLOEXEC %d", fd, ce);
	}
	if (port_of(16) != 0)
		fail("fd 16: bound to port %d, want unbound", port_of(16));
	for (size_t i = 0; i < NOPTS; i++) {
		int got = getopt_int(opts[i].fd, opts[i].level, opts[i].opt);
		if (got != opts[i].want)
			fail("fd %d: %s %d, want %d", opts[i].fd, opts[i].what, got, opts[i].want);
	}

	echo_one(10);
	echo_one(11);
	echo_one(12);

	/* UDP from the test: the first datagram must be the one sent after
	 * the restore. */
	char buf[256];
	struct sockaddr_storage from;
	socklen_t fl = sizeof from;
	if (!readable(13, 10000)) {
		fail("fd 13: no datagram");
	} else {
		ssize_t n = recvfrom(13, buf, sizeof buf, 0, (struct sockaddr *)&from, &fl);
		if (n != 4 || memcmp(buf, "late", 4) != 0)
			fail("fd 13: first datagram %.*s, want late", n > 0 ? (int)n : 0, buf);
		else if (sendto(13, "pong", 4, 0, (struct sockaddr *)&from, fl) != 4)
			fail("fd 13: answer: %s", strerror(errno));
	}
	/* The connected pair 14 -> 15 and back. */
	if (sendto(15, "to14", 4, 0, (struct sockaddr *)&name[14], namelen[14]) != 4)
		fail("fd 15: sendto: %s", strerror(errno));
	else if (!readable(14, 5000) || recv(14, buf, sizeof buf, 0) != 4 ||
		 memcmp(buf, "to14", 4) != 0)
		fail("fd 14: no datagram from its peer");
	if (send(14, "to15", 4, 0) != 4)
		fail("fd 14: send to its peer: %s", strerror(errno));
	else if (!readable(15, 5000) || recv(15, buf, sizeof buf, 0) != 4 ||
		 memcmp(buf, "to15", 4) != 0)
		fail("fd 15: no datagram from 14");

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
