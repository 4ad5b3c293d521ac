/* A multi-threaded workload that checks its own threads after a restore.
 *
 *   threads DIR check EXTRA   six special threads plus EXTRA counting ones
 *   threads DIR storm         eight chains of threads that each create a
 *                             successor and exit, continuously
 *
 * check: each thread has its own name, signal mask, alternate stack and TLS
 * value, and is parked somewhere: two count (one holding a ROBUST mutex),
 * one waits on a condition variable, one sleeps in clock_nanosleep, one
 * blocks in read() on an eventfd, one holds a thread-directed SIGUSR2 it
 * blocks, the EXTRA ones count. When DIR/ready is written the test may dump
 * and restore. Writing DIR/go makes main check everything: the counters
 * advance, the condition variable and the eventfd wake their threads, the
 * sleeper wakes, the pending SIGUSR2 is delivered to its own thread once
 * unblocked, pthread_kill reaches the right thread (glibc's cached tid),
 * the robust mutex unlocks (its owner is the new tid), every thread keeps
 * its name, mask, altstack and TLS, and pthread_join returns each result
 * (clear_child_tid). It writes "OK\n" or the failures to DIR/result and
 * exits.
 *
 * storm: DIR/gens holds each chain's generation (rewritten every 20 ms) and
 * DIR/ready is written once every chain has started. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static const char *dir;
static char failures[8192];
static pthread_mutex_t fail_lock = PTHREAD_MUTEX_INITIALIZER;

static void fail(const char *fmt, ...) {
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    pthread_mutex_lock(&fail_lock);
    if (strlen(failures) + strlen(line) + 2 < sizeof failures) {
        strcat(failures, line);
        strcat(failures, "\n");
    }
    pthread_mutex_unlock(&fail_lock);
}

static void write_file(const char *name, const char *text) {
    char path[4096], tmp[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    snprintf(tmp, sizeof tmp, "%s/.%s.tmp", dir, name);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) _exit(3);
    if (write(fd, text, strlen(text)) != (ssize_t)strlen(text)) _exit(3);
    close(fd);
    if (rename(tmp, path) != 0) _exit(3);
}

static int file_exists(const char *name) {
    char path[4096];
    struct stat st;
    snprintf(path, sizeof path, "%s/%s", dir, name);
    return stat(path, &st) == 0;
}

static void msleep(long ms) {
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

/* ---------------------------------------------------------------- check */

enum { COUNT0, ROBUST, CONDWAIT, SLEEPER, READER, SIGWAIT, SPECIAL };
#define MAX_THREADS 256

struct worker {
    int index;
    pthread_t handle;
    char name[16];
    void *altstack;
    _Atomic unsigned long counter;
    int blocked_sig; /* a real-time signal only this thread blocks */
};

static struct worker workers[MAX_THREADS];
static int nworkers;
static _Atomic int go;
static _Atomic int started;
static __thread int tls_value;

static pthread_mutex_t robust;
static pthread_mutex_t cond_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cond = PTHREAD_COND_INITIALIZER;
static int cond_flag;
static int efd;
static _Atomic int sleeper_woke;
static _Atomic pthread_t usr2_in;  /* the thread SIGUSR2's handler ran in */
static _Atomic pthread_t rt_in;    /* the thread SIGRTMIN's handler ran in */
static _Atomic int sleeping;

static void on_usr2(int sig) {
    (void)sig;
    usr2_in = pthread_self();
}

static void on_rt(int sig) {
    (void)sig;
    rt_in = pthread_self();
}

/* What every thread checks about itself after go. */
static void check_self(struct worker *w) {
    char name[16];
    if (pthread_getname_np(pthread_self(), name, sizeof name) != 0 || strcmp(name, w->name) != 0)
        fail("thread %d: name %s, expected %s", w->index, name, w->name);
    char path[64], comm[32] = "";
    snprintf(path, sizeof path, "/proc/self/task/%ld/comm", (long)syscall(SYS_gettid));
    FILE *f = fopen(path, "re");
    if (!f || !fgets(comm, sizeof comm, f)) {
        fail("thread %d: cannot read %s", w->index, path);
    } else {
        comm[strcspn(comm, "\n")] = 0;
        if (strcmp(comm, w->name) != 0)
            fail("thread %d: comm %s, expected %s", w->index, comm, w->name);
    }
    if (f) fclose(f);
    if (tls_value != 1000 + w->index)
        fail("thread %d: TLS value %d, expected %d", w->index, tls_value, 1000 + w->index);
    sigset_t now;
    pthread_sigmask(SIG_BLOCK, NULL, &now);
    if (!sigismember(&now, w->blocked_sig) || !sigismember(&now, SIGUSR1))
        fail("thread %d: signal mask lost SIGRTMIN+%d or SIGUSR1", w->index,
             w->blocked_sig - SIGRTMIN);
    for (int i = 0; i < nworkers; i++)
        if (workers[i].blocked_sig != w->blocked_sig && sigismember(&now, workers[i].blocked_sig))
            fail("thread %d: blocks thread %d's signal", w->index, i);
    stack_t ss;
    if (sigaltstack(NULL, &ss) != 0 || ss.ss_sp != w->altstack || ss.ss_size != 65536 ||
        (ss.ss_flags & SS_DISABLE))
        fail("thread %d: altstack %p/%zu/%d, expected %p/65536", w->index, ss.ss_sp, ss.ss_size,
             ss.ss_flags, w->altstack);
    if (pthread_equal(pthread_self(), w->handle) == 0)
        fail("thread %d: pthread_self changed", w->index);
}

