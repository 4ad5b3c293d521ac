/*
 * zeroes: memory written with zeros. Maps MIB MiB of private anonymous
 * memory and 1 MiB of shared anonymous memory, writes a pattern into the
 * first page of every 64 and zeros into every other page (real pages,
 * written, not the shared zero page), writes "ready\n" to DIR/ready and
 * waits. On SIGUSR1 it checks every page (pattern or zeros), writes
 * "OK\n" or "BAD <region> page <n>\n" to DIR/result and exits.
 *
 * Usage: zeroes MIB DIR
 */
#define _GNU_SOURCE
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define PAGE 4096

static void fill(unsigned char *p, size_t pages, unsigned seed)
{
	for (size_t i = 0; i < pages; i++) {
		unsigned char *pg = p + i * PAGE;
		if (i % 64 == 0)
			for (size_t j = 0; j < PAGE; j++)
				pg[j] = (unsigned char)(i * 31 + j * 7 + seed) | 1;
		else
			memset(pg, 0, PAGE);
	}
}

static long check(const unsigned char *p, size_t pages, unsigned seed)
{
	for (size_t i = 0; i < pages; i++) {
		const unsigned char *pg = p + i * PAGE;
		for (size_t j = 0; j < PAGE; j++) {
			unsigned char want = i % 64 == 0 ? (unsigned char)((i * 31 + j * 7 + seed) | 1) : 0;
			if (pg[j] != want)
				return (long)i;
		}
	}
	return -1;
}

static void put(const char *dir, const char *name, const char *text)
{
	char path[4096], tmp[4200];
	snprintf(path, sizeof path, "%s/%s", dir, name);
	snprintf(tmp, sizeof tmp, "%s.tmp", path);
	FILE *f = fopen(tmp, "w");
	if (!f || fputs(text, f) < 0 || fclose(f) != 0 || rename(tmp, path) != 0) {
		perror("zeroes: write");
		exit(1);
	}
}

int main(int argc, char **argv)
{
	if (argc != 3) {
		fprintf(stderr, "usage: zeroes MIB DIR\n");
		return 2;
	}
	size_t pages = ((size_t)strtoul(argv[1], NULL, 10) << 20) / PAGE;
	size_t shpages = (1 << 20) / PAGE;
	unsigned char *priv = mmap(NULL, pages * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	unsigned char *shared = mmap(NULL, shpages * PAGE, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (priv == MAP_FAILED || shared == MAP_FAILED) {
		perror("zeroes: mmap");
		return 1;
	}
	fill(priv, pages, 1);
	fill(shared, shpages, 2);
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGUSR1);
	sigprocmask(SIG_BLOCK, &set, NULL);
	put(argv[2], "ready", "ready\n");
	int sig;
	while (sigwait(&set, &sig) != 0)
		;
	{
		char text[128];
		long bad = check(priv, pages, 1);
		long shbad = check(shared, shpages, 2);
		if (bad >= 0)
			snprintf(text, sizeof text, "BAD private page %ld\n", bad);
		else if (shbad >= 0)
			snprintf(text, sizeof text, "BAD shared page %ld\n", shbad);
		else
			snprintf(text, sizeof text, "OK\n");
		put(argv[2], "result", text);
	}
	return 0;
}
