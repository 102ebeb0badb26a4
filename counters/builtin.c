#include "counters.h"
#include "perf.h"

const struct cprof_counter_def *const cprof_builtin_counters[] = {
    &cprof_counter_cpu,
    &cprof_counter_wall,
    &cprof_counter_ctxsw,
    &cprof_counter_malloc_bytes,
    &cprof_counter_malloc_calls,
    &cprof_counter_free_bytes,
    &cprof_counter_free_calls,
    NULL,
};

const struct cprof_resolver *const cprof_counter_resolvers[] = {
    &cprof_plugin_resolver,     /* first: "plugin:..." is never a perf event */
    &cprof_perf_resolver,
    NULL,
};
