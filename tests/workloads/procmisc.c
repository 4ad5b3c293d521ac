/*
 * procmisc: sets one group of process state up, waits to be checkpointed
 * and restored, then checks it itself.
 *
 * Usage: procmisc DIR MODE
 *
 *   timers   POSIX timers on every clock an unprivileged user can use
 *            (REALTIME, MONOTONIC, BOOTTIME, TAI, PROCESS_CPUTIME_ID,
 *            THREAD_CPUTIME_ID) and with every notification kind
 *            (SIGEV_SIGNAL with a sigev_value, SIGEV_NONE, SIGEV_THREAD_ID,
 *            the NULL-sigevent default), with gaps in their ids (fillers
 *            created and deleted), armed one-shot, periodic and disarmed.
 *            Checked after restore: /proc/self/timers is the same as before
 *            (ids, signals, values, notification, clocks; the pid aside),
 *            every timer has its period and no more time left than before
 *            the dump (and not much less), the periodic one keeps firing
 *            with its sigev_value and timer id in the siginfo, the
 *            thread-directed one fires at this thread with its value when
 *            re-armed, and a new timer does not take a restored timer's id.
 *            One more timer had its signal blocked while it expired many
 *            times, then delivered: its overrun count is at least 5 before
 *            the dump and 0 after (ckpt records it but no kernel interface
 *            sets it: restore says so in a notice; "after" is told by the
 *            pid, which a restore changes).
 *   seccomp  no_new_privs and two seccomp filters: the older denies getpgid
 *            with EPERM, the newer (SECCOMP_FILTER_FLAG_LOG) kills the
 *            process on getsid. Checked after restore: Seccomp 2 with 2
 *            filters in /proc/self/status, NoNewPrivs 1, getpgid fails
 *            with EPERM, a forked child calling getsid dies of SIGSYS, and
 *            other syscalls still work.
 *   sched    personality ADDR_NO_RANDOMIZE | UNAME26, SCHED_BATCH with
 *            nice 7 and SCHED_FLAG_RESET_ON_FORK. Checked after restore:
 *            the same personality (uname reports a 2.6 release), policy,
 *            nice value and flag.
 *   maps     a file in DIR opened read-write and mapped MAP_SHARED with
 *            PROT_READ only (fd closed), and an anonymous MAP_NORESERVE
 *            mapping. Checked after restore: the shared mapping still has
 *            VM_MAYWRITE (VmFlags mw), mprotect to PROT_WRITE succeeds and
 *            a write through it reaches the file; the other keeps VmFlags nr.
 *   cwd      works in DIR/gone, which it made and removed. Checked after
 *            restore: /proc/self/cwd is DIR/gone... " (deleted)" (the name
 *            may have a suffix when DIR/gone exists again), "." has no
 *            links and nothing can be created in it, ".." is DIR.
 *
 * Set-up failures exit 2 with a message (the test then fails loudly).
 * "ready\n" goes to DIR/ready once the state is set up and checked once.
 * On SIGUSR1 it checks everything and writes "OK\n" or
 * "FAIL: <what>; <what>...\n" to DIR/result, then exits 0.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sched.h>
#include <stddef.h>
#include <sys/personality.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static char failures[4096];
static int nfail;

static void fail(const char *fmt, ...)
{
	size_t used = strlen(failures);
	if (used + 4 >= sizeof failures)
		return;
	if (nfail++)
		used += (size_t)snprintf(failures + used, sizeof failures - used, "; ");
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(failures + used, sizeof failures - used, fmt, ap);
	va_end(ap);
}

static void die(const char *what)
{
	fprintf(stderr, "procmisc: set-up: %s: %s\n", what, strerror(errno));
	exit(2);
}

/* ---- timers ---- */

#define SEC 1000000000LL

struct ptimer {
	const char *name;
	clockid_t clock;
	int notify; /* -1: NULL sigevent */
	int sig;    /* offset from SIGRTMIN */
	uintptr_t value;
	long long value_ns, interval_ns;
	timer_t id;
	long long left_ns; /* time left when checked before the dump */
};

