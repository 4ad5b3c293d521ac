/*
 * unsupported: a process holding one resource the engine cannot restore yet.
 * Dump must refuse it with a message naming the resource, and leave it
 * running and untouched.
 *
 * Usage: unsupported MODE READY-FILE
 *   pipe     holds the read end of a pipe on fd 3 whose write end another
 *            process holds (its pid is the second line of READY-FILE)
 *   stdpipe  holds both ends of a pipe as its fd 0 and fd 1 (restorable)
 *   socket   holds both ends of an established TCP connection on 127.0.0.1
 *   unix     holds a Unix stream socket on fd 3 connected to one another
 *            process holds (its pid is the second line of READY-FILE)
 *   listen   holds a listening Unix socket bound to an abstract name, with
 *            a connection waiting (its client held by another process)
 *   bound    holds a Unix datagram socket bound to an abstract name, with
 *            a datagram queued from a socket since closed
 *   scm      holds a Unix socketpair with an fd in flight (SCM_RIGHTS)
 *   child    has a child process (its pid is the second line of READY-FILE)
 *   threadchild  a second thread forks a child (listed under that thread)
 *   udp      holds a UDP-Lite socket bound to 127.0.0.1 and connected to
 *            127.0.0.1:9 (UDP itself is restored)
 *   netlink  holds a NETLINK_ROUTE socket
 *   rawip    holds a raw ICMP socket (needs CAP_NET_RAW: run as root)
 *   packet   holds an AF_PACKET socket (needs CAP_NET_RAW: run as root)
 *   ptmx     holds a pseudo-terminal master (/dev/ptmx) as fd 3
 *   io_uring holds an io_uring instance
 *   uffd     holds a userfaultfd (UFFD_USER_MODE_ONLY)
 *   perf     holds a perf event counting its own task clock
 *   bpf      holds a BPF array map (needs CAP_BPF: run as root)
 *   fanotify holds a fanotify group (FAN_REPORT_FID, allowed unprivileged)
 *   pidfd    holds a pidfd of itself
 *   mntns    lives in its own user and mount namespaces
 *   netns    lives in its own user and network namespaces
 *   strict   runs in seccomp strict mode (blocked reading a pipe)
 *   usernotif  has a seccomp filter that hands getpgid to a supervisor
 *            (SECCOMP_RET_USER_NOTIF; the listener fd is closed)
 *   pts      holds a pseudo-terminal's terminal side as fd 3 (its master
 *            moved to fd 100)
 *   traced   is traced (PTRACE_SEIZE) by its child, whose pid is the
 *            second line of READY-FILE
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
#include <errno.h>
#include <sched.h>
#include <stdlib.h>
#include <sys/fanotify.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <linux/bpf.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <sys/prctl.h>
#include <linux/io_uring.h>
#include <linux/netlink.h>
#include <linux/perf_event.h>
#include <linux/userfaultfd.h>

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

/* The resources of the later modes; 1 when MODE is one of them (and it was
 * created), 0 when MODE is not one of them, -1 on failure. */
static const char *ready_path;

