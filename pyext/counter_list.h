/* The counters the extension offers by name (counter_list.c). */
#ifndef CPROF_COUNTER_LIST_H
#define CPROF_COUNTER_LIST_H

#include "../core/registry.h"

/* counters/'s built-in counters, then pymalloc-bytes and pymalloc-calls.
 * NULL-terminated, in --list-counters order; the same array for the whole
 * process, filled at the first call (from any thread). */
const struct cprof_counter_def *const *cprof_py_counters(void);

#endif