static struct ptimer timers[] = {
	{"periodic-realtime", CLOCK_REALTIME, SIGEV_SIGNAL, 0, 0xabc, 50000000, 50000000, NULL, 0},
	{"none-monotonic", CLOCK_MONOTONIC, SIGEV_NONE, 0, 0, 1000 * SEC, 0, NULL, 0},
	{"thread-boottime", CLOCK_BOOTTIME, SIGEV_THREAD_ID, 1, 0x5555, 600 * SEC, 0, NULL, 0},
	{"process-cpu", CLOCK_PROCESS_CPUTIME_ID, SIGEV_SIGNAL, 2, 0x77, 100 * SEC, 7 * SEC, NULL, 0},
	{"thread-cpu", CLOCK_THREAD_CPUTIME_ID, SIGEV_NONE, 0, 0, 200 * SEC, 0, NULL, 0},
	{"tai-disarmed", CLOCK_TAI, SIGEV_SIGNAL, 3, (uintptr_t)-1, 0, 0, NULL, 0},
	{"default-realtime", CLOCK_REALTIME, -1, 0, 0, 900 * SEC, 30 * SEC, NULL, 0},
};
#define NTIMERS (sizeof timers / sizeof timers[0])

static volatile sig_atomic_t periodic_hits, periodic_bad, thread_hits, thread_bad;

static void on_timer(int sig, siginfo_t *si, void *uc)
{
	(void)uc;
	if (sig == SIGRTMIN) {
		periodic_hits++;
		if (si->si_code != SI_TIMER || si->si_value.sival_ptr != (void *)0xabc ||
		    si->si_timerid != (int)(intptr_t)timers[0].id)
			periodic_bad++;
	} else if (sig == SIGRTMIN + 1) {
		thread_hits++;
		if (si->si_code != SI_TIMER || si->si_value.sival_ptr != (void *)0x5555)
			thread_bad++;
	}
}

static long long ns_of(const struct timespec *t)
{
	return (long long)t->tv_sec * SEC + t->tv_nsec;
}

/* /proc/self/timers with "pid.N"/"tid.N" of this process written as "self". */
static void timers_text(char *out, size_t size)
{
	char raw[8192] = {0};
	int fd = open("/proc/self/timers", O_RDONLY);
	size_t len = 0;
	if (fd >= 0) {
		ssize_t n;
		while (len + 1 < sizeof raw && (n = read(fd, raw + len, sizeof raw - 1 - len)) > 0)
			len += (size_t)n;
		close(fd);
	}
	char pid[32];
	snprintf(pid, sizeof pid, ".%d\n", (int)getpid());
	size_t o = 0;
	for (const char *p = raw; *p && o + 8 < size;) {
		if (strncmp(p, pid, strlen(pid)) == 0) {
			o += (size_t)snprintf(out + o, size - o, ".self\n");
			p += strlen(pid);
		} else {
			out[o++] = *p++;
		}
	}
	out[o] = 0;
}

static char timers_before[8192];
static timer_t overrun_timer;
static pid_t setup_pid;

