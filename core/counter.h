/* Compatibility: the counter interface is core/cprof/counter.h (installed as cprof/counter.h). */
#include "cprof/counter.h"
