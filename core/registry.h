/* Counter registry and spec parsing: "cpu,wall,ctxsw" -> an array of (def, arg). */
#ifndef CPROF_REGISTRY_H
#define CPROF_REGISTRY_H

#include "counter.h"

#define CPROF_MAX_COUNTERS 16
#define CPROF_ARG_LEN 256

struct cprof_counter_spec {
    const struct cprof_counter_def *def;    /* borrowed from the registry */
    char arg[CPROF_ARG_LEN];                /* text after the first ':' ("" if none) */
};

/* `known` is a NULL-terminated array of descriptors. */
const struct cprof_counter_def *cprof_registry_find(const struct cprof_counter_def *const *known,
                                                    const char *name, size_t len);

/* Check one descriptor is complete; -1 + err naming the missing piece. */
int cprof_registry_check(const struct cprof_counter_def *def, struct cprof_error *err);

/* Parse a comma-separated spec into out[0..*n).  Unknown, empty, duplicate or too
 * many names give -1 and a sentence in err that lists the valid names. */
int cprof_spec_parse(const char *spec, const struct cprof_counter_def *const *known,
                     struct cprof_counter_spec *out, unsigned max, unsigned *n,
                     struct cprof_error *err);

#endif
