/*
 * tree: a small process tree that shares resources between its members,
 * waits to be checkpointed and restored (dump --tree), then checks itself.
 *
 * Usage: tree DIR [same-pid]
 *
 * The members (each named with PR_SET_NAME, so the root finds them again
 * by name whatever their pids are after restore):
 *   root       the process started by the test (index 0);
 *   t-kid-a    a child (1): writes 3000 pattern bytes into a pipe whose read
 *              end t-kid-b holds, and forks
 *   t-grand    a grandchild (3), child of t-kid-a;
 *   t-kid-b    a child (2) in a process group of its own, holding the read
 *              end of the pipe (O_NONBLOCK, the data unread) and holding a
 *              PTHREAD_PROCESS_SHARED mutex locked in the shared memory;
 *   t-stopped  a child (4) that stopped itself with SIGSTOP;
 *   t-zombie   a child (5) that exited with code 7 and is not reaped.
 * Shared by several members: one MAP_SHARED|MAP_ANONYMOUS region holding
 * the mutex, four process-shared POSIX semaphores and a little state; one
 * open file description of DIR/shared (root, t-kid-a, t-stopped), at
 * offset 10 ("0123456789" written by the root before the forks).
 *
 * Set-up builds all that, writes "ready\n" to DIR/ready once every member
 * is in place (t-zombie a zombie, t-stopped stopped), and every running
 * member waits (sleeping in short steps) until DIR/go exists. Then:
 *   - each running member writes its pid into the shared memory and the
 *     root lets them go on once all three arrived (semaphores);
 *   - every member checks getppid() against its parent's pid as written in
 *     the shared memory, and its process group and session relative to the
 *     root's (t-kid-b leads a group of its own, everyone else is in the
 *     root's group; all in the root's session); with "same-pid", that its
 *     pid is the one it had before the dump;
 *   - t-kid-a sees a value the root wrote into the shared memory after
 *     restore, writes "AAAA" through the shared description and posts;
 *     the root then finds its own offset at 14 and the file
 *     "0123456789AAAA";
 *   - t-kid-b reads exactly the 3000 bytes, then EAGAIN (t-kid-a still
 *     holds the write end), and unlocks the mutex; the root's
 *     pthread_mutex_timedlock then succeeds;
 *   - the root finds its four children by name: t-zombie is a zombie and
 *     waitpid gives exit status 7; t-stopped is stopped (state T) until the
 *     root sends SIGCONT, then it checks itself;
 *   - the root collects every member's findings and writes "OK\n" or
 *     "FAIL: <what>; <what>...\n" to DIR/result, reaps its children and
 *     exits 0.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <semaphore.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

enum { ROOT, KID_A, KID_B, GRAND, STOPPED, ZOMBIE, MEMBERS };
static const char *const names[MEMBERS] = {"root", "t-kid-a", "t-kid-b", "t-grand", "t-stopped",
					   "t-zombie"};

#define PIPE_BYTES 3000
#define AFTER_MAGIC 777
#define BEFORE_MAGIC 4242

struct shared {
	pthread_mutex_t mu; /* held by t-kid-b across the dump */
	sem_t arrived;      /* each running member, after go */
	sem_t proceed;      /* the root, once all arrived */
	sem_t wrote;        /* t-kid-a, after writing to the shared file */
	sem_t done;         /* each member, after its checks */
	sem_t drained;      /* t-kid-b, after reading the pipe */
	pid_t old[MEMBERS]; /* pids before the dump */
	pid_t now[MEMBERS]; /* pids after restore */
	int setup[MEMBERS];
	int before; /* written by t-kid-a before the dump */
	int after;  /* written by the root after restore */
	char fail[MEMBERS][512];
};

static struct shared *sh;
static int same_pid;
static char go_path[4096];

static void die(const char *what)
{
	perror(what);
	exit(2);
}

static void fail(int who, const char *fmt, ...)
{
	char msg[256];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	size_t len = strlen(sh->fail[who]);
	snprintf(sh->fail[who] + len, sizeof sh->fail[who] - len, "%s%s: %s", len ? "; " : "",
		 names[who], msg);
}

