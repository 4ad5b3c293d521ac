/*
 * unsupported: a process holding one resource the engine cannot restore yet.
 * Dump must refuse it with a message naming the resource, and leave it
 * running and untouched.
 *
 * Usage: unsupported MODE READY-FILE
 *   pipe     holds the read end of a pipe on fd 3 whose write end another
 *            process holds (its pid is the second line of READY-FILE)
 *   stdpipe  holds both ends of a pipe as its fd 0 and fd 1 (restorable)
 *   socket   holds a listening TCP socket on 127.0.0.1 (any port)
 *   unix     holds a Unix stream socket on fd 3 connected to one another
 *            process holds (its pid is the second line of READY-FILE)
 *   listen   holds a listening Unix socket bound to an abstract name, with
 *            a connection waiting (its client held by another process)
 *   bound    holds a Unix datagram socket bound to an abstract name, with
 *            a datagram queued from a socket since closed
 *   scm      holds a Unix socketpair with an fd in flight (SCM_RIGHTS)
 *   thread   runs a second thread
 *   child    has a child process (its pid is the second line of READY-FILE)
 *
 * It counts into nothing: it only waits. "ready\n" goes to READY-FILE once
 * the resource exists.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <fcntl.h>
#include <stddef.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

/* A process that is not our child (double fork) holding `fd`; its pid. */
static pid_t holder(int fd)
{
	int p[2];
	if (pipe(p) != 0)
		return -1;
	pid_t c = fork();
	if (c == 0) {
		pid_t g = fork();
		if (g == 0) {
			close(p[0]);
			close(p[1]);
			for (;;)
				pause();
		}
		if (write(p[1], &g, sizeof g) != sizeof g)
			_exit(1);
		_exit(0);
	}
	pid_t g = -1;
	close(p[1]);
	if (c < 0 || read(p[0], &g, sizeof g) != sizeof g)
		g = -1;
	close(p[0]);
	waitpid(c, NULL, 0);
	(void)fd;
	return g;
}

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
		if (pipe(p) != 0 || p[0] != 3)
			return 1;
		pid_t g = holder(p[1]);
		if (g < 0)
			return 1;
		close(p[1]);
		snprintf(ready, sizeof ready, "ready\n%d\n", (int)g);
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
		if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) != 0 || sv[0] != 3)
			return 1;
		pid_t g = holder(sv[1]);
		if (g < 0)
			return 1;
		close(sv[1]);
		snprintf(ready, sizeof ready, "ready\n%d\n", (int)g);
	} else if (strcmp(mode, "listen") == 0 || strcmp(mode, "bound") == 0) {
		int stream = strcmp(mode, "listen") == 0;
		int s = socket(AF_UNIX, stream ? SOCK_STREAM : SOCK_DGRAM, 0);
		struct sockaddr_un a;
		memset(&a, 0, sizeof a);
		a.sun_family = AF_UNIX;
		int n = snprintf(a.sun_path + 1, sizeof a.sun_path - 1, "ckpt-test-%d", (int)getpid());
		socklen_t len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + n);
		if (s != 3 || bind(s, (struct sockaddr *)&a, len) != 0 || (stream && listen(s, 1) != 0))
			return 1;
		/* A connection waiting to be accepted (its client held by another
		 * process), or a datagram queued (its sender gone). */
		int c = socket(AF_UNIX, stream ? SOCK_STREAM : SOCK_DGRAM, 0);
		if (c < 0 || connect(c, (struct sockaddr *)&a, len) != 0)
			return 1;
		if (stream) {
			pid_t g = holder(c);
			if (g < 0)
				return 1;
			snprintf(ready, sizeof ready, "ready\n%d\n", (int)g);
		} else if (send(c, "q", 1, 0) != 1) {
			return 1;
		}
		close(c);
	} else if (strcmp(mode, "scm") == 0) {
		int sv[2];
		if (socketpair(AF_UNIX, SOCK_DGRAM, 0, sv) != 0)
			return 1;
		int pass = sv[0];
		char cbuf[CMSG_SPACE(sizeof(int))];
		memset(cbuf, 0, sizeof cbuf);
		char byte = 'x';
		struct iovec iov = {.iov_base = &byte, .iov_len = 1};
		struct msghdr m = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf,
				   .msg_controllen = sizeof cbuf};
		struct cmsghdr *cm = CMSG_FIRSTHDR(&m);
		cm->cmsg_level = SOL_SOCKET;
		cm->cmsg_type = SCM_RIGHTS;
		cm->cmsg_len = CMSG_LEN(sizeof(int));
		memcpy(CMSG_DATA(cm), &pass, sizeof pass);
		if (sendmsg(sv[0], &m, 0) != 1)
			return 1;
	} else if (strcmp(mode, "thread") == 0) {
		pthread_t t;
		if (pthread_create(&t, NULL, idle, NULL) != 0)
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
