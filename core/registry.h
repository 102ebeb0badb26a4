/* Counter registry and spec parsing: "cpu,wall,ctxsw" -> an array of (def, arg,
 * ctx); the per-thread opening of a run's counters, groups included.  Every
 * function returns 0 or a negative errno value (the sentence in err). */
#ifndef CPROF_REGISTRY_H
#define CPROF_REGISTRY_H

#include "counter.h"

#define CPROF_MAX_COUNTERS 16
#define CPROF_ARG_LEN 256

/* One counter of a run.  Plain data: copy it by value. */
struct cprof_counter_spec {
    const struct cprof_counter_def *def;    /* the registry's, a plugin's, one kept by
                                             * cprof_registry_keep, or one a caller
                                             * keeps alive (a Python counter's) */
    char arg[CPROF_ARG_LEN];                /* text after the first ':' ("" if none);
                                             * a perf event's whole name */
    void *ctx;                              /* given to def's probe and thread_open:
                                             * NULL, or what the resolver chose */
};

/* A resolver names counters that no static table can list: perf events are any
 * string libpfm4 understands ("INST_RETIRED.ANY_P:u").  A name that is not a
 * built-in counter is offered to each resolver in turn, whole (modifiers after
 * ':' included).  A resolved counter is named as typed, so the profile and report
 * use the user's spelling; its descriptor lives outside the spec (a plugin's, or
 * one kept by cprof_registry_keep). */
struct cprof_resolver {
    const char *name;                       /* "perf", for messages */
    /* 0 and *out set if `name` is one of its counters.  Otherwise -errno and err:
     * -ENOENT means "not mine" (msg may then say more, e.g. close names); any
     * other code is a definite error about this name.  `prev` are the counters
     * parsed before this one (a module may group with them). */
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

/* Check one descriptor is complete and well named; -EINVAL + err naming the
 * missing piece. */
int cprof_registry_check(const struct cprof_counter_def *def, struct cprof_error *err);

/* Check a parsed spec: its descriptor complete, its name without ',' or spaces (a
 * resolved one may hold ':' modifiers), an argument only if it takes one. */
int cprof_spec_check(const struct cprof_counter_spec *spec, struct cprof_error *err);

/* A copy of `def` and its strings that lives as long as the process, into *out;
 * an identical one kept before is shared (a resolver keeps one per name used, not
 * one per parse).  0, or -ENOMEM. */
int cprof_registry_keep(const struct cprof_counter_def *def, const struct cprof_counter_def **out,
                        struct cprof_error *err);

/* Open a run's n counters in the calling thread: states[i] for each, and each
 * group's shared state (opened before its first counter) in shared[i] of every
 * counter of the group.  All or nothing: on failure what was opened is closed.
 * 0 or -errno + err. */
int cprof_counters_open(const struct cprof_counter_spec *specs, unsigned n, void **states,
                        void **shared, struct cprof_error *err);

/* Close what cprof_counters_open opened (counters in reverse, then groups). */
void cprof_counters_close(const struct cprof_counter_spec *specs, unsigned n, void **states,
                          void **shared);

/* Parse a comma-separated spec into out[0..*n).  Unknown, empty, duplicate or too
 * many names, or an argument for a counter that takes none, give -errno and a
 * sentence in err that lists the valid names. */
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
