/* The built-in counter descriptors, one per file in counters/. */
#ifndef CPROF_COUNTERS_H
#define CPROF_COUNTERS_H

#include "../core/counter.h"

extern const struct cprof_counter_def cprof_counter_cpu;
extern const struct cprof_counter_def cprof_counter_wall;
extern const struct cprof_counter_def cprof_counter_ctxsw;

/* NULL-terminated, in --list-counters order. */
extern const struct cprof_counter_def *const cprof_builtin_counters[];

/* Resolvers of counters named at run time (perf events), NULL-terminated; give
 * them to cprof_spec_resolve (core/registry.h) after cprof_builtin_counters. */
struct cprof_resolver;
extern const struct cprof_resolver *const cprof_counter_resolvers[];

#endif
