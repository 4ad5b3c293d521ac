/*
 * undumpable: an ordinary (not set-id) program that marks itself
 * non-dumpable with prctl(PR_SET_DUMPABLE, 0), writes "ready\n" to
 * READY-FILE and sleeps. It runs with exactly the caller's credentials, so
 * only the kernel's ptrace-attach decision (not a uid comparison) refuses a
 * dump of it.
 *
 * Usage: undumpable READY-FILE
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <sys/prctl.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: undumpable READY-FILE\n");
		return 2;
	}
	/* Only what this program opens itself: no fd inherited from whoever started it. */
	close_range(3, ~0U, 0);
	if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0 || prctl(PR_GET_DUMPABLE, 0, 0, 0, 0) != 0) {
		perror("undumpable: PR_SET_DUMPABLE");
		return 1;
	}
	int fd = open(argv[1], O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0 || write(fd, "ready\n", 6) != 6 || close(fd) != 0) {
		perror("undumpable: ready file");
		return 1;
	}
	for (;;)
		pause();
}
