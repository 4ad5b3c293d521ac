/*
 * setuid_sleeper: installed root-owned, mode 4755, by the test. Run by an
 * unprivileged user it holds euid 0 (or, with "drop", gives it up again
 * after start, which leaves the process non-dumpable), writes "ready\n" to
 * READY-FILE and sleeps. Dumping it must be refused with the access-denied
 * exit code and must leave it untouched.
 *
 * Usage: setuid_sleeper READY-FILE [drop]
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	if (argc < 2 || argc > 3) {
		fprintf(stderr, "usage: setuid_sleeper READY-FILE [drop]\n");
		return 2;
	}
	/* Only what this program opens itself: no fd inherited from whoever started it. */
	close_range(3, ~0U, 0);
	if (argc == 3 && strcmp(argv[2], "drop") == 0) {
		uid_t r = getuid();
		gid_t g = getgid();
		if (setresgid(g, g, g) != 0 || setresuid(r, r, r) != 0) {
			perror("setuid_sleeper: drop");
			return 1;
		}
	}
	int fd = open(argv[1], O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0 || write(fd, "ready\n", 6) != 6 || close(fd) != 0) {
		perror("setuid_sleeper: ready file");
		return 1;
	}
	for (;;)
		pause();
}
