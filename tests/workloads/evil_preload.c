/*
 * evil_preload: an LD_PRELOAD library. Its constructor creates a marker file
 * in MARKER_DIR (fixed when the test compiles it), named after the process
 * and its uids, so a test can tell whether any process started with the
 * poisoned environment loaded it.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <unistd.h>

#ifndef MARKER_DIR
#error "compile with -DMARKER_DIR=\"...\""
#endif

__attribute__((constructor)) static void mark(void)
{
	char path[4096], exe[1024] = "?";
	ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
	if (n > 0)
		exe[n] = 0;
	uid_t r, e, s;
	getresuid(&r, &e, &s);
	snprintf(path, sizeof path, "%s/preload-loaded-pid%d-ruid%u-euid%u", MARKER_DIR, (int)getpid(), r, e);
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0666);
	if (fd >= 0) {
		dprintf(fd, "%s\n", exe);
		close(fd);
	}
}
