/*
 * memfd: holds a sealed memfd, a writable memfd mapped shared and private,
 * and a file unlinked while open; waits to be checkpointed and restored,
 * then checks them itself.
 *
 * Usage: memfd DIR
 *
 * Set-up writes "ready\n" to DIR/ready and waits (sleeping in short steps)
 * until DIR/go exists; then it checks everything and writes "OK\n" or
 * "FAIL: <what>; <what>...\n" to DIR/result, and exits 0.
 *
 * What it sets up and later checks:
 *   sealed   memfd "ckpt-sealed", MFD_ALLOW_SEALING, 3 pages + 100 bytes of
 *            a pattern, offset 4242, sealed SHRINK|GROW|WRITE|SEAL: the
 *            link names it, content and offset intact, the seals are
 *            F_GET_SEALS and still enforced (write, ftruncate, F_ADD_SEALS
 *            fail), a read-only shared mapping of it reads the pattern
 *   shared   memfd "ckpt-shared" (MFD_CLOEXEC), 64 KiB, mapped MAP_SHARED
 *            read-write and MAP_PRIVATE: bytes written through the shared
 *            mapping before the dump are read through the fd; after
 *            restore a write through the fd shows in the shared mapping
 *            and one through the mapping in the fd (one object); the
 *            private mapping keeps its own dirty page and sees the file
 *            elsewhere; close-on-exec kept; not sealable (F_SEAL_SEAL, as
 *            without MFD_ALLOW_SEALING)
 *   unlinked DIR/gone, 10000 bytes, unlinked while open O_RDWR at offset
 *            777: content and offset intact, the link names DIR/gone
 *            (deleted), writable, mode 0640
 *   wronly   DIR/wronly, 5000 bytes, opened O_WRONLY (mode 0600) and
 *            unlinked: still write-only, and its content intact when
 *            read through a new read-only open of /proc/self/fd/N
 *
 * Usage: memfd DIR chown UID GID (run as root): as above, and the
 * unlinked file DIR/gone is given to UID:GID (fchown) before the dump;
 * after restore it must still belong to them.
 *
 * Usage: memfd DIR hold PATH: opens PATH write-only, unlinks it, writes
 * "ready\n" to DIR/ready and sleeps (a dump of it must be refused when
 * the caller may not read PATH).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#ifndef F_SEAL_FUTURE_WRITE
#define F_SEAL_FUTURE_WRITE 0x0010
#endif

#define SEALED_LEN (3 * 4096 + 100)
#define SHARED_LEN (64 * 1024)
#define GONE_LEN 10000
#define WRONLY_LEN 5000

static char failures[8192];
static int nfail;

static void fail(const char *fmt, ...)
{
	size_t len = strlen(failures);
	if (len + 8 >= sizeof failures)
		return;
	if (nfail++)
		len += (size_t)snprintf(failures + len, sizeof failures - len, "; ");
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(failures + len, sizeof failures - len, fmt, ap);
	va_end(ap);
}

static void die(const char *what)
{
	fprintf(stderr, "memfd: setup: %s: %s\n", what, strerror(errno));
	exit(1);
}

static void sleep_ms(long ms)
{
	struct timespec t = {ms / 1000, (ms % 1000) * 1000000L};
	while (nanosleep(&t, &t) != 0 && errno == EINTR)
		;
}

static unsigned char pat(size_t i, int salt)
{
	return (unsigned char)((i * 31 + salt) ^ (i >> 8));
}

static void link_is(int fd, const char *want, const char *name)
{
	char p[64], buf[4096];
	snprintf(p, sizeof p, "/proc/self/fd/%d", fd);
	ssize_t n = readlink(p, buf, sizeof buf - 1);
	if (n < 0) {
		fail("%s: fd %d not open", name, fd);
		return;
	}
	buf[n] = 0;
	if (strcmp(buf, want) != 0)
		fail("%s: link '%s', want '%s'", name, buf, want);
}

static void content_is(int fd, size_t len, int salt, const char *name)
{
	unsigned char *buf = malloc(len + 1);
	if (!buf)
		die("malloc");
	ssize_t n = pread(fd, buf, len + 1, 0);
	if (n != (ssize_t)len)
		fail("%s: read %zd bytes, want %zu", name, n, len);
	for (size_t i = 0; i < len && i < (size_t)(n < 0 ? 0 : n); i++)
		if (buf[i] != pat(i, salt)) {
			fail("%s: byte %zu is %u, want %u", name, i, buf[i], pat(i, salt));
			break;
		}
	free(buf);
}

int main(int argc, char **argv)
{
	if (argc == 4 && strcmp(argv[2], "hold") == 0) {
		close_range(3, ~0U, 0);
		int h = open(argv[3], O_WRONLY);
		if (h < 0)
			die("open(hold)");
		if (unlink(argv[3]) != 0)
			die("unlink(hold)");
		char rp[4096];
		snprintf(rp, sizeof rp, "%s/ready", argv[1]);
		FILE *r = fopen(rp, "w");
		if (!r || fputs("ready\n", r) < 0 || fclose(r) != 0)
			die("ready");
		for (;;)
			sleep_ms(1000);
	}
	if (argc != 2 && !(argc == 5 && strcmp(argv[2], "chown") == 0)) {
		fprintf(stderr, "usage: memfd DIR\n");
		return 2;
	}
	const char *dir = argv[1];
	char ready[4096], go[4096], result[4096], gone[4096], wronly[4096];
	int chown_to = argc == 5 && strcmp(argv[2], "chown") == 0;
	uid_t ouid = chown_to ? (uid_t)atol(argv[3]) : 0;
	gid_t ogid = chown_to ? (gid_t)atol(argv[4]) : 0;
	snprintf(ready, sizeof ready, "%s/ready", dir);
	snprintf(go, sizeof go, "%s/go", dir);
	snprintf(result, sizeof result, "%s/result", dir);
	snprintf(gone, sizeof gone, "%s/gone", dir);
	snprintf(wronly, sizeof wronly, "%s/wronly", dir);
	close_range(3, ~0U, 0);
	unsigned char buf[SHARED_LEN];

	/* sealed */
	int sealed = memfd_create("ckpt-sealed", MFD_ALLOW_SEALING);
	if (sealed < 0)
		die("memfd_create(sealed)");
	for (size_t i = 0; i < SEALED_LEN; i++)
		buf[i] = pat(i, 1);
	if (write(sealed, buf, SEALED_LEN) != SEALED_LEN)
		die("write(sealed)");
	if (fcntl(sealed, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | F_SEAL_SEAL) != 0)
		die("F_ADD_SEALS");
	if (lseek(sealed, 4242, SEEK_SET) != 4242)
		die("lseek(sealed)");
	unsigned char *sro = mmap(NULL, SEALED_LEN, PROT_READ, MAP_SHARED, sealed, 0);
	if (sro == MAP_FAILED)
		die("mmap(sealed)");

	/* shared */
	int shared = memfd_create("ckpt-shared", MFD_CLOEXEC);
	if (shared < 0)
		die("memfd_create(shared)");
	if (ftruncate(shared, SHARED_LEN) != 0)
		die("ftruncate(shared)");
	if (fchmod(shared, 0642) != 0)
		die("fchmod(shared)");
	unsigned char *sh = mmap(NULL, SHARED_LEN, PROT_READ | PROT_WRITE, MAP_SHARED, shared, 0);
	unsigned char *pr = mmap(NULL, SHARED_LEN, PROT_READ | PROT_WRITE, MAP_PRIVATE, shared, 0);
	if (sh == MAP_FAILED || pr == MAP_FAILED)
		die("mmap(shared)");
	for (size_t i = 0; i < 3 * 4096; i++)
		sh[i] = pat(i, 2);
	pr[5 * 4096] = 0x77; /* a private dirty page */

	/* unlinked */
	int g = open(gone, O_RDWR | O_CREAT | O_EXCL, 0640);
	if (g < 0)
		die("open(gone)");
	for (size_t i = 0; i < GONE_LEN; i++)
		buf[i] = pat(i, 3);
	if (write(g, buf, GONE_LEN) != GONE_LEN || lseek(g, 777, SEEK_SET) != 777)
		die("write(gone)");
	if (unlink(gone) != 0)
		die("unlink(gone)");
	if (chown_to && fchown(g, ouid, ogid) != 0)
		die("fchown(gone)");

	/* wronly */
	int wo = open(wronly, O_WRONLY | O_CREAT | O_EXCL, 0600);
	if (wo < 0)
		die("open(wronly)");
	for (size_t i = 0; i < WRONLY_LEN; i++)
		buf[i] = pat(i, 4);
	if (write(wo, buf, WRONLY_LEN) != WRONLY_LEN)
		die("write(wronly)");
	if (unlink(wronly) != 0)
		die("unlink(wronly)");

	FILE *r = fopen(ready, "w");
	if (!r || fputs("ready\n", r) < 0 || fclose(r) != 0)
		die("ready");
	struct stat st;
	while (stat(go, &st) != 0)
		sleep_ms(20);

	/* sealed */
	link_is(sealed, "/memfd:ckpt-sealed (deleted)", "sealed");
	content_is(sealed, SEALED_LEN, 1, "sealed");
	if (lseek(sealed, 0, SEEK_CUR) != 4242)
		fail("sealed: offset %lld, want 4242", (long long)lseek(sealed, 0, SEEK_CUR));
	int seals = fcntl(sealed, F_GET_SEALS);
	if (seals != (F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | F_SEAL_SEAL))
		fail("sealed: seals %#x, want %#x", seals,
		     F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | F_SEAL_SEAL);
	if (pwrite(sealed, "x", 1, 0) != -1 || errno != EPERM)
		fail("sealed: a write was not refused (F_SEAL_WRITE)");
	if (ftruncate(sealed, 4096) != -1 || errno != EPERM)
		fail("sealed: shrinking was not refused (F_SEAL_SHRINK)");
	if (fcntl(sealed, F_ADD_SEALS, F_SEAL_FUTURE_WRITE) != -1 || errno != EPERM)
		fail("sealed: a seal was added (F_SEAL_SEAL)");
	if (mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, sealed, 0) != MAP_FAILED)
		fail("sealed: a writable shared mapping was allowed");
	for (size_t i = 0; i < SEALED_LEN; i++)
		if (sro[i] != pat(i, 1)) {
			fail("sealed: the shared mapping reads %u at %zu", sro[i], i);
			break;
		}

	/* shared */
	struct stat sst;
	if (fstat(shared, &sst) != 0 || (sst.st_mode & 07777) != 0642)
		fail("shared: mode %o, want 642", sst.st_mode & 07777);
	link_is(shared, "/memfd:ckpt-shared (deleted)", "shared");
	if (!(fcntl(shared, F_GETFD) & FD_CLOEXEC))
		fail("shared: close-on-exec lost");
	if (fcntl(shared, F_GET_SEALS) != F_SEAL_SEAL)
		fail("shared: seals %#x, want F_SEAL_SEAL (no MFD_ALLOW_SEALING)",
		     fcntl(shared, F_GET_SEALS));
	if (pread(shared, buf, SHARED_LEN, 0) != SHARED_LEN)
		fail("shared: short read");
	for (size_t i = 0; i < SHARED_LEN; i++) {
		unsigned char want = i < 3 * 4096 ? pat(i, 2) : 0;
		if (buf[i] != want) {
			fail("shared: fd reads %u at %zu, want %u", buf[i], i, want);
			break;
		}
	}
	if (pwrite(shared, "F", 1, 100) != 1 || sh[100] != 'F')
		fail("shared: a write through the fd is not seen in the shared mapping");
	sh[200] = 'M';
	if (pread(shared, buf, 1, 200) != 1 || buf[0] != 'M')
		fail("shared: a write through the mapping is not seen through the fd");
	if (pr[5 * 4096] != 0x77)
		fail("shared: the private mapping lost its dirty page");
	if (pr[6 * 4096] != 0 || pr[4096] != pat(4096, 2))
		fail("shared: the private mapping does not see the file");
	pr[7] = 9;
	if (sh[7] != pat(7, 2))
		fail("shared: a private write reached the file");

	/* unlinked */
	char want[4200];
	snprintf(want, sizeof want, "%s (deleted)", gone);
	link_is(g, want, "unlinked");
	content_is(g, GONE_LEN, 3, "unlinked");
	if (lseek(g, 0, SEEK_CUR) != 777)
		fail("unlinked: offset %lld, want 777", (long long)lseek(g, 0, SEEK_CUR));
	if (fstat(g, &st) != 0 || (st.st_mode & 07777) != 0640 || st.st_nlink != 0)
		fail("unlinked: mode %o nlink %lu, want 640 and 0", st.st_mode & 07777,
		     (unsigned long)st.st_nlink);
	if (pwrite(g, "w", 1, GONE_LEN) != 1)
		fail("unlinked: not writable");
	if (chown_to && (st.st_uid != ouid || st.st_gid != ogid))
		fail("unlinked: owner %u:%u, want %u:%u", (unsigned)st.st_uid,
		     (unsigned)st.st_gid, (unsigned)ouid, (unsigned)ogid);

	/* wronly */
	if ((fcntl(wo, F_GETFL) & O_ACCMODE) != O_WRONLY)
		fail("wronly: not write-only any more");
	snprintf(want, sizeof want, "%s (deleted)", wronly);
	link_is(wo, want, "wronly");
	char self[64];
	snprintf(self, sizeof self, "/proc/self/fd/%d", wo);
	int wr = open(self, O_RDONLY);
	if (wr < 0)
		fail("wronly: cannot reopen it to read (%s)", strerror(errno));
	else {
		content_is(wr, WRONLY_LEN, 4, "wronly");
		close(wr);
	}

	FILE *out = fopen(result, "w");
	if (!out)
		return 1;
	if (nfail)
		fprintf(out, "FAIL: %s\n", failures);
	else
		fputs("OK\n", out);
	return fclose(out) == 0 ? 0 : 1;
}