static void nap(long ms)
{
	struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

static void wait_go(void)
{
	struct stat st;
	while (stat(go_path, &st) != 0)
		nap(10);
}

static struct timespec deadline(int secs)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += secs;
	return ts;
}

/* Waits on `s` for at most 10 s; 0 or -1. */
static int sem_wait10(sem_t *s)
{
	struct timespec ts = deadline(10);
	while (sem_timedwait(s, &ts) != 0) {
		if (errno != EINTR)
			return -1;
	}
	return 0;
}

static void name(int who)
{
	prctl(PR_SET_NAME, names[who], 0, 0, 0);
}

/* Field 3 (state) of /proc/PID/stat, or '?'. */
static char state_of(pid_t pid)
{
	char path[64], buf[512];
	snprintf(path, sizeof path, "/proc/%d/stat", pid);
	int fd = open(path, O_RDONLY);
	if (fd < 0)
		return '?';
	ssize_t n = read(fd, buf, sizeof buf - 1);
	close(fd);
	if (n <= 0)
		return '?';
	buf[n] = 0;
	char *p = strrchr(buf, ')');
	return p && p[1] == ' ' ? p[2] : '?';
}

/* The ancestry checks every member makes once the pids are known. */
static void check_links(int who, int parent)
{
	pid_t me = getpid();
	if (getppid() != sh->now[parent])
		fail(who, "getppid %d, %s is %d", getppid(), names[parent], sh->now[parent]);
	pid_t root_pgid = getpgid(sh->now[ROOT]), root_sid = getsid(sh->now[ROOT]);
	if (root_pgid != sh->now[ROOT])
		fail(who, "the root %d is in group %d, not its own", sh->now[ROOT], root_pgid);
	if (who == KID_B) {
		if (getpgid(0) != me)
			fail(who, "group %d, expected its own (%d)", getpgid(0), me);
	} else if (getpgid(0) != root_pgid) {
		fail(who, "group %d, the root's is %d", getpgid(0), root_pgid);
	}
	if (getsid(0) != root_sid)
		fail(who, "session %d, the root's is %d", getsid(0), root_sid);
	if (same_pid && me != sh->old[who])
		fail(who, "pid %d, it was %d before the dump", me, sh->old[who]);
}

/* A running member's part of the rendezvous after go. */
static int arrive(int who)
{
	wait_go();
	sh->now[who] = getpid();
	sem_post(&sh->arrived);
	if (sem_wait10(&sh->proceed) != 0) {
		fail(who, "the root never let it proceed");
		return -1;
	}
	return 0;
}

static unsigned char pattern(int i)
{
	return (unsigned char)(i * 7 + 3);
}

static void grandchild(void)
{
	name(GRAND);
	sh->old[GRAND] = getpid();
	sh->setup[GRAND] = 1;
	if (arrive(GRAND) == 0)
		check_links(GRAND, KID_A);
	sem_post(&sh->done);
	_exit(0);
}

static void kid_a(int wfd, int shared_fd)
{
	name(KID_A);
	sh->old[KID_A] = getpid();
	unsigned char buf[PIPE_BYTES];
	for (int i = 0; i < PIPE_BYTES; i++)
		buf[i] = pattern(i);
	if (write(wfd, buf, sizeof buf) != (ssize_t)sizeof buf)
		die("write pipe");
	pid_t g = fork();
	if (g < 0)
		die("fork grandchild");
	if (g == 0)
		grandchild();
	sh->before = BEFORE_MAGIC;
	sh->setup[KID_A] = 1;
	if (arrive(KID_A) == 0) {
		check_links(KID_A, ROOT);
		if (sh->after != AFTER_MAGIC)
			fail(KID_A, "the root's write to the shared memory is not seen (%d)",
			     sh->after);
		if (write(shared_fd, "AAAA", 4) != 4)
			fail(KID_A, "write to the shared description: %s", strerror(errno));
	}
	sem_post(&sh->wrote);
	/* Hold the write end until t-kid-b has found the pipe empty. */
	if (sem_wait10(&sh->drained) != 0)
		fail(KID_A, "t-kid-b never drained the pipe");
	int st;
	pid_t w = waitpid(-1, &st, 0);
	if (w < 0)
		fail(KID_A, "no child to wait for: %s", strerror(errno));
	else if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
		fail(KID_A, "t-grand ended with status %#x", st);
	sem_post(&sh->done);
	_exit(0);
}

