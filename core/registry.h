/* Counter registry and spec parsing: "cpu,wall,ctxsw" -> an array of (def, arg). */
#ifndef CPROF_REGISTRY_H
#define CPROF_REGISTRY_H

#include "counter.h"

#define CPROF_MAX_COUNTERS 16
#define CPROF_ARG_LEN 256
#define CPROF_READ_PATH_LEN 240 /* a counter's read path, as its probe() describes it */

struct cprof_counter_spec {
    const struct cprof_counter_def *def;    /* borrowed from the registry, or &own */
    char arg[CPROF_ARG_LEN];                /* text after the first ':' ("" if none);
                                             * a resolved counter's whole name */
    struct cprof_counter_def own;           /* a resolved counter's descriptor: a copy
                                             * of its module's, named by `arg` */
};

/* A resolver names counters that no static table can list: perf events are any
 * string libpfm4 understands ("INST_RETIRED.ANY_P:u").  A name that is not a
 * built-in counter is offered to each resolver in turn, whole (modifiers after
 * ':' included).  A resolved spec describes itself: def == &own, own.name ==
 * arg == the name as typed, so the profile and report use the user's spelling.
 * Such a spec points into itself; it must not be copied by value after parsing. */
struct cprof_resolver {
    const char *name;                       /* "perf", for messages */
    /* 0 and out->def/out->arg set if `name` is one of its counters.  Otherwise -1
     * and err: code ENOENT means "not mine" (msg may then say more, e.g. close
     * names); any other code is a definite error about this name.  `prev` are the
     * counters parsed before this one (a module may group with them). */
    int (*resolve)(const char *name, const struct cprof_counter_spec *prev, unsigned nprev,
                   struct cprof_counter_spec *out, struct cprof_error *err);
    /* Optional: NULL-terminated names for --list-counters, in that order. */
    const char *const *listed;
    /* Optional: close names it knows for an unknown `name`, comma-separated. */
    void (*suggest)(const char *name, char *buf, size_t len);
};

/* `known` is a NULL-terminated array of descriptors. */
const struct cprof_counter_def *cprof_registry_find(const struct cprof_counter_def *const *known,
                                                    const char *name, size_t len);

/* Check one descriptor is complete; -1 + err naming the missing piece. */
int cprof_registry_check(const struct cprof_counter_def *def, struct cprof_error *err);

/* Check a parsed spec: cprof_registry_check for a built-in counter; for a
 * resolved one (def == &own), complete and named by its whole argument, which may
 * hold ':' modifiers. */
struct cprof_counter_spec;
int cprof_spec_check(const struct cprof_counter_spec *spec, struct cprof_error *err);

/* Parse a comma-separated spec into out[0..*n).  Unknown, empty, duplicate or too
 * many names give -1 and a sentence in err that lists the valid names. */
int cprof_spec_parse(const char *spec, const struct cprof_counter_def *const *known,
                     struct cprof_counter_spec *out, unsigned max, unsigned *n,
                     struct cprof_error *err);

/* cprof_spec_parse, and names that are not in `known` go to the NULL-terminated
 * `resolvers` (NULL: none).  A name no one knows gets one sentence with the close
 * names that `known` and the resolvers suggest. */
int cprof_spec_resolve(const char *spec, const struct cprof_counter_def *const *known,
                       const struct cprof_resolver *const *resolvers,
                       struct cprof_counter_spec *out, unsigned max, unsigned *n,
                       struct cprof_error *err);

/* Resolve one name, as cprof_spec_resolve does for each (for --list-counters). */
int cprof_resolve_one(const char *name, const struct cprof_resolver *const *resolvers,
                      struct cprof_counter_spec *out, struct cprof_error *err);

/* Edit distance of a and b, ASCII case folded, capped at `cap` (for suggestions). */
unsigned cprof_name_distance(const char *a, size_t alen, const char *b, size_t blen, unsigned cap);

/* A name counts as close to a typed one of length len within this distance. */
static inline unsigned cprof_close_distance(size_t len)
{
    return len < 6 ? 1 : len < 12 ? 2 : 3;
}

#endif
