/* The engine: per-thread shadow stacks fed by enter(key)/exit(key) events, and
 * aggregation per function and per caller->callee edge, for N counters at once.
 *
 * A thread's engine state is owned by that thread while it runs; nothing here
 * locks.  Readings are passed in by the caller (one uint64 per counter), so the
 * engine is driven by synthetic streams in tests with exact arithmetic.
 *
 * Semantics (cProfile's): calls counts every entry observed; primitive_calls the
 * entries made while the function was not already on the stack; self is the
 * counter's growth while the function was on top; total is the growth between
 * entry and exit of its outermost frame only, so recursion is counted once.  Edges
 * follow the same rule per (caller, callee) pair. */
#ifndef CPROF_ENGINE_H
#define CPROF_ENGINE_H

#include <stddef.h>
#include <stdint.h>

#include "hist.h"

typedef uint64_t cprof_key;     /* opaque function identity; 0 is the root */

#define CPROF_ROOT 0u           /* index of the root record in every function table */

struct cprof_rec {              /* one function, one edge, or one call-tree node */
    uint64_t key;               /* function key; (caller index << 32 | callee index) for an
                                 * edge; (parent node << 32 | function index) for a node */
    uint64_t calls;             /* entries observed */
    uint64_t primitive_calls;   /* entries while not already active (functions, edges) */
    union {
        uint64_t active;        /* functions, edges: frames of it now on the stack */
        uint64_t edge;          /* nodes: index of the (caller, callee) edge it belongs to */
    };
};

/* Open-addressing table of records, each with 2*n counter values:
 * vals[i*2n + c] = self of counter c, vals[i*2n + n + c] = total of counter c. */
struct cprof_table {
    struct cprof_rec *recs;     /* dense, in insertion order */
    uint64_t *vals;             /* 2n values per record */
    uint32_t *slots;            /* index+1 into recs, 0 = empty; size is a power of 2 */
    size_t len;                 /* records used */
    size_t cap;                 /* records allocated */
    size_t nslots;              /* slots allocated */
    unsigned n;                 /* counters */
};

int cprof_table_init(struct cprof_table *t, unsigned n, size_t cap);
void cprof_table_free(struct cprof_table *t);
/* Index of key, inserting a zeroed record if absent; *inserted says which.
 * Returns (size_t)-1 only when memory runs out. */
size_t cprof_table_get(struct cprof_table *t, uint64_t key, int *inserted);
/* Index of key, or (size_t)-1. */
size_t cprof_table_find(const struct cprof_table *t, uint64_t key);

static inline uint64_t *cprof_self(const struct cprof_table *t, size_t i)
{
    return t->vals + i * 2 * t->n;
}

static inline uint64_t *cprof_total(const struct cprof_table *t, size_t i)
{
    return t->vals + i * 2 * t->n + t->n;
}

struct cprof_frame {
    uint32_t fn;                /* index in fns */
    uint32_t edge;              /* index in edges */
    uint32_t node;              /* index in nodes; past the tree's bound, the nearest
                                 * ancestor's node, which then takes this frame's self */
    uint32_t own_node;          /* 1: node is this frame's own; 0: borrowed from an ancestor */
};
#define CPROF_MAX_NODES_DEFAULT (1u << 18) /* call-tree nodes per thread */

/* Called when a thread sees a key for the first time (once per key per thread). */
typedef void (*cprof_newkey_fn)(void *arg, cprof_key key);

/* Called when a call of `key` ends among the K largest of the first counter so
 * far (values: its inclusive growth, one per counter).  `current` is 1 when the
 * call is the one the exit event is about (its frame is still there to look at),
 * 0 when it was closed because an outer frame exited.  If `evicting`, the entry
 * tagged `evicted` leaves the top K.  Returns the tag to keep with the entry. */
typedef uint64_t (*cprof_slow_fn)(void *arg, cprof_key key, const uint64_t *values, int current,
                                  int evicting, uint64_t evicted);

#define CPROF_MAX_SLOW 64       /* largest K for slow calls */

struct cprof_slow_entry {
    uint64_t value;             /* inclusive growth of the first counter */
    uint64_t tag;               /* what the callback returned */
};

