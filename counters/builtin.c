/* The registry of built-in counters: cprof_builtin_counters[] in the order of
 * counters/meson.build's list, which generates builtin_list.h (one
 * CPROF_BUILTIN(ident) per descriptor cprof_counter_<ident>). */
#include "counters.h"
#include "perf.h"

#define CPROF_BUILTIN(ident) extern const struct cprof_counter_def cprof_counter_##ident;
#include "builtin_list.h"
#undef CPROF_BUILTIN

const struct cprof_counter_def *const cprof_builtin_counters[] = {
#define CPROF_BUILTIN(ident) &cprof_counter_##ident,
#include "builtin_list.h"
#undef CPROF_BUILTIN
    NULL,
};

const struct cprof_resolver *const cprof_counter_resolvers[] = {
    &cprof_plugin_resolver,     /* first: "plugin:..." is never a perf event */
    &cprof_perf_resolver,
    NULL,
};