static void *run_worker(void *arg) {
    struct worker *w = arg;
    tls_value = 1000 + w->index;
    pthread_setname_np(pthread_self(), w->name);
    sigset_t block;
    sigemptyset(&block);
    sigaddset(&block, SIGUSR1);
    sigaddset(&block, w->blocked_sig);
    if (w->index == SIGWAIT) sigaddset(&block, SIGUSR2);
    pthread_sigmask(SIG_BLOCK, &block, NULL);
    stack_t ss = {.ss_sp = w->altstack, .ss_size = 65536, .ss_flags = 0};
    if (sigaltstack(&ss, NULL) != 0) fail("thread %d: sigaltstack: %m", w->index);

    switch (w->index) {
    case ROBUST: {
        int r = pthread_mutex_lock(&robust);
        if (r != 0) fail("robust lock: %d", r);
        atomic_fetch_add(&started, 1);
        while (!go) w->counter++;
        check_self(w);
        r = pthread_mutex_unlock(&robust);
        if (r != 0) fail("robust mutex unlock after restore: %s", strerror(r));
        return NULL;
    }
    case CONDWAIT: {
        pthread_mutex_lock(&cond_lock);
        atomic_fetch_add(&started, 1);
        while (!cond_flag) pthread_cond_wait(&cond, &cond_lock);
        pthread_mutex_unlock(&cond_lock);
        check_self(w);
        return NULL;
    }
    case SLEEPER: {
        atomic_fetch_add(&started, 1);
        for (;;) {
            /* One long sleep at a time (parked in clock_nanosleep when the
             * dump comes); after go, the current sleep ends and it wakes. */
            sleeping = 1;
            struct timespec ts = {2, 0};
            int r = clock_nanosleep(CLOCK_MONOTONIC, 0, &ts, NULL);
            if (r != 0) fail("clock_nanosleep returned %s", strerror(r));
            if (go) break;
        }
        sleeper_woke = 1;
        check_self(w);
        return NULL;
    }
    case READER: {
        atomic_fetch_add(&started, 1);
        uint64_t v = 0;
        ssize_t n = read(efd, &v, sizeof v);
        if (n != sizeof v || v != 42)
            fail("eventfd read returned %zd, value %llu (expected 42)", n, (unsigned long long)v);
        check_self(w);
        return NULL;
    }
    case SIGWAIT: {
        atomic_fetch_add(&started, 1);
        while (!go) msleep(5);
        sigset_t pend;
        sigpending(&pend);
        if (!sigismember(&pend, SIGUSR2)) fail("SIGUSR2 no longer pending in its thread");
        check_self(w);
        sigset_t u;
        sigemptyset(&u);
        sigaddset(&u, SIGUSR2);
        pthread_sigmask(SIG_UNBLOCK, &u, NULL);
        if (!pthread_equal(usr2_in, pthread_self()))
            fail("the pending SIGUSR2 was not delivered to its own thread");
        return NULL;
    }
    default:
        atomic_fetch_add(&started, 1);
        while (!go) w->counter++;
        check_self(w);
        return NULL;
    }
}

