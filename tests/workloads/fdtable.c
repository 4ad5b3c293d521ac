/*
 * fdtable: a process and two children, one sharing its fd table
 * (clone with CLONE_FILES), one with a copy (fork).
 *
 * Usage: fdtable DIR
 *
 * Once both children run it writes DIR/ready. Once DIR/go exists (made
 * after restore), the sharing child opens DIR/go and puts it at fd 100,
 * then exits 0; the copying child checks that fd 100 is not open in its
 * table (exit 0) once the sharing one is done. The parent waits for both
 * (by pid), then checks fd 100 is open in its table and names DIR/go, and
 * writes DIR/result: "OK\n", or what failed.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define TEST_FD 100

static char dir[4096];
static char stack[65536] __attribute__((aligned(16)));

static void path(char *out, size_t n, const char *name)
{
	snprintf(out, n, "%s/%s", dir, name);
}

static void wait_for(const char *name)
{
	char p[4200];
	struct timespec ts = {0, 20 * 1000 * 1000};

	path(p, sizeof p, name);
	while (access(p, F_OK) != 0)
		nanosleep(&ts, NULL);
}

static int sharer(void *arg)
{
	char p[4200];
	int fd;

	(void)arg;
	wait_for("go");
	path(p, sizeof p, "go");
	fd = open(p, O_RDONLY);
	if (fd < 0 || dup2(fd, TEST_FD) != TEST_FD)
		_exit(2);
	close(fd);
	path(p, sizeof p, "shared-done");
	fd = open(p, O_WRONLY | O_CREAT, 0600);
	close(fd);
	_exit(0);
}

static void result(const char *msg)
{
	char p[4200], tmp[4200];
	FILE *f;

	path(tmp, sizeof tmp, "result.tmp");
	path(p, sizeof p, "result");
	f = fopen(tmp, "w");
	if (!f)
		exit(1);
	fputs(msg, f);
	fclose(f);
	rename(tmp, p);
}

int main(int argc, char **argv)
{
	char p[4200], link[4200], want[4200];
	pid_t shared, copied;
	int status;
	ssize_t n;

	if (argc != 2) {
		fprintf(stderr, "usage: fdtable DIR\n");
		return 2;
	}
	snprintf(dir, sizeof dir, "%s", argv[1]);
	shared = clone(sharer, stack + sizeof stack, CLONE_FILES | SIGCHLD, NULL);
	if (shared < 0)
		return 1;
	copied = fork();
	if (copied < 0)
		return 1;
	if (copied == 0) {
		wait_for("shared-done");
		_exit(fcntl(TEST_FD, F_GETFD) == -1 ? 0 : 3);
	}
	path(p, sizeof p, "ready");
	{
		FILE *f = fopen(p, "w");
		if (!f)
			return 1;
		fputs("ready\n", f);
		fclose(f);
	}
	if (waitpid(shared, &status, 0) != shared || !WIFEXITED(status) ||
	    WEXITSTATUS(status) != 0) {
		result("the sharing child failed\n");
		return 1;
	}
	if (waitpid(copied, &status, 0) != copied || !WIFEXITED(status) ||
	    WEXITSTATUS(status) != 0) {
		result("the copying child saw fd 100 (or failed)\n");
		return 1;
	}
	snprintf(link, sizeof link, "/proc/self/fd/%d", TEST_FD);
	n = readlink(link, p, sizeof p - 1);
	if (n < 0) {
		result("fd 100 the sharing child opened is not in the parent's table\n");
		return 1;
	}
	p[n] = 0;
	path(want, sizeof want, "go");
	if (strcmp(p, want) != 0) {
		result("fd 100 names another file\n");
		return 1;
	}
	result("OK\n");
	return 0;
}
