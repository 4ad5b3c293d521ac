/*
 * hostile_exec: runs a program with exactly the environment given on the
 * command line, optionally with fds 0, 1 and 2 closed or with an empty argv.
 * The test runs it as the unprivileged user (after setpriv), so the hostile
 * environment reaches only the final program, the setuid helper.
 *
 * Usage: hostile_exec [--close-std] [--no-argv] [--env NAME=VALUE]... -- PROGRAM [ARG]...
 *
 * Exit 127 if the exec itself fails.
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <string.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	static char *env[256];
	int nenv = 0, close_std = 0, no_argv = 0, i;
	for (i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--close-std") == 0) {
			close_std = 1;
		} else if (strcmp(argv[i], "--no-argv") == 0) {
			no_argv = 1;
		} else if (strcmp(argv[i], "--env") == 0 && i + 1 < argc && nenv < 255) {
			env[nenv++] = argv[++i];
		} else if (strcmp(argv[i], "--") == 0) {
			i++;
			break;
		} else {
			fprintf(stderr, "hostile_exec: bad argument %s\n", argv[i]);
			return 2;
		}
	}
	if (i >= argc) {
		fprintf(stderr, "hostile_exec: no program\n");
		return 2;
	}
	env[nenv] = NULL;
	if (close_std) {
		close(0);
		close(1);
		close(2);
	}
	static char *empty[] = { NULL };
	execve(argv[i], no_argv ? empty : argv + i, env);
	return 127;
}