static void timers_setup(void)
{
	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_sigaction = on_timer;
	sa.sa_flags = SA_SIGINFO | SA_RESTART;
	sigemptyset(&sa.sa_mask);
	for (int s = 0; s < 4; s++)
		if (sigaction(SIGRTMIN + s, &sa, NULL) != 0)
			die("sigaction(SIGRTMIN+n)");
	for (size_t i = 0; i < NTIMERS; i++) {
		struct ptimer *t = &timers[i];
		/* Gaps in the ids: a filler before every other timer, deleted. */
		timer_t filler;
		if (i % 2 == 1) {
			if (timer_create(CLOCK_MONOTONIC, NULL, &filler) != 0)
				die("timer_create(filler)");
		}
		struct sigevent ev;
		memset(&ev, 0, sizeof ev);
		ev.sigev_notify = t->notify;
		ev.sigev_signo = SIGRTMIN + t->sig;
		ev.sigev_value.sival_ptr = (void *)t->value;
		if (t->notify == SIGEV_THREAD_ID)
			ev._sigev_un._tid = (int)gettid();
		if (timer_create(t->clock, t->notify < 0 ? NULL : &ev, &t->id) != 0)
			die(t->name);
		if (i % 2 == 1 && timer_delete(filler) != 0)
			die("timer_delete(filler)");
		struct itimerspec its = {
			.it_interval = {t->interval_ns / SEC, t->interval_ns % SEC},
			.it_value = {t->value_ns / SEC, t->value_ns % SEC},
		};
		if (t->value_ns && timer_settime(t->id, 0, &its, NULL) != 0)
			die(t->name);
	}
	setup_pid = getpid();
	/* The overrun timer: expirations pile up on one blocked signal, which
	 * is then let through once (the kernel counts the overrun when it is
	 * delivered) and blocked again for good, so no later delivery resets
	 * the count. */
	sigset_t rt4;
	sigemptyset(&rt4);
	sigaddset(&rt4, SIGRTMIN + 4);
	if (sigaction(SIGRTMIN + 4, &sa, NULL) != 0 || sigprocmask(SIG_BLOCK, &rt4, NULL) != 0)
		die("blocking SIGRTMIN+4");
	struct sigevent ev4;
	memset(&ev4, 0, sizeof ev4);
	ev4.sigev_notify = SIGEV_SIGNAL;
	ev4.sigev_signo = SIGRTMIN + 4;
	struct itimerspec every10ms = {.it_interval = {0, 10000000}, .it_value = {0, 10000000}};
	if (timer_create(CLOCK_MONOTONIC, &ev4, &overrun_timer) != 0 ||
	    timer_settime(overrun_timer, 0, &every10ms, NULL) != 0)
		die("the overrun timer");
	struct timespec wait = {0, 150000000};
	while (nanosleep(&wait, &wait) != 0 && errno == EINTR)
		;
	if (sigprocmask(SIG_UNBLOCK, &rt4, NULL) != 0 || sigprocmask(SIG_BLOCK, &rt4, NULL) != 0)
		die("letting SIGRTMIN+4 through once");
	if (timer_getoverrun(overrun_timer) < 5)
		die("the overrun timer has no overrun");
	timers_text(timers_before, sizeof timers_before);
	if (!strstr(timers_before, "notify: signal/tid.self") || !strstr(timers_before, "notify: none/pid.self"))
		die("/proc/self/timers does not show the timers as expected");
}

/* Before the dump: remember each timer's time left. After: compare. */
static void timers_check(int after)
{
	char now[8192];
	timers_text(now, sizeof now);
	if (after && strcmp(now, timers_before) != 0)
		fail("/proc/self/timers differs: before [%s] after [%s]", timers_before, now);
	for (size_t i = 0; i < NTIMERS; i++) {
		struct ptimer *t = &timers[i];
		struct itimerspec its;
		if (timer_gettime(t->id, &its) != 0) {
			fail("timer %s (id %d): timer_gettime: %s", t->name, (int)(intptr_t)t->id, strerror(errno));
			continue;
		}
		long long left = ns_of(&its.it_value), period = ns_of(&its.it_interval);
		if (period != t->interval_ns)
			fail("timer %s: period %lld ns, expected %lld", t->name, period, t->interval_ns);
		if (t->value_ns == 0) {
			if (left != 0)
				fail("timer %s: armed (%lld ns left), expected disarmed", t->name, left);
			continue;
		}
		if (left <= 0 || left > t->value_ns)
			fail("timer %s: %lld ns left, expected 0 < left <= %lld", t->name, left, t->value_ns);
		if (!after) {
			t->left_ns = left;
		} else if (t->interval_ns == 0 && (left > t->left_ns || left < t->left_ns - 60 * SEC)) {
			/* One-shot: no more than before the dump, and not a minute less. */
			fail("timer %s: %lld ns left after restore, %lld before", t->name, left, t->left_ns);
		}
	}
	/* Restored (a new pid): the overrun is gone; not restored: it stays. */
	int overrun = timer_getoverrun(overrun_timer);
	int restored = getpid() != setup_pid;
	if (!restored && overrun < 5)
		fail("overrun %d, expected at least 5", overrun);
	if (restored && overrun != 0)
		fail("overrun %d after restore, expected 0 (not restorable)", overrun);
	if (!after)
		return;
	/* The periodic timer keeps firing, with its value and id. */
	int before = periodic_hits;
	struct timespec nap = {0, 300000000};
	while (nanosleep(&nap, &nap) != 0 && errno == EINTR)
		;
	if (periodic_hits < before + 2)
		fail("periodic timer fired %d times in 300 ms", (int)(periodic_hits - before));
	if (periodic_bad)
		fail("periodic timer: %d signals with a wrong code, value or timer id", (int)periodic_bad);
	/* The thread-directed one, re-armed short, reaches this thread with its value. */
	struct itimerspec soon = {.it_value = {0, 10000000}};
	if (timer_settime(timers[2].id, 0, &soon, NULL) != 0)
		fail("re-arming the thread timer: %s", strerror(errno));
	for (int k = 0; k < 100 && !thread_hits; k++) {
		struct timespec ms = {0, 10000000};
		nanosleep(&ms, NULL);
	}
	if (thread_hits != 1 || thread_bad)
		fail("thread timer: %d signals, %d wrong", (int)thread_hits, (int)thread_bad);
	/* A new timer takes a fresh id. */
	timer_t fresh;
	if (timer_create(CLOCK_MONOTONIC, NULL, &fresh) != 0) {
		fail("timer_create after restore: %s", strerror(errno));
	} else {
		for (size_t i = 0; i < NTIMERS; i++)
			if (fresh == timers[i].id)
				fail("a new timer got id %d, which %s holds", (int)(intptr_t)fresh, timers[i].name);
	}
}

