/*
 * unsupported: a process holding one resource the engine cannot restore yet.
 * Dump must refuse it with a message naming the resource, and leave it
 * running and untouched.
 *
 * Usage: unsupported MODE READY-FILE
 *   pipe     holds both ends of a pipe
 *   stdpipe  holds both ends of a pipe as its fd 0 and fd 1
 *   socket   holds a listening TCP socket on 127.0.0.1 (any port)
 *   unix     holds a connected pair of Unix sockets
 *   child    has a child process (its pid is the second line of READY-FILE)
 *
 * It counts into nothing: it only waits. "ready\n" goes to READY-FILE once
 * the resource exists.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static void *idle(void *arg)
{
	(void)arg;
	for (;;)
		pause();
	return NULL;
}

int main(int argc, char **argv)
{
	if (argc != 3) {
		fprintf(stderr, "usage: unsupported MODE READY-FILE\n");
		return 2;
	}
	/* Only what this program opens itself: no fd inherited from whoever started it. */
	close_range(3, ~0U, 0);
	const char *mode = argv[1];
	char ready[64] = "ready\n";
	if (strcmp(mode, "pipe") == 0) {
		int p[2];
		if (pipe(p) != 0)
			return 1;
	} else if (strcmp(mode, "stdpipe") == 0) {
		int p[2];
		if (pipe(p) != 0 || dup2(p[0], 0) != 0 || dup2(p[1], 1) != 1)
			return 1;
		close(p[0]);
		close(p[1]);
	} else if (strcmp(mode, "socket") == 0) {
		int s = socket(AF_INET, SOCK_STREAM, 0);
		struct sockaddr_in a;
		memset(&a, 0, sizeof a);
		a.sin_family = AF_INET;
		a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		if (s < 0 || bind(s, (struct sockaddr *)&a, sizeof a) != 0 || listen(s, 1) != 0)
			return 1;
	} else if (strcmp(mode, "unix") == 0) {
		int sv[2];
		if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) != 0)
			return 1;
	} else if (strcmp(mode, "child") == 0) {
		pid_t c = fork();
		if (c < 0)
			return 1;
		if (c == 0)
			idle(NULL);
		snprintf(ready, sizeof ready, "ready\n%d\n", (int)c);
	} else {
		fprintf(stderr, "unsupported: unknown mode %s\n", mode);
		return 2;
	}
	int fd = open(argv[2], O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0 || write(fd, ready, strlen(ready)) != (ssize_t)strlen(ready) || close(fd) != 0)
		return 1;
	idle(NULL);
	return 0;
}
