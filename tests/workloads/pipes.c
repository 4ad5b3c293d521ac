/*
 * pipes: holds pipes, a FIFO and unix socket pairs with unread data, waits
 * to be checkpointed and restored, then checks them itself.
 *
 * Usage: pipes DIR
 *
 * Set-up creates everything below, writes "ready\n" to DIR/ready and waits
 * (sleeping in short steps) until DIR/go exists. Then it checks everything
 * and writes "OK\n" or "FAIL: <what>; <what>...\n" to DIR/result, and
 * exits 0.
 *
 * What it sets up and later checks:
 *   big      a pipe sized 256 KiB holding 200000 bytes of a pattern; read
 *            end O_NONBLOCK on fd 40 and dup'ed on fd 41 (one description:
 *            clearing O_NONBLOCK through 41 clears it on 40), write end
 *            blocking on fd 42: the size, the flags, every byte in order,
 *            then EAGAIN; then more written and read back
 *   eof      the read end of a pipe whose write end was closed after
 *            "tail": reads "tail", then end of file
 *   packet   an O_DIRECT (packet-mode) pipe holding packets "ab" and
 *            "cde": read back as two packets, still packet mode (two more
 *            writes read back as two packets)
 *   fifo     DIR/fifo opened for reading (fd 44) and writing (fd 45)
 *            holding "fifo-data": read back, then more written and read
 *   stream   a SOCK_STREAM socketpair (fds 50, 51): "stream-A" queued for
 *            51 and 5000 pattern bytes for 50; 50 shut down for writing; 51
 *            O_NONBLOCK. 51 reads "stream-A" then end of file; 50 reads
 *            the 5000 bytes, then what 51 sends after restore; 50 cannot
 *            send (EPIPE)
 *   dgram    a SOCK_DGRAM socketpair (fds 52, 53): three datagrams of 9,
 *            10 and 70000 bytes queued for 53, "back" for 52; each read
 *            back whole, in order, then EAGAIN
 *   seqpkt   a SOCK_SEQPACKET socketpair (fds 54, 55) with SO_PASSCRED on
 *            55: "p-one", "p-two-2" queued for 55, boundaries kept, the
 *            option still set
 *   orphan   a SOCK_STREAM socketpair whose other end sent "orphan-data"
 *            and was closed (fd 56): reads "orphan-data", then end of
 *            file; sending fails with EPIPE
 *   dgorphan a SOCK_DGRAM socketpair whose other end sent "dg-orphan" and
 *            was closed (fd 57): the datagram read back, then EAGAIN;
 *            sending fails
 *   reopen   a pipe holding 6000 pattern bytes whose ends were each opened
 *            a second time through /proc/self/fd: read end fd 60
 *            (blocking) and fd 61 (its reopen, O_NONBLOCK), write end fd 62
 *            (O_NONBLOCK) and fd 63 (its reopen, blocking). Each keeps its
 *            own flags (two descriptions: changing 61's leaves 60's), the
 *            bytes are there once (read through 61, then EAGAIN), and all
 *            four are the one pipe (63 writes what 60 reads, 62 what 61
 *            reads)
 *   fifo2    DIR/fifo2 opened O_RDWR (fd 64) and again O_RDONLY|O_NONBLOCK
 *            (fd 65), holding "f2-data" written through 64: read back once
 *            through 65, then EAGAIN; more written through 64, read on 65
 *   every socket's SO_PEEK_OFF is -1 (off), as set-up left it: a dump
 *   peeks at its queue and must put the peek offset back
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define BIG 200000
#define BIGSZ (256 * 1024)
#define STREAMB 5000
#define DGBIG 70000
#define REOPEN 6000

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
	perror(what);
	exit(1);
}

static unsigned char pat(size_t i, unsigned seed)
{
	return (unsigned char)((i * 31 + seed) ^ (i >> 8));
}

static void put(int want, int fd)
{
	if (dup2(fd, want) != want)
		die("dup2");
	close(fd);
}

static void write_all(int fd, const void *b, size_t n)
{
	const char *p = b;
	while (n) {
		ssize_t w = write(fd, p, n);
		if (w <= 0)
			die("write");
		p += w;
		n -= (size_t)w;
	}
}

static void expect_bytes(int fd, const char *what, const unsigned char *want, size_t n)
{
	unsigned char *got = malloc(n + 1);
	size_t at = 0;
	while (at < n) {
		struct pollfd p = {.fd = fd, .events = POLLIN};
		if (poll(&p, 1, 2000) != 1) {
			fail("%s: only %zu of %zu bytes", what, at, n);
			free(got);
			return;
		}
		ssize_t r = read(fd, got + at, n - at);
		if (r <= 0) {
			fail("%s: read after %zu of %zu bytes: %zd (%s)", what, at, n, r,
			     strerror(errno));
			free(got);
			return;
		}
		at += (size_t)r;
	}
	if (memcmp(got, want, n) != 0)
		fail("%s: bytes differ", what);
	free(got);
}

static void expect_flags(int fd, const char *what, int want)
{
	int fl = fcntl(fd, F_GETFL);
	int mask = O_NONBLOCK | O_DIRECT | O_ACCMODE;
	if (fl < 0 || (fl & mask) != want)
		fail("%s: flags %o, want %o", what, fl & mask, want);
}

static void expect_msg(int fd, const char *what, const void *want, size_t n)
{
	static char buf[DGBIG + 100];
	ssize_t r = recv(fd, buf, sizeof buf, MSG_DONTWAIT);
	if (r != (ssize_t)n || memcmp(buf, want, n) != 0)
		fail("%s: got %zd bytes (%s), want %zu", what, r, r < 0 ? strerror(errno) : "",
		     n);
}

static void expect_empty(int fd, const char *what)
{
	char c;
	ssize_t r = recv(fd, &c, 1, MSG_DONTWAIT);
	if (!(r < 0 && errno == EAGAIN))
		fail("%s: not empty (%zd, %s)", what, r, r < 0 ? strerror(errno) : "");
}

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: pipes DIR\n");
		return 2;
	}
	close_range(3, ~0U, 0);
	const char *dir = argv[1];
	char ready[4096], go[4096], result[4096], fifo[4096], fifo2[4096], proc[64];
	snprintf(ready, sizeof ready, "%s/ready", dir);
	snprintf(go, sizeof go, "%s/go", dir);
	snprintf(result, sizeof result, "%s/result", dir);
	snprintf(fifo, sizeof fifo, "%s/fifo", dir);
	snprintf(fifo2, sizeof fifo2, "%s/fifo2", dir);

	static unsigned char big[BIG], sb[STREAMB], dg[DGBIG], ro[REOPEN];
	for (size_t i = 0; i < BIG; i++)
		big[i] = pat(i, 7);
	for (size_t i = 0; i < STREAMB; i++)
		sb[i] = pat(i, 11);
	for (size_t i = 0; i < DGBIG; i++)
		dg[i] = pat(i, 13);
	for (size_t i = 0; i < REOPEN; i++)
		ro[i] = pat(i, 17);

	int p[2];
	/* big */
	if (pipe(p) != 0)
		die("pipe");
	if (fcntl(p[1], F_SETPIPE_SZ, BIGSZ) != BIGSZ)
		die("F_SETPIPE_SZ");
	write_all(p[1], big, BIG);
	put(40, p[0]);
	put(42, p[1]);
	if (dup2(40, 41) != 41 || fcntl(40, F_SETFL, O_NONBLOCK) != 0)
		die("dup2 41");
	/* eof */
	if (pipe(p) != 0)
		die("pipe");
	write_all(p[1], "tail", 4);
	close(p[1]);
	put(43, p[0]);
	/* packet */
	if (pipe2(p, O_DIRECT) != 0)
		die("pipe2 O_DIRECT");
	put(46, p[0]);
	put(47, p[1]);
	write_all(47, "ab", 2);
	write_all(47, "cde", 3);
	/* fifo */
	unlink(fifo);
	if (mkfifo(fifo, 0600) != 0)
		die("mkfifo");
	int fr = open(fifo, O_RDONLY | O_NONBLOCK);
	int fw = open(fifo, O_WRONLY);
	if (fr < 0 || fw < 0)
		die("open fifo");
	write_all(fw, "fifo-data", 9);
	if (fcntl(fr, F_SETFL, 0) != 0)
		die("fifo F_SETFL");
	put(44, fr);
	put(45, fw);
	/* stream */
	int s[2];
	if (socketpair(AF_UNIX, SOCK_STREAM, 0, s) != 0)
		die("socketpair stream");
	put(50, s[0]);
	put(51, s[1]);
	write_all(50, "stream-A", 8);
	write_all(51, sb, STREAMB);
	if (shutdown(50, SHUT_WR) != 0 || fcntl(51, F_SETFL, O_NONBLOCK) != 0)
		die("shutdown");
	/* dgram */
	if (socketpair(AF_UNIX, SOCK_DGRAM, 0, s) != 0)
		die("socketpair dgram");
	put(52, s[0]);
	put(53, s[1]);
	if (send(52, "dgram-one", 9, 0) != 9 || send(52, "dgram-two!", 10, 0) != 10 ||
	    send(52, dg, DGBIG, 0) != DGBIG || send(53, "back", 4, 0) != 4)
		die("send dgram");
	/* seqpacket */
	if (socketpair(AF_UNIX, SOCK_SEQPACKET, 0, s) != 0)
		die("socketpair seqpacket");
	put(54, s[0]);
	put(55, s[1]);
	int one = 1;
	if (setsockopt(55, SOL_SOCKET, SO_PASSCRED, &one, sizeof one) != 0)
		die("SO_PASSCRED");
	if (send(54, "p-one", 5, 0) != 5 || send(54, "p-two-2", 7, 0) != 7)
		die("send seqpacket");
	/* orphan, dgorphan */
	if (socketpair(AF_UNIX, SOCK_STREAM, 0, s) != 0)
		die("socketpair orphan");
	put(56, s[0]);
	write_all(s[1], "orphan-data", 11);
	close(s[1]);
	if (socketpair(AF_UNIX, SOCK_DGRAM, 0, s) != 0)
		die("socketpair dgorphan");
	put(57, s[0]);
	if (send(s[1], "dg-orphan", 9, 0) != 9)
		die("send dgorphan");
	close(s[1]);

	/* reopen */
	if (pipe(p) != 0)
		die("pipe reopen");
	put(60, p[0]);
	put(62, p[1]);
	snprintf(proc, sizeof proc, "/proc/self/fd/%d", 60);
	int ra = open(proc, O_RDONLY);
	snprintf(proc, sizeof proc, "/proc/self/fd/%d", 62);
	int wa = open(proc, O_WRONLY);
	if (ra < 0 || wa < 0)
		die("reopen through /proc");
	put(61, ra);
	put(63, wa);
	if (fcntl(61, F_SETFL, O_NONBLOCK) != 0 || fcntl(62, F_SETFL, O_NONBLOCK) != 0)
		die("reopen F_SETFL");
	write_all(63, ro, REOPEN);
	/* fifo2 */
	unlink(fifo2);
	if (mkfifo(fifo2, 0600) != 0)
		die("mkfifo fifo2");
	int f2 = open(fifo2, O_RDWR);
	int f2r = open(fifo2, O_RDONLY | O_NONBLOCK);
	if (f2 < 0 || f2r < 0)
		die("open fifo2");
	put(64, f2);
	put(65, f2r);
	write_all(64, "f2-data", 7);

	FILE *r = fopen(ready, "w");
	if (!r || fputs("ready\n", r) < 0 || fclose(r) != 0)
		die("ready");
	struct stat st;
	while (stat(go, &st) != 0) {
		struct timespec ts = {0, 20000000};
		nanosleep(&ts, NULL);
	}

	for (int fd = 50; fd <= 57; fd++) {
		int off = 0;
		socklen_t ol = sizeof off;
		if (getsockopt(fd, SOL_SOCKET, SO_PEEK_OFF, &off, &ol) != 0 || off != -1)
			fail("fd %d: SO_PEEK_OFF %d, want -1", fd, off);
	}
	/* big */
	if (fcntl(40, F_GETPIPE_SZ) != BIGSZ)
		fail("big: size %d", fcntl(40, F_GETPIPE_SZ));
	expect_flags(40, "big read end", O_RDONLY | O_NONBLOCK);
	expect_flags(42, "big write end", O_WRONLY);
	expect_bytes(40, "big", big, BIG);
	char c;
	if (!(read(40, &c, 1) < 0 && errno == EAGAIN))
		fail("big: more than was written");
	if (fcntl(41, F_SETFL, 0) != 0 || (fcntl(40, F_GETFL) & O_NONBLOCK))
		fail("big: fd 40 and 41 are not one description");
	write_all(42, "more", 4);
	expect_bytes(41, "big after restore", (const unsigned char *)"more", 4);
	/* eof */
	expect_bytes(43, "eof", (const unsigned char *)"tail", 4);
	if (read(43, &c, 1) != 0)
		fail("eof: no end of file");
	/* packet */
	expect_flags(47, "packet write end", O_WRONLY | O_DIRECT);
	char pk[16];
	if (read(46, pk, sizeof pk) != 2 || memcmp(pk, "ab", 2) != 0 ||
	    read(46, pk, sizeof pk) != 3 || memcmp(pk, "cde", 3) != 0)
		fail("packet: saved packets not read back one by one");
	write_all(47, "ab", 2);
	write_all(47, "cd", 2);
	if (read(46, pk, sizeof pk) != 2 || read(46, pk, sizeof pk) != 2)
		fail("packet: not packet mode");
	/* fifo */
	expect_flags(44, "fifo read end", O_RDONLY);
	expect_bytes(44, "fifo", (const unsigned char *)"fifo-data", 9);
	write_all(45, "fifo-more", 9);
	expect_bytes(44, "fifo after restore", (const unsigned char *)"fifo-more", 9);
	/* stream */
	expect_flags(51, "stream 51", O_RDWR | O_NONBLOCK);
	expect_flags(50, "stream 50", O_RDWR);
	expect_bytes(51, "stream to 51", (const unsigned char *)"stream-A", 8);
	if (recv(51, &c, 1, MSG_DONTWAIT) != 0)
		fail("stream 51: no end of file after the peer's shutdown");
	expect_bytes(50, "stream to 50", sb, STREAMB);
	write_all(51, "x", 1);
	expect_bytes(50, "stream after restore", (const unsigned char *)"x", 1);
	if (!(send(50, "y", 1, MSG_NOSIGNAL) < 0 && errno == EPIPE))
		fail("stream 50: can still send after SHUT_WR");
	/* dgram */
	expect_msg(53, "dgram 1", "dgram-one", 9);
	expect_msg(53, "dgram 2", "dgram-two!", 10);
	expect_msg(53, "dgram 3", dg, DGBIG);
	expect_empty(53, "dgram 53");
	expect_msg(52, "dgram back", "back", 4);
	expect_empty(52, "dgram 52");
	/* seqpacket */
	expect_msg(55, "seqpacket 1", "p-one", 5);
	expect_msg(55, "seqpacket 2", "p-two-2", 7);
	expect_empty(55, "seqpacket 55");
	int v = 0;
	socklen_t vl = sizeof v;
	if (getsockopt(55, SOL_SOCKET, SO_PASSCRED, &v, &vl) != 0 || v != 1)
		fail("seqpacket: SO_PASSCRED lost");
	if (send(55, "z", 1, 0) != 1)
		fail("seqpacket: send after restore");
	expect_msg(54, "seqpacket after restore", "z", 1);
	/* orphan */
	expect_bytes(56, "orphan", (const unsigned char *)"orphan-data", 11);
	if (recv(56, &c, 1, MSG_DONTWAIT) != 0)
		fail("orphan: no end of file after its peer was closed");
	if (!(send(56, "y", 1, MSG_NOSIGNAL) < 0 && errno == EPIPE))
		fail("orphan: send did not fail with EPIPE (errno %d)", errno);
	/* dgorphan */
	expect_msg(57, "dgorphan", "dg-orphan", 9);
	expect_empty(57, "dgorphan");
	if (send(57, "y", 1, MSG_NOSIGNAL) >= 0)
		fail("dgorphan: send succeeded with the peer closed");

	/* reopen */
	expect_flags(60, "reopen read end", O_RDONLY);
	expect_flags(61, "reopen read end reopened", O_RDONLY | O_NONBLOCK);
	expect_flags(62, "reopen write end", O_WRONLY | O_NONBLOCK);
	expect_flags(63, "reopen write end reopened", O_WRONLY);
	expect_bytes(61, "reopen", ro, REOPEN);
	if (!(read(61, &c, 1) < 0 && errno == EAGAIN))
		fail("reopen: more than was written (the data restored twice?)");
	write_all(63, "via63", 5);
	expect_bytes(60, "reopen 63 to 60", (const unsigned char *)"via63", 5);
	write_all(62, "via62", 5);
	expect_bytes(61, "reopen 62 to 61", (const unsigned char *)"via62", 5);
	if (fcntl(61, F_SETFL, 0) != 0 || fcntl(60, F_SETFL, O_NONBLOCK) != 0)
		fail("reopen: F_SETFL");
	expect_flags(61, "reopen 61 after F_SETFL", O_RDONLY);
	expect_flags(60, "reopen 60 after F_SETFL (one description with 61?)",
		     O_RDONLY | O_NONBLOCK);
	/* fifo2 */
	expect_flags(64, "fifo2 read-write", O_RDWR);
	expect_flags(65, "fifo2 read-only", O_RDONLY | O_NONBLOCK);
	expect_bytes(65, "fifo2", (const unsigned char *)"f2-data", 7);
	if (!(read(65, &c, 1) < 0 && errno == EAGAIN))
		fail("fifo2: more than was written (the data restored twice?)");
	write_all(64, "f2-more", 7);
	expect_bytes(65, "fifo2 after restore", (const unsigned char *)"f2-more", 7);

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