/* ---- seccomp ---- */

static int status_field(const char *key)
{
	FILE *f = fopen("/proc/self/status", "r");
	if (!f)
		return -1;
	char line[256];
	int v = -1;
	size_t n = strlen(key);
	while (fgets(line, sizeof line, f))
		if (strncmp(line, key, n) == 0 && line[n] == ':') {
			v = atoi(line + n + 1);
			break;
		}
	fclose(f);
	return v;
}

static void install(int nr, unsigned int action, unsigned int flags)
{
	struct sock_filter prog[] = {
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (unsigned int)nr, 0, 1),
		BPF_STMT(BPF_RET | BPF_K, action),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
	};
	struct sock_fprog fprog = {sizeof prog / sizeof prog[0], prog};
	if (syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, flags, &fprog) != 0)
		die("seccomp(SECCOMP_SET_MODE_FILTER)");
}

static void seccomp_setup(void)
{
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0)
		die("PR_SET_NO_NEW_PRIVS");
	install(SYS_getpgid, SECCOMP_RET_ERRNO | EPERM, 0);
	install(SYS_getsid, SECCOMP_RET_KILL_PROCESS, SECCOMP_FILTER_FLAG_LOG);
}

static void seccomp_check(int after)
{
	(void)after;
	if (status_field("Seccomp") != 2)
		fail("Seccomp %d, expected 2", status_field("Seccomp"));
	if (status_field("Seccomp_filters") != 2)
		fail("Seccomp_filters %d, expected 2", status_field("Seccomp_filters"));
	if (status_field("NoNewPrivs") != 1)
		fail("NoNewPrivs %d, expected 1", status_field("NoNewPrivs"));
	errno = 0;
	if (syscall(SYS_getpgid, 0) != -1 || errno != EPERM)
		fail("getpgid was not denied with EPERM (errno %d)", errno);
	if (syscall(SYS_getppid) <= 0)
		fail("getppid failed: %s", strerror(errno));
	pid_t c = fork();
	if (c < 0) {
		fail("fork: %s", strerror(errno));
	} else if (c == 0) {
		syscall(SYS_getsid, 0);
		_exit(0);
	} else {
		int st = 0;
		if (waitpid(c, &st, 0) != c)
			fail("waitpid: %s", strerror(errno));
		else if (!WIFSIGNALED(st) || WTERMSIG(st) != SIGSYS)
			fail("a child calling getsid was not killed by SIGSYS (status %#x)", st);
	}
}

/* ---- sched ---- */

#define PERSONA (PER_LINUX | ADDR_NO_RANDOMIZE | UNAME26)

struct sched_attr_v0 {
	uint32_t size, policy;
	uint64_t flags;
	int32_t nice;
	uint32_t priority;
	uint64_t runtime, deadline, period;
};

static void sched_setup(void)
{
	if (personality(PERSONA) == -1)
		die("personality");
	struct sched_attr_v0 a = {.size = sizeof a, .policy = SCHED_BATCH, .flags = 1 /* RESET_ON_FORK */, .nice = 7};
	if (syscall(SYS_sched_setattr, 0, &a, 0) != 0)
		die("sched_setattr(SCHED_BATCH, nice 7, reset on fork)");
}

