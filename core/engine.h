/* The engine: per-thread shadow stacks fed by enter(key)/exit(key) events, and
 * aggregation per function and per caller->callee edge, for N counters at once.
 *
 * A thread's engine state is owned by that thread while it runs; nothing here
 * locks.  Readings are passed in by the caller (one uint64 per counter), so the
 * engine is driven by synthetic streams in tests with exact arithmetic.
 *
 * Semantics (cProfile's, of the merged figures: a thread keeps its call tree and the
 * merge derives the rest, see CPROF_FIRST_FN below): calls counts every entry observed; primitive_calls the
 * entries made while the function was not already on the stack; self is the
 * counter's growth while the function was on top; total is the growth between
 * entry and exit of its outermost frame only, so recursion is counted once.  Edges
 * follow the same rule per (caller, callee) pair.
 *
 * Files: engine.c the attribution stack (observe, push, pop, enter, exit); table.[ch]
 * the open-addressing table; extras.[ch] the per-call extras (histograms, slow calls);
 * merge.c the merge; engine_int.h what they share and callers do not see.  Functions
 * return 0 or a negative errno value. */
#ifndef CPROF_ENGINE_H
#define CPROF_ENGINE_H

#include <stddef.h>
#include <stdint.h>

#include "consts.h"
#include "extras.h"
#include "table.h"

typedef uint64_t cprof_key;     /* opaque function identity; 0 is the root, never an event's */

struct cprof_frame {
    cprof_key key;              /* the function's key (fns.recs[fn].key) */
    uint32_t fn;                /* index in fns */
    uint32_t edge;              /* index in edges */
    uint32_t node;              /* index in nodes; past the tree's bound, the nearest
                                 * ancestor's node, which then takes this frame's self */
    uint32_t up;                /* the node of the frame below (the root's at depth 0) */
    uint32_t own_node;          /* 1: node is this frame's own; 0: borrowed from an ancestor */
    uint32_t first;             /* a borrowed node's frame: CPROF_FIRST_* of this frame */
};
/* A thread accumulates into its call tree only: an entry counts a call in its node,
 * an exit adds self and total to it.  What the functions and edges get is derived
 * from the nodes when the threads are merged (cprof_merge): a node's calls and self
 * go to its function and edge; its calls as primitive and its total only if its
 * function (CPROF_FIRST_FN), or its (caller, callee) pair (CPROF_FIRST_EDGE), is not
 * on its path above it, which a node knows from its creation (a node is one path,
 * and an own node's path is the stack below its frame).  So recursion counts once.
 * The thread's fns and edges tables hold only what the nodes cannot say, added to
 * the derived figures: frames folded into an ancestor's node (the tree was full)
 * count and attribute there directly (their `first` scanned from the stack at
 * entry, their self taken back from the borrowed node's function), and a
 * pre-existing frame's exit corrects its function's total (engine.c). */
#define CPROF_FIRST_FN 1u       /* the function is not on the path above */
#define CPROF_FIRST_EDGE 2u     /* the (caller, callee) pair is not on the path above */
#define CPROF_NO_EDGE UINT64_MAX /* a node made by a pre-existing frame's exit: no call yet */
/* A popped frame stays in the array: the next push at its depth with the same key
 * under the same parent node is the same path, so it reuses fn, edge and node
 * without a table lookup (engine.c, push).  Slots never written have own_node 0. */
#define CPROF_MAX_NODES_DEFAULT (1u << 20) /* call-tree nodes per thread */
/* A push whose frame slot last held another path (a function calling len, then
 * isinstance, then append at one depth: nearly every entry of a real program, 97% of
 * black's) looks its path up in a small direct-mapped cache of own nodes, keyed by
 * (parent node, key), before the tables (two hash lookups, the function's and the
 * node's).  An entry never goes stale: nodes are never removed, and a node's
 * function and edge never change once it has an edge. */
struct cprof_child {
    cprof_key key;              /* 0: empty (no event's key) */
    uint32_t parent;            /* the parent node */
    uint32_t node;              /* its own node for key under parent */
};
#define CPROF_CHILD_BITS 12     /* 4096 entries, 64 KB a thread */

/* Called when a thread sees a key for the first time (once per key per thread). */
typedef void (*cprof_newkey_fn)(void *arg, cprof_key key);

/* What went wrong while profiling, per thread and merged over threads: the numbers
 * stand, but these say what they miss.  All 0: clean. */
