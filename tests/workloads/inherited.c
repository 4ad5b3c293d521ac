/*
 * inherited: started with fds connected outside it, as a job runner or a
 * leaky shell leaves them: fd 7 the write end of a pipe into a reader
 * outside, fd 251 (close-on-exec) the write end of another. Waits to be
 * checkpointed and restored, then checks what they became.
 *
 * Usage: inherited DIR
 *
 * Set-up checks fds 7 and 251 are pipes, writes "before-7\n" to fd 7 and
 * "before-251\n" to fd 251, sets FD_CLOEXEC on 251, writes "ready\n" to
 * DIR/ready and waits (sleeping in short steps) until DIR/go exists. DIR/go
 * holds what the test expects:
 *   null     fds 7 and 251 are /dev/null opened read-write (the restore
 *            was given no --inherit-fd): writes succeed, reads see end of
 *            file
 *   inherit7 fd 7 is a pipe (the restore caller's, --inherit-fd 7) open
 *            for writing; "after-7 PID\n" is written into it; fd 251 is
 *            /dev/null
 * In both cases fd 7 is not close-on-exec and fd 251 still is. Then writes
 * "OK\n" or "FAIL: <what>; ...\n" to DIR/result and exits 0.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <time.h>
#include <unistd.h>

static char failures[4096];
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

static int is_pipe(int fd)
{
	struct stat st;
	return fstat(fd, &st) == 0 && S_ISFIFO(st.st_mode);
}

static void expect_null(int fd)
{
	struct stat st;
	if (fstat(fd, &st) != 0 || !S_ISCHR(st.st_mode) || major(st.st_rdev) != 1 ||
	    minor(st.st_rdev) != 3) {
		fail("fd %d is not /dev/null", fd);
		return;
	}
	if ((fcntl(fd, F_GETFL) & O_ACCMODE) != O_RDWR)
		fail("fd %d: /dev/null not open read-write", fd);
	char c;
	if (write(fd, "x", 1) != 1 || read(fd, &c, 1) != 0)
		fail("fd %d: /dev/null does not behave as /dev/null", fd);
}

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: inherited DIR\n");
		return 2;
	}
	const char *dir = argv[1];
	char ready[4096], go[4096], result[4096];
	snprintf(ready, sizeof ready, "%s/ready", dir);
	snprintf(go, sizeof go, "%s/go", dir);
	snprintf(result, sizeof result, "%s/result", dir);
	if (!is_pipe(7) || !is_pipe(251)) {
		fprintf(stderr, "inherited: fds 7 and 251 must be pipes\n");
		return 1;
	}
	if (write(7, "before-7\n", 9) != 9 || write(251, "before-251\n", 11) != 11 ||
	    fcntl(251, F_SETFD, FD_CLOEXEC) != 0) {
		perror("inherited: set-up");
		return 1;
	}
	FILE *r = fopen(ready, "w");
	if (!r || fputs("ready\n", r) < 0 || fclose(r) != 0)
		return 1;
	char want[64] = "";
	for (;;) {
		FILE *g = fopen(go, "r");
		if (g) {
			int ok = fgets(want, sizeof want, g) != NULL;
			fclose(g);
			if (ok && strchr(want, '\n'))
				break;
		}
		struct timespec ts = {0, 20000000};
		nanosleep(&ts, NULL);
	}
	*strchr(want, '\n') = 0;

	if (fcntl(7, F_GETFD) != 0)
		fail("fd 7: close-on-exec or closed (%d)", fcntl(7, F_GETFD));
	if (fcntl(251, F_GETFD) != FD_CLOEXEC)
		fail("fd 251: close-on-exec lost (%d)", fcntl(251, F_GETFD));
	if (strcmp(want, "null") == 0) {
		expect_null(7);
		expect_null(251);
	} else if (strcmp(want, "inherit7") == 0) {
		if (!is_pipe(7))
			fail("fd 7 is not the caller's pipe");
		else if ((fcntl(7, F_GETFL) & O_ACCMODE) != O_WRONLY)
			fail("fd 7: not the write end of a pipe");
		char line[64];
		int n = snprintf(line, sizeof line, "after-7 %d\n", (int)getpid());
		if (write(7, line, (size_t)n) != n)
			fail("fd 7: write: %s", strerror(errno));
		expect_null(251);
	} else {
		fail("unknown expectation %s", want);
	}

	FILE *out = fopen(result, "w");
	if (!out)
		return 1;
	if (nfail)
		fprintf(out, "FAIL: %s\n", failures);
	else
		fputs("OK\n", out);
	fclose(out);
	return 0;
}
