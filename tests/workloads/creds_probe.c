/*
 * creds_probe: a workload for the credential tests.
 *
 * Usage: creds_probe REPORT [userns] [pidns] [nnp]
 *
 * Appends "<count> <pid>\n" to REPORT (opened once, O_APPEND) every 10 ms.
 * Options, applied in this order at start:
 *   userns  unshare(CLONE_NEWUSER) and map uid and gid 0 to the caller's
 *           own (what `unshare -Ur` does): the process is then "root" with
 *           every capability in a user namespace it owns, and none on the
 *           host;
 *   pidns   unshare(CLONE_NEWPID) and fork: the child is pid 1 of a new
 *           pid namespace and does the counting; the parent waits for it
 *           (needs root);
 *   nnp     prctl(PR_SET_NO_NEW_PRIVS, 1).
 *
 * On SIGUSR1 it execs `/bin/cat /proc/self/status` with stdout on REPORT,
 * so the test sees the capabilities a program exec'ed by the (restored)
 * process gets: the status block follows a line "exec <pid>".
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static volatile sig_atomic_t exec_now;

static void on_usr1(int sig)
{
	(void)sig;
	exec_now = 1;
}

static int write_file(const char *path, const char *text)
{
	int fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	ssize_t n = write(fd, text, strlen(text));
	close(fd);
	return n == (ssize_t)strlen(text) ? 0 : -1;
}

static int enter_userns(void)
{
	char map[64];
	unsigned uid = (unsigned)getuid(), gid = (unsigned)getgid();
	if (unshare(CLONE_NEWUSER) != 0)
		return -1;
	snprintf(map, sizeof map, "0 %u 1\n", uid);
	if (write_file("/proc/self/uid_map", map) != 0)
		return -1;
	if (write_file("/proc/self/setgroups", "deny\n") != 0)
		return -1;
	snprintf(map, sizeof map, "0 %u 1\n", gid);
	return write_file("/proc/self/gid_map", map);
}

int main(int argc, char **argv)
{
	int userns = 0, pidns = 0, nnp = 0;
	if (argc < 2) {
		fprintf(stderr, "usage: creds_probe REPORT [userns] [pidns] [nnp]\n");
		return 2;
	}
	for (int i = 2; i < argc; i++) {
		if (strcmp(argv[i], "userns") == 0)
			userns = 1;
		else if (strcmp(argv[i], "pidns") == 0)
			pidns = 1;
		else if (strcmp(argv[i], "nnp") == 0)
			nnp = 1;
		else {
			fprintf(stderr, "creds_probe: unknown option %s\n", argv[i]);
			return 2;
		}
	}
	close_range(3, ~0U, 0);
	int fd = open(argv[1], O_WRONLY | O_APPEND | O_CLOEXEC);
	if (fd < 0) {
		fprintf(stderr, "creds_probe: open %s: %s\n", argv[1], strerror(errno));
		return 1;
	}
	if (userns && enter_userns() != 0) {
		fprintf(stderr, "creds_probe: user namespace: %s\n", strerror(errno));
		return 1;
	}
	if (pidns) {
		if (unshare(CLONE_NEWPID) != 0) {
			fprintf(stderr, "creds_probe: unshare(CLONE_NEWPID): %s\n", strerror(errno));
			return 1;
		}
		pid_t child = fork();
		if (child < 0) {
			perror("creds_probe: fork");
			return 1;
		}
		if (child > 0) {
			int st;
			while (waitpid(child, &st, 0) < 0 && errno == EINTR)
				;
			return 0;
		}
	}
	if (nnp && prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) {
		perror("creds_probe: PR_SET_NO_NEW_PRIVS");
		return 1;
	}
	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = on_usr1;
	sigaction(SIGUSR1, &sa, NULL);
	unsigned long count = 0;
	for (;;) {
		char line[64];
		if (exec_now) {
			int n = snprintf(line, sizeof line, "exec %d\n", (int)getpid());
			if (write(fd, line, (size_t)n) != n)
				return 1;
			if (dup2(fd, 1) != 1)
				return 1;
			execl("/bin/cat", "cat", "/proc/self/status", (char *)NULL);
			n = snprintf(line, sizeof line, "exec failed %d\n", errno);
			(void)!write(fd, line, (size_t)n);
			return 1;
		}
		count++;
		int n = snprintf(line, sizeof line, "%lu %d\n", count, (int)getpid());
		if (write(fd, line, (size_t)n) != n) {
			fprintf(stderr, "creds_probe: write: %s\n", strerror(errno));
			return 1;
		}
		struct timespec ts = { 0, 10 * 1000 * 1000 };
		while (nanosleep(&ts, &ts) != 0 && errno == EINTR && !exec_now)
			;
	}
}