static void kid_b(int rfd)
{
	name(KID_B);
	sh->old[KID_B] = getpid();
	if (setpgid(0, 0) != 0)
		die("setpgid");
	if (fcntl(rfd, F_SETFL, O_NONBLOCK) != 0)
		die("O_NONBLOCK");
	if (pthread_mutex_lock(&sh->mu) != 0)
		die("lock");
	sh->setup[KID_B] = 1;
	if (arrive(KID_B) == 0) {
		check_links(KID_B, ROOT);
		if (!(fcntl(rfd, F_GETFL) & O_NONBLOCK))
			fail(KID_B, "the pipe's read end lost O_NONBLOCK");
		unsigned char buf[PIPE_BYTES + 100];
		size_t got = 0;
		for (;;) {
			ssize_t n = read(rfd, buf + got, sizeof buf - got);
			if (n > 0) {
				got += (size_t)n;
				if (got == sizeof buf)
					break;
				continue;
			}
			if (n < 0 && errno == EINTR)
				continue;
			if (n == 0)
				fail(KID_B, "end of file on the pipe (t-kid-a holds its write end)");
			else if (errno != EAGAIN)
				fail(KID_B, "read pipe: %s", strerror(errno));
			break;
		}
		if (got != PIPE_BYTES)
			fail(KID_B, "%zu bytes in the pipe, expected %d", got, PIPE_BYTES);
		for (size_t i = 0; i < got && i < PIPE_BYTES; i++) {
			if (buf[i] != pattern((int)i)) {
				fail(KID_B, "pipe byte %zu is %d, expected %d", i, buf[i],
				     pattern((int)i));
				break;
			}
		}
	}
	sem_post(&sh->drained);
	int rc = pthread_mutex_unlock(&sh->mu);
	if (rc != 0)
		fail(KID_B, "unlock the shared mutex: %s", strerror(rc));
	sem_post(&sh->done);
	_exit(0);
}

static void stopped(void)
{
	name(STOPPED);
	sh->old[STOPPED] = getpid();
	sh->setup[STOPPED] = 1;
	raise(SIGSTOP);
	/* Continued by the root after restore (or by the test's cleanup). */
	sh->now[STOPPED] = getpid();
	check_links(STOPPED, ROOT);
	sem_post(&sh->done);
	_exit(0);
}

/* The root's children after restore, found by name: pid by member index. */
static void find_children(pid_t kids[MEMBERS])
{
	char path[64], buf[4096];
	for (int i = 0; i < MEMBERS; i++)
		kids[i] = -1;
	snprintf(path, sizeof path, "/proc/self/task/%d/children", getpid());
	int fd = open(path, O_RDONLY);
	if (fd < 0) {
		fail(ROOT, "open %s: %s", path, strerror(errno));
		return;
	}
	ssize_t n = read(fd, buf, sizeof buf - 1);
	close(fd);
	buf[n > 0 ? n : 0] = 0;
	char *save = NULL;
	int count = 0;
	for (char *tok = strtok_r(buf, " \n", &save); tok; tok = strtok_r(NULL, " \n", &save)) {
		pid_t pid = atoi(tok);
		char cpath[64], comm[64] = "";
		count++;
		snprintf(cpath, sizeof cpath, "/proc/%d/comm", pid);
		int cfd = open(cpath, O_RDONLY);
		if (cfd >= 0) {
			ssize_t m = read(cfd, comm, sizeof comm - 1);
			close(cfd);
			comm[m > 0 ? m : 0] = 0;
			comm[strcspn(comm, "\n")] = 0;
		}
		int found = 0;
		for (int i = KID_A; i < MEMBERS; i++) {
			if (strcmp(comm, names[i]) == 0) {
				if (kids[i] != -1)
					fail(ROOT, "two children named %s", names[i]);
				kids[i] = pid;
				found = 1;
			}
		}
		if (!found)
			fail(ROOT, "an unexpected child %d named \"%s\"", pid, comm);
	}
	if (count != 4)
		fail(ROOT, "%d children, expected 4", count);
	if (kids[GRAND] != -1)
		fail(ROOT, "t-grand is the root's child");
}

