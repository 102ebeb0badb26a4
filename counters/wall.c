/* wall: monotonic wall-clock time in ns (clock.h: rdtsc or CLOCK_MONOTONIC). */
#include "clock.h"
#include "counters.h"

#include <errno.h>
#include <stdio.h>
#include <time.h>

static int wall_probe(const char *arg, void *ctx, char *path, size_t pathlen,
                      struct cprof_error *err)
{
    struct timespec ts;

    (void)arg;
    (void)ctx;
    if (clock_gettime(CLOCK_MONOTONIC, &ts) != 0)
        return cprof_error_set(err, errno,
                               "counter 'wall' is unavailable: CLOCK_MONOTONIC cannot be read");
    cprof_clock_describe(path, pathlen);
    return 0;
}

static int wall_open(void **state, const char *arg, void *ctx, void *shared,
                     struct cprof_error *err)
{
    (void)arg;
    (void)ctx;
    (void)shared;
    (void)err;
    cprof_clock_init();
    *state = NULL;
    return 0;
}

static uint64_t wall_read(void *state)
{
    (void)state;
    return cprof_clock_ns();
}

const struct cprof_counter_def cprof_counter_wall = {
    .name = "wall",
    .unit = "ns",
    .description = "wall-clock time (CLOCK_MONOTONIC)",
    .probe = wall_probe,
    .thread_open = wall_open,
    .read = wall_read,
    .flags = CPROF_COUNTER_TRACER_COST | CPROF_COUNTER_TIME | CPROF_COUNTER_ELAPSED,
};
