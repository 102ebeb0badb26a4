/* The built-in counter descriptors, one per file in counters/, and the registry.
 * The registry is generated from counters/meson.build's list; the declarations
 * below are for code that names one of them directly (tests): a new counter
 * needs none (find it with cprof_registry_find). */
#ifndef CPROF_COUNTERS_H
#define CPROF_COUNTERS_H

#include "../core/counter.h"
#include "../core/registry.h"

extern const struct cprof_counter_def cprof_counter_cpu;
extern const struct cprof_counter_def cprof_counter_wall;
extern const struct cprof_counter_def cprof_counter_ctxsw;
/* malloc.c: counted by the preloaded interposer (preload/); probe fails with
 * ENOPKG and a sentence on how to start the program when it is not there */
extern const struct cprof_counter_def cprof_counter_malloc_bytes;
extern const struct cprof_counter_def cprof_counter_malloc_calls;
extern const struct cprof_counter_def cprof_counter_free_bytes;
extern const struct cprof_counter_def cprof_counter_free_calls;

/* NULL-terminated, in --list-counters order. */
extern const struct cprof_counter_def *const cprof_builtin_counters[];

/* Resolvers of counters named at run time (plugins, perf events), NULL-terminated;
 * give them to cprof_spec_resolve (core/registry.h) after cprof_builtin_counters. */
extern const struct cprof_resolver *const cprof_counter_resolvers[];

/* plugin:PATH[:ARG]: a counter from a shared library (plugin.c). */
extern const struct cprof_resolver cprof_plugin_resolver;

#endif
