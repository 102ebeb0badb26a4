/* Per-call extras kept per function when asked for: histograms of each call's
 * inclusive values (distributions) and the K largest calls by the first counter
 * (slow calls).  Shared by a thread and a merge; the engine fills them in at a
 * call's exit (extras.c), the merge adds threads' into one. */
#ifndef CPROF_EXTRAS_H
#define CPROF_EXTRAS_H

#include <stddef.h>
#include <stdint.h>

#include "consts.h"
#include "hist.h"

typedef uint64_t cprof_key;     /* opaque function identity; 0 is the root */

/* Called when a call of `key` ends among the K largest of the first counter so
 * far (values: its inclusive growth, one per counter).  `current` is 1 when the
 * call is the one the exit event is about (its frame is still there to look at),
 * 0 when it was closed because an outer frame exited.  If `evicting`, the entry
 * tagged `evicted` leaves the top K.  Returns the tag to keep with the entry. */
typedef uint64_t (*cprof_slow_fn)(void *arg, cprof_key key, const uint64_t *values, int current,
                                  int evicting, uint64_t evicted);

struct cprof_slow_entry {
    uint64_t value;             /* inclusive growth of the first counter */
    uint64_t tag;               /* what the callback returned */
};

struct cprof_slow_set {         /* the K largest calls of one function, ascending */
    unsigned count;             /* entries held (<= K) */
    struct cprof_slow_entry e[]; /* K of them */
};

/* Per function, optional data kept only when asked for (distributions, slow calls). */
struct cprof_fn_ext {
    struct cprof_hist *hist;    /* n histograms of per-call inclusive values, or NULL */
    struct cprof_slow_set *slow; /* or NULL */
};

struct cprof_extras {
    int dist;                   /* keep per-call distributions (a thread's setting) */
    unsigned slow_k;            /* K of the slow sets (0: none kept) */
    int any;                    /* dist || slow_k: one test per call on the event path */
    cprof_slow_fn on_slow;      /* a thread's callback, required when slow_k > 0 */
    void *slow_arg;             /* its argument */
    struct cprof_fn_ext *ext;   /* per function index, grown on demand, or NULL */
    size_t cap;                 /* entries allocated in ext */
    struct cprof_arena arena;   /* histograms and slow sets */
};

void cprof_extras_free(struct cprof_extras *x);
/* Function fn's extras (by index in fns), or NULL: none kept. */
static inline const struct cprof_fn_ext *cprof_extras_at(const struct cprof_extras *x, size_t fn)
{
    return fn < x->cap ? &x->ext[fn] : NULL;
}

#endif
