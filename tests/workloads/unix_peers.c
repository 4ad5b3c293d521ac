/*
 * unix_peers: holds unix sockets connected to each other by name inside
 * the process, waits to be checkpointed and restored, then checks them
 * itself by using them.
 *
 * Usage: unix_peers DIR   (run with DIR as the working directory; with
 * UNIX_PEERS_CHDIR set, it moves there after binding rel.sock; with
 * UNIX_PEERS_EARLY_DATA set, fd 80 writes "early" before it is accepted)
 *
 * Set-up creates:
 *   fd 70  a SOCK_DGRAM server bound to DIR/srv.dg
 *   fd 71  a SOCK_DGRAM client bound to DIR/cl.dg, connected to 70
 *   fd 72  an unbound SOCK_DGRAM client, connected to 70
 *   fd 73  a SOCK_DGRAM server bound to the abstract "ckpt-peers-<pid>"
 *   fd 74  an unbound SOCK_DGRAM client connected to 73
 *   fd 75  a SOCK_DGRAM socket bound to DIR/self.dg and connected to itself
 *   fd 76  a SOCK_STREAM socket bound to the relative name "rel.sock" (in
 *          DIR), listening (backlog 7)
 *   fd 77  a SOCK_STREAM listener bound to DIR/lsn.sock (backlog 9), its
 *          socket file given mode 0640
 *   fd 78  a SOCK_STREAM client connected to 77 and accepted as fd 79
 *   fd 80  a SOCK_STREAM client connected to 77, not accepted yet
 *   fd 69  a SOCK_STREAM client connected to 77 after 80, not accepted yet
 * and queues: on 70 "one" from 71, "two" from 72, "three" from 71; on 73
 * "abs" from 74; on 75 "me" from itself. Writes "ready\n" to DIR/ready and
 * waits until DIR/go exists. Then checks: 70 receives one, two, three in
 * order, from DIR/cl.dg, unbound, DIR/cl.dg; 73 receives "abs"; 75 "me";
 * every client's peer name is its server's (getpeername) and a send
 * without an address reaches it; getsockname of 76 is "rel.sock" and a
 * new socket connects to the relative name "rel.sock" and 76 accepts it;
 * 77 accepts a connection whose bytes come from 80, then one from 69 (the
 * order they connected in, not their fd order), then none; 78 and 79 still talk;
 * DIR/lsn.sock has mode 0640. Writes "OK\n" or "FAIL: <what>; ...\n" to
 * DIR/result and exits 0.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
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

static socklen_t addr_of(struct sockaddr_un *a, const char *name)
{
	memset(a, 0, sizeof *a);
	a->sun_family = AF_UNIX;
	if (name[0] == '@') {
		memcpy(a->sun_path + 1, name + 1, strlen(name) - 1);
		return offsetof(struct sockaddr_un, sun_path) + strlen(name);
	}
	strncpy(a->sun_path, name, sizeof a->sun_path - 1);
	return offsetof(struct sockaddr_un, sun_path) + strlen(name) + 1;
}

static void at(int fd, int want)
{
	if (fd != want && (dup2(fd, want) != want || close(fd) != 0))
		die("dup2");
}

static int sock_at(int type, int want)
{
	int fd = socket(AF_UNIX, type, 0);
	if (fd < 0)
		die("socket");
	at(fd, want);
	return want;
}

static void bind_to(int fd, const char *name)
{
	struct sockaddr_un a;
	socklen_t l = addr_of(&a, name);
	if (bind(fd, (struct sockaddr *)&a, l) != 0)
		die(name);
}

static int connect_to(int fd, const char *name)
{
	struct sockaddr_un a;
	socklen_t l = addr_of(&a, name);
	return connect(fd, (struct sockaddr *)&a, l);
}

/* The name getsockname/getpeername/recvfrom gave ("" if unbound). */
static void name_of(struct sockaddr_un *a, socklen_t l, char *out, size_t n)
{
	size_t len = l > offsetof(struct sockaddr_un, sun_path) ? l - offsetof(struct sockaddr_un, sun_path) : 0;
	if (len == 0) {
		out[0] = 0;
		return;
	}
	if (a->sun_path[0] == 0) {
		snprintf(out, n, "@%.*s", (int)len - 1, a->sun_path + 1);
		return;
	}
	snprintf(out, n, "%.*s", (int)strnlen(a->sun_path, len), a->sun_path);
}

