/* Criterion tests of the built-in counter modules (counters/) against independent
 * ground truth: getrusage(RUSAGE_THREAD) for ctxsw, CLOCK_THREAD_CPUTIME_ID for
 * cpu, CLOCK_MONOTONIC for wall, and the kernel's own rseq area for switchdet.
 *
 * Counting tests are exact (a switch count must equal getrusage's); clock tests
 * use bounds tight enough to catch a real bug (a missed switch charges a sleep
 * as CPU time) and loose enough for a noisy 2-vCPU VM.
 *
 * Most counter tests run twice (ParameterizedTest over `mode`): on the rseq fast
 * path, and in a fresh thread started with CPROF_NO_RSEQ=1 (the switch detector
 * reads it at its first use in each thread), which is the per-read fallback.
 * One test re-executes this binary with GLIBC_TUNABLES=glibc.pthread.rseq=0, the
 * fallback users get when glibc did not register rseq at all (child_main below).
 *
 * Assertions are only made in the test's own thread: worker threads record what
 * they saw in a struct and the test thread checks it after pthread_join.
 * Measured numbers are printed on stderr with a "[measure]" prefix. */
#define _GNU_SOURCE
#include <criterion/criterion.h>
#include <criterion/parameterized.h>

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/rseq.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "registry.h"
#include "../../counters/counters.h"
#include "../../counters/clock.h"
#include "../../counters/switchdet.h"

#define MEASURE(...) (fprintf(stderr, "[measure] " __VA_ARGS__), fputc('\n', stderr))

/* ---------------------------------------------------------------- helpers */