struct cprof_slow_set {         /* the K largest calls of one function, ascending */
    unsigned count;
    struct cprof_slow_entry e[]; /* K of them */
};

/* Per function, optional data kept only when asked for (distributions, slow calls). */
struct cprof_fn_ext {
    struct cprof_hist *hist;    /* n histograms of per-call inclusive values, or NULL */
    struct cprof_slow_set *slow; /* or NULL */
};

#define CPROF_MAX_BOUNDED 4     /* counters one thread holds to its wall clock */

struct cprof_thread {
    unsigned n;                 /* counters */
    struct cprof_table fns;     /* per function key; record 0 is the root */
    struct cprof_table edges;   /* per (caller, callee) function index pair */
    struct cprof_table nodes;   /* the call tree: per (parent node, function); 0 is the root */
    size_t max_nodes;           /* bound on nodes; new paths past it fold into their parent */
    uint64_t tree_dropped;      /* entries folded into an ancestor node: the tree was full */
    struct cprof_frame *frames; /* the shadow stack */
    uint64_t *fvals;            /* 2n per frame: reading at entry, growth spent in children */
    size_t depth;               /* frames on the stack */
    size_t cap;                 /* frames allocated */
    uint64_t *first;            /* n: the first reading (start of this thread's region) */
    uint64_t *last;             /* n: the latest reading */
    uint64_t *mark;             /* n: reading at the last root-level attribution */
    uint64_t *mark_child;       /* n: growth in top-level frames since mark */
    uint64_t *scratch;          /* n: the current reading, clamped and compensated */
    uint64_t *raw_last;         /* n: the latest raw reading (clamped) */
    uint64_t *comp;             /* n: tracer cost per event to take out (0: none) */
    uint64_t *comp_off;         /* n: total taken out so far */
    uint64_t *excl;             /* n: tracer work to take out of the next interval */
    unsigned bound_by;          /* 1 + the counter that bounds others, or 0: none */
    unsigned nbound;            /* counters it bounds, in bounded[] */
    unsigned bounded[CPROF_MAX_BOUNDED];
    uint64_t behind[CPROF_MAX_BOUNDED]; /* bound_by's reading minus each one's (observe's) */
    int started;                /* first reading taken */
    int paused;                 /* profiling stopped; the next reading resumes it */
    int oom;                    /* sticky: memory ran out, some events were dropped */
    uint64_t events;            /* enter + exit events processed */
    uint64_t unmatched_exits;   /* exits of keys not on the stack, ignored */
    uint64_t backwards;         /* readings with a counter lower than before (clamped) */
    unsigned backwards_counter; /* counter index of the first backwards reading */
    cprof_key backwards_key;    /* function on top when it happened (0: root) */
    cprof_newkey_fn on_new_key; /* optional */
    void *new_key_arg;
    int dist;                   /* keep per-call distributions */
    unsigned slow_k;            /* keep the K slowest calls per function (0: none) */
    cprof_slow_fn on_slow;      /* required when slow_k > 0 */
    void *slow_arg;
    struct cprof_fn_ext *ext;   /* per function index, when dist or slow_k */
    size_t ext_cap;             /* entries allocated in ext */
    struct cprof_arena arena;   /* histograms and slow sets */
    uint64_t dist_lost;         /* values not recorded: memory ran out */
};

int cprof_thread_init(struct cprof_thread *t, unsigned ncounters, cprof_newkey_fn on_new_key,
                      void *new_key_arg);
void cprof_thread_free(struct cprof_thread *t);

/* A call of `key` begins; now[0..n) is the current reading of every counter. */
void cprof_thread_enter(struct cprof_thread *t, cprof_key key, const uint64_t *now);
/* A call of `key` ends (return, exception, yield).  Frames above the matching one
 * are closed first (their exits were missed); an exit with an empty stack is a
 * function that was running before profiling started: it gets the root-level
 * growth since the last such exit as self (in the call tree, in a node of its own
 * under the root, whose self stays what no function got), and its total becomes the
 * growth since the start (it spanned the region, so earlier frames of it were
 * inside), with no call counted.  Any other unmatched exit is counted and ignored. */