static void expect_dgram(int fd, const char *what, const char *data, const char *from)
{
	char buf[256], name[256];
	struct sockaddr_un a;
	socklen_t l = sizeof a;
	ssize_t n = recvfrom(fd, buf, sizeof buf - 1, MSG_DONTWAIT, (struct sockaddr *)&a, &l);
	if (n < 0) {
		fail("%s: no datagram %s (%s)", what, data, strerror(errno));
		return;
	}
	buf[n] = 0;
	name_of(&a, l, name, sizeof name);
	if (strcmp(buf, data) != 0)
		fail("%s: got %s, not %s", what, buf, data);
	if (from && strcmp(name, from) != 0)
		fail("%s: %s came from '%s', not '%s'", what, data, name, from);
}

static void expect_peer(int fd, const char *what, const char *peer)
{
	char name[256];
	struct sockaddr_un a;
	socklen_t l = sizeof a;
	if (getpeername(fd, (struct sockaddr *)&a, &l) != 0) {
		fail("%s: not connected (%s)", what, strerror(errno));
		return;
	}
	name_of(&a, l, name, sizeof name);
	if (strcmp(name, peer) != 0)
		fail("%s: connected to '%s', not '%s'", what, name, peer);
}

static void expect_stream(int from, int to, const char *what)
{
	char buf[64] = { 0 };
	if (write(from, what, strlen(what)) != (ssize_t)strlen(what)) {
		fail("%s: write (%s)", what, strerror(errno));
		return;
	}
	if (read(to, buf, sizeof buf - 1) != (ssize_t)strlen(what) || strcmp(buf, what) != 0)
		fail("%s: read '%s'", what, buf);
}

