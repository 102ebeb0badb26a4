/* cpu: CPU time of the calling thread in ns.
 *
 * CLOCK_THREAD_CPUTIME_ID is a system call (0.2-1.3 us here).  While the thread
 * has not left the CPU (switchdet), its CPU clock advances exactly like the
 * monotonic clock, so between switches we extrapolate from the last real reading
 * with the cheap clock of clock.h (rdtsc or the vDSO), and re-read the real clock after a possible switch
 * or every CPU_RESYNC_NS.  Time stolen from the vCPU or spent in interrupts can
 * make the extrapolation run ahead of the real clock; then the value is held
 * until the real clock catches up, and the correction is recorded. */
#include "clock.h"
#include "counters.h"
#include "switchdet.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#define CPU_RESYNC_NS 200000u   /* re-read the real clock at least every 200 us */

struct cpu_state {
    struct cprof_switchdet *det; /* this thread's switch detector */
    uint64_t epoch;             /* detector epoch at the last real reading */
    uint64_t base_cpu;          /* last real thread CPU time, ns */
    uint64_t base_mono;         /* cprof_clock_ns() right after it */
    uint64_t last;              /* last value returned, ns */
    unsigned forks;             /* fork_count when the offset was last set */
    uint64_t offset;            /* added to the real clock: nonzero in a forked child */
    uint64_t ncorr;             /* resyncs where the real clock was behind */
    uint64_t corr;              /* total of those gaps, ns */
};

/* Forks this process has gone through (each child counts one more than its
 * parent): a state opened before a fork rebases at its next real reading. */
static unsigned fork_count;
static pthread_once_t atfork_once = PTHREAD_ONCE_INIT;

static void forked_child(void)
{
    fork_count++;
    cprof_switchdet_self()->epoch++;    /* the next read is a real one */
}

static void watch_forks(void)
{
    pthread_atfork(NULL, NULL, forked_child);
}

static uint64_t thread_cpu_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static int cpu_probe(const char *arg, void *ctx, char *path, size_t pathlen,
                     struct cprof_error *err)
{
    struct timespec ts;
    char why[200];

    (void)arg;
    (void)ctx;
    if (clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts) != 0)
        return cprof_error_set(err, errno,
                               "counter 'cpu' is unavailable: CLOCK_THREAD_CPUTIME_ID cannot be "
                               "read");
    if (cprof_switchdet_available(why, sizeof(why))) {
        char clk[160];
        cprof_clock_describe(clk, sizeof(clk));
        snprintf(path, pathlen, "%s between context switches seen by rseq, "
                                "CLOCK_THREAD_CPUTIME_ID after each", clk);
    }
    else
        snprintf(path, pathlen, "CLOCK_THREAD_CPUTIME_ID per read, a system call (slow path: %s)",
                 why);
    return 0;
}

static int cpu_open(void **state, const char *arg, void *ctx, void *shared,
                    struct cprof_error *err)
{
    struct cpu_state *s = calloc(1, sizeof(*s));

    (void)arg;
    (void)ctx;
    (void)shared;
    if (!s)
        return cprof_error_set(err, ENOMEM, "out of memory opening counter 'cpu'");
    cprof_clock_init();
    pthread_once(&atfork_once, watch_forks);
    s->forks = fork_count;
    s->det = cprof_switchdet_self();
    s->epoch = s->det->epoch - 1;       /* first read is a real one */
    *state = s;
    return 0;
}

static uint64_t cpu_read(void *state)
{
    struct cpu_state *s = state;
    /* The clock before the poll: a switch after this point is seen by the poll (or
     * the next one), so the extrapolation never includes time spent off the CPU. */
    uint64_t mono = cprof_clock_ns();
    uint64_t e = cprof_switchdet_poll(s->det);
    uint64_t v;

    if (e == s->epoch) {
        if (mono - s->base_mono < CPU_RESYNC_NS) {
            v = s->base_cpu + (mono - s->base_mono);
            goto out;
        }
    }
    s->epoch = e;
    v = thread_cpu_ns();
    if (s->forks != fork_count) {   /* in a forked child, whose thread's clock began again */
        s->forks = fork_count;      /* at 0: its CPU time continues from the parent's */
        s->offset = s->last - v;
    }
    s->base_cpu = v += s->offset;
    s->base_mono = cprof_clock_ns();
    if (v < s->last) {
        s->ncorr++;
        s->corr += s->last - v;
    }
out:
    if (v < s->last)
        v = s->last;            /* hold: never go backwards */
    s->last = v;
    return v;
}

static void cpu_close(void *state)
{
    free(state);
}

static void cpu_corrections(void *state, uint64_t *count, uint64_t *amount)
{
    const struct cpu_state *s = state;

    *count = s->ncorr;
    *amount = s->corr;
}

const struct cprof_counter_def cprof_counter_cpu = {
    .name = "cpu",
    .unit = "ns",
    .description = "CPU time of the thread (user + system)",
    .probe = cpu_probe,
    .thread_open = cpu_open,
    .read = cpu_read,
    .thread_close = cpu_close,
    .corrections = cpu_corrections,
    .flags = CPROF_COUNTER_TRACER_COST | CPROF_COUNTER_TIME,
};