void cprof_thread_exit(struct cprof_thread *t, cprof_key key, const uint64_t *now);
/* Push a frame that was already running when profiling started: no call counted. */
void cprof_thread_push_existing(struct cprof_thread *t, cprof_key key, const uint64_t *now);
/* Take a reading without an event (e.g. the moment profiling stops). */
void cprof_thread_tick(struct cprof_thread *t, const uint64_t *now);
/* Close every open frame at the latest reading (end of profiling).  No call counted. */
void cprof_thread_flush(struct cprof_thread *t);
/* Profiling stops until the next event: the growth between the latest reading and
 * the next one is left out of the region (first and the root mark shift by it). */
void cprof_thread_pause(struct cprof_thread *t);

/* Counter c never grows more than counter `by` between two readings: a larger
 * growth is held back and carried into the next intervals (a thread's CPU time
 * cannot outrun wall-clock time, but two clocks read a few ns apart, or a CPU
 * clock whose sample time is uncertain, can seem to).  Applied after compensation,
 * so with the same per-event cost on both, every self, total and region of c
 * stays at or below by's.  One counter bounds up to CPROF_MAX_BOUNDED others of
 * a thread: -1 if c == by, either is out of range, another counter bounds
 * already, by is bounded itself, or there are too many. */
int cprof_thread_set_bound(struct cprof_thread *t, unsigned c, unsigned by);

/* The tracer's own cost per event, per counter, to take out of every interval
 * between two readings (never more than the interval).  Readings, region and all
 * numbers are then net of it; cprof_thread_compensated() says how much went. */
void cprof_thread_set_compensation(struct cprof_thread *t, const uint64_t *per_event);
uint64_t cprof_thread_compensated(const struct cprof_thread *t, unsigned c);
/* The tracer did work of its own between two raw readings taken now (capturing a
 * slow call's arguments): take after - before out of the next interval too (never
 * more than it), as part of the compensated share. */
void cprof_thread_exclude(struct cprof_thread *t, const uint64_t *before, const uint64_t *after);

/* Keep a histogram of every call's inclusive value, per function and counter. */
void cprof_thread_set_distributions(struct cprof_thread *t, int on);
/* Keep the k (<= CPROF_MAX_SLOW) largest calls per function by the first counter. */
void cprof_thread_set_slow_calls(struct cprof_thread *t, unsigned k, cprof_slow_fn fn, void *arg);
/* A function's optional data (by index in fns), or NULL. */
const struct cprof_fn_ext *cprof_thread_ext(const struct cprof_thread *t, size_t fn);

/* Growth of counter c over this thread's region, and the part no function got. */
uint64_t cprof_thread_region(const struct cprof_thread *t, unsigned c);
uint64_t cprof_thread_unattributed(const struct cprof_thread *t, unsigned c);

/* Merge threads by function key into `out` (a fresh thread-shaped aggregate with
 * the same n): calls, self and total add up; edges are re-keyed by merged index.
 * Returns 0, or -1 when memory runs out. */
struct cprof_merged {
    struct cprof_table fns;     /* record 0 is the root */
    struct cprof_table edges;   /* key = caller index << 32 | callee index (merged indices) */
    struct cprof_table nodes;   /* key = parent node << 32 | function index (merged indices) */
    uint64_t tree_dropped;      /* entries left out of the threads' trees */
    uint64_t *region;           /* n: sum over threads of the region growth */
    uint64_t *unattributed;     /* n: sum over threads of root-level growth */
    uint64_t *compensated;      /* n: sum over threads of the tracer cost taken out */
    uint64_t threads;           /* threads merged */
    uint64_t events;            /* events over all threads */
    uint64_t unmatched_exits;
    uint64_t backwards;
    struct cprof_fn_ext *ext;   /* per merged function, or NULL: none kept */
    size_t ext_cap;
    unsigned slow_k;            /* K of the slow sets */
    struct cprof_arena arena;
    uint64_t dist_lost;
};

int cprof_merge(struct cprof_thread *const *threads, size_t nthreads, unsigned n,
                struct cprof_merged *out);
void cprof_merged_free(struct cprof_merged *m);
const struct cprof_fn_ext *cprof_merged_ext(const struct cprof_merged *m, size_t fn);

#endif