int main(int argc, char **argv)
{
	if (argc != 2)
		return 2;
	const char *dir = argv[1];
	char ready[4096], go[4096], result[4096], srv[4096], cl[4096], self[4096], lsn[4096], abs[64];
	snprintf(ready, sizeof ready, "%s/ready", dir);
	snprintf(go, sizeof go, "%s/go", dir);
	snprintf(result, sizeof result, "%s/result", dir);
	snprintf(srv, sizeof srv, "%s/srv.dg", dir);
	snprintf(cl, sizeof cl, "%s/cl.dg", dir);
	snprintf(self, sizeof self, "%s/self.dg", dir);
	snprintf(lsn, sizeof lsn, "%s/lsn.sock", dir);
	snprintf(abs, sizeof abs, "@ckpt-peers-%d", (int)getpid());

	sock_at(SOCK_DGRAM, 70);
	bind_to(70, srv);
	sock_at(SOCK_DGRAM, 71);
	bind_to(71, cl);
	if (connect_to(71, srv) != 0)
		die("connect 71");
	sock_at(SOCK_DGRAM, 72);
	if (connect_to(72, srv) != 0)
		die("connect 72");
	sock_at(SOCK_DGRAM, 73);
	bind_to(73, abs);
	sock_at(SOCK_DGRAM, 74);
	if (connect_to(74, abs) != 0)
		die("connect 74");
	sock_at(SOCK_DGRAM, 75);
	bind_to(75, self);
	if (connect_to(75, self) != 0)
		die("connect 75");
	sock_at(SOCK_STREAM, 76);
	bind_to(76, "rel.sock");
	if (listen(76, 7) != 0)
		die("listen 76");
	/* For the test of a relative name bound elsewhere. */
	const char *cd = getenv("UNIX_PEERS_CHDIR");
	if (cd && chdir(cd) != 0)
		die("chdir");
	sock_at(SOCK_STREAM, 77);
	bind_to(77, lsn);
	if (chmod(lsn, 0640) != 0)
		die("chmod");
	if (listen(77, 9) != 0)
		die("listen 77");
	sock_at(SOCK_STREAM, 78);
	if (connect_to(78, lsn) != 0)
		die("connect 78");
	int acc = accept(77, NULL, NULL);
	if (acc < 0)
		die("accept");
	at(acc, 79);
	sock_at(SOCK_STREAM, 80);
	if (connect_to(80, lsn) != 0)
		die("connect 80");
	sock_at(SOCK_STREAM, 69);
	if (connect_to(69, lsn) != 0)
		die("connect 69");
	/* For the test of a waiting connection that already sent data. */
	if (getenv("UNIX_PEERS_EARLY_DATA") && write(80, "early", 5) != 5)
		die("write 80");
	if (send(71, "one", 4, 0) != 4 || send(72, "two", 4, 0) != 4 || send(71, "three", 6, 0) != 6 ||
	    send(74, "abs", 4, 0) != 4 || send(75, "me", 3, 0) != 3)
		die("send");

	FILE *r = fopen(ready, "w");
	if (!r || fputs("ready\n", r) < 0 || fclose(r) != 0)
		die("ready");
	struct stat st;
	while (stat(go, &st) != 0) {
		struct timespec ts = { 0, 20 * 1000 * 1000 };
		nanosleep(&ts, NULL);
	}

	expect_dgram(70, "srv.dg", "one", cl);
	expect_dgram(70, "srv.dg", "two", "");
	expect_dgram(70, "srv.dg", "three", cl);
	expect_dgram(73, "abstract", "abs", "");
	expect_dgram(75, "self.dg", "me", self);
	expect_peer(71, "fd 71", srv);
	expect_peer(72, "fd 72", srv);
	expect_peer(74, "fd 74", abs);
	expect_peer(75, "fd 75", self);
	if (send(72, "again", 6, 0) != 6)
		fail("fd 72: send (%s)", strerror(errno));
	expect_dgram(70, "srv.dg after restore", "again", "");
	if (send(74, "again", 6, 0) != 6)
		fail("fd 74: send (%s)", strerror(errno));
	expect_dgram(73, "abstract after restore", "again", "");
	if (send(75, "again", 6, 0) != 6)
		fail("fd 75: send (%s)", strerror(errno));
	expect_dgram(75, "self.dg after restore", "again", self);

	{
		char name[256];
		struct sockaddr_un a;
		socklen_t l = sizeof a;
		if (getsockname(76, (struct sockaddr *)&a, &l) != 0)
			fail("fd 76: getsockname (%s)", strerror(errno));
		name_of(&a, l, name, sizeof name);
		if (strcmp(name, "rel.sock") != 0)
			fail("fd 76: bound to '%s', not rel.sock", name);
		int c = socket(AF_UNIX, SOCK_STREAM, 0);
		if (c < 0 || connect_to(c, "rel.sock") != 0) {
			fail("connecting to rel.sock (%s)", strerror(errno));
		} else {
			int s = accept(76, NULL, NULL);
			if (s < 0)
				fail("fd 76: accept (%s)", strerror(errno));
			else
				expect_stream(c, s, "rel");
		}
	}
	{
		fcntl(77, F_SETFL, O_NONBLOCK);
		int s = accept4(77, NULL, NULL, SOCK_NONBLOCK);
		fcntl(77, F_SETFL, 0);
		if (s < 0) {
			fail("fd 77: no connection waiting (%s)", strerror(errno));
		} else {
			expect_stream(80, s, "pending");
			expect_stream(s, 80, "pending back");
			fcntl(77, F_SETFL, O_NONBLOCK);
			int t = accept4(77, NULL, NULL, SOCK_NONBLOCK);
			if (t < 0) {
				fail("fd 77: no second connection waiting (%s)", strerror(errno));
			} else {
				expect_stream(69, t, "second pending");
				expect_stream(t, 69, "second pending back");
			}
			t = accept4(77, NULL, NULL, SOCK_NONBLOCK);
			if (t >= 0 || errno != EAGAIN)
				fail("fd 77: a third connection was waiting");
		}
		expect_stream(78, 79, "accepted");
		expect_stream(79, 78, "accepted back");
		if (stat(lsn, &st) != 0 || (st.st_mode & 07777) != 0640 || !S_ISSOCK(st.st_mode))
			fail("lsn.sock: mode %o, not a socket of mode 0640", st.st_mode);
	}

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