struct cprof_health {
    uint64_t out_of_memory;     /* events dropped because memory ran out (a frame not pushed,
                                 * an exit not attributed, a path folded) */
    uint64_t backwards_readings; /* readings with a counter lower than before (clamped) */
    unsigned backwards_counter; /* counter index of the first backwards reading */
    cprof_key backwards_key;    /* function on top then (0: root); merged: its identity */
    uint64_t tree_folded;       /* entries folded into an ancestor node: the tree was full */
    uint64_t distribution_values_lost; /* per-call values not recorded: memory ran out */
    uint64_t unmatched_exits;   /* exits of keys not on the stack, ignored */
};

/* a += b: counts add; the first backwards reading stays a's if it had one. */
void cprof_health_add(struct cprof_health *a, const struct cprof_health *b);
/* 1 if nothing went wrong. */
static inline int cprof_health_clean(const struct cprof_health *h)
{
    return !(h->out_of_memory | h->backwards_readings | h->tree_folded |
             h->distribution_values_lost | h->unmatched_exits);
}

/* The shadow stack and what attributes growth to it. */
#define CPROF_MAX_OUTSIDE 8     /* frames left out at the start whose returns are expected */

struct cprof_stack {
    struct cprof_frame *frames; /* the frames, outermost first; frames[-1] is a sentinel (key 0,
                                 * the root's node) so the event path never tests for depth 0 */
    uint64_t *fvals;            /* 2n per frame: reading at entry, growth spent in children
                                 * (the sentinel's too: its children's is rd.mark_child) */
    size_t depth;               /* frames on the stack */
    size_t cap;                 /* frames allocated */
    size_t max_nodes;           /* bound on tree nodes; new paths past it fold into their parent */
    struct cprof_child *children; /* 1 << CPROF_CHILD_BITS entries (see struct cprof_child) */
    cprof_newkey_fn on_new_key; /* optional */
    void *new_key_arg;          /* its argument */
    cprof_key outside[CPROF_MAX_OUTSIDE]; /* frames running at the start but left out of the
                                 * profile (the profiler's own), innermost first: their
                                 * returns are expected, not unmatched */
    unsigned noutside, outside_next; /* how many; the next one expected to return */
};

#define CPROF_MAX_BOUNDED 4     /* counters one thread holds to its wall clock */

/* Readings: the region, the root-level marks, compensation and bounds.  The n-value
 * arrays are carved from one block (see readings_init in engine.c). */
struct cprof_readings {
    uint64_t *first;            /* n: the first reading (start of this thread's region) */
    uint64_t *last;             /* n: the latest reading */
    uint64_t *mark;             /* n: reading at the last root-level attribution */
    uint64_t *mark_child;       /* n: growth in top-level frames since mark (in the stack's
                                 * sentinel frame, not in this block) */
    uint64_t *scratch;          /* n: the current reading, clamped and compensated */
    uint64_t *raw_last;         /* n: the latest raw reading (clamped) */
    uint64_t *comp;             /* n: tracer cost per event to take out (0: none) */
    uint64_t *comp_off;         /* n: total taken out so far */
    uint64_t *excl;             /* n: tracer work to take out of the next interval */
    uint64_t *excl_off;         /* n: of comp_off, what was measured work (excl), not estimate */
    unsigned bound_by;          /* 1 + the counter that bounds others, or 0: none */
    unsigned nbound;            /* counters it bounds, in bounded[] */
    unsigned bounded[CPROF_MAX_BOUNDED]; /* counter indices held to bound_by */
    uint64_t behind[CPROF_MAX_BOUNDED]; /* bound_by's reading minus each one's (observe's) */
    int started;                /* first reading taken */
    int paused;                 /* profiling stopped; the next reading resumes it */
    int quick;                  /* started, not paused, nothing bounded or excluded: observe's
                                 * fast path applies (cleared by whatever sets those) */
    uint64_t events;            /* enter + exit events processed */
};

struct cprof_thread;
/* Called on the thread's own events, after every CPROF_PERIOD_EVENTS-th one: the
 * place to adjust compensation as the run goes. */
typedef void (*cprof_periodic_fn)(struct cprof_thread *t, void *arg);
#define CPROF_PERIOD_EVENTS 4096u   /* a power of two */

/* A counter's read function and its per-thread state (counters.h's `read`). */
typedef uint64_t (*cprof_read_fn)(void *state);

