/* Which counters cprof compensates, as their descriptors say (counter.h): the ones
 * the tracer's own work raises (time, CPU clocks, hardware events), never the
 * program's own events (switches, allocations, faults).  Through the registry and
 * the resolvers, as a run gets them. */
#include <criterion/criterion.h>

#include "../counters/counters.h"
#include "registry.h"

#define COST CPROF_COUNTER_TRACER_COST
#define TIME CPROF_COUNTER_TIME
#define ELAPSED CPROF_COUNTER_ELAPSED

static unsigned flags_of(const char *name)
{
    static struct cprof_counter_spec spec[1];
    struct cprof_error err = {0, ""};
    unsigned n = 0;

    cr_assert_eq(cprof_spec_resolve(name, cprof_builtin_counters, cprof_counter_resolvers, spec, 1,
                                    &n, &err), 0, "%s: %s", name, err.msg);
    cr_assert_eq(n, 1);
    return spec[0].def->flags;
}

Test(flags, time_counters_are_compensated)
{
    cr_assert_eq(flags_of("cpu"), COST | TIME);
    cr_assert_eq(flags_of("wall"), COST | TIME | ELAPSED);
}

Test(flags, the_programs_own_events_are_not)
{
    static const char *const own[] = {"ctxsw", "malloc-bytes", "malloc-calls", "free-bytes",
                                      "free-calls", NULL};

    for (const char *const *n = own; *n; n++)
        cr_assert_eq(flags_of(*n), 0, "%s", *n);
}

Test(flags, perf_events_by_what_raises_them)
{
    static const char *const own[] = {"page-faults", "minor-faults", "major-faults",
                                      "context-switches", "cpu-migrations", NULL};

    for (const char *const *n = own; *n; n++)
        cr_assert_eq(flags_of(*n), 0, "%s", *n);
    cr_assert_eq(flags_of("task-clock"), COST | TIME);
    cr_assert_eq(flags_of("cpu-clock"), COST | TIME);
    cr_assert_eq(flags_of("instructions"), COST);
    cr_assert_eq(flags_of("cycles"), COST);
}
