/*
 * counter: appends "<count> <pid>\n" to FILE every 10 ms, forever.
 *
 * Usage: counter FILE
 *
 * FILE "-" means the stdout it was started with (fd 1: a terminal, a pipe).
 *
 * The count lives only in this process's memory and the file is kept open
 * (O_APPEND) for the whole run, so after a checkpoint and a restore the
 * restored process carries on with count+1, under its new pid. The tests
 * read the file and check that the sequence never restarts, never skips
 * and keeps advancing after the restore.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: counter FILE\n");
		return 2;
	}
	/* Only what this program opens itself: no fd inherited from whoever started it. */
	close_range(3, ~0U, 0);
	int fd = strcmp(argv[1], "-") == 0 ? 1 : open(argv[1], O_WRONLY | O_CREAT | O_APPEND, 0644);
	if (fd < 0) {
		fprintf(stderr, "counter: open %s: %s\n", argv[1], strerror(errno));
		return 1;
	}
	unsigned long count = 0;
	for (;;) {
		char line[64];
		count++;
		int n = snprintf(line, sizeof line, "%lu %d\n", count, (int)getpid());
		if (write(fd, line, (size_t)n) != n) {
			fprintf(stderr, "counter: write: %s\n", strerror(errno));
			return 1;
		}
		struct timespec ts = { 0, 10 * 1000 * 1000 };
		while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
			;
	}
}