struct cprof_thread {
    unsigned n;                 /* counters */
    cprof_read_fn read[CPROF_MAX_COUNTERS]; /* for the *_read events: counter c's reading is
                                 * read[c](rstate[c]), taken in the engine (one call less per
                                 * event than reading in the caller) */
    void *rstate[CPROF_MAX_COUNTERS];
    void (*enter_read)(struct cprof_thread *t, cprof_key key); /* the *_read events for this n */
    void (*exit_read)(struct cprof_thread *t, cprof_key key);
    struct cprof_tables tab;    /* functions, edges, call tree */
    struct cprof_stack stack;   /* attribution */
    struct cprof_readings rd;   /* readings, compensation, bounds */
    struct cprof_health health; /* what went wrong */
    struct cprof_extras extras; /* distributions and slow calls, when asked for */
    cprof_periodic_fn periodic; /* cprof_thread_set_periodic, or NULL */
    void *periodic_arg;         /* its argument */
};

/* 0, or -ENOMEM (t is then freed and safe to free again). */
int cprof_thread_init(struct cprof_thread *t, unsigned ncounters, cprof_newkey_fn on_new_key,
                      void *new_key_arg);
void cprof_thread_free(struct cprof_thread *t);

/* A call of `key` begins; now[0..n) is the current reading of every counter. */
void cprof_thread_enter(struct cprof_thread *t, cprof_key key, const uint64_t *now);
/* The counters the engine reads itself for cprof_thread_enter_read and _exit_read:
 * read[c](state[c]) for c < n (n <= CPROF_MAX_COUNTERS). */
void cprof_thread_set_readers(struct cprof_thread *t, const cprof_read_fn *read,
                              void *const *state);
/* cprof_thread_enter and _exit with the reading taken now, by the readers.  After
 * cprof_thread_mute, or after cprof_thread_free (or a failed init), they do nothing:
 * a caller that keeps an engine it could not set up passes it events unchecked. */
static inline void cprof_thread_enter_read(struct cprof_thread *t, cprof_key key);
static inline void cprof_thread_exit_read(struct cprof_thread *t, cprof_key key);
void cprof_thread_mute(struct cprof_thread *t);
/* A call of `key` ends (return, exception, yield).  Frames above the matching one
 * are closed first (their exits were missed); an exit with an empty stack is a
 * function that was running before profiling started: it gets the root-level
 * growth since the last such exit as self (in the call tree, in a node of its own
 * under the root, whose self stays what no function got), and its total becomes the
 * growth since the start (it spanned the region, so earlier frames of it were
 * inside), with no call counted.  Any other unmatched exit is counted and ignored. */
void cprof_thread_exit(struct cprof_thread *t, cprof_key key, const uint64_t *now);
/* asyncio mode: a coroutine suspended at reading `since` (an earlier reading of this
 * thread's, taken at its suspension; a counter that does not grow while it waits
 * has since[c] = now, or later) resumes now.  It is pushed again as it was (no call
 * counted), its frame begun at `since`, so its total holds the time it was
 * suspended and its caller's does not; with await_key (not 0), that time is a
 * child of its own, one call of await_key; without (a coroutine that waited
 * through the one it awaits, whose own [await] child holds it), the time is in
 * its children's share, not its self. */
void cprof_thread_resume(struct cprof_thread *t, cprof_key key, cprof_key await_key,
                         const uint64_t *since, const uint64_t *now);
/* The frames above the pushed ones that were running when profiling started but
 * are left out of the profile (the profiler's own: Profile.__enter__, ...), keys
 * innermost first (at most CPROF_MAX_OUTSIDE): their returns, in that order, are
 * neither functions of the profile nor unmatched exits. */
void cprof_thread_expect_exits(struct cprof_thread *t, const cprof_key *keys, unsigned n);
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
 * a thread: 0, or -EINVAL if c == by, either is out of range, another counter bounds
 * already, by is bounded itself, or there are too many. */
int cprof_thread_set_bound(struct cprof_thread *t, unsigned c, unsigned by);

/* The tracer's own cost per event, per counter, to take out of every interval
 * between two readings (never more than the interval).  Readings, region and all
 * numbers are then net of it; cprof_thread_compensated() says how much went. */
void cprof_thread_set_compensation(struct cprof_thread *t, const uint64_t *per_event);
uint64_t cprof_thread_compensated(const struct cprof_thread *t, unsigned c);
/* Call fn(t, arg) after every CPROF_PERIOD_EVENTS-th event of this thread (NULL:
 * never).  fn may call cprof_thread_set_compensation: the new cost applies from the
 * next event on. */
