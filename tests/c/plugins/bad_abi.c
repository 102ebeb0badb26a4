/* A plugin built against a future counter ABI: cprof must refuse it. */
#include <cprof/counter.h>

__attribute__((visibility("default"))) const struct cprof_plugin cprof_plugin = {
    .abi = 100,
    .count = 0,
    .counters = 0,
};