static uint64_t clk_ns(clockid_t id)
{
    struct timespec ts;

    clock_gettime(id, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static uint64_t mono_ns(void) { return clk_ns(CLOCK_MONOTONIC); }
static uint64_t tcpu_ns(void) { return clk_ns(CLOCK_THREAD_CPUTIME_ID); }

/* Voluntary switches of the calling thread (the ground truth for ctxsw). */
static uint64_t ru_nvcsw(void)
{
    struct rusage ru;

    getrusage(RUSAGE_THREAD, &ru);
    return (uint64_t)ru.ru_nvcsw;
}

static void sleep_us(long us)
{
    struct timespec ts = {us / 1000000, (us % 1000000) * 1000};

    while (nanosleep(&ts, &ts) == -1 && errno == EINTR)
        ;
}

static volatile uint64_t sink;

/* Burn a little CPU: n rounds of arithmetic, no system call. */
static void burn(int n)
{
    uint64_t x = sink;

    for (int i = 0; i < n; i++)
        x = x * 6364136223846793005u + 1442695040888963407u;
    sink = x;
}

/* Burn CPU for `ns` of wall time; no system call but the vDSO clock. */
static void spin_wall_ns(uint64_t ns)
{
    uint64_t end = mono_ns() + ns;

    while (mono_ns() < end)
        burn(200);
}

static int64_t absdiff(uint64_t a, uint64_t b)
{
    return a > b ? (int64_t)(a - b) : (int64_t)(b - a);
}

/* The thread's rseq area, as glibc registered it. */
static struct rseq *rseq_area(void)
{
    return (struct rseq *)((char *)__builtin_thread_pointer() + __rseq_offset);
}

/* Run fn(arg) in a fresh thread, whose switch detector will be initialised at
 * its first use there: with CPROF_NO_RSEQ=1 if no_rseq, without it otherwise. */
static void run_in_fresh_thread(int no_rseq, void *(*fn)(void *), void *arg)
{
    pthread_t t;
    int rc;

    if (no_rseq)
        setenv("CPROF_NO_RSEQ", "1", 1);
    else
        unsetenv("CPROF_NO_RSEQ");
    rc = pthread_create(&t, NULL, fn, arg);
    if (rc == 0)
        pthread_join(t, NULL);
    unsetenv("CPROF_NO_RSEQ");
    cr_assert_eq(rc, 0, "pthread_create failed: %s", strerror(rc));
}

/* What a worker reports about the path it was on, checked by check_mode(). */
struct mode_seen {
    int available;          /* cprof_switchdet_available() in that thread */
    int has_rseq;           /* its detector has an rseq_cs pointer */
    int open_failed;
    char err[CPROF_ERROR_LEN + 64];
};

static void record_mode(struct mode_seen *m)
{
    char why[200];

    m->available = cprof_switchdet_available(why, sizeof(why));
    m->has_rseq = cprof_switchdet_self()->rseq_cs != NULL;
}

static void check_mode(const struct mode_seen *m, int no_rseq)
{
    cr_assert(!m->open_failed, "thread_open failed: %s", m->err);
    if (no_rseq) {
        cr_assert(!m->available && !m->has_rseq,
                  "with CPROF_NO_RSEQ=1 the detector must fall back (available=%d has_rseq=%d)",
                  m->available, m->has_rseq);
    } else {
        cr_assert(m->available && m->has_rseq,
                  "glibc 2.36 registers rseq here; the detector must use it "
                  "(available=%d has_rseq=%d)", m->available, m->has_rseq);
    }
}

static int open_in(const struct cprof_counter_def *def, void **state, struct mode_seen *m)
{
    struct cprof_error err = {0, ""};

    if (def->thread_open(state, "", NULL, NULL, &err) != 0) {
        m->open_failed = 1;
        snprintf(m->err, sizeof(m->err), "%s: %s", def->name, err.msg);
        return -1;
    }
    return 0;
}

static void close_ctr(const struct cprof_counter_def *def, void *state)
{
    if (def->thread_close)
        def->thread_close(state);
}

static const char *mode_name(int no_rseq) { return no_rseq ? "CPROF_NO_RSEQ" : "rseq"; }

/* The two paths every counter test runs on. */
static int modes[] = {0, 1};
#define MODE_PARAMS(suite, name)                                                   \
    ParameterizedTestParameters(suite, name)                                       \
    {                                                                              \
        return cr_make_param_array(int, modes, sizeof(modes) / sizeof(modes[0]));  \
    }

/* --------------------------------------------------------------- registry */

static int builtin_idx[CPROF_MAX_COUNTERS];

ParameterizedTestParameters(registry, builtin_descriptor)
{
    size_t n = 0;

    while (cprof_builtin_counters[n] && n < CPROF_MAX_COUNTERS) {
        builtin_idx[n] = (int)n;
        n++;
    }
    return cr_make_param_array(int, builtin_idx, n);
}

ParameterizedTest(int *idx, registry, builtin_descriptor)
{
    const struct cprof_counter_def *def = cprof_builtin_counters[*idx];
    struct cprof_error err = {0, ""};
    char path[256];
    char small[8 + 8];
    void *state = NULL;

    cr_assert_not_null(def);
    cr_assert_eq(cprof_registry_check(def, &err), 0, "%s: %s", def->name, err.msg);
    cr_assert_eq(err.code, 0);
    cr_assert(def->description && def->description[0], "%s has an empty description", def->name);

    /* probe succeeds here and describes its read path; the malloc counters need
     * the interposer preloaded, which this test process is not (test_malloc.c
     * runs them preloaded): they must say how to start the program */
    memset(path, 'x', sizeof(path));
    if (def->probe(NULL, NULL, path, sizeof(path), &err) < 0 && err.code == ENOPKG) {
        cr_assert_not_null(strstr(err.msg, "LD_PRELOAD="), "%s: %s", def->name, err.msg);
        cr_assert_not_null(strstr(err.msg, def->name), "%s: %s", def->name, err.msg);
        cr_skip_test("%s needs the malloc interposer preloaded", def->name);
    }
    cr_assert_eq(def->probe(NULL, NULL, path, sizeof(path), &err), 0, "probe(%s): %s", def->name, err.msg);
    cr_assert(memchr(path, '\0', sizeof(path)) != NULL, "probe(%s) left path unterminated", def->name);
    cr_assert_gt(strlen(path), 10, "probe(%s) gave no read path: '%s'", def->name, path);
    cr_log_info("%s: %s", def->name, path);
    memset(path, 'x', sizeof(path));
    cr_assert_eq(def->probe("", NULL, path, sizeof(path), &err), 0, "probe(%s, \"\"): %s", def->name, err.msg);
    cr_assert_gt(strlen(path), 10);

    /* a short buffer is truncated, never overrun */
    memset(small, 'x', sizeof(small));
    cr_assert_eq(def->probe(NULL, NULL, small, 8, &err), 0);
    cr_assert_eq(small[7], '\0', "probe(%s) did not terminate a short path buffer", def->name);
    for (size_t i = 8; i < sizeof(small); i++)
        cr_assert_eq(small[i], 'x', "probe(%s) wrote past pathlen", def->name);

    /* an unexpected argument fails in the registry, with a sentence naming the counter */
    if (!(def->flags & CPROF_COUNTER_TAKES_ARG)) {
        struct cprof_counter_spec one[1];
        char bogus[64];
        unsigned got = 0;
        snprintf(bogus, sizeof(bogus), "%s:bogus", def->name);
        err.code = 0;
        err.msg[0] = '\0';
        cr_assert_eq(cprof_spec_parse(bogus, cprof_builtin_counters, one, 1, &got, &err), -EINVAL,
                     "'%s' must be refused", bogus);
        cr_assert_eq(err.code, EINVAL);
        cr_assert_not_null(strstr(err.msg, def->name), "error does not name '%s': %s", def->name,
                           err.msg);
        cr_assert_not_null(strstr(err.msg, "takes no argument"), "%s", err.msg);
    }

    /* open / read / close round trip in this thread */
    cr_assert_eq(def->thread_open(&state, "", NULL, NULL, &err), 0, "thread_open(%s): %s", def->name, err.msg);
    uint64_t a = def->read(state), b = def->read(state);
    cr_assert_geq(b, a, "%s went backwards: %" PRIu64 " then %" PRIu64, def->name, a, b);
    if (def->corrections) {
        uint64_t cnt = 99, amt = 99;
        def->corrections(state, &cnt, &amt);
        cr_assert((cnt == 0) == (amt == 0), "%s corrections: count %" PRIu64 " amount %" PRIu64,
                  def->name, cnt, amt);
    }
    close_ctr(def, state);

    /* the registry finds it by name, and a spec of just its name parses */
    cr_assert_eq(cprof_registry_find(cprof_builtin_counters, def->name, strlen(def->name)), def);
    struct cprof_counter_spec spec[CPROF_MAX_COUNTERS];
    unsigned n = 0;
    cr_assert_eq(cprof_spec_parse(def->name, cprof_builtin_counters, spec, CPROF_MAX_COUNTERS, &n,
                                  &err), 0, "%s", err.msg);
    cr_assert_eq(n, 1);
    cr_assert_eq(spec[0].def, def);
}

/* The registry (generated from counters/meson.build's list): every entry once,
 * found by its name, all of them in one spec. */
Test(registry, builtin_table)
{
    char all[512] = "";
    size_t n = 0;

    while (cprof_builtin_counters[n])
        n++;
    cr_assert_geq(n, 3);
    cr_assert_leq(n, CPROF_MAX_COUNTERS);
    for (size_t i = 0; i < n; i++) {
        const char *name = cprof_builtin_counters[i]->name;
        cr_assert_eq(cprof_registry_find(cprof_builtin_counters, name, strlen(name)),
                     cprof_builtin_counters[i]);
        for (size_t j = 0; j < i; j++)
            cr_assert_str_neq(name, cprof_builtin_counters[j]->name);
        strcat(all, i ? "," : "");
        strcat(all, name);
    }
    {
        struct cprof_counter_spec spec[CPROF_MAX_COUNTERS];
        struct cprof_error err = {0, ""};
        unsigned got = 0;
        cr_assert_eq(cprof_spec_parse(all, cprof_builtin_counters, spec, CPROF_MAX_COUNTERS,
                                      &got, &err), 0, "%s", err.msg);
        cr_assert_eq(got, n);
        for (size_t i = 0; i < n; i++)
            cr_assert_eq(spec[i].def, cprof_builtin_counters[i], "in the registry's order");
    }
    cr_assert_str_eq(cprof_counter_cpu.unit, "ns");
    cr_assert_str_eq(cprof_counter_wall.unit, "ns");
    cr_assert_str_eq(cprof_counter_ctxsw.unit, "switches");

    struct cprof_counter_spec spec[CPROF_MAX_COUNTERS];
    struct cprof_error err = {0, ""};
    unsigned got = 0;
    cr_assert_eq(cprof_spec_parse("cpu,wall,ctxsw", cprof_builtin_counters, spec,
                                  CPROF_MAX_COUNTERS, &got, &err), 0, "%s", err.msg);
    cr_assert_eq(got, 3);
    cr_assert_eq(spec[0].def, &cprof_counter_cpu);
    cr_assert_eq(spec[1].def, &cprof_counter_wall);
    cr_assert_eq(spec[2].def, &cprof_counter_ctxsw);
}

/* The probe's read path tells the truth about rseq, per the environment. */
Test(registry, probe_path_names_fallback)
{
    char path[256];
    struct cprof_error err = {0, ""};

    unsetenv("CPROF_NO_RSEQ");
    cr_assert_eq(cprof_counter_ctxsw.probe(NULL, NULL, path, sizeof(path), &err), 0);
    cr_assert_not_null(strstr(path, "rseq"), "ctxsw path: %s", path);
    cr_assert_null(strstr(path, "slow path"), "ctxsw path: %s", path);
    cr_assert_eq(cprof_counter_cpu.probe(NULL, NULL, path, sizeof(path), &err), 0);
    cr_assert_not_null(strstr(path, "rseq"), "cpu path: %s", path);
    cr_assert_null(strstr(path, "slow path"), "cpu path: %s", path);

    setenv("CPROF_NO_RSEQ", "1", 1);
    cr_assert_eq(cprof_counter_ctxsw.probe(NULL, NULL, path, sizeof(path), &err), 0);
    cr_assert_not_null(strstr(path, "slow path"), "ctxsw path: %s", path);
    cr_assert_not_null(strstr(path, "CPROF_NO_RSEQ"), "ctxsw path: %s", path);
    cr_assert_eq(cprof_counter_cpu.probe(NULL, NULL, path, sizeof(path), &err), 0);
    cr_assert_not_null(strstr(path, "slow path"), "cpu path: %s", path);
    unsetenv("CPROF_NO_RSEQ");
}

/* -------------------------------------------------------------- switchdet */

struct detinfo {
    int available;
    char why[200];
    struct cprof_switchdet *self1, *self2;
    volatile uint64_t *expect_cs;   /* &rseq_area()->rseq_cs */
    int armed_after_poll;           /* *rseq_cs == &cprof_rseq_armed after a poll */
};

static void *detinfo_worker(void *arg)
{
    struct detinfo *d = arg;

    d->available = cprof_switchdet_available(d->why, sizeof(d->why));
    d->self1 = cprof_switchdet_self();
    d->self2 = cprof_switchdet_self();
    d->expect_cs = (volatile uint64_t *)&rseq_area()->rseq_cs;
    cprof_switchdet_poll(d->self1);
    d->armed_after_poll = d->self1->rseq_cs &&
                          *d->self1->rseq_cs == (uint64_t)(uintptr_t)&cprof_rseq_armed;
    return NULL;
}

Test(switchdet, available_here)
{
    struct detinfo main_d = {0}, thr_d = {0};

    unsetenv("CPROF_NO_RSEQ");
    cr_assert_gt(__rseq_size, 0, "glibc did not register rseq in this process");
    detinfo_worker(&main_d);
    run_in_fresh_thread(0, detinfo_worker, &thr_d);
    for (int i = 0; i < 2; i++) {
        struct detinfo *d = i ? &thr_d : &main_d;
        const char *who = i ? "new thread" : "test thread";
        cr_assert_eq(d->available, 1, "%s: rseq not available: %s", who, d->why);
        cr_assert_str_eq(d->why, "", "%s: why should be empty when available", who);
        cr_assert_eq(d->self1, d->self2, "%s: cprof_switchdet_self is not stable", who);
        cr_assert_eq(d->self1->rseq_cs, d->expect_cs,
                     "%s: detector points at %p, the thread's rseq_cs is at %p", who,
                     (void *)d->self1->rseq_cs, (void *)d->expect_cs);
        cr_assert(d->armed_after_poll, "%s: a poll must leave rseq_cs armed", who);
    }
    cr_assert_neq(main_d.self1, thr_d.self1, "each thread needs its own detector");
}

Test(switchdet, stable_without_switch)
{
    struct cprof_switchdet *d = cprof_switchdet_self();
    int same = 0, i;

    cr_assert_not_null(d->rseq_cs);
    cprof_switchdet_poll(d);            /* arm */
    for (i = 0; i < 1000; i++) {
        uint64_t e1 = cprof_switchdet_poll(d);
        uint64_t e2 = cprof_switchdet_poll(d);
        cr_assert(e2 == e1 || e2 == e1 + 1, "epoch jumped from %" PRIu64 " to %" PRIu64, e1, e2);
        same += e1 == e2;
    }
    MEASURE("switchdet: %d of 1000 back-to-back poll pairs kept the epoch", same);
    cr_assert_geq(same, 990, "only %d of 1000 back-to-back poll pairs kept the epoch", same);
}

/* A plain system call that does not block leaves rseq_cs armed (design notes):
 * what makes a getrusage/clock_gettime resync not cost another one at once. */
Test(switchdet, plain_syscall_keeps_armed)
{
    struct cprof_switchdet *d = cprof_switchdet_self();
    int same = 0;

    cprof_switchdet_poll(d);
    for (int i = 0; i < 1000; i++) {
        uint64_t e1 = cprof_switchdet_poll(d);
        (void)ru_nvcsw();
        (void)tcpu_ns();
        uint64_t e2 = cprof_switchdet_poll(d);
        same += e1 == e2;
    }
    MEASURE("switchdet: %d of 1000 poll pairs around getrusage+clock_gettime kept the epoch", same);
    cr_assert_geq(same, 990, "only %d of 1000 poll pairs around two syscalls kept the epoch", same);
}

Test(switchdet, changes_after_sleep)
{
    struct cprof_switchdet *d = cprof_switchdet_self();
    int changed = 0;

    cprof_switchdet_poll(d);
    for (int i = 0; i < 50; i++) {
        uint64_t e1 = cprof_switchdet_poll(d);
        sleep_us(1000);
        uint64_t e2 = cprof_switchdet_poll(d);
        cr_assert_geq(e2, e1);
        changed += e2 != e1;
    }
    MEASURE("switchdet: epoch changed after %d of 50 sleeps", changed);
    cr_assert_eq(changed, 50, "epoch changed after only %d of 50 sleeps: a missed switch", changed);
}

/* A thread that spins on the CPU the test thread is pinned to, until told to stop:
 * it makes the scheduler switch the test thread out every few ms, on any machine. */
static void *rival_spin(void *arg)
{
    volatile int *stop = arg;
    while (!__atomic_load_n(stop, __ATOMIC_RELAXED))
        ;
    return NULL;
}

/* In a tight polling loop, every switch the kernel counts (voluntary or
 * involuntary) must be seen: the detector may over-report, never miss.  The test
 * thread and a spinning rival share one CPU for 300 ms, so the thread is switched
 * out dozens of times whatever the machine's load.  Two switches between
 * consecutive polls count once, and that happens on a loaded machine: the kernel
 * can switch the thread out again on its way back to user space, after it cleared
 * rseq_cs for the first switch (seen in CI at load 14: 48 changes for 49
 * switches).  So up to 1 in 16 switches (rounded up) may share a change with another; a
 * detector that misses switches sees far fewer (none, without rseq). */
Test(switchdet, spin_sees_every_switch)
{
    struct cprof_switchdet *d = cprof_switchdet_self();
    uint64_t changes = 0, polls = 0;
    struct rusage ru0, ru1;
    cpu_set_t one, before;
    volatile int stop = 0;
    pthread_t rival;

    cr_assert_eq(sched_getaffinity(0, sizeof(before), &before), 0);
    CPU_ZERO(&one);
    for (int c = 0; c < CPU_SETSIZE; c++)
        if (CPU_ISSET(c, &before)) {
            CPU_SET(c, &one);
            break;
        }
    cr_assert_eq(sched_setaffinity(0, sizeof(one), &one), 0);
    /* created while this thread is pinned: it inherits the same single CPU */
    cr_assert_eq(pthread_create(&rival, NULL, rival_spin, (void *)&stop), 0);

    /* baseline poll before the first getrusage and a last poll after the
     * second: every switch getrusage counts is followed by a poll */
    uint64_t e = cprof_switchdet_poll(d);
    getrusage(RUSAGE_THREAD, &ru0);
    uint64_t end = mono_ns() + 300000000u;
    while (mono_ns() < end) {
        for (int i = 0; i < 64; i++) {
            uint64_t e2 = cprof_switchdet_poll(d);
            changes += e2 != e;
            e = e2;
        }
        polls += 64;
    }
    getrusage(RUSAGE_THREAD, &ru1);
    changes += cprof_switchdet_poll(d) != e;
    __atomic_store_n(&stop, 1, __ATOMIC_RELAXED);
    pthread_join(rival, NULL);
    sched_setaffinity(0, sizeof(before), &before);
    uint64_t vol = (uint64_t)(ru1.ru_nvcsw - ru0.ru_nvcsw);
    uint64_t invol = (uint64_t)(ru1.ru_nivcsw - ru0.ru_nivcsw);
    MEASURE("switchdet: 300 ms spin beside a rival on one CPU, %" PRIu64 " polls: %" PRIu64
            " epoch changes vs %" PRIu64 " switches (%" PRIu64 " involuntary)",
            polls, changes, vol + invol, invol);
    cr_assert_geq(vol + invol, 8, "only %" PRIu64 " switches beside a rival on one CPU: "
                  "the test made none to check", vol + invol);
    cr_assert_geq(changes + (vol + invol + 15) / 16, vol + invol, "detector saw %" PRIu64 " changes "
                  "but the thread was switched out %" PRIu64 " times", changes, vol + invol);
    cr_assert_leq(changes, vol + invol + 16, "detector saw %" PRIu64 " changes for %" PRIu64
                  " switches: it over-reports beyond signals and migrations", changes, vol + invol);
}

struct fallback_info {
    int available;
    char why[200];
    int has_rseq;
    uint64_t first, last;
    int not_bumped;
};

static void *fallback_worker(void *arg)
{
    struct fallback_info *f = arg;
    struct cprof_switchdet *d = cprof_switchdet_self();

    f->available = cprof_switchdet_available(f->why, sizeof(f->why));
    f->has_rseq = d->rseq_cs != NULL;
    uint64_t e = f->first = cprof_switchdet_poll(d);
    for (int i = 0; i < 1000; i++) {
        uint64_t e2 = cprof_switchdet_poll(d);
        f->not_bumped += e2 != e + 1;
        e = e2;
    }
    f->last = e;
    return NULL;
}

Test(switchdet, env_fallback_bumps_every_poll)
{
    struct fallback_info f = {0};
    /* The test thread initialises its detector before the variable is set, and
     * keeps rseq: the variable is read at first use per thread. */
    struct cprof_switchdet *mine = cprof_switchdet_self();

    run_in_fresh_thread(1, fallback_worker, &f);
    cr_assert_eq(f.available, 0, "CPROF_NO_RSEQ=1 must disable the detector");
    cr_assert_not_null(strstr(f.why, "CPROF_NO_RSEQ"), "why: '%s'", f.why);
    cr_assert(!f.has_rseq, "with CPROF_NO_RSEQ=1 the detector must not use rseq");
    cr_assert_eq(f.not_bumped, 0, "%d of 1000 polls did not bump the epoch by one", f.not_bumped);
    cr_assert_eq(f.last - f.first, 1000);
    cr_assert_not_null(mine->rseq_cs, "an already initialised thread keeps its rseq detector");
}

/* CPROF_NO_RSEQ=0 and an empty value do not disable rseq. */
Test(switchdet, env_zero_or_empty_keeps_rseq)
{
    static const char *const vals[] = {"0", ""};

    for (int i = 0; i < 2; i++) {
        struct fallback_info f = {0};
        pthread_t t;

        setenv("CPROF_NO_RSEQ", vals[i], 1);
        cr_assert_eq(pthread_create(&t, NULL, fallback_worker, &f), 0);
        pthread_join(t, NULL);
        unsetenv("CPROF_NO_RSEQ");
        cr_assert_eq(f.available, 1, "CPROF_NO_RSEQ='%s' disabled rseq: %s", vals[i], f.why);
        cr_assert(f.has_rseq, "CPROF_NO_RSEQ='%s' disabled rseq", vals[i]);
        /* on rseq nearly every poll keeps the epoch (does not bump it) */
        cr_assert_geq(f.not_bumped, 990, "only %d of 1000 polls kept the epoch", f.not_bumped);
    }
}

/* A thread whose rseq area is not registered with the kernel (here another
 * component unregistered glibc's; a thread whose registration failed looks the
 * same: cpu_id < 0) must not use the detector: the kernel never clears rseq_cs
 * there, so every switch would be missed.  switchdet.h promises "1 if rseq is
 * registered for the calling thread". */
struct unreg_info {
    long unreg_rc;
    int unreg_errno;
    int32_t cpu_id;
    int available;
    char why[200];
    int open_failed;
    char err[CPROF_ERROR_LEN];
    uint64_t ru0, ru1, c0, c1;
};

static void *unreg_worker(void *arg)
{
    struct unreg_info *u = arg;
    struct cprof_error err = {0, ""};
    void *st;

    /* glibc 2.36 here reports __rseq_size 20 (the feature size) but registered
     * the 32-byte area; the kernel wants the registered length back. */
    u->unreg_rc = syscall(SYS_rseq, rseq_area(), __rseq_size, RSEQ_FLAG_UNREGISTER, RSEQ_SIG);
    if (u->unreg_rc != 0)
        u->unreg_rc = syscall(SYS_rseq, rseq_area(), 32, RSEQ_FLAG_UNREGISTER, RSEQ_SIG);
    u->unreg_errno = errno;
    u->cpu_id = (int32_t)rseq_area()->cpu_id;
    u->available = cprof_switchdet_available(u->why, sizeof(u->why));
    if (cprof_counter_ctxsw.thread_open(&st, "", NULL, NULL, &err) != 0) {
        u->open_failed = 1;
        snprintf(u->err, sizeof(u->err), "%s", err.msg);
        return NULL;
    }
    u->ru0 = ru_nvcsw();
    u->c0 = cprof_counter_ctxsw.read(st);
    for (int i = 0; i < 20; i++) {
        sleep_us(1000);
        (void)cprof_counter_ctxsw.read(st);
    }
    u->c1 = cprof_counter_ctxsw.read(st);
    u->ru1 = ru_nvcsw();
    cprof_counter_ctxsw.thread_close(st);
    return NULL;
}

/* Regression test: cprof_switchdet_self()/cprof_switchdet_available() used to
 * decide from the process-wide __rseq_size alone and never check that the *calling thread's* area is
 * registered (rseq->cpu_id >= 0; the kernel sets -1 when unregistered, glibc -2
 * when a thread's registration failed).  In such a thread the detector arms an
 * rseq_cs the kernel never looks at, every poll keeps the epoch, and ctxsw
 * stayed at its first value: measured 0 switches against getrusage's 20, with
 * available() == 1.  Now: available() == 0 and the per-read fallback. */
Test(switchdet, unregistered_thread_falls_back)
{
    struct unreg_info u = {0};

    run_in_fresh_thread(0, unreg_worker, &u);
    cr_assert_eq(u.unreg_rc, 0, "could not unregister rseq: %s", strerror(u.unreg_errno));
    cr_assert_lt(u.cpu_id, 0, "kernel left cpu_id %d after unregistering", u.cpu_id);
    cr_assert(!u.open_failed, "%s", u.err);
    MEASURE("switchdet: thread without rseq: available=%d, ctxsw delta %" PRIu64
            " vs getrusage %" PRIu64, u.available, u.c1 - u.c0, u.ru1 - u.ru0);
    cr_assert_eq(u.c1 - u.c0, u.ru1 - u.ru0,
                 "ctxsw counted %" PRIu64 " switches, getrusage %" PRIu64
                 " (detector trusted an unregistered rseq area)", u.c1 - u.c0, u.ru1 - u.ru0);
    cr_assert_eq(u.available, 0, "available() says rseq is registered for a thread where it is not");
}

/* ------------------------------------------------------------------ ctxsw */

struct ctxsw_run {
    struct mode_seen m;
    int nsleep;             /* in: sleeps */
    int interleave;         /* in: read after each sleep */
    uint64_t spin_ns;       /* in: CPU spin instead of sleeps */
    pthread_barrier_t *barrier; /* in: optional start line */
    uint64_t c0, c1, ru0, ru1;
    int step_mismatch;      /* interleaved steps whose delta != getrusage's */
    int first_bad_step;
    uint64_t bad_c, bad_ru;
    int went_back;
    uint64_t reads;
};

static void *ctxsw_worker(void *arg)
{
    struct ctxsw_run *r = arg;
    const struct cprof_counter_def *def = &cprof_counter_ctxsw;
    void *st;

    record_mode(&r->m);
    if (open_in(def, &st, &r->m) != 0)
        return NULL;
    if (r->barrier)
        pthread_barrier_wait(r->barrier);
    r->first_bad_step = -1;
    r->ru0 = ru_nvcsw();
    r->c0 = def->read(st);
    uint64_t prev_c = r->c0, prev_ru = r->ru0;
    if (r->spin_ns) {
        uint64_t end = mono_ns() + r->spin_ns;
        while (mono_ns() < end) {
            uint64_t c = def->read(st);
            r->went_back += c < prev_c;
            prev_c = c;
            r->reads++;
        }
    }
    for (int i = 0; i < r->nsleep; i++) {
        sleep_us(1000);
        if (r->interleave) {
            uint64_t c = def->read(st);
            uint64_t ru = ru_nvcsw();
            if (c - prev_c != ru - prev_ru) {
                if (r->first_bad_step < 0) {
                    r->first_bad_step = i;
                    r->bad_c = c - prev_c;
                    r->bad_ru = ru - prev_ru;
                }
                r->step_mismatch++;
            }
            r->went_back += c < prev_c;
            prev_c = c;
            prev_ru = ru;
        }
    }
    r->c1 = def->read(st);
    r->ru1 = ru_nvcsw();
    close_ctr(def, st);
    return NULL;
}

MODE_PARAMS(ctxsw, sleeps_exact)
ParameterizedTest(int *mode, ctxsw, sleeps_exact)
{
    struct ctxsw_run r = {.nsleep = 50};

    run_in_fresh_thread(*mode, ctxsw_worker, &r);
    check_mode(&r.m, *mode);
    MEASURE("ctxsw[%s]: 50 sleeps: counter delta %" PRIu64 ", getrusage delta %" PRIu64,
            mode_name(*mode), r.c1 - r.c0, r.ru1 - r.ru0);
    cr_assert_eq(r.c1 - r.c0, r.ru1 - r.ru0, "ctxsw delta %" PRIu64 " != getrusage delta %" PRIu64,
                 r.c1 - r.c0, r.ru1 - r.ru0);
    cr_assert_geq(r.c1 - r.c0, 50);
}

MODE_PARAMS(ctxsw, interleaved_exact)
ParameterizedTest(int *mode, ctxsw, interleaved_exact)
{
    struct ctxsw_run r = {.nsleep = 50, .interleave = 1};

    run_in_fresh_thread(*mode, ctxsw_worker, &r);
    check_mode(&r.m, *mode);
    MEASURE("ctxsw[%s]: 50 sleeps read after each: delta %" PRIu64 ", getrusage %" PRIu64
            ", %d steps differ", mode_name(*mode), r.c1 - r.c0, r.ru1 - r.ru0, r.step_mismatch);
    cr_assert_eq(r.step_mismatch, 0,
                 "%d of 50 steps differ from getrusage; first at sleep %d: counter +%" PRIu64
                 ", getrusage +%" PRIu64, r.step_mismatch, r.first_bad_step, r.bad_c, r.bad_ru);
    cr_assert_eq(r.went_back, 0);
    cr_assert_eq(r.c1 - r.c0, r.ru1 - r.ru0);
    cr_assert_geq(r.c1 - r.c0, 50);
}

MODE_PARAMS(ctxsw, spin_exact)
ParameterizedTest(int *mode, ctxsw, spin_exact)
{
    struct ctxsw_run r = {.spin_ns = 50000000u};

    run_in_fresh_thread(*mode, ctxsw_worker, &r);
    check_mode(&r.m, *mode);
    MEASURE("ctxsw[%s]: 50 ms spin, %" PRIu64 " reads: delta %" PRIu64 ", getrusage %" PRIu64,
            mode_name(*mode), r.reads, r.c1 - r.c0, r.ru1 - r.ru0);
    cr_assert_eq(r.went_back, 0);
    cr_assert_eq(r.c1 - r.c0, r.ru1 - r.ru0, "ctxsw delta %" PRIu64 " != getrusage delta %" PRIu64,
                 r.c1 - r.c0, r.ru1 - r.ru0);
}

/* Four threads at once, each sleeping a different number of times and reading
 * its own counter: each must match its own getrusage(RUSAGE_THREAD). */
MODE_PARAMS(ctxsw, threads_exact)
ParameterizedTest(int *mode, ctxsw, threads_exact)
{
    enum { NT = 4 };
    struct ctxsw_run r[NT];
    pthread_t t[NT];
    pthread_barrier_t bar;

    pthread_barrier_init(&bar, NULL, NT);
    memset(r, 0, sizeof(r));
    if (*mode)
        setenv("CPROF_NO_RSEQ", "1", 1);
    else
        unsetenv("CPROF_NO_RSEQ");
    for (int i = 0; i < NT; i++) {
        r[i].nsleep = 10 * (i + 1);
        r[i].interleave = i % 2;
        r[i].barrier = &bar;
        cr_assert_eq(pthread_create(&t[i], NULL, ctxsw_worker, &r[i]), 0);
    }
    for (int i = 0; i < NT; i++)
        pthread_join(t[i], NULL);
    unsetenv("CPROF_NO_RSEQ");
    pthread_barrier_destroy(&bar);
    for (int i = 0; i < NT; i++) {
        check_mode(&r[i].m, *mode);
        MEASURE("ctxsw[%s]: thread %d, %d sleeps: delta %" PRIu64 ", getrusage %" PRIu64,
                mode_name(*mode), i, r[i].nsleep, r[i].c1 - r[i].c0, r[i].ru1 - r[i].ru0);
        cr_assert_eq(r[i].c1 - r[i].c0, r[i].ru1 - r[i].ru0,
                     "thread %d: ctxsw delta %" PRIu64 " != its getrusage delta %" PRIu64, i,
                     r[i].c1 - r[i].c0, r[i].ru1 - r[i].ru0);
        cr_assert_geq(r[i].c1 - r[i].c0, (uint64_t)r[i].nsleep);
        cr_assert_eq(r[i].step_mismatch, 0, "thread %d: %d steps differ", i, r[i].step_mismatch);
    }
    /* per thread, not per process: the 10-sleep thread saw far fewer than the
     * 100 switches of all four */
    cr_assert_lt(r[0].c1 - r[0].c0, 60, "thread 0 counted %" PRIu64 " switches for 10 sleeps",
                 r[0].c1 - r[0].c0);
}

/* cpu and ctxsw share one switch detector per thread: a poll by one re-arms it,
 * and the other must still notice the switch (each keeps its own epoch). */
struct shared_run {
    struct mode_seen m;
    uint64_t ru0, ru1, c0, c1, t0, t1, p0, p1, w0, w1;
    uint64_t c0b, c1b;      /* second ctxsw state in the same thread */
    int step_mismatch, step_mismatch_b;
};

static void *shared_worker(void *arg)
{
    struct shared_run *r = arg;
    void *cs, *ps, *cs2;

    record_mode(&r->m);
    if (open_in(&cprof_counter_ctxsw, &cs, &r->m) || open_in(&cprof_counter_cpu, &ps, &r->m) ||
        open_in(&cprof_counter_ctxsw, &cs2, &r->m))
        return NULL;
    r->w0 = mono_ns();
    r->t0 = tcpu_ns();
    r->p0 = cprof_counter_cpu.read(ps);
    r->ru0 = ru_nvcsw();
    r->c0 = cprof_counter_ctxsw.read(cs);
    r->c0b = cprof_counter_ctxsw.read(cs2);
    uint64_t pc = r->c0, pcb = r->c0b, pru = r->ru0, prub = r->ru0;
    for (int i = 0; i < 40; i++) {
        sleep_us(500);
        /* cpu polls first and re-arms; then ctxsw; the second ctxsw state only
         * every other step, so its deltas span two sleeps */
        (void)cprof_counter_cpu.read(ps);
        uint64_t c = cprof_counter_ctxsw.read(cs);
        uint64_t ru = ru_nvcsw();
        r->step_mismatch += c - pc != ru - pru;
        pc = c;
        pru = ru;
        if (i % 2) {
            uint64_t cb = cprof_counter_ctxsw.read(cs2);
            r->step_mismatch_b += cb - pcb != ru - prub;
            pcb = cb;
            prub = ru;
        }
    }
    r->c1 = cprof_counter_ctxsw.read(cs);
    r->c1b = cprof_counter_ctxsw.read(cs2);
    r->ru1 = ru_nvcsw();
    r->p1 = cprof_counter_cpu.read(ps);
    r->t1 = tcpu_ns();
    r->w1 = mono_ns();
    cprof_counter_ctxsw.thread_close(cs);
    cprof_counter_ctxsw.thread_close(cs2);
    cprof_counter_cpu.thread_close(ps);
    return NULL;
}

MODE_PARAMS(ctxsw, shared_detector)
ParameterizedTest(int *mode, ctxsw, shared_detector)
{
    struct shared_run r = {0};

    run_in_fresh_thread(*mode, shared_worker, &r);
    check_mode(&r.m, *mode);
    MEASURE("ctxsw[%s]: cpu+2x ctxsw in one thread, 40 sleeps: ctxsw %" PRIu64 "/%" PRIu64
            ", getrusage %" PRIu64 "; cpu %" PRIu64 " us vs %" PRIu64 " us, wall %" PRIu64 " us",
            mode_name(*mode), r.c1 - r.c0, r.c1b - r.c0b, r.ru1 - r.ru0, (r.p1 - r.p0) / 1000,
            (r.t1 - r.t0) / 1000, (r.w1 - r.w0) / 1000);
    cr_assert_eq(r.step_mismatch, 0, "%d steps of the first ctxsw differ from getrusage",
                 r.step_mismatch);
    cr_assert_eq(r.step_mismatch_b, 0, "%d steps of the second ctxsw differ from getrusage",
                 r.step_mismatch_b);
    cr_assert_eq(r.c1 - r.c0, r.ru1 - r.ru0);
    cr_assert_eq(r.c1b - r.c0b, r.ru1 - r.ru0, "second ctxsw state: %" PRIu64 " vs %" PRIu64,
                 r.c1b - r.c0b, r.ru1 - r.ru0);
    cr_assert_geq(r.c1 - r.c0, 40);
    cr_assert_leq(absdiff(r.p1 - r.p0, r.t1 - r.t0), 1000000,
                  "cpu %" PRIu64 " ns vs CLOCK_THREAD_CPUTIME_ID %" PRIu64 " ns", r.p1 - r.p0,
                  r.t1 - r.t0);
}

/* -------------------------------------------------------------------- cpu */

struct cpu_run {
    struct mode_seen m;
    uint64_t spin_ns;       /* in */
    int spin_cpu;           /* in: spin_ns is CPU time, not wall time */
    int spin_reads;         /* in: read on every spin iteration */
    int nsleep;             /* in */
    long sleep_us;          /* in */
    uint64_t t0, t1, c0, c1, w0, w1;
    uint64_t reads;
    int went_back;
    uint64_t ncorr, corr;
};

static void *cpu_worker(void *arg)
{
    struct cpu_run *r = arg;
    const struct cprof_counter_def *def = &cprof_counter_cpu;
    void *st;

    record_mode(&r->m);
    if (open_in(def, &st, &r->m) != 0)
        return NULL;
    (void)def->read(st);
    spin_wall_ns(1000000);          /* settle: fault in, leave the first read behind */
    r->w0 = mono_ns();
    r->t0 = tcpu_ns();
    r->c0 = def->read(st);
    uint64_t prev = r->c0;
    if (r->spin_ns && r->spin_cpu) {
        /* until the thread got spin_ns of CPU (the machine may be busy), or
         * 30 times that in wall time */
        uint64_t end = r->w0 + 30 * r->spin_ns;
        for (;;) {
            for (int i = 0; i < 1024; i++) {
                if (r->spin_reads) {
                    uint64_t c = def->read(st);
                    r->went_back += c < prev;
                    prev = c;
                    r->reads++;
                } else {
                    burn(50);
                }
            }
            if (tcpu_ns() - r->t0 >= r->spin_ns || mono_ns() >= end)
                break;
        }
    } else if (r->spin_ns) {
        uint64_t end = mono_ns() + r->spin_ns;
        if (r->spin_reads) {
            while (mono_ns() < end) {
                uint64_t c = def->read(st);
                r->went_back += c < prev;
                prev = c;
                r->reads++;
            }
        } else {
            spin_wall_ns(r->spin_ns);
        }
    }
    for (int i = 0; i < r->nsleep; i++) {
        sleep_us(r->sleep_us);
        uint64_t c = def->read(st);
        r->went_back += c < prev;
        prev = c;
        r->reads++;
    }
    r->c1 = def->read(st);
    r->t1 = tcpu_ns();
    r->w1 = mono_ns();
    r->went_back += r->c1 < prev;
    def->corrections(st, &r->ncorr, &r->corr);
    close_ctr(def, st);
    return NULL;
}

static void check_cpu_close(const struct cpu_run *r, int mode, const char *what,
                            unsigned pct, uint64_t slack_ns)
{
    uint64_t d = r->c1 - r->c0, truth = r->t1 - r->t0;
    int64_t err = (int64_t)d - (int64_t)truth;
    uint64_t allowed = truth * pct / 100 + slack_ns;

    MEASURE("cpu[%s]: %s: counter %" PRIu64 " us, CLOCK_THREAD_CPUTIME_ID %" PRIu64
            " us, wall %" PRIu64 " us, error %+" PRId64 " ns (%+.3f%%), %" PRIu64
            " reads, %" PRIu64 " corrections totalling %" PRIu64 " ns", mode_name(mode), what,
            d / 1000, truth / 1000, (r->w1 - r->w0) / 1000, err,
            truth ? 100.0 * (double)err / (double)truth : 0.0, r->reads, r->ncorr, r->corr);
    cr_assert_eq(r->went_back, 0, "cpu went backwards %d times", r->went_back);
    cr_assert_leq(absdiff(d, truth), (int64_t)allowed,
                  "%s: cpu delta %" PRIu64 " ns vs CLOCK_THREAD_CPUTIME_ID %" PRIu64
                  " ns: off by %" PRId64 " ns, allowed %" PRIu64, what, d, truth, err, allowed);
}

MODE_PARAMS(cpu, spin_accuracy)
ParameterizedTest(int *mode, cpu, spin_accuracy)
{
    struct cpu_run a = {.spin_ns = 100000000u, .spin_cpu = 1, .spin_reads = 1};
    struct cpu_run b = {.spin_ns = 100000000u, .spin_cpu = 1, .spin_reads = 0};

    run_in_fresh_thread(*mode, cpu_worker, &a);
    check_mode(&a.m, *mode);
    check_cpu_close(&a, *mode, "100 ms spin, read every iteration", 2, 200000);
    cr_assert_gt(a.c1 - a.c0, 90000000u, "a 100 ms CPU spin counted only %" PRIu64 " ns",
                 a.c1 - a.c0);
    run_in_fresh_thread(*mode, cpu_worker, &b);
    check_mode(&b.m, *mode);
    check_cpu_close(&b, *mode, "100 ms spin, read at both ends", 2, 200000);
    cr_assert_gt(b.c1 - b.c0, 90000000u, "a 100 ms CPU spin counted only %" PRIu64 " ns",
                 b.c1 - b.c0);
}

/* Sleeps are not CPU time.  5 ms sleeps outlast the 2 ms resync period, so a
 * missed switch is hidden there; 500 us sleeps do not, so the second run is the
 * one that catches a detector missing a switch (the sleep would be charged). */
MODE_PARAMS(cpu, sleeps_not_counted)
ParameterizedTest(int *mode, cpu, sleeps_not_counted)
{
    struct cpu_run a = {.nsleep = 20, .sleep_us = 5000};
    struct cpu_run b = {.nsleep = 200, .sleep_us = 500};

    run_in_fresh_thread(*mode, cpu_worker, &a);
    check_mode(&a.m, *mode);
    check_cpu_close(&a, *mode, "20 x 5 ms sleeps", 0, 1000000);
    cr_assert_lt(a.c1 - a.c0, (a.w1 - a.w0) / 4, "cpu %" PRIu64 " ns over %" PRIu64 " ns of sleeps",
                 a.c1 - a.c0, a.w1 - a.w0);
    run_in_fresh_thread(*mode, cpu_worker, &b);
    check_mode(&b.m, *mode);
    check_cpu_close(&b, *mode, "200 x 500 us sleeps", 0, 1000000);
    cr_assert_lt(b.c1 - b.c0, (b.w1 - b.w0) / 4, "cpu %" PRIu64 " ns over %" PRIu64 " ns of sleeps",
                 b.c1 - b.c0, b.w1 - b.w0);
}

/* Several threads spinning at once on 2 vCPUs (so preempting one another): each
 * thread's cpu follows its own CPU clock, not the process's or the wall's (those
 * would be off by tens of ms here), within 2% + 200 us on both paths. */
struct cpu_thr {
    struct cpu_run r;
    pthread_barrier_t *bar;
};

static void *cpu_thr_worker(void *arg)
{
    struct cpu_thr *t = arg;

    pthread_barrier_wait(t->bar);
    return cpu_worker(&t->r);
}

MODE_PARAMS(cpu, threads)
ParameterizedTest(int *mode, cpu, threads)
{
    enum { NT = 4 };
    struct cpu_thr th[NT];
    pthread_t t[NT];
    pthread_barrier_t bar;

    memset(th, 0, sizeof(th));
    pthread_barrier_init(&bar, NULL, NT);
    if (*mode)
        setenv("CPROF_NO_RSEQ", "1", 1);
    else
        unsetenv("CPROF_NO_RSEQ");
    for (int i = 0; i < NT; i++) {
        th[i].bar = &bar;
        th[i].r.spin_reads = 1;
        th[i].r.spin_ns = 40000000u * (uint64_t)(i + 1);
        cr_assert_eq(pthread_create(&t[i], NULL, cpu_thr_worker, &th[i]), 0);
    }
    for (int i = 0; i < NT; i++)
        pthread_join(t[i], NULL);
    unsetenv("CPROF_NO_RSEQ");
    pthread_barrier_destroy(&bar);
    for (int i = 0; i < NT; i++) {
        char what[64];
        check_mode(&th[i].r.m, *mode);
        snprintf(what, sizeof(what), "thread %d of 4, %d ms spin", i, 40 * (i + 1));
        check_cpu_close(&th[i].r, *mode, what, 2, 200000);
    }
}

/* A preemption-heavy spin (8 threads on 2 vCPUs), reading cpu on every
 * iteration and comparing every 64th reading with CLOCK_THREAD_CPUTIME_ID read
 * just after it: the counter must never be ahead of the real clock by more than
 * interrupt-accounting noise (250 us).
 *
 * Regression test: cpu_read() used to poll the switch detector *before* reading
 * CLOCK_MONOTONIC.  If the
 * thread is preempted between the poll and the clock read, the poll said "no
 * switch" but the monotonic delta then includes the time spent off the CPU,
 * and that is returned as CPU time (up to the 2 ms resync window; then held, and
 * recorded as a correction, until the real clock catches up).  Measured with the
 * code as is: readings up to 1.9 ms ahead of CLOCK_THREAD_CPUTIME_ID, in 17 of
 * 120 thread-runs more than 100 us ahead, 106 corrections totalling 27 ms; with
 * the clock read moved before the poll (so an unchanged epoch vouches for the
 * clock reading, as now), at most 60 us ahead, 22 corrections totalling 0.5 ms.
 * The bug was timing-dependent: this test caught it in most runs, not all. */
struct ahead_run {
    pthread_barrier_t *bar;
    struct mode_seen m;
    uint64_t checks, over, max_over, reads, ncorr, corr;
};

static void *ahead_worker(void *arg)
{
    struct ahead_run *r = arg;
    const struct cprof_counter_def *def = &cprof_counter_cpu;
    void *st;

    record_mode(&r->m);
    if (open_in(def, &st, &r->m) != 0)
        return NULL;
    pthread_barrier_wait(r->bar);
    uint64_t end = mono_ns() + 300000000u;
    while (mono_ns() < end) {
        uint64_t c = def->read(st);
        if ((r->reads++ & 63) != 0)
            continue;
        uint64_t t = tcpu_ns();
        r->checks++;
        if (c > t + 250000) {
            r->over++;
            if (c - t > r->max_over)
                r->max_over = c - t;
        }
    }
    def->corrections(st, &r->ncorr, &r->corr);
    close_ctr(def, st);
    return NULL;
}

Test(cpu, never_ahead_of_real_clock)
{
    enum { NT = 8 };
    struct ahead_run r[NT];
    pthread_t t[NT];
    pthread_barrier_t bar;

    memset(r, 0, sizeof(r));
    unsetenv("CPROF_NO_RSEQ");
    pthread_barrier_init(&bar, NULL, NT);
    for (int i = 0; i < NT; i++) {
        r[i].bar = &bar;
        cr_assert_eq(pthread_create(&t[i], NULL, ahead_worker, &r[i]), 0);
    }
    for (int i = 0; i < NT; i++)
        pthread_join(t[i], NULL);
    pthread_barrier_destroy(&bar);
    for (int i = 0; i < NT; i++) {
        check_mode(&r[i].m, 0);
        MEASURE("cpu[rseq]: contention thread %d: %" PRIu64 " reads, %" PRIu64 " of %" PRIu64
                " checks > 250 us ahead (max %" PRIu64 " us), %" PRIu64 " corrections totalling %"
                PRIu64 " us", i, r[i].reads, r[i].over, r[i].checks, r[i].max_over / 1000,
                r[i].ncorr, r[i].corr / 1000);
    }
    for (int i = 0; i < NT; i++)
        cr_assert_eq(r[i].over, 0, "thread %d: cpu ran ahead of CLOCK_THREAD_CPUTIME_ID by up to %"
                     PRIu64 " ns (%" PRIu64 " of %" PRIu64 " checks): off-CPU time counted as CPU",
                     i, r[i].max_over, r[i].over, r[i].checks);
}

/* 10^6 consecutive reads on the fast path (2*10^5 on the fallback, a system
 * call each) never decrease; a short sleep every 2^18 reads forces resyncs. */
static void *cpu_monotonic_worker(void *arg)
{
    struct cpu_run *r = arg;
    const struct cprof_counter_def *def = &cprof_counter_cpu;
    void *st;
    uint64_t n;

    record_mode(&r->m);
    n = r->m.has_rseq ? 1000000u : 200000u;
    if (open_in(def, &st, &r->m) != 0)
        return NULL;
    r->w0 = mono_ns();
    uint64_t prev = r->c0 = def->read(st);
    for (uint64_t i = 0; i < n; i++) {
        uint64_t c = def->read(st);
        r->went_back += c < prev;
        prev = c;
        if ((i & 0x3ffff) == 0x3ffff)
            sleep_us(200);
    }
    r->reads = n;
    r->c1 = prev;
    r->w1 = mono_ns();
    def->corrections(st, &r->ncorr, &r->corr);
    close_ctr(def, st);
    return NULL;
}

MODE_PARAMS(cpu, monotonic)
ParameterizedTest(int *mode, cpu, monotonic)
{
    struct cpu_run r = {0};

    run_in_fresh_thread(*mode, cpu_monotonic_worker, &r);
    check_mode(&r.m, *mode);
    MEASURE("cpu[%s]: %" PRIu64 " consecutive reads over %" PRIu64 " us wall, %" PRIu64
            " corrections totalling %" PRIu64 " ns", mode_name(*mode), r.reads,
            (r.w1 - r.w0) / 1000, r.ncorr, r.corr);
    cr_assert_eq(r.went_back, 0, "cpu went backwards %d times in %" PRIu64 " reads", r.went_back,
                 r.reads);
    cr_assert_gt(r.c1, r.c0);
}

static void *cpu_fresh_corrections(void *arg)
{
    uint64_t *out = arg;
    struct cprof_error err = {0, ""};
    void *st;

    if (cprof_counter_cpu.thread_open(&st, "", NULL, NULL, &err) != 0)
        return NULL;
    cprof_counter_cpu.corrections(st, &out[0], &out[1]);
    cprof_counter_cpu.thread_close(st);
    return NULL;
}

/* corrections(): a fresh state has none; afterwards count and amount are
 * consistent (amount is 0 exactly when count is), each correction is smaller
 * than the 2 ms extrapolation window, and the per-read fallback, which never
 * extrapolates, needs none. */
MODE_PARAMS(cpu, corrections_sane)
ParameterizedTest(int *mode, cpu, corrections_sane)
{
    struct cpu_run r = {.spin_ns = 200000000u, .spin_cpu = 1, .spin_reads = 1, .nsleep = 20,
                        .sleep_us = 1000};
    uint64_t fresh[2] = {99, 99};

    run_in_fresh_thread(*mode, cpu_fresh_corrections, fresh);
    cr_assert_eq(fresh[0], 0, "a fresh cpu state reports %" PRIu64 " corrections", fresh[0]);
    cr_assert_eq(fresh[1], 0);
    run_in_fresh_thread(*mode, cpu_worker, &r);
    check_mode(&r.m, *mode);
    check_cpu_close(&r, *mode, "200 ms spin + 20 sleeps", 2, 200000);
    cr_assert((r.ncorr == 0) == (r.corr == 0), "count %" PRIu64 " amount %" PRIu64, r.ncorr, r.corr);
    cr_assert_leq(r.ncorr, r.reads + 2);
    cr_assert_leq(r.corr, r.ncorr * 2100000u, "%" PRIu64 " corrections total %" PRIu64
                  " ns: more than a 2 ms window each", r.ncorr, r.corr);
    if (*mode)
        cr_assert_eq(r.ncorr, 0, "the per-read fallback made %" PRIu64 " corrections", r.ncorr);
}

/* ------------------------------------------------------------------- wall */

Test(wall, matches_monotonic)
{
    const struct cprof_counter_def *def = &cprof_counter_wall;
    struct cprof_error err = {0, ""};
    void *st = (void *)1;

    cr_assert_eq(def->thread_open(&st, "", NULL, NULL, &err), 0, "%s", err.msg);
    for (int i = 0; i < 20; i++) {
        uint64_t m0 = mono_ns();
        uint64_t b0 = clk_ns(CLOCK_BOOTTIME);
        uint64_t w0 = def->read(st);
        sleep_us(i % 2 ? 1000 : 10000);
        uint64_t w1 = def->read(st);
        uint64_t b1 = clk_ns(CLOCK_BOOTTIME);
        uint64_t m1 = mono_ns();
        /* CLOCK_MONOTONIC's time scale: reads sit between the surrounding
         * CLOCK_MONOTONIC reads, up to the rdtsc calibration's error (2 us) */
        cr_assert_geq(w0 + 2000, m0, "wall %" PRIu64 " before CLOCK_MONOTONIC %" PRIu64, w0, m0);
        cr_assert_leq(w1, m1 + 2000, "wall %" PRIu64 " after CLOCK_MONOTONIC %" PRIu64, w1, m1);
        cr_assert_geq(w1 - w0, (uint64_t)(i % 2 ? 1000000 : 10000000), "wall delta %" PRIu64
                      " shorter than the sleep", w1 - w0);
        cr_assert_leq(absdiff(w1 - w0, m1 - m0), 200000, "wall %" PRIu64 " vs mono %" PRIu64,
                      w1 - w0, m1 - m0);
        /* and ns, like an independent clock */
        cr_assert_leq(absdiff(w1 - w0, b1 - b0), 200000, "wall %" PRIu64 " vs boottime %" PRIu64,
                      w1 - w0, b1 - b0);
        if (i == 0)
            MEASURE("wall: 10 ms sleep: wall %" PRIu64 " ns, CLOCK_MONOTONIC %" PRIu64
                    " ns, CLOCK_BOOTTIME %" PRIu64 " ns", w1 - w0, m1 - m0, b1 - b0);
    }
    close_ctr(def, st);
}

Test(wall, monotonic)
{
    const struct cprof_counter_def *def = &cprof_counter_wall;
    struct cprof_error err = {0, ""};
    void *st;
    int back = 0;

    cr_assert_eq(def->thread_open(&st, "", NULL, NULL, &err), 0, "%s", err.msg);
    uint64_t prev = def->read(st);
    for (int i = 0; i < 1000000; i++) {
        uint64_t w = def->read(st);
        back += w < prev;
        prev = w;
    }
    close_ctr(def, st);
    cr_assert_eq(back, 0, "wall went backwards %d times in 10^6 reads", back);
}

/* The cheap clock (clock.h) keeps CLOCK_MONOTONIC's rate: over 200 ms the two
 * deltas agree within 50 ppm + 2 us, on whichever path this machine chose (rdtsc
 * here: constant_tsc and nonstop_tsc), and it says which. */
Test(clock, keeps_monotonic_rate)
{
    char desc[200];

    cprof_clock_init();
    cprof_clock_describe(desc, sizeof(desc));
    cr_assert(strstr(desc, "rdtsc") || strstr(desc, "CLOCK_MONOTONIC"), "%s", desc);
    MEASURE("clock: %s", desc);
    uint64_t c0 = cprof_clock_ns(), m0 = mono_ns();
    sleep_us(200000);
    uint64_t c1 = cprof_clock_ns(), m1 = mono_ns();
    uint64_t dc = c1 - c0, dm = m1 - m0;
    cr_assert_leq(absdiff(dc, dm), dm / 20000 + 2000, "clock %" PRIu64 " ns vs CLOCK_MONOTONIC %"
                  PRIu64 " ns over a 200 ms sleep", dc, dm);
    cr_assert_leq(absdiff(c1, m1), 20000, "clock %" PRIu64 " vs CLOCK_MONOTONIC %" PRIu64, c1, m1);
}

/* CPROF_NO_TSC selects the vDSO path (Criterion runs each test in its own
 * process, so the first cprof_clock_init() here sees the variable). */
Test(clock, fallback_without_tsc)
{
    char desc[200];

    setenv("CPROF_NO_TSC", "1", 1);
    cprof_clock_init();
    cprof_clock_describe(desc, sizeof(desc));
    unsetenv("CPROF_NO_TSC");
    cr_assert(strstr(desc, "CLOCK_MONOTONIC (vDSO; no rdtsc: CPROF_NO_TSC is set)"), "%s", desc);
    uint64_t m0 = mono_ns(), c = cprof_clock_ns(), m1 = mono_ns();
    cr_assert(m0 <= c && c <= m1, "fallback clock %" PRIu64 " outside [%" PRIu64 ", %" PRIu64 "]",
              c, m0, m1);
}

/* ---------------------------------- no rseq at all: glibc.pthread.rseq=0 */

/* Run in a re-executed copy of this binary (see main): the checks of the
 * fallback path when glibc itself did not register rseq.  Prints one line per
 * check; returns the number of failures. */
static int child_main(void)
{
    char why[200], path[256];
    struct cprof_error err = {0, ""};
    void *cs, *ps;
    int fails = 0;

#define CHILD_CHECK(cond, ...)                                                           \
    do {                                                                                 \
        if (!(cond)) {                                                                   \
            printf("FAIL: " __VA_ARGS__);                                                \
            putchar('\n');                                                               \
            fails++;                                                                     \
        }                                                                                \
    } while (0)

    printf("__rseq_size=%u\n", __rseq_size);
    CHILD_CHECK(__rseq_size == 0, "glibc registered rseq despite the tunable");
    CHILD_CHECK(cprof_switchdet_available(why, sizeof(why)) == 0, "detector claims rseq");
    CHILD_CHECK(strstr(why, "glibc") != NULL, "why does not mention glibc: '%s'", why);
    CHILD_CHECK(cprof_switchdet_self()->rseq_cs == NULL, "detector uses an rseq area");
    CHILD_CHECK(cprof_counter_ctxsw.probe(NULL, NULL, path, sizeof(path), &err) == 0, "probe: %s", err.msg);
    CHILD_CHECK(strstr(path, "slow path") != NULL, "ctxsw path: '%s'", path);
    printf("ctxsw path: %s\n", path);

    uint64_t e = cprof_switchdet_poll(cprof_switchdet_self());
    int nb = 0;
    for (int i = 0; i < 1000; i++) {
        uint64_t e2 = cprof_switchdet_poll(cprof_switchdet_self());
        nb += e2 != e + 1;
        e = e2;
    }
    CHILD_CHECK(nb == 0, "%d of 1000 polls did not bump the epoch", nb);

    if (cprof_counter_ctxsw.thread_open(&cs, "", NULL, NULL, &err) || cprof_counter_cpu.thread_open(&ps, "", NULL, NULL, &err)) {
        printf("FAIL: thread_open: %s\n", err.msg);
        return fails + 1;
    }
    uint64_t t0 = tcpu_ns(), p0 = cprof_counter_cpu.read(ps);
    uint64_t ru0 = ru_nvcsw(), c0 = cprof_counter_ctxsw.read(cs);
    uint64_t pru = ru0, pc = c0;
    int steps = 0;
    for (int i = 0; i < 50; i++) {
        sleep_us(1000);
        uint64_t c = cprof_counter_ctxsw.read(cs), ru = ru_nvcsw();
        steps += c - pc != ru - pru;
        pc = c;
        pru = ru;
        (void)cprof_counter_cpu.read(ps);
    }
    uint64_t c1 = cprof_counter_ctxsw.read(cs), ru1 = ru_nvcsw();
    uint64_t p1 = cprof_counter_cpu.read(ps), t1 = tcpu_ns();
    printf("ctxsw delta %" PRIu64 " getrusage %" PRIu64 "; sleeps: cpu %" PRIu64
           " ns vs %" PRIu64 " ns\n", c1 - c0, ru1 - ru0, p1 - p0, t1 - t0);
    CHILD_CHECK(steps == 0, "%d ctxsw steps differ from getrusage", steps);
    CHILD_CHECK(c1 - c0 == ru1 - ru0 && c1 - c0 >= 50, "ctxsw %" PRIu64 " vs %" PRIu64,
                c1 - c0, ru1 - ru0);
    CHILD_CHECK(absdiff(p1 - p0, t1 - t0) <= 1000000, "cpu over sleeps %" PRIu64 " vs %" PRIu64,
                p1 - p0, t1 - t0);

    t0 = tcpu_ns();
    p0 = cprof_counter_cpu.read(ps);
    uint64_t end = mono_ns() + 100000000u, prev = p0;
    int back = 0;
    while (mono_ns() < end) {
        uint64_t p = cprof_counter_cpu.read(ps);
        back += p < prev;
        prev = p;
    }
    p1 = cprof_counter_cpu.read(ps);
    t1 = tcpu_ns();
    uint64_t nc = 0, amt = 0;
    cprof_counter_cpu.corrections(ps, &nc, &amt);
    printf("spin: cpu %" PRIu64 " ns vs %" PRIu64 " ns, %" PRIu64 " corrections\n", p1 - p0,
           t1 - t0, nc);
    CHILD_CHECK(back == 0, "cpu went backwards %d times", back);
    CHILD_CHECK((uint64_t)absdiff(p1 - p0, t1 - t0) <= (t1 - t0) / 50 + 200000,
                "cpu over spin %" PRIu64 " vs %" PRIu64, p1 - p0, t1 - t0);
    CHILD_CHECK(nc == 0, "per-read fallback made %" PRIu64 " corrections", nc);
    cprof_counter_ctxsw.thread_close(cs);
    cprof_counter_cpu.thread_close(ps);
    printf("%s\n", fails ? "child: FAILED" : "child: ok");
    fflush(stdout);
    return fails;
#undef CHILD_CHECK
}

Test(norseq_process, glibc_tunable_disables_rseq)
{
    int pipefd[2];
    char out[4096];
    size_t used = 0;
    int status = 0;
    char *envp[8];
    int ne = 0;
    static char tun[] = "GLIBC_TUNABLES=glibc.pthread.rseq=0";
    static char mark[] = "CPROF_TEST_CHILD=norseq";
    static const char *const keep[] = {"PATH=", "ASAN_OPTIONS=", "UBSAN_OPTIONS=",
                                       "LSAN_OPTIONS="};
    extern char **environ;

    envp[ne++] = tun;
    envp[ne++] = mark;
    for (char **e = environ; *e; e++)
        for (int i = 0; i < 4; i++)
            if (strncmp(*e, keep[i], strlen(keep[i])) == 0 && ne < 7)
                envp[ne++] = *e;
    envp[ne] = NULL;

    cr_assert_eq(pipe(pipefd), 0);
    fflush(NULL);
    pid_t pid = fork();
    cr_assert_geq(pid, 0, "fork: %s", strerror(errno));
    if (pid == 0) {
        char *argv[] = {(char *)"test_counters", NULL};
        dup2(pipefd[1], 1);
        dup2(pipefd[1], 2);
        close(pipefd[0]);
        close(pipefd[1]);
        execve("/proc/self/exe", argv, envp);
        _exit(127);
    }
    close(pipefd[1]);
    for (;;) {
        ssize_t n = read(pipefd[0], out + used, sizeof(out) - 1 - used);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        used += (size_t)n;
        if (used == sizeof(out) - 1)
            break;
    }
    out[used] = '\0';
    close(pipefd[0]);
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
        ;
    for (char *line = strtok(out, "\n"); line; line = strtok(NULL, "\n"))
        MEASURE("norseq child: %s", line);
    cr_assert(WIFEXITED(status), "child did not exit normally (status %#x)", status);
    cr_assert_neq(WEXITSTATUS(status), 127, "could not re-execute /proc/self/exe");
    cr_assert_eq(WEXITSTATUS(status), 0, "the no-rseq child reported %d failures (see [measure] "
                 "lines)", WEXITSTATUS(status));
}

/* ------------------------------------------------------------------- main */

int main(int argc, char *argv[])
{
    struct criterion_test_set *tests;
    int result = 0;

    if (getenv("CPROF_TEST_CHILD"))
        return child_main() ? 1 : 0;
    /* One test at a time: the timing tests share a 2-vCPU machine with nothing
     * else of ours.  --jobs or CRITERION_JOBS still override. */
    setenv("CRITERION_JOBS", "1", 0);
    tests = criterion_initialize();
    if (criterion_handle_args(argc, argv, true))
        result = !criterion_run_all_tests(tests);
    criterion_finalize(tests);
    return result;
}