int main(int argc, char **argv)
{
	if (argc < 2 || argc > 3 || (argc == 3 && strcmp(argv[2], "same-pid") != 0)) {
		fprintf(stderr, "usage: tree DIR [same-pid]\n");
		return 2;
	}
	const char *dir = argv[1];
	same_pid = argc == 3;
	char ready[4096], result[4096], tmp[4096], shared_path[4096];
	snprintf(go_path, sizeof go_path, "%s/go", dir);
	snprintf(ready, sizeof ready, "%s/ready", dir);
	snprintf(result, sizeof result, "%s/result", dir);
	snprintf(tmp, sizeof tmp, "%s/result.tmp", dir);
	snprintf(shared_path, sizeof shared_path, "%s/shared", dir);

	sh = mmap(NULL, sizeof *sh, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (sh == MAP_FAILED)
		die("mmap");
	pthread_mutexattr_t ma;
	pthread_mutexattr_init(&ma);
	pthread_mutexattr_setpshared(&ma, PTHREAD_PROCESS_SHARED);
	if (pthread_mutex_init(&sh->mu, &ma) != 0)
		die("mutex");
	if (sem_init(&sh->arrived, 1, 0) || sem_init(&sh->proceed, 1, 0) ||
	    sem_init(&sh->wrote, 1, 0) || sem_init(&sh->done, 1, 0) || sem_init(&sh->drained, 1, 0))
		die("sem_init");
	sh->old[ROOT] = getpid();

	int shared_fd = open(shared_path, O_RDWR | O_CREAT | O_TRUNC, 0644);
	if (shared_fd < 0)
		die("open shared");
	if (write(shared_fd, "0123456789", 10) != 10)
		die("write shared");
	int p[2];
	if (pipe(p) != 0)
		die("pipe");

	pid_t z = fork();
	if (z < 0)
		die("fork");
	if (z == 0) {
		name(ZOMBIE);
		_exit(7);
	}
	sh->old[ZOMBIE] = z;
	pid_t s = fork();
	if (s < 0)
		die("fork");
	if (s == 0) {
		close(p[0]);
		close(p[1]);
		stopped();
	}
	pid_t a = fork();
	if (a < 0)
		die("fork");
	if (a == 0) {
		close(p[0]);
		kid_a(p[1], shared_fd);
	}
	pid_t b = fork();
	if (b < 0)
		die("fork");
	if (b == 0) {
		close(p[1]);
		close(shared_fd);
		kid_b(p[0]);
	}
	close(p[0]);
	close(p[1]);
	/* Everyone in place: the zombie dead, the stopped child stopped. */
	for (int i = 0; i < 1000; i++) {
		if (sh->setup[KID_A] && sh->setup[KID_B] && sh->setup[GRAND] &&
		    state_of(z) == 'Z' && state_of(s) == 'T')
			break;
		nap(10);
	}
	if (!(sh->setup[KID_A] && sh->setup[KID_B] && sh->setup[GRAND]) || state_of(z) != 'Z' ||
	    state_of(s) != 'T') {
		fprintf(stderr, "tree: the members did not get in place\n");
		return 2;
	}
	FILE *r = fopen(ready, "w");
	if (!r || fputs("ready\n", r) < 0 || fclose(r) != 0)
		die("ready");

	wait_go();
	sh->now[ROOT] = getpid();
	if (same_pid && sh->now[ROOT] != sh->old[ROOT])
		fail(ROOT, "pid %d, it was %d", sh->now[ROOT], sh->old[ROOT]);
	if (getsid(0) != getpid())
		fail(ROOT, "not a session leader (session %d)", getsid(0));
	sh->after = AFTER_MAGIC;
	for (int i = 0; i < 3; i++) {
		if (sem_wait10(&sh->arrived) != 0) {
			fail(ROOT, "only %d of 3 running members arrived", i);
			break;
		}
	}
	for (int i = 0; i < 3; i++)
		sem_post(&sh->proceed);
	if (sh->before != BEFORE_MAGIC)
		fail(ROOT, "t-kid-a's write to the shared memory is lost (%d)", sh->before);

	/* The shared description: t-kid-a's write moved the root's offset. */
	if (sem_wait10(&sh->wrote) != 0)
		fail(ROOT, "t-kid-a never wrote");
	off_t off = lseek(shared_fd, 0, SEEK_CUR);
	if (off != 14)
		fail(ROOT, "offset of the shared description %lld, expected 14", (long long)off);
	char content[64] = "";
	ssize_t n = pread(shared_fd, content, sizeof content - 1, 0);
	content[n > 0 ? n : 0] = 0;
	if (strcmp(content, "0123456789AAAA") != 0)
		fail(ROOT, "DIR/shared holds \"%s\"", content);

	/* The mutex t-kid-b held across the dump, unlocked by it now. */
	struct timespec ts = deadline(10);
	int rc = pthread_mutex_timedlock(&sh->mu, &ts);
	if (rc != 0)
		fail(ROOT, "lock the shared mutex t-kid-b released: %s", strerror(rc));
	else
		pthread_mutex_unlock(&sh->mu);

	pid_t kids[MEMBERS];
	find_children(kids);
	if (same_pid) {
		for (int i = KID_A; i < MEMBERS; i++) {
			if (i != GRAND && kids[i] != -1 && kids[i] != sh->old[i])
				fail(ROOT, "%s has pid %d, it was %d", names[i], kids[i], sh->old[i]);
		}
	}
	if (kids[ZOMBIE] != -1) {
		char st = state_of(kids[ZOMBIE]);
		if (st != 'Z')
			fail(ROOT, "t-zombie is in state %c, not a zombie", st);
		int status;
		pid_t w = waitpid(kids[ZOMBIE], &status, WNOHANG);
		if (w != kids[ZOMBIE])
			fail(ROOT, "waitpid on t-zombie gave %d (%s)", w, strerror(errno));
		else if (!WIFEXITED(status) || WEXITSTATUS(status) != 7)
			fail(ROOT, "t-zombie's status %#x, expected exit code 7", status);
	} else {
		fail(ROOT, "no child t-zombie");
	}
	int waiting = 3;
	if (kids[STOPPED] != -1) {
		/* Still stopped: let a little time pass to be sure. */
		nap(100);
		char st = state_of(kids[STOPPED]);
		if (st != 'T')
			fail(ROOT, "t-stopped is in state %c, not stopped", st);
		kill(kids[STOPPED], SIGCONT);
		waiting++;
	} else {
		fail(ROOT, "no child t-stopped");
	}
	for (int i = 0; i < waiting; i++) {
		if (sem_wait10(&sh->done) != 0) {
			fail(ROOT, "only %d of %d members finished their checks", i, waiting);
			break;
		}
	}
	for (int i = KID_A; i < MEMBERS; i++) {
		if (i == GRAND || i == ZOMBIE || kids[i] == -1)
			continue;
		int status = 0;
		pid_t w = waitpid(kids[i], &status, 0);
		if (w != kids[i] || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
			fail(ROOT, "%s ended with status %#x", names[i], status);
	}

	char out[MEMBERS * 520 + 16] = "";
	for (int i = 0; i < MEMBERS; i++) {
		if (!sh->fail[i][0])
			continue;
		strcat(out, out[0] ? "; " : "FAIL: ");
		strcat(out, sh->fail[i]);
	}
	strcat(out, out[0] ? "\n" : "OK\n");
	FILE *f = fopen(tmp, "w");
	if (!f || fputs(out, f) < 0 || fclose(f) != 0 || rename(tmp, result) != 0)
		die("result");
	return 0;
}
