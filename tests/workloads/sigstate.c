/*
 * sigstate: sets the state a dump asks of the task itself (signal
 * dispositions, resource limits, interval timers), waits to be checkpointed
 * and restored, then checks it.
 *
 * Usage: sigstate DIR [mdwe]
 *
 * Set-up (any failure exits 2 with a message: the test then fails loudly):
 *   every signal from 1 to 64 but SIGKILL, SIGSTOP, SIGUSR1 and the C
 *   library's 32 and 33 gets its own
 *   disposition: a handler, SIG_IGN or SIG_DFL in turn, with flags and a
 *   mask that depend on the signal (so a disposition saved under the wrong
 *   signal number is seen);
 *   RLIMIT_NOFILE soft 123, RLIMIT_CORE soft 0 / hard 4096,
 *   RLIMIT_STACK soft 7 MiB;
 *   ITIMER_VIRTUAL with a 1000 s interval (it does not expire while the
 *   process sleeps).
 * With "mdwe" it also calls prctl(PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN):
 * the process may no longer map memory both writable and executable, so a
 * dump must ask it through its plain scratch page, without a trampoline.
 * Then "ready\n" goes to DIR/ready.
 *
 * On SIGUSR1 (sent by the test after the restore) it checks everything and
 * writes "OK\n" or "FAIL: <what>; ...\n" to DIR/result, then exits 0.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/time.h>
#include <unistd.h>

#ifndef PR_SET_MDWE
#define PR_SET_MDWE 65
#define PR_MDWE_REFUSE_EXEC_GAIN 1
#endif

static char failures[4096];
static int nfail;
static volatile sig_atomic_t asked;

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
	fprintf(stderr, "sigstate: %s: %s\n", what, strerror(errno));
	exit(2);
}

static void on_usr1(int sig)
{
	(void)sig;
	asked = 1;
}

static void handler_a(int sig) { (void)sig; }
static void handler_b(int sig, siginfo_t *si, void *uc) { (void)sig; (void)si; (void)uc; }

static int skipped(int sig)
{
	/* 32 and 33 belong to the C library's threads (it refuses them). */
	return sig == SIGKILL || sig == SIGSTOP || sig == SIGUSR1 || sig == 32 || sig == 33;
}

/* The disposition signal sig is given: handler, flags, mask. */
static int skipped(int sig);

static void wanted(int sig, struct sigaction *sa)
{
	memset(sa, 0, sizeof *sa);
	sigemptyset(&sa->sa_mask);
	switch (sig % 4) {
	case 0:
		sa->sa_handler = handler_a;
		sa->sa_flags = SA_RESTART;
		break;
	case 1:
		sa->sa_sigaction = handler_b;
		sa->sa_flags = SA_SIGINFO | (sig % 8 == 1 ? SA_NODEFER : 0);
		break;
	case 2:
		sa->sa_handler = SIG_IGN;
		break;
	default:
		sa->sa_handler = SIG_DFL;
		sa->sa_flags = sig % 8 == 3 ? SA_RESTART : 0;
		break;
	}
	/* A mask naming the signal's neighbours. */
	if (sig > 1 && !skipped(sig - 1))
		sigaddset(&sa->sa_mask, sig - 1);
	if (sig < 64 && !skipped(sig + 1))
		sigaddset(&sa->sa_mask, sig + 1);
}

static void check_signals(void)
{
	for (int sig = 1; sig <= 64; sig++) {
		if (skipped(sig))
			continue;
		struct sigaction want, got;
		wanted(sig, &want);
		if (sigaction(sig, NULL, &got) != 0) {
			fail("sigaction(%d): %s", sig, strerror(errno));
			continue;
		}
		if ((void *)got.sa_handler != (void *)want.sa_handler)
			fail("signal %d: handler %p, expected %p", sig, (void *)got.sa_handler,
			     (void *)want.sa_handler);
		int mask = SA_RESTART | SA_SIGINFO | SA_NODEFER;
		if ((got.sa_flags & mask) != (want.sa_flags & mask))
			fail("signal %d: flags %#x, expected %#x", sig, got.sa_flags & mask,
			     want.sa_flags & mask);
		for (int other = 1; other <= 64; other++)
			if (sigismember(&got.sa_mask, other) != sigismember(&want.sa_mask, other))
				fail("signal %d: mask bit %d differs", sig, other);
	}
}