void cprof_thread_set_periodic(struct cprof_thread *t, cprof_periodic_fn fn, void *arg);
/* The tracer did work of its own between two raw readings taken now (capturing a
 * slow call's arguments, recording a new function's name): take after - before out
 * of the next interval too (never more than it).  Measured, not estimated, so not
 * part of cprof_thread_compensated(). */
void cprof_thread_exclude(struct cprof_thread *t, const uint64_t *before, const uint64_t *after);

/* Keep a histogram of every call's inclusive value, per function and counter. */
void cprof_thread_set_distributions(struct cprof_thread *t, int on);
/* Keep the k (<= CPROF_MAX_SLOW) largest calls per function by the first counter. */
void cprof_thread_set_slow_calls(struct cprof_thread *t, unsigned k, cprof_slow_fn fn, void *arg);

/* Growth of counter c over this thread's region, and the part no function got. */
uint64_t cprof_thread_region(const struct cprof_thread *t, unsigned c);
uint64_t cprof_thread_unattributed(const struct cprof_thread *t, unsigned c);

static inline void cprof_thread_enter_read(struct cprof_thread *t, cprof_key key)
{
    t->enter_read(t, key);
}

static inline void cprof_thread_exit_read(struct cprof_thread *t, cprof_key key)
{
    t->exit_read(t, key);
}

/* Frames on the stack, and the key of frame i (0: the outermost). */
static inline size_t cprof_thread_depth(const struct cprof_thread *t)
{
    return t->stack.depth;
}

static inline cprof_key cprof_thread_frame_key(const struct cprof_thread *t, size_t i)
{
    return t->stack.frames[i].key;
}

/* 1 once the thread took its first reading. */
static inline int cprof_thread_started(const struct cprof_thread *t)
{
    return t->rd.started;
}

/* The identity a function key merges under (cprof_merge): keys with one identity
 * become one function.  0 with *ident (never 0: that is the root), or a negative
 * errno, which stops the merge and is returned by it. */
typedef int (*cprof_ident_fn)(void *arg, cprof_key key, uint64_t *ident);

/* Threads merged into one aggregate of the same n: calls, self and total add up
 * per function identity; edges and tree nodes are re-keyed by merged index, so
 * paths that become equal merge too; histograms add; slow sets keep the K largest
 * of all; health adds up. */
struct cprof_merged {
    struct cprof_tables tab;    /* fns keyed by identity (record 0 the root); edges and nodes
                                 * by merged indices */
    uint64_t *region;           /* n: sum over threads of the region growth */
    uint64_t *unattributed;     /* n: sum over threads of root-level growth */
    uint64_t *compensated;      /* n: sum over threads of the tracer cost taken out */
    uint64_t threads;           /* threads merged */
    uint64_t events;            /* events over all threads */
    struct cprof_health health; /* summed; the first backwards reading is the first thread's
                                 * that had one, its key given as the function's identity */
    struct cprof_extras extras; /* per merged function: distributions, slow calls */
    /* The merged call tree, `nodes` of them.  base NULL: tab.nodes.  Else the tree of the
     * thread with the most nodes, read in place (not copied: 25 MB of black's peak), whose
     * functions all merged apart and first (its indices are the merged ones), as nodes
     * 0..base->len-1, and tab.nodes the other threads' nodes, record r being merged node
     * node_ix[r]: a base node's addition, or a node of its own past the base's. */
    const struct cprof_table *base;
    size_t *node_ix;
    size_t nodes;
};

/* `ident` NULL: the identity is the key.  0, -ENOMEM, or ident's error; on
 * failure `out` is freed. */
int cprof_merge(struct cprof_thread *const *threads, size_t nthreads, unsigned n,
                cprof_ident_fn ident, void *ident_arg, struct cprof_merged *out);
/* cprof_merge, taking the call tree of the thread with the most nodes as the merged one
 * (merged in place, no copy: half of the merge's memory on a large tree).  That thread's
 * node table is left empty (freed, safe to free again): its engine takes no more events.
 * The result is the same as cprof_merge's, with base NULL. */
int cprof_merge_consume(struct cprof_thread *const *threads, size_t nthreads, unsigned n,
                        cprof_ident_fn ident, void *ident_arg, struct cprof_merged *out);
void cprof_merged_free(struct cprof_merged *m);

#endif