static void sched_check(int after)
{
	(void)after;
	int p = personality(0xffffffff);
	if (p != PERSONA)
		fail("personality %#x, expected %#x", p, PERSONA);
	struct utsname u;
	if (uname(&u) != 0 || strncmp(u.release, "2.6", 3) != 0)
		fail("uname release %s under UNAME26", u.release);
	struct sched_attr_v0 a;
	memset(&a, 0, sizeof a);
	if (syscall(SYS_sched_getattr, 0, &a, sizeof a, 0) != 0) {
		fail("sched_getattr: %s", strerror(errno));
		return;
	}
	if (a.policy != SCHED_BATCH)
		fail("policy %u, expected SCHED_BATCH", a.policy);
	if (a.nice != 7)
		fail("nice %d, expected 7", a.nice);
	if (!(a.flags & 1))
		fail("SCHED_FLAG_RESET_ON_FORK lost (flags %#llx)", (unsigned long long)a.flags);
	errno = 0;
	int n = getpriority(PRIO_PROCESS, 0);
	if (n != 7)
		fail("getpriority %d, expected 7", n);
}

/* ---- maps ---- */

#define PAGE 4096UL

static char *shared_map, *noreserve_map;
static char shared_path[PATH_MAX];

/* Whether the smaps entry starting at `at` lists VmFlags mnemonic `flag`;
 * -1 if the mapping is not found. */
static int has_vmflag(void *at, const char *flag)
{
	FILE *f = fopen("/proc/self/smaps", "r");
	if (!f)
		return -1;
	char line[1024];
	int in = 0, found = -1;
	unsigned long start = (unsigned long)at;
	while (fgets(line, sizeof line, f)) {
		unsigned long b, e;
		if (sscanf(line, "%lx-%lx ", &b, &e) == 2 && strchr(line, '-') < strchr(line, ' ')) {
			in = b == start;
			continue;
		}
		if (in && strncmp(line, "VmFlags:", 8) == 0) {
			found = 0;
			for (char *t = strtok(line + 8, " \n"); t; t = strtok(NULL, " \n"))
				if (strcmp(t, flag) == 0)
					found = 1;
			break;
		}
	}
	fclose(f);
	return found;
}

