/* ctxsw: voluntary context switches of the calling thread (it gave up the CPU:
 * a sleep, a lock wait, a blocking read), as getrusage(RUSAGE_THREAD) counts
 * them in ru_nvcsw.  getrusage is a system call, so it is made only after the
 * switch detector saw the thread leave the CPU; otherwise the count cannot have
 * changed and the cached value is returned (a load). */
#define _GNU_SOURCE
#include "counters.h"
#include "switchdet.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>

struct ctxsw_state {
    struct cprof_switchdet *det; /* this thread's switch detector */
    uint64_t epoch;             /* detector epoch at the last getrusage */
    uint64_t value;             /* switches counted, the value returned */
    uint64_t raw;               /* ru_nvcsw at the last getrusage */
};

static uint64_t nvcsw(void)
{
    struct rusage ru;

    if (getrusage(RUSAGE_THREAD, &ru) != 0)
        return 0;
    return (uint64_t)ru.ru_nvcsw;
}

static int ctxsw_probe(const char *arg, void *ctx, char *path, size_t pathlen,
                       struct cprof_error *err)
{
    struct rusage ru;
    char why[200];

    (void)arg;
    (void)ctx;
    if (getrusage(RUSAGE_THREAD, &ru) != 0)
        return cprof_error_set(err, errno,
                               "counter 'ctxsw' is unavailable: getrusage(RUSAGE_THREAD) failed");
    if (cprof_switchdet_available(why, sizeof(why)))
        snprintf(path, pathlen, "getrusage(RUSAGE_THREAD) only after rseq saw the thread leave the CPU");
    else
        snprintf(path, pathlen, "getrusage(RUSAGE_THREAD) per read, a system call (slow path: %s)",
                 why);
    return 0;
}

static int ctxsw_open(void **state, const char *arg, void *ctx, void *shared,
                      struct cprof_error *err)
{
    struct ctxsw_state *s = calloc(1, sizeof(*s));

    (void)arg;
    (void)ctx;
    (void)shared;
    if (!s)
        return cprof_error_set(err, ENOMEM, "out of memory opening counter 'ctxsw'");
    s->det = cprof_switchdet_self();
    s->epoch = s->det->epoch - 1;       /* first read is a real one */
    *state = s;
    return 0;
}

static uint64_t ctxsw_read(void *state)
{
    struct ctxsw_state *s = state;
    uint64_t e = cprof_switchdet_poll(s->det);

    if (e != s->epoch) {
        uint64_t v = nvcsw();
        s->epoch = e;
        /* lower only in a forked child, whose thread counts from 0 again: its
         * switches then add to the parent's, never hidden below them */
        s->value += v >= s->raw ? v - s->raw : v;
        s->raw = v;
    }
    return s->value;
}

static void ctxsw_close(void *state)
{
    free(state);
}

const struct cprof_counter_def cprof_counter_ctxsw = {
    .name = "ctxsw",
    .unit = "switches",
    .description = "voluntary context switches of the thread (sleeps, lock waits, blocking I/O)",
    .probe = ctxsw_probe,
    .thread_open = ctxsw_open,
    .read = ctxsw_read,
    .thread_close = ctxsw_close,
};
