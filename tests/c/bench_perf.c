/* Per-read cost of each kind of perf counter read, in a C loop (ns per read,
 * best of 5 runs).  `meson test --benchmark --suite perf` runs it; it prints
 * "[measure]" lines and never fails on a number.  The rdpmc path is measured
 * only where a hardware PMU is visible. */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "registry.h"
#include "../../counters/perf.h"

#define ITERS 200000

static uint64_t now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static volatile uint64_t sink;

static double per_read(uint64_t (*read)(void *), void *state)
{
    double best = 1e30;

    for (int run = 0; run < 5; run++) {
        uint64_t t0 = now_ns();
        for (int i = 0; i < ITERS; i++)
            sink += read(state);
        double ns = (double)(now_ns() - t0) / ITERS;
        if (ns < best)
            best = ns;
    }
    return best;
}

static uint64_t mono_read(void *state)
{
    (void)state;
    return now_ns();
}

static void measure(const char *what, const struct cprof_counter_def *def, const char *event)
{
    struct cprof_counter_spec spec = {.def = def};
    struct cprof_error err = {0, ""};
    void *state = NULL, *shared = NULL;

    snprintf(spec.arg, sizeof(spec.arg), "%s", event);
    if (cprof_counters_open(&spec, 1, &state, &shared, &err) < 0) {
        printf("[measure] %-58s n/a: %s\n", what, err.msg);
        return;
    }
    printf("[measure] %-58s %7.1f ns/read\n", what, per_read(def->read, state));
    cprof_counters_close(&spec, 1, &state, &shared);
}

int main(void)
{
    struct cprof_counter_spec group[2] = {{&cprof_counter_perf_hw_leader, "page-faults", NULL},
                                          {&cprof_counter_perf_hw_member, "minor-faults", NULL}};
    struct cprof_error err = {0, ""};
    void *st[2], *shared[2];

    printf("[measure] %-58s %7.1f ns/read\n", "clock_gettime(CLOCK_MONOTONIC), for scale",
           per_read(mono_read, NULL));
    measure("page-faults: read() of a software event", &cprof_counter_perf_sw, "page-faults");
    measure("task-clock: read() of a software event", &cprof_counter_perf_sw, "task-clock");
    measure("context-switches: mmap'd page (seqlock'd load)", &cprof_counter_perf_sw,
            "context-switches");
    measure("cpu-migrations: mmap'd page (seqlock'd load)", &cprof_counter_perf_sw,
            "cpu-migrations");
    /* a group of two read by its leader, as hardware groups are when multiplexed or
     * without rdpmc: one read() for both (software events stand in for hardware) */
    if (cprof_counters_open(group, 2, st, shared, &err) == 0) {
        printf("[measure] %-58s %7.1f ns/read\n",
               "group of 2 (leader read(), PERF_FORMAT_GROUP, both values)",
               per_read(cprof_counter_perf_hw_leader.read, st[0]));
        cprof_counters_close(group, 2, st, shared);
    }
    if (cprof_perf_hw_pmu_visible()) {
        measure("instructions: group leader (rdpmc where cap_user_rdpmc)",
                &cprof_counter_perf_hw_leader, "instructions");
    } else {
        printf("[measure] %-58s n/a: no hardware PMU visible here\n",
               "instructions: rdpmc from the mmap'd page");
    }
    return 0;
}