static int check_main(int extra) {
    if (extra < 0 || SPECIAL + extra > MAX_THREADS) return 2;
    nworkers = SPECIAL + extra;
    efd = eventfd(0, EFD_CLOEXEC);
    pthread_mutexattr_t ma;
    pthread_mutexattr_init(&ma);
    pthread_mutexattr_setrobust(&ma, PTHREAD_MUTEX_ROBUST);
    pthread_mutex_init(&robust, &ma);
    struct sigaction sa = {0};
    sa.sa_handler = on_usr2;
    sa.sa_flags = SA_ONSTACK | SA_RESTART;
    sigaction(SIGUSR2, &sa, NULL);
    sa.sa_handler = on_rt;
    sigaction(SIGRTMIN, &sa, NULL);
    static const char *names[SPECIAL] = {"count0", "robust", "condwait",
                                         "sleeper", "reader", "sigwait"};
    for (int i = 0; i < nworkers; i++) {
        struct worker *w = &workers[i];
        w->index = i;
        if (i < SPECIAL)
            snprintf(w->name, sizeof w->name, "%s", names[i]);
        else
            snprintf(w->name, sizeof w->name, "extra-%d", i);
        w->altstack = malloc(65536);
        /* Its own real-time signal; beyond 30 threads they are shared. */
        w->blocked_sig = SIGRTMIN + 1 + (i < 30 ? i : 29);
        if (pthread_create(&w->handle, NULL, run_worker, w) != 0) return 2;
    }
    while (started < nworkers || !sleeping) msleep(5);
    /* A thread-directed signal, left pending (the thread blocks it). */
    pthread_kill(workers[SIGWAIT].handle, SIGUSR2);
    write_file("ready", "ready\n");
    while (!file_exists("go")) msleep(10);

    /* The counting threads advance. */
    unsigned long before[MAX_THREADS];
    for (int i = 0; i < nworkers; i++) before[i] = workers[i].counter;
    /* Each gets some CPU within 10 s, however loaded the machine. */
    for (int i = 0; i < nworkers; i++) {
        if (i != COUNT0 && i != ROBUST && i < SPECIAL) continue;
        for (int t = 0; t < 1000 && workers[i].counter == before[i]; t++) msleep(10);
        if (workers[i].counter == before[i])
            fail("thread %d (%s) does not count", i, workers[i].name);
    }
    /* pthread_kill uses glibc's cached tid of the target. */
    if (pthread_kill(workers[COUNT0].handle, SIGRTMIN) != 0) fail("pthread_kill failed");
    for (int i = 0; i < 200 && !pthread_equal(rt_in, workers[COUNT0].handle); i++) msleep(5);
    if (!pthread_equal(rt_in, workers[COUNT0].handle))
        fail("pthread_kill(count0) did not reach count0");
    go = 1;
    pthread_mutex_lock(&cond_lock);
    cond_flag = 1;
    pthread_cond_signal(&cond);
    pthread_mutex_unlock(&cond_lock);
    uint64_t v = 42;
    if (write(efd, &v, sizeof v) != sizeof v) fail("eventfd write: %m");
    for (int i = 0; i < nworkers; i++) {
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_sec += 10;
        void *res;
        int r = pthread_timedjoin_np(workers[i].handle, &res, &until);
        if (r != 0) fail("joining thread %d (%s): %s", i, workers[i].name, strerror(r));
    }
    if (!sleeper_woke) fail("the sleeper did not wake");
    int r = pthread_mutex_trylock(&robust);
    if (r != 0)
        fail("the robust mutex cannot be taken after its owner unlocked it: %s", strerror(r));
    else
        pthread_mutex_unlock(&robust);
    write_file("result", failures[0] ? failures : "OK\n");
    return 0;
}

/* ---------------------------------------------------------------- storm */

#define CHAINS 8
static _Atomic unsigned long gens[CHAINS];

static void *chain(void *arg) {
    long c = (long)arg;
    gens[c]++;
    /* A little work, then hand over to a successor and exit. */
    volatile unsigned long x = 0;
    for (int i = 0; i < 2000; i++) x += i;
    pthread_t next;
    pthread_attr_t at;
    pthread_attr_init(&at);
    pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
    while (pthread_create(&next, &at, chain, arg) != 0) msleep(1);
    pthread_attr_destroy(&at);
    return NULL;
}

static int storm_main(void) {
    for (long c = 0; c < CHAINS; c++) {
        pthread_t t;
        pthread_attr_t at;
        pthread_attr_init(&at);
        pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
        if (pthread_create(&t, &at, chain, (void *)c) != 0) return 2;
        pthread_attr_destroy(&at);
    }
    int ready = 0;
    for (;;) {
        char text[512] = "";
        int all = 1;
        for (int c = 0; c < CHAINS; c++) {
            char one[32];
            unsigned long g = gens[c];
            if (g == 0) all = 0;
            snprintf(one, sizeof one, "%lu\n", g);
            strcat(text, one);
        }
        write_file("gens", text);
        if (all && !ready) {
            write_file("ready", "ready\n");
            ready = 1;
        }
        msleep(20);
    }
}

int main(int argc, char **argv) {
    if (argc < 3) return 2;
    dir = argv[1];
    if (strcmp(argv[2], "check") == 0) return check_main(argc > 3 ? atoi(argv[3]) : 0);
    if (strcmp(argv[2], "storm") == 0) return storm_main();
    return 2;
}
