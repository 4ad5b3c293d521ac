/*
 * groups_probe: started as root, sets its supplementary groups to
 * 0, 4242, 4243 (ids no account needs to have), waits to be checkpointed
 * and restored, then checks that it holds exactly those groups.
 *
 * Usage: groups_probe DIR
 *
 * Writes "ready\n" to DIR/ready once the groups are set and read back.
 * On SIGUSR1 it compares getgroups() with the set above and writes "OK\n"
 * or "FAIL: <what>\n" to DIR/result, then exits 0. Set-up failures exit 2.
 */
#define _GNU_SOURCE
#include <grp.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const gid_t want[] = { 0, 4242, 4243 };
#define NWANT (sizeof(want) / sizeof(want[0]))
static volatile sig_atomic_t asked;

static void on_usr1(int sig)
{
	(void)sig;
	asked = 1;
}

static int put(const char *dir, const char *name, const char *text)
{
	char path[PATH_MAX];
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	FILE *f = fopen(path, "w");
	if (!f)
		return -1;
	fputs(text, f);
	return fclose(f);
}

/* 0 when the process holds exactly `want` (in any order). */
static int check(char *why, size_t len)
{
	gid_t have[64];
	int n = getgroups(64, have);
	if (n < 0) {
		snprintf(why, len, "getgroups failed");
		return -1;
	}
	if ((size_t)n != NWANT) {
		snprintf(why, len, "%d groups, expected %zu", n, NWANT);
		return -1;
	}
	for (size_t i = 0; i < NWANT; i++) {
		int found = 0;
		for (int j = 0; j < n; j++)
			found |= have[j] == want[i];
		if (!found) {
			snprintf(why, len, "group %u is missing", (unsigned)want[i]);
			return -1;
		}
	}
	return 0;
}

int main(int argc, char **argv)
{
	char why[128];
	if (argc != 2) {
		fprintf(stderr, "usage: groups_probe DIR\n");
		return 2;
	}
	signal(SIGUSR1, on_usr1);
	if (setgroups(NWANT, want) != 0 || check(why, sizeof(why)) != 0) {
		perror("groups_probe: setgroups");
		return 2;
	}
	if (put(argv[1], "ready", "ready\n") != 0)
		return 2;
	while (!asked)
		pause();
	char out[160];
	if (check(why, sizeof(why)) == 0)
		snprintf(out, sizeof(out), "OK\n");
	else
		snprintf(out, sizeof(out), "FAIL: %s\n", why);
	return put(argv[1], "result", out) == 0 ? 0 : 2;
}
