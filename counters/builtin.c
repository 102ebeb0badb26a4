#include "counters.h"

const struct cprof_counter_def *const cprof_builtin_counters[] = {
    &cprof_counter_cpu,
    &cprof_counter_wall,
    &cprof_counter_ctxsw,
    NULL,
};