static int more_resources(const char *mode, char *ready, size_t size)
{
	long fd = -2;
	if (strcmp(mode, "udp") == 0) {
		struct sockaddr_in a, b;
		memset(&a, 0, sizeof a);
		a.sin_family = AF_INET;
		a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		b = a;
		b.sin_port = htons(9);
		fd = socket(AF_INET, SOCK_DGRAM, IPPROTO_UDPLITE);
		if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof a) != 0 ||
		    connect(fd, (struct sockaddr *)&b, sizeof b) != 0)
			return -1;
	} else if (strcmp(mode, "netlink") == 0) {
		fd = socket(AF_NETLINK, SOCK_RAW, NETLINK_ROUTE);
	} else if (strcmp(mode, "rawip") == 0) {
		fd = socket(AF_INET, SOCK_RAW, IPPROTO_ICMP);
	} else if (strcmp(mode, "packet") == 0) {
		fd = socket(AF_PACKET, SOCK_RAW, 0);
	} else if (strcmp(mode, "ptmx") == 0) {
		fd = open("/dev/ptmx", O_RDWR | O_NOCTTY);
	} else if (strcmp(mode, "io_uring") == 0) {
		struct io_uring_params p;
		memset(&p, 0, sizeof p);
		fd = syscall(SYS_io_uring_setup, 4, &p);
	} else if (strcmp(mode, "uffd") == 0) {
		fd = syscall(SYS_userfaultfd, O_CLOEXEC | UFFD_USER_MODE_ONLY);
	} else if (strcmp(mode, "perf") == 0) {
		struct perf_event_attr a;
		memset(&a, 0, sizeof a);
		a.size = sizeof a;
		a.type = PERF_TYPE_SOFTWARE;
		a.config = PERF_COUNT_SW_TASK_CLOCK;
		a.exclude_kernel = 1;
		a.exclude_hv = 1;
		fd = syscall(SYS_perf_event_open, &a, 0, -1, -1, 0);
	} else if (strcmp(mode, "bpf") == 0) {
		union bpf_attr a;
		memset(&a, 0, sizeof a);
		a.map_type = BPF_MAP_TYPE_ARRAY;
		a.key_size = 4;
		a.value_size = 8;
		a.max_entries = 4;
		fd = syscall(SYS_bpf, BPF_MAP_CREATE, &a, sizeof a);
	} else if (strcmp(mode, "fanotify") == 0) {
		fd = fanotify_init(FAN_CLASS_NOTIF | FAN_REPORT_FID, O_RDONLY);
	} else if (strcmp(mode, "pidfd") == 0) {
		fd = syscall(SYS_pidfd_open, getpid(), 0);
	} else if (strcmp(mode, "mntns") == 0 || strcmp(mode, "netns") == 0) {
		int flag = mode[0] == 'm' ? CLONE_NEWNS : CLONE_NEWNET;
		if (unshare(CLONE_NEWUSER | flag) != 0)
			return -1;
		fd = -3;
	} else if (strcmp(mode, "strict") == 0) {
		/* Only read, write, exit and sigreturn from here on: write the
		 * ready file, then block in read for ever. */
		int p[2];
		int r = open(ready_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
		if (pipe(p) != 0 || r < 0 || prctl(PR_SET_SECCOMP, SECCOMP_MODE_STRICT) != 0)
			return -1;
		char b;
		if (write(r, "ready\n", 6) == 6)
			for (;;)
				if (read(p[0], &b, 1) < 0)
					break;
		syscall(SYS_exit, 1);
	} else if (strcmp(mode, "usernotif") == 0) {
		struct sock_filter prog[] = {
			BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
			BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_getpgid, 0, 1),
			BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_USER_NOTIF),
			BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
		};
		struct sock_fprog fprog = {sizeof prog / sizeof prog[0], prog};
		if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0)
			return -1;
		fd = syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_NEW_LISTENER, &fprog);
		if (fd >= 0)
			close((int)fd);
	} else if (strcmp(mode, "pts") == 0) {
		int m = posix_openpt(O_RDWR | O_NOCTTY);
		if (m < 0 || grantpt(m) != 0 || unlockpt(m) != 0 || dup2(m, 100) != 100 || close(m) != 0)
			return -1;
		int t = open(ptsname(100), O_RDWR | O_NOCTTY);
		if (t < 0 || (t != 3 && (dup2(t, 3) != 3 || close(t) != 0)))
			return -1;
		fd = 3;
	} else if (strcmp(mode, "traced") == 0) {
		pid_t parent = getpid();
		int gate[2];
		if (pipe(gate) != 0)
			return -1;
		pid_t c = fork();
		if (c < 0)
			return -1;
		if (c == 0) {
			char ok = ptrace(PTRACE_SEIZE, parent, 0, 0) == 0 ? 'y' : 'n';
			if (write(gate[1], &ok, 1) != 1)
				_exit(1);
			for (;;)
				pause();
		}
		char ok = 'n';
		if (read(gate[0], &ok, 1) != 1 || ok != 'y')
			return -1;
		close(gate[0]);
		close(gate[1]);
		snprintf(ready, size, "ready\n%d\n", (int)c);
		fd = -3;
	} else {
		return 0;
	}
	if (fd == -1) {
		fprintf(stderr, "unsupported: %s: %s\n", mode, strerror(errno));
		return -1;
	}
	return 1;
}

/* threadchild: a second thread forks the child (so it is listed in that
 * thread's /proc/PID/task/TID/children, not the leader's). */
static volatile pid_t thread_child;

static void *fork_from_thread(void *arg)
{
	(void)arg;
	pid_t c = fork();
	if (c == 0)
		idle(NULL);
	thread_child = c;
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
	ready_path = argv[2];
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
		socklen_t al = sizeof a;
		if (s < 0 || bind(s, (struct sockaddr *)&a, sizeof a) != 0 || listen(s, 1) != 0 ||
		    getsockname(s, (struct sockaddr *)&a, &al) != 0)
			return 1;
		/* An established connection: both ends held, the listener closed. */
		int c = socket(AF_INET, SOCK_STREAM, 0);
		if (c < 0 || connect(c, (struct sockaddr *)&a, sizeof a) != 0)
			return 1;
		int e = accept(s, NULL, NULL);
		if (e < 0)
			return 1;
		close(s);
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
	} else if (strcmp(mode, "child") == 0) {
		pid_t c = fork();
		if (c < 0)
			return 1;
		if (c == 0)
			idle(NULL);
		snprintf(ready, sizeof ready, "ready\n%d\n", (int)c);
	} else if (strcmp(mode, "threadchild") == 0) {
		pthread_t th;
		if (pthread_create(&th, NULL, fork_from_thread, NULL) != 0)
			return 1;
		while (thread_child == 0)
			usleep(1000);
		if (thread_child < 0)
			return 1;
		snprintf(ready, sizeof ready, "ready\n%d\n", (int)thread_child);
	} else if (more_resources(mode, ready, sizeof ready) != 1) {
		fprintf(stderr, "unsupported: mode %s failed or unknown\n", mode);
		return 2;
	}
	int fd = open(argv[2], O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0 || write(fd, ready, strlen(ready)) != (ssize_t)strlen(ready) || close(fd) != 0)
		return 1;
	idle(NULL);
	return 0;
}
