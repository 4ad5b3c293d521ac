/*
 * hostile_start: starts a program in a hostile state the caller controls,
 * then execs it. Run as the unprivileged user (after setpriv), so the state
 * reaches only the final program, a setuid helper.
 *
 * Usage: hostile_start [OPTION]... -- PROGRAM [ARG]...
 *   --close FD             close FD before the exec
 *   --rlimit RES:SOFT:HARD set a limit (RES: fsize nofile as data stack nproc
 *                          core cpu memlock; SOFT/HARD a number or "inf")
 *   --umask OCTAL          set the umask
 *   --ignore SIGNO         set SIGNO to SIG_IGN
 *   --block-all            block every signal
 *   --env NAME=VALUE       the environment is exactly the --env values given
 *                          (the inherited one when there are none)
 *
 * Exit 127 if the exec itself fails, 2 on a bad argument.
 */
#define _GNU_SOURCE
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

extern char **environ;

static int resource_of(const char *name)
{
	static const struct { const char *n; int r; } table[] = {
		{ "fsize", RLIMIT_FSIZE }, { "nofile", RLIMIT_NOFILE },
		{ "as", RLIMIT_AS },	   { "data", RLIMIT_DATA },
		{ "stack", RLIMIT_STACK }, { "nproc", RLIMIT_NPROC },
		{ "core", RLIMIT_CORE },   { "cpu", RLIMIT_CPU },
		{ "memlock", RLIMIT_MEMLOCK },
	};
	for (size_t i = 0; i < sizeof table / sizeof table[0]; i++)
		if (strcmp(name, table[i].n) == 0)
			return table[i].r;
	return -1;
}

static rlim_t limit_of(const char *s)
{
	return strcmp(s, "inf") == 0 ? RLIM_INFINITY : strtoull(s, NULL, 0);
}

int main(int argc, char **argv)
{
	static char *env[256];
	int nenv = 0, i;
	int closes[16], nclose = 0;
	for (i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--") == 0) {
			i++;
			break;
		} else if (i + 1 >= argc && strcmp(argv[i], "--block-all") != 0) {
			fprintf(stderr, "hostile_start: %s needs a value\n", argv[i]);
			return 2;
		} else if (strcmp(argv[i], "--close") == 0 && nclose < 16) {
			closes[nclose++] = atoi(argv[++i]);
		} else if (strcmp(argv[i], "--rlimit") == 0) {
			char buf[128];
			snprintf(buf, sizeof buf, "%s", argv[++i]);
			char *soft = strchr(buf, ':');
			char *hard = soft ? strchr(soft + 1, ':') : NULL;
			if (!soft || !hard) {
				fprintf(stderr, "hostile_start: bad --rlimit %s\n", argv[i]);
				return 2;
			}
			*soft++ = 0;
			*hard++ = 0;
			int res = resource_of(buf);
			struct rlimit rl = { limit_of(soft), limit_of(hard) };
			if (res < 0 || setrlimit(res, &rl) != 0) {
				perror("hostile_start: setrlimit");
				return 2;
			}
		} else if (strcmp(argv[i], "--umask") == 0) {
			umask((mode_t)strtoul(argv[++i], NULL, 8));
		} else if (strcmp(argv[i], "--ignore") == 0) {
			if (signal(atoi(argv[++i]), SIG_IGN) == SIG_ERR) {
				perror("hostile_start: signal");
				return 2;
			}
		} else if (strcmp(argv[i], "--block-all") == 0) {
			sigset_t all;
			sigfillset(&all);
			sigprocmask(SIG_BLOCK, &all, NULL);
		} else if (strcmp(argv[i], "--env") == 0 && nenv < 255) {
			env[nenv++] = argv[++i];
		} else {
			fprintf(stderr, "hostile_start: bad argument %s\n", argv[i]);
			return 2;
		}
	}
	if (i >= argc) {
		fprintf(stderr, "hostile_start: no program\n");
		return 2;
	}
	env[nenv] = NULL;
	for (int c = 0; c < nclose; c++)
		close(closes[c]);
	execve(argv[i], argv + i, nenv ? env : environ);
	return 127;
}
