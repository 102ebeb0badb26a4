/* The counters the extension offers by name: what Profiler(counters=...) and
 * --list-counters accept before they ask the resolvers (perf events, plugins). */
#include "counter_list.h"

#include <pthread.h>

#include "../counters/counters.h"
#include "pymalloc.h"

/* Process-wide and immutable once filled: the descriptors are static, the same
 * for every interpreter and every module object. */
static const struct cprof_counter_def *all[CPROF_MAX_COUNTERS * 2];
static pthread_once_t all_once = PTHREAD_ONCE_INIT;

static void fill(void)
{
    size_t n = 0;

    for (const struct cprof_counter_def *const *d = cprof_builtin_counters; *d; d++)
        if (n + 3 <= sizeof(all) / sizeof(all[0]))     /* room for ours and the NULL */
            all[n++] = *d;
    all[n++] = &cprof_counter_pymalloc_bytes;
    all[n++] = &cprof_counter_pymalloc_calls;
    all[n] = NULL;
}

const struct cprof_counter_def *const *cprof_py_counters(void)
{
    pthread_once(&all_once, fill);
    return all;
}