static void check_limit(int res, const char *name, rlim_t soft, rlim_t hard)
{
	struct rlimit l;
	if (getrlimit(res, &l) != 0) {
		fail("getrlimit(%s): %s", name, strerror(errno));
		return;
	}
	if (l.rlim_cur != soft || (hard != RLIM_INFINITY && l.rlim_max != hard))
		fail("%s: %llu/%llu, expected %llu/%llu", name, (unsigned long long)l.rlim_cur,
		     (unsigned long long)l.rlim_max, (unsigned long long)soft,
		     (unsigned long long)hard);
}

static void write_file(const char *dir, const char *name, const char *text)
{
	char path[4096], tmp[4096];
	snprintf(path, sizeof path, "%s/%s", dir, name);
	snprintf(tmp, sizeof tmp, "%s/.%s.tmp", dir, name);
	int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	if (fd < 0)
		die("open");
	size_t len = strlen(text);
	if (write(fd, text, len) != (ssize_t)len)
		die("write");
	close(fd);
	if (rename(tmp, path) != 0)
		die("rename");
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		fprintf(stderr, "usage: sigstate DIR [mdwe]\n");
		return 2;
	}
	const char *dir = argv[1];
	int mdwe = argc > 2 && strcmp(argv[2], "mdwe") == 0;

	struct sigaction usr1;
	memset(&usr1, 0, sizeof usr1);
	usr1.sa_handler = on_usr1;
	sigemptyset(&usr1.sa_mask);
	if (sigaction(SIGUSR1, &usr1, NULL) != 0)
		die("sigaction(SIGUSR1)");
	for (int sig = 1; sig <= 64; sig++) {
		if (skipped(sig))
			continue;
		struct sigaction sa;
		wanted(sig, &sa);
		if (sigaction(sig, &sa, NULL) != 0)
			die("sigaction");
	}
	struct rlimit l;
	if (getrlimit(RLIMIT_NOFILE, &l) != 0)
		die("getrlimit");
	l.rlim_cur = 123;
	if (setrlimit(RLIMIT_NOFILE, &l) != 0)
		die("setrlimit(NOFILE)");
	l.rlim_cur = 0;
	l.rlim_max = 4096;
	if (setrlimit(RLIMIT_CORE, &l) != 0)
		die("setrlimit(CORE)");
	if (getrlimit(RLIMIT_STACK, &l) != 0)
		die("getrlimit(STACK)");
	l.rlim_cur = 7 << 20;
	if (setrlimit(RLIMIT_STACK, &l) != 0)
		die("setrlimit(STACK)");
	struct itimerval it = {.it_interval = {1000, 0}, .it_value = {1000, 0}};
	if (setitimer(ITIMER_VIRTUAL, &it, NULL) != 0)
		die("setitimer");
	if (mdwe && prctl(PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN, 0, 0, 0) != 0)
		die("prctl(PR_SET_MDWE)");
	write_file(dir, "ready", "ready\n");

	while (!asked)
		pause();

	check_signals();
	check_limit(RLIMIT_NOFILE, "RLIMIT_NOFILE", 123, RLIM_INFINITY);
	check_limit(RLIMIT_CORE, "RLIMIT_CORE", 0, 4096);
	check_limit(RLIMIT_STACK, "RLIMIT_STACK", 7 << 20, RLIM_INFINITY);
	struct itimerval now;
	if (getitimer(ITIMER_VIRTUAL, &now) != 0)
		fail("getitimer: %s", strerror(errno));
	else if (now.it_interval.tv_sec != 1000 || now.it_value.tv_sec < 990)
		fail("ITIMER_VIRTUAL: interval %lds, value %lds", (long)now.it_interval.tv_sec,
		     (long)now.it_value.tv_sec);
	char out[4200];
	if (nfail)
		snprintf(out, sizeof out, "FAIL: %s\n", failures);
	else
		snprintf(out, sizeof out, "OK\n");
	write_file(dir, "result", out);
	return 0;
}
