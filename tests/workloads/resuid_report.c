/*
 * resuid_report: the seed's /bin/passwd case. The test installs it
 * root-owned, mode 4755, and starts it as an unprivileged user, so it runs
 * with ruid = the user and euid = suid = 0. It is linked against
 * libckptmark.so (absolute rpath into a root-owned directory).
 *
 * Every 10 ms it appends one line to REPORT (opened once, O_APPEND; the
 * test creates it owned by the user, so a restore with the user's
 * credentials can reopen it):
 *
 *     <count> <pid> <ruid> <euid> <suid> <rgid> <egid> <sgid> <mark>
 *
 * with the credentials the process sees itself (getresuid, getresgid) and
 * <mark> = ckpt_mark() from the library. After a restore the count goes
 * on from where it was, under the restored pid, with the credentials the
 * restore gave it.
 *
 * With HOLD, it also opens HOLD read-only at start (with euid 0, so a
 * root-only file) and keeps it open: a restore must reopen it, which only
 * the saved credentials can do (the `privileged-files` grant).
 *
 * Usage: resuid_report REPORT [HOLD]
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

int ckpt_mark(void);

int main(int argc, char **argv)
{
	if (argc != 2 && argc != 3) {
		fprintf(stderr, "usage: resuid_report REPORT [HOLD]\n");
		return 2;
	}
	/* Only what this program opens itself: no fd inherited from whoever started it. */
	close_range(3, ~0U, 0);
	int fd = open(argv[1], O_WRONLY | O_APPEND | O_CLOEXEC);
	if (fd < 0) {
		fprintf(stderr, "resuid_report: open %s: %s\n", argv[1], strerror(errno));
		return 1;
	}
	if (argc == 3 && open(argv[2], O_RDONLY) < 0) {
		fprintf(stderr, "resuid_report: open %s: %s\n", argv[2], strerror(errno));
		return 1;
	}
	unsigned long count = 0;
	for (;;) {
		uid_t ru, eu, su;
		gid_t rg, eg, sg;
		char line[160];
		count++;
		if (getresuid(&ru, &eu, &su) != 0 || getresgid(&rg, &eg, &sg) != 0) {
			perror("resuid_report: getresuid");
			return 1;
		}
		int n = snprintf(line, sizeof line, "%lu %d %u %u %u %u %u %u %d\n", count,
				 (int)getpid(), (unsigned)ru, (unsigned)eu, (unsigned)su,
				 (unsigned)rg, (unsigned)eg, (unsigned)sg, ckpt_mark());
		if (write(fd, line, (size_t)n) != n) {
			fprintf(stderr, "resuid_report: write: %s\n", strerror(errno));
			return 1;
		}
		struct timespec ts = { 0, 10 * 1000 * 1000 };
		while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
			;
	}
}
