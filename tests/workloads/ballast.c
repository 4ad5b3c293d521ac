/*
 * ballast: holds MIB mebibytes of private anonymous memory, every page
 * written (so a dump must save all of it), writes "ready\n" to READY-FILE
 * and sleeps. For the progress bar tests: a dump that lasts more than a
 * second.
 *
 * Usage: ballast MIB READY-FILE
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	if (argc != 3) {
		fprintf(stderr, "usage: ballast MIB READY-FILE\n");
		return 2;
	}
	close_range(3, ~0U, 0);
	size_t len = (size_t)strtoul(argv[1], NULL, 10) << 20;
	unsigned char *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED) {
		perror("ballast: mmap");
		return 1;
	}
	/* Not zero (a zero page is not saved) and not the same everywhere. */
	for (size_t i = 0; i < len; i += 64)
		p[i] = (unsigned char)(i >> 12) | 1;
	int fd = open(argv[2], O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0 || write(fd, "ready\n", 6) != 6 || close(fd) != 0) {
		perror("ballast: ready file");
		return 1;
	}
	for (;;)
		pause();
}
