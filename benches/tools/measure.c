/*
 * measure: run a command, report its wall time and peak RSS.
 *
 *   measure OUT_FILE -- COMMAND [ARGS...]
 *
 * Forks, execs COMMAND (searching PATH), waits for it with wait4() and
 * writes one line to OUT_FILE:
 *
 *   <elapsed seconds> <peak RSS KiB> <exit code> <CPU seconds>
 *
 * Elapsed time is CLOCK_MONOTONIC from just before fork() to wait4()'s
 * return. Peak RSS is ru_maxrss of the rusage that wait4() returns for the
 * child: the kernel's high-water mark of the child's resident set, which
 * also covers any descendants the child itself waited for (forked privsep
 * workers, for instance), but not processes it left running (a restored,
 * detached task). The exit code is 128+signal if the child was killed.
 * CPU seconds are user + system time from the same rusage (all threads),
 * which contention from other processes on the machine affects much less
 * than wall time.
 *
 * COMMAND's stdout and stderr are inherited; this tool prints nothing on
 * success. It is not setuid and runs as whoever starts it (the harness
 * starts it as the unprivileged bench user for the ckpt helpers).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	if (argc < 4 || strcmp(argv[2], "--") != 0) {
		fprintf(stderr, "usage: measure OUT_FILE -- COMMAND [ARGS...]\n");
		return 2;
	}
	FILE *out = fopen(argv[1], "w");
	if (out == NULL) {
		perror("measure: open output");
		return 2;
	}
	struct timespec t0, t1;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	pid_t pid = fork();
	if (pid < 0) {
		perror("measure: fork");
		return 2;
	}
	if (pid == 0) {
		fclose(out);
		execvp(argv[3], &argv[3]);
		fprintf(stderr, "measure: exec %s: %s\n", argv[3], strerror(errno));
		_exit(127);
	}
	int status;
	struct rusage ru;
	pid_t w;
	do {
		w = wait4(pid, &status, 0, &ru);
	} while (w < 0 && errno == EINTR);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	if (w < 0) {
		perror("measure: wait4");
		return 2;
	}
	double secs = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
	int code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
	double cpu = (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
		     (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
	fprintf(out, "%.6f %ld %d %.6f\n", secs, ru.ru_maxrss, code, cpu);
	if (fclose(out) != 0) {
		perror("measure: write output");
		return 2;
	}
	return 0;
}
