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
#define KIND (COST | TIME | ELAPSED)

static unsigned all_flags_of(const char *name)
{
    static struct cprof_counter_spec spec[1];
    struct cprof_error err = {0, ""};
    unsigned n = 0;

    cr_assert_eq(cprof_spec_resolve(name, cprof_builtin_counters, cprof_counter_resolvers, spec, 1,
                                    &n, &err), 0, "%s: %s", name, err.msg);
    cr_assert_eq(n, 1);
    return spec[0].def->flags;
}

/* What compensation goes by. */
static unsigned flags_of(const char *name)
{
    return all_flags_of(name) & KIND;
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

/* What the registry checks once, and Python asks (builtin_counters()): an
 * argument is refused unless the descriptor takes one; the malloc counters need
 * the interposer preloaded. */
Test(flags, arguments_and_the_preload)
{
    static const char *const plain[] = {"cpu", "wall", "ctxsw", NULL};
    static const char *const preload[] = {"malloc-bytes", "malloc-calls", "free-bytes",
                                          "free-calls", NULL};

    for (const char *const *n = plain; *n; n++)
        cr_assert_eq(all_flags_of(*n) & ~KIND, 0, "%s", *n);
    for (const char *const *n = preload; *n; n++)
        cr_assert_eq(all_flags_of(*n), CPROF_COUNTER_NEEDS_PRELOAD, "%s", *n);
    /* a perf event's descriptor takes its name as argument */
    cr_assert_eq(all_flags_of("page-faults"), CPROF_COUNTER_TAKES_ARG);
    cr_assert_eq(all_flags_of("cycles"), CPROF_COUNTER_TAKES_ARG | COST);
}