static void maps_setup(const char *dir)
{
	snprintf(shared_path, sizeof shared_path, "%s/shared.dat", dir);
	int fd = open(shared_path, O_RDWR | O_CREAT | O_TRUNC, 0600);
	if (fd < 0 || ftruncate(fd, 2 * PAGE) != 0 || pwrite(fd, "before", 6, 0) != 6)
		die("creating shared.dat");
	shared_map = mmap(NULL, 2 * PAGE, PROT_READ, MAP_SHARED, fd, 0);
	if (shared_map == MAP_FAILED)
		die("mmap(shared.dat, PROT_READ, MAP_SHARED)");
	close(fd);
	noreserve_map = mmap(NULL, 4 * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (noreserve_map == MAP_FAILED)
		die("mmap(MAP_NORESERVE)");
	memset(noreserve_map, 0x5a, PAGE);
}

static void maps_check(int after)
{
	if (has_vmflag(shared_map, "mw") != 1)
		fail("the shared mapping lost VM_MAYWRITE (mw)");
	if (has_vmflag(noreserve_map, "nr") != 1)
		fail("the MAP_NORESERVE mapping lost nr");
	if (noreserve_map[PAGE - 1] != 0x5a)
		fail("the MAP_NORESERVE mapping lost its content");
	if (memcmp(shared_map, "before", 6) != 0)
		fail("the shared mapping does not show the file's content");
	if (!after)
		return;
	if (mprotect(shared_map, 2 * PAGE, PROT_READ | PROT_WRITE) != 0) {
		fail("mprotect(PROT_WRITE) of the shared mapping: %s", strerror(errno));
		return;
	}
	memcpy(shared_map, "after!", 6);
	if (msync(shared_map, 2 * PAGE, MS_SYNC) != 0)
		fail("msync: %s", strerror(errno));
	char b[8] = {0};
	int fd = open(shared_path, O_RDONLY);
	if (fd < 0 || pread(fd, b, 6, 0) != 6 || memcmp(b, "after!", 6) != 0)
		fail("a write through the shared mapping did not reach the file (%s)", b);
	if (fd >= 0)
		close(fd);
}

/* ---- cwd ---- */

static char cwd_dir[PATH_MAX];
static struct stat cwd_parent;

static void cwd_setup(const char *dir)
{
	snprintf(cwd_dir, sizeof cwd_dir, "%s/gone", dir);
	if (stat(dir, &cwd_parent) != 0 || mkdir(cwd_dir, 0700) != 0 || chdir(cwd_dir) != 0 || rmdir(cwd_dir) != 0)
		die("making, entering and removing DIR/gone");
}

static void cwd_check(int after)
{
	(void)after;
	char link[PATH_MAX + 32] = {0};
	if (readlink("/proc/self/cwd", link, sizeof link - 1) < 0)
		fail("readlink /proc/self/cwd: %s", strerror(errno));
	size_t n = strlen(cwd_dir), l = strlen(link);
	if (strncmp(link, cwd_dir, n) != 0 || l < 10 || strcmp(link + l - 10, " (deleted)") != 0)
		fail("cwd is %s, expected %s... (deleted)", link, cwd_dir);
	struct stat here, up;
	if (stat(".", &here) != 0 || here.st_nlink != 0 || !S_ISDIR(here.st_mode))
		fail("\".\" is not a removed directory");
	if (stat("..", &up) != 0 || up.st_ino != cwd_parent.st_ino || up.st_dev != cwd_parent.st_dev)
		fail("\"..\" is not DIR");
	int fd = open("x", O_WRONLY | O_CREAT, 0600);
	if (fd >= 0 || errno != ENOENT)
		fail("a file could be created in the removed directory (%s)", fd >= 0 ? "yes" : strerror(errno));
	if (fd >= 0)
		close(fd);
}

/* ---- the protocol ---- */

static volatile sig_atomic_t asked;

static void on_usr1(int sig)
{
	(void)sig;
	asked = 1;
}

int main(int argc, char **argv)
{
	if (argc < 3) {
		fprintf(stderr, "usage: procmisc DIR MODE\n");
		return 2;
	}
	const char *dir = argv[1], *mode = argv[2];
	/* Inherited fds (a test runner's jobserver pipe) are not ours. */
	close_range(3, ~0U, 0);

	void (*check)(int);
	if (strcmp(mode, "timers") == 0) {
		timers_setup();
		check = timers_check;
	} else if (strcmp(mode, "seccomp") == 0) {
		seccomp_setup();
		check = seccomp_check;
	} else if (strcmp(mode, "sched") == 0) {
		sched_setup();
		check = sched_check;
	} else if (strcmp(mode, "maps") == 0) {
		maps_setup(dir);
		check = maps_check;
	} else if (strcmp(mode, "cwd") == 0) {
		cwd_setup(dir);
		check = cwd_check;
	} else {
		fprintf(stderr, "procmisc: unknown mode %s\n", mode);
		return 2;
	}
	check(0);
	if (nfail) {
		fprintf(stderr, "procmisc: set-up check: %s\n", failures);
		return 2;
	}

	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = on_usr1;
	sigemptyset(&sa.sa_mask);
	if (sigaction(SIGUSR1, &sa, NULL) != 0)
		die("sigaction");
	sigset_t block, wait;
	sigemptyset(&block);
	sigaddset(&block, SIGUSR1);
	sigprocmask(SIG_BLOCK, &block, &wait);
	sigdelset(&wait, SIGUSR1);

	char path[PATH_MAX + 16];
	snprintf(path, sizeof path, "%s/ready", dir);
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	if (fd < 0 || write(fd, "ready\n", 6) != 6 || close(fd) != 0)
		die("writing ready");

	while (!asked)
		sigsuspend(&wait);

	check(1);
	char out[4200];
	int n = nfail ? snprintf(out, sizeof out, "FAIL: %s\n", failures) : snprintf(out, sizeof out, "OK\n");
	char tmp[PATH_MAX + 16], result[PATH_MAX + 16];
	snprintf(tmp, sizeof tmp, "%s/result.tmp", dir);
	snprintf(result, sizeof result, "%s/result", dir);
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	if (fd < 0 || write(fd, out, (size_t)n) != n || close(fd) != 0 || rename(tmp, result) != 0)
		return 3;
	return 0;
}
