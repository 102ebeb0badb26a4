/* The attribution stack: readings observed (clamped, compensated, bounded), frames
 * pushed and popped, growth attributed to functions, edges and call-tree nodes.
 * The table is table.[ch], the per-call extras extras.c, the merge merge.c. */
#include "engine_int.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* The event path is written once with the number of counters as a parameter and
 * instantiated for 1 and 2 counters (the common profiles) and for any n: with n a
 * constant, the loops over counters and the records' strides fold away. */
#define ALWAYS_INLINE inline __attribute__((always_inline))

/* The n-value arrays of struct cprof_readings, carved in this order from one block
 * (first is its start: the event path reaches the others at constant offsets from it
 * when n is a constant, one pointer load for all).  mark_child is the sentinel
 * frame's (cprof_thread_init). */
#define READINGS_ARRAYS(X) X(first) X(last) X(mark) X(scratch) X(raw_last) \
    X(comp) X(comp_off) X(excl) X(excl_off)
#define COUNT_ONE(name) +1
enum { READINGS_NARRAYS = 0 READINGS_ARRAYS(COUNT_ONE) };
#define INDEX_OF(name) RD_##name,
enum { READINGS_ARRAYS(INDEX_OF) };
#define RD(rd, name, n) ((rd)->first + (size_t)RD_##name * (n)) /* == rd->name */

static int readings_init(struct cprof_readings *rd, unsigned n)
{
    uint64_t *block = calloc(READINGS_NARRAYS * (size_t)(n ? n : 1), sizeof(uint64_t));

    if (!block)
        return -ENOMEM;
#define CARVE(name) rd->name = block; block += n;
    READINGS_ARRAYS(CARVE)
#undef CARVE
    return 0;
}

static void readings_free(struct cprof_readings *rd)
{
    free(rd->first);            /* the block's start */
#define CLEAR(name) rd->name = NULL;
    READINGS_ARRAYS(CLEAR)
#undef CLEAR
}

static void ignore_event(struct cprof_thread *t, cprof_key key);

int cprof_thread_init(struct cprof_thread *t, unsigned n, cprof_newkey_fn on_new_key,
                      void *new_key_arg)
{
    struct cprof_stack *st = &t->stack;
    size_t stride = 2 * (size_t)(n ? n : 1);
    struct cprof_frame *frames;
    uint64_t *fvals;

    memset(t, 0, sizeof(*t));
    t->n = n;
    cprof_pick_read_events(t);
    st->on_new_key = on_new_key;
    st->new_key_arg = new_key_arg;
    st->cap = 64;
    st->max_nodes = CPROF_MAX_NODES_DEFAULT;
    if (cprof_tables_init(&t->tab, n) < 0 || readings_init(&t->rd, n) < 0)
        goto err;
    /* one sentinel frame below the stack, frames[-1]: the root's (key 0, which is no
     * event's, node the root's), whose children's growth is rd.mark_child, so the
     * event path never tests for an empty stack */
    st->children = calloc((size_t)1 << CPROF_CHILD_BITS, sizeof(*st->children));
    frames = calloc(st->cap + 1, sizeof(*frames));
    fvals = calloc((st->cap + 1) * stride, sizeof(*fvals));
    if (!st->children || !frames || !fvals) {
        free(frames);
        free(fvals);
        goto err;
    }
    frames[0].own_node = 1;
    st->frames = frames + 1;
    st->fvals = fvals + stride;
    t->rd.mark_child = st->fvals - n;
    return 0;
err:
    cprof_thread_free(t);
    return -ENOMEM;
}

static void ignore_event(struct cprof_thread *t, cprof_key key)
{ /* a muted engine's *_read events */
    (void)t;
    (void)key;
}

void cprof_thread_mute(struct cprof_thread *t)
{
    t->enter_read = ignore_event;
    t->exit_read = ignore_event;
}

void cprof_thread_free(struct cprof_thread *t)
{
    cprof_thread_mute(t);       /* a failed init's engine: the *_read events do nothing */
    cprof_tables_free(&t->tab);
    cprof_extras_free(&t->extras);
    readings_free(&t->rd);
    t->rd.mark_child = NULL;
    if (t->stack.frames)        /* the sentinel's too */
        free(t->stack.frames - 1);
    if (t->stack.fvals)
        free(t->stack.fvals - 2 * (size_t)(t->n ? t->n : 1));
    free(t->stack.children);
    t->stack.children = NULL;
    t->stack.frames = NULL;
    t->stack.fvals = NULL;
    t->stack.depth = t->stack.cap = 0;
}

/* The periodic callback (cprof_thread_set_periodic), off the event path. */
static __attribute__((noinline, cold)) void run_periodic(struct cprof_thread *t)
{
    if (t->periodic)
        t->periodic(t, t->periodic_arg);
}

/* After an event: every CPROF_PERIOD_EVENTS, the periodic callback (last, so that
 * the call is a jump and the event path keeps its registers). */
static ALWAYS_INLINE void after_event(struct cprof_thread *t)
{
    if (__builtin_expect((t->rd.events & (CPROF_PERIOD_EVENTS - 1)) == 0, 0))
        run_periodic(t);
}

/* Turn a raw reading into the engine's: clamped so no counter goes backwards, and
 * with the tracer's own cost taken out.  Each interval between two readings holds
 * one event's worth of tracer work (the end of one hook and the start of the
 * next), so comp[c] is subtracted from every interval, never more than the
 * interval itself: the adjusted reading is raw - comp_off.  A bounded counter
 * (cprof_thread_set_bound) then grows no more than its bound did: the rest waits
 * (its reading stays below raw - comp_off) for the next intervals with room.  The
 * result is in rd->scratch. */
static const uint64_t *observe_slow(struct cprof_thread *t, const uint64_t *now)
{
    struct cprof_readings *rd = &t->rd;
    unsigned n = t->n, w = rd->bound_by;
    int back = 0, fresh = 0;

    rd->events++;
    if (!rd->started) {
        memcpy(rd->first, now, n * sizeof(*now));
        memcpy(rd->last, now, n * sizeof(*now));
        memcpy(rd->mark, now, n * sizeof(*now));
        memcpy(rd->raw_last, now, n * sizeof(*now));
        rd->started = 1;
        fresh = 1;
    }
    if (rd->paused) {           /* the gap is not profiled: shift the region past it */
        for (unsigned c = 0; c < n; c++) {
            uint64_t gap = now[c] > rd->raw_last[c] ? now[c] - rd->raw_last[c] : 0;
            rd->first[c] += gap;
            rd->mark[c] += gap;
            rd->last[c] += gap;
            rd->raw_last[c] += gap;
        }
        rd->paused = 0;
        fresh = 1;
    }
    for (unsigned i = 0; i < rd->nbound; i++)  /* how far each bounded one is behind, before */
        rd->behind[i] = rd->last[w - 1] - rd->last[rd->bounded[i]];
    for (unsigned c = 0; c < n; c++) {
        uint64_t v = now[c], d, cut;
        if (v < rd->raw_last[c]) {
            if (t->health.backwards_readings == 0 && !back) {
                t->health.backwards_counter = c;
                t->health.backwards_key =
                    t->stack.depth ? cprof_thread_frame_key(t, t->stack.depth - 1) : 0;
            }
            back = 1;
            v = rd->raw_last[c];
        }
        d = v - rd->raw_last[c];
        if (rd->excl[c]) {      /* work of the tracer's own between events (excluded) */
            uint64_t x = rd->excl[c] < d ? rd->excl[c] : d;
            rd->comp_off[c] += x;
            rd->excl_off[c] += x;
            d -= x;
            rd->excl[c] = 0;
        }
        cut = fresh ? 0 : d < rd->comp[c] ? d : rd->comp[c];
        rd->comp_off[c] += cut;
        rd->raw_last[c] = v;
        rd->scratch[c] = rd->last[c] = v - rd->comp_off[c];
    }
    for (unsigned i = 0; i < rd->nbound; i++) { /* never further ahead than at the last reading */
        unsigned c = rd->bounded[i];
        uint64_t cap = rd->scratch[w - 1] - rd->behind[i];     /* >= the last reading */
        if (rd->scratch[c] > cap)
            rd->scratch[c] = rd->last[c] = cap;
    }
    t->health.backwards_readings += back;
    rd->quick = rd->nbound == 0;        /* started, resumed, exclusions taken */
    if (rd->quick)
        cprof_pick_read_events(t);
    return rd->scratch;
}

/* The first backwards reading's counter and function, kept for the report. */
static void note_backwards(struct cprof_thread *t, unsigned c)
{
    t->health.backwards_counter = c;
    t->health.backwards_key = t->stack.depth ? cprof_thread_frame_key(t, t->stack.depth - 1) : 0;
}

/* observe_slow's arithmetic when it has nothing else to do (rd->quick): the common
 * case, with no loop over absent features.  Same result: scratch == last there. */
static ALWAYS_INLINE const uint64_t *observe_n(struct cprof_thread *t, const uint64_t *now,
                                               unsigned n, int quick)
{
    struct cprof_readings *rd = &t->rd;
    int back = 0;

    if (!quick && __builtin_expect(!rd->quick, 0))
        return observe_slow(t, now);
    uint64_t *raw_last = RD(rd, raw_last, n), *comp = RD(rd, comp, n);
    uint64_t *comp_off = RD(rd, comp_off, n), *last = RD(rd, last, n);

    rd->events++;
    for (unsigned c = 0; c < n; c++) {
        uint64_t v = now[c], raw = raw_last[c], d, cut;
        if (__builtin_expect(v < raw, 0)) {
            if (!back) {        /* one reading counts once, whichever counters went back */
                if (t->health.backwards_readings++ == 0)
                    note_backwards(t, c);
                back = 1;
            }
            v = raw;
        }
        d = v - raw;
        cut = d < comp[c] ? d : comp[c];
        comp_off[c] += cut;
        raw_last[c] = v;
        last[c] = v - comp_off[c];
    }
    return last;
}



/* The index of key in fns (inserted on first sight, with the callback): 0, or -ENOMEM. */
static inline int fn_index(struct cprof_thread *t, cprof_key key, size_t *fn)
{
    int r = cprof_table_get(&t->tab.fns, key, fn);

    if (r > 0 && t->stack.on_new_key)
        t->stack.on_new_key(t->stack.new_key_arg, key);
    return r < 0 ? r : 0;
}

static int stack_grow(struct cprof_thread *t)
{
    struct cprof_stack *st = &t->stack;
    size_t cap = st->cap * 2, stride = 2 * (size_t)(t->n ? t->n : 1);
    struct cprof_frame *frames = realloc(st->frames - 1, (cap + 1) * sizeof(*frames));
    uint64_t *fvals;

    if (!frames)
        return -ENOMEM;
    st->frames = frames + 1;    /* past the sentinel */
    memset(st->frames + st->cap, 0, (cap - st->cap) * sizeof(*frames)); /* own_node 0: no reuse */
    fvals = realloc(st->fvals - stride, (cap + 1) * stride * sizeof(*fvals));
    if (!fvals)
        return -ENOMEM;
    st->fvals = fvals + stride;
    t->rd.mark_child = st->fvals - t->n;
    st->cap = cap;
    return 0;
}

#define NO_EDGE CPROF_NO_EDGE

/* The node of path (parent, fn) while the tree has room, else only if it exists:
 * 1 inserted, 0 found, -ENOENT (full, absent), -ENOMEM. */
static inline int node_of(struct cprof_thread *t, uint64_t nk, size_t *node)
{
    if (t->tab.nodes.len < t->stack.max_nodes)
        return cprof_table_get(&t->tab.nodes, nk, node);
    return cprof_table_find(&t->tab.nodes, nk, node);
}

/* CPROF_FIRST_* of a frame of fn called by `caller` on top of the current stack:
 * whether fn, and the pair, are on the stack already.  Off the common path (a new
 * node, a folded frame): the scan is the stack's depth. */
static uint32_t first_flags(const struct cprof_thread *t, size_t caller, size_t fn)
{
    const struct cprof_frame *fr = t->stack.frames;
    uint32_t first = CPROF_FIRST_FN | CPROF_FIRST_EDGE;

    for (size_t i = 0; i < t->stack.depth; i++)
        if (fr[i].fn == fn) {
            first &= ~CPROF_FIRST_FN;
            if ((i ? fr[i - 1].fn : CPROF_ROOT) == caller)
                return 0;
        }
    return first;
}

/* The edge of (caller, fn), found through the call-tree node of (parent, fn): a node
 * remembers its edge, so the common case is one table lookup per entry.  When the
 * tree is full, a new path folds into its parent's node (self only, no call).
 * 0, or -ENOMEM. */
static int link(struct cprof_thread *t, size_t caller, size_t fn, struct cprof_frame *f)
{
    const struct cprof_frame *up = t->stack.depth ? &t->stack.frames[t->stack.depth - 1] : NULL;
    uint32_t parent = up ? up->node : CPROF_ROOT;
    size_t node = 0, edge;
    int have_node = 0, r;

    if (!up || up->own_node) {
        r = node_of(t, (uint64_t)parent << 32 | fn, &node);
        if (r == -ENOMEM)       /* the path folds into its parent, as when the tree is full */
            t->health.out_of_memory++;
        have_node = r >= 0;
        if (r > 0)
            t->tab.nodes.recs[node].first = first_flags(t, caller, fn);
        if (r == 0 && t->tab.nodes.recs[node].edge != NO_EDGE) {
            f->node = (uint32_t)node;
            f->own_node = 1;
            f->edge = (uint32_t)t->tab.nodes.recs[node].edge;
            return 0;
        }
    }
    if (cprof_table_get(&t->tab.edges, (uint64_t)caller << 32 | fn, &edge) < 0)
        return -ENOMEM;
    f->edge = (uint32_t)edge;
    if (have_node) {
        /* a new node, or a pre-existing frame's (whose total so far is no call's: the
         * edge, which will derive this node's, starts that much lower) */
        const uint64_t *ntotal = cprof_total(&t->tab.nodes, node);
        uint64_t *etotal = cprof_total(&t->tab.edges, edge);
        for (unsigned c = 0; c < t->n; c++)
            etotal[c] -= ntotal[c];
        t->tab.nodes.recs[node].edge = edge;
        f->node = (uint32_t)node;
        f->own_node = 1;
    } else {
        t->health.tree_folded++;
        f->node = parent;
        f->own_node = 0;
        f->first = first_flags(t, caller, fn);
    }
    return 0;
}

/* The slow half of push: fn, edge and node of the frame at depth d found (or made)
 * in the tables.  0, or -ENOMEM. */
static __attribute__((noinline)) int push_lookup(struct cprof_thread *t, cprof_key key, size_t d,
                                                 uint32_t up)
{
    struct cprof_stack *st = &t->stack;
    size_t caller = d ? st->frames[d - 1].fn : CPROF_ROOT, fn;
    struct cprof_frame *f;

    if (fn_index(t, key, &fn) < 0)
        return -ENOMEM;
    f = &st->frames[d];         /* as of now: the callback may have run code */
    f->key = key;
    f->fn = (uint32_t)fn;
    f->up = up;
    f->own_node = 0;
    return link(t, caller, fn, f);
}

/* A call of a frame folded into an ancestor's node: counted in its function and
 * edge directly (engine.h, CPROF_FIRST_FN). */
static __attribute__((noinline)) void count_folded(struct cprof_thread *t,
                                                   const struct cprof_frame *f)
{
    struct cprof_rec *r = &t->tab.fns.recs[f->fn], *e = &t->tab.edges.recs[f->edge];

    r->calls++;
    r->primitive_calls += (f->first & CPROF_FIRST_FN) != 0;
    e->calls++;
    e->primitive_calls += (f->first & CPROF_FIRST_EDGE) != 0;
}

/* The rest of push once frame f at depth d has its records: counts and readings.
 * `own`: the caller knows the frame's node is its own (the common path). */
static ALWAYS_INLINE void push_rest_n(struct cprof_thread *t, const struct cprof_frame *f,
                                      size_t d, const uint64_t *now, int counted, unsigned n,
                                      int own)
{
    struct cprof_stack *st = &t->stack;
    uint64_t *fv;

    if (counted) {
        if (own || f->own_node)
            t->tab.nodes.recs[f->node].calls++;
        else
            count_folded(t, f);
    }
    fv = st->fvals + d * 2 * n;
    for (unsigned c = 0; c < n; c++) {
        fv[c] = now[c];
        fv[n + c] = 0;
    }
    st->depth = d + 1;
}

static ALWAYS_INLINE size_t child_slot(cprof_key key, uint32_t parent)
{
    return (size_t)(((key ^ parent) * 0x9E3779B97F4A7C15ull) >> (64 - CPROF_CHILD_BITS));
}

/* Frame f (at a depth below the stack's capacity) set from the child cache, if it
 * holds key under the node of the frame below, itself an own node (a borrowed node
 * at f[-1] stands for a deeper path, whose children fold: push_slow's case): 1, or
 * 0 with f untouched. */
static ALWAYS_INLINE int child_cached(struct cprof_thread *t, cprof_key key,
                                      struct cprof_frame *f)
{
    uint32_t parent = f[-1].node;
    const struct cprof_child *e = &t->stack.children[child_slot(key, parent)];
    const struct cprof_rec *r;

    if (e->key != key || e->parent != parent || !f[-1].own_node)
        return 0;
    r = &t->tab.nodes.recs[e->node];
    f->key = key;
    f->fn = (uint32_t)r->key;   /* parent << 32 | fn */
    f->edge = (uint32_t)r->edge;
    f->node = e->node;
    f->up = parent;
    f->own_node = 1;
    return 1;
}

/* push when the frame's records must be found (or the stack grown): off the common
 * path, which then calls nothing. */
static __attribute__((noinline)) void push_slow(struct cprof_thread *t, cprof_key key,
                                                const uint64_t *now, int counted)
{
    struct cprof_stack *st = &t->stack;
    size_t d = st->depth;

    const struct cprof_frame *f;

    if ((d == st->cap && stack_grow(t) < 0) ||
        push_lookup(t, key, d, d ? st->frames[d - 1].node : CPROF_ROOT) < 0) {
        t->health.out_of_memory++;
        return;
    }
    f = &st->frames[d];
    if (f->own_node) {          /* its parent's own child (link): the path, for child_cached */
        struct cprof_child *e = &st->children[child_slot(key, f->up)];
        e->key = key;
        e->parent = f->up;
        e->node = f->node;
    }
    push_rest_n(t, f, d, now, counted, t->n, 0);
}

static ALWAYS_INLINE void push_n(struct cprof_thread *t, cprof_key key, const uint64_t *now,
                                 int counted, unsigned n)
{
    struct cprof_stack *st = &t->stack;
    size_t d = st->depth;
    const struct cprof_frame *f;

    /* The frame last popped at this depth, if it was this key under this parent node,
     * is this path: its fn, edge and node stand (tables never lose a record, and a
     * node's edge, once set, never changes).  An own node at depth d is at depth d + 1
     * of the tree and a borrowed one higher, so an equal parent node is an own one
     * again, as it was then: this call would not fold either. */
    if (__builtin_expect(d == st->cap, 0)) {
        push_slow(t, key, now, counted);
        return;
    }
    f = &st->frames[d];
    if (__builtin_expect(!(f->own_node && f->key == key && f->up == f[-1].node), 0) &&
        !child_cached(t, key, &st->frames[d])) {
        push_slow(t, key, now, counted);
        return;
    }
    push_rest_n(t, f, d, now, counted, n, 1);
}

/* A frame folded into an ancestor's node ends (fv: its readings): its function and
 * edge get what the node cannot give them (engine.h, CPROF_FIRST_FN), and the
 * borrowed node's function gives back the self the node takes (the root's node is
 * no function's). */
static void settle_folded(struct cprof_thread *t, const struct cprof_frame *f, const uint64_t *fv,
                          const uint64_t *now)
{
    unsigned n = t->n;
    uint64_t *self = cprof_self(&t->tab.fns, f->fn), *total = self + n;
    uint64_t *etotal = cprof_total(&t->tab.edges, f->edge);
    uint64_t *back = f->node == CPROF_ROOT ? NULL :
        cprof_self(&t->tab.fns, t->tab.nodes.recs[f->node].key & 0xffffffffu);

    for (unsigned c = 0; c < n; c++) {
        uint64_t g = now[c] - fv[c], own_g = g - fv[n + c];
        self[c] += own_g;
        if (back)
            back[c] -= own_g;
        if (f->first & CPROF_FIRST_FN)
            total[c] += g;
        if (f->first & CPROF_FIRST_EDGE)
            etotal[c] += g;
    }
}

/* Close the top frame at reading `now`; `current`: it is the frame the exit event
 * is about (not one closed on the way to it).  `extras` 0: the caller knows no
 * per-call extras are kept and the node is the frame's own (exit_n's fast path,
 * which then calls nothing). */
static ALWAYS_INLINE void pop_n(struct cprof_thread *t, const uint64_t *now, int current,
                                unsigned n, int extras)
{
    struct cprof_stack *st = &t->stack;
    size_t d = st->depth - 1, stride = 2 * (size_t)n;
    const struct cprof_frame *f = &st->frames[d];
    const uint64_t *fv = st->fvals + d * stride;
    uint64_t *nself = t->tab.nodes.vals + f->node * stride, *ntotal = nself + n;
    uint64_t *up = (uint64_t *)fv - stride + n;   /* at depth 0 the sentinel's: mark_child */
    uint64_t own = 1;

    if (extras) {
        if (__builtin_expect(t->extras.any, 0))
            cprof_record_call(t, f->fn, fv, now, current);
        if (!(own = f->own_node))
            settle_folded(t, f, fv, now);
    }
    /* a node is on a path at most once: no recursion rule here (engine.h) */
    for (unsigned c = 0; c < n; c++) {
        uint64_t g = now[c] - fv[c], own_g = g - fv[n + c];
        nself[c] += own_g;
        ntotal[c] += g & -own;
        up[c] += g;
    }
    st->depth = d;
}

/* pop_n for any n and frame, off the common path (per-call extras, a folded frame,
 * frames closed on the way, flush). */
static __attribute__((noinline)) void pop(struct cprof_thread *t, const uint64_t *now,
                                          int current)
{
    pop_n(t, now, current, t->n, 1);
}

/* op(t, args, n) with n a constant where it is 1 or 2. */
#define BY_N(op, t, ...)                                                                         \
    switch ((t)->n) {                                                                            \
    case 1: op(t, __VA_ARGS__, 1); break;                                                        \
    case 2: op(t, __VA_ARGS__, 2); break;                                                        \
    default: op(t, __VA_ARGS__, (t)->n); break;                                                  \
    }

/* `quick`: the caller knows rd.quick is set and no per-call extras are kept (the
 * fast *_read events, cprof_pick_read_events). */
static ALWAYS_INLINE void enter_n(struct cprof_thread *t, cprof_key key, const uint64_t *now,
                                  int quick, unsigned n)
{
    push_n(t, key, observe_n(t, now, n, quick), 1, n);
}

void cprof_thread_enter(struct cprof_thread *t, cprof_key key, const uint64_t *now)
{
    BY_N(enter_n, t, key, now, 0)
    after_event(t);
}

void cprof_thread_push_existing(struct cprof_thread *t, cprof_key key, const uint64_t *now)
{
    push_n(t, key, observe_n(t, now, t->n, 0), 0, t->n);
    after_event(t);
}

/* The total function fn has now: its own (direct) plus its nodes' where it is not
 * above itself (what cprof_merge derives), in have[0..n).  A scan of the tree: for
 * a pre-existing frame's exit only. */
static void total_now(const struct cprof_thread *t, size_t fn, uint64_t *have)
{
    const struct cprof_table *nodes = &t->tab.nodes;
    unsigned n = t->n;

    memcpy(have, cprof_total(&t->tab.fns, fn), n * sizeof(*have));
    for (size_t i = 1; i < nodes->len; i++)
        if ((nodes->recs[i].key & 0xffffffffu) == fn && (nodes->recs[i].first & CPROF_FIRST_FN))
            for (unsigned c = 0; c < n; c++)
                have[c] += cprof_total(nodes, i)[c];
}

/* The call-tree node of a frame that was running before the region began: a child
 * of the root (the paths of the calls it made are not known to lie under it, so
 * they stay where they were seen, beside it).  When the tree is full, the root
 * itself, as for any new path.  0, or -ENOMEM. */
static int preexisting_node(struct cprof_thread *t, size_t fn, size_t *node)
{
    int r = node_of(t, (uint64_t)CPROF_ROOT << 32 | fn, node);

    if (r == -ENOMEM)
        return r;
    if (r == -ENOENT) {
        t->health.tree_folded++;
        *node = CPROF_ROOT;
    } else if (r > 0) {       /* no edge until it is called from the root (link()) */
        t->tab.nodes.recs[*node].edge = NO_EDGE;
        t->tab.nodes.recs[*node].first = CPROF_FIRST_FN | CPROF_FIRST_EDGE;
    }
    return 0;
}

/* An exit at an empty stack: `key` was running since before the region began. */
static void exit_preexisting(struct cprof_thread *t, cprof_key key, const uint64_t *now)
{
    struct cprof_readings *rd = &t->rd;
    unsigned n = t->n;
    size_t fn, node;
    uint64_t *self, *total, *nself, *ntotal, *etotal = NULL, have[CPROF_MAX_COUNTERS];

    if (fn_index(t, key, &fn) < 0 || preexisting_node(t, fn, &node) < 0) {
        t->health.out_of_memory++;
        return;
    }
    self = cprof_self(&t->tab.fns, fn);
    total = cprof_total(&t->tab.fns, fn);
    nself = cprof_self(&t->tab.nodes, node);
    ntotal = cprof_total(&t->tab.nodes, node);
    if (node != CPROF_ROOT && t->tab.nodes.recs[node].edge != NO_EDGE)
        etotal = cprof_total(&t->tab.edges, t->tab.nodes.recs[node].edge);
    for (unsigned c = 0; c < n; c++) {
        uint64_t d = now[c] - rd->mark[c] - rd->mark_child[c];
        nself[c] += d;          /* the root's self stays what no function got */
        if (node != CPROF_ROOT) {
            ntotal[c] += d;     /* the node gives its function self and total */
            if (etotal)         /* but no call's total to the edge from the root */
                etotal[c] -= d;
        } else
            self[c] += d;
        rd->mark[c] = now[c];
        rd->mark_child[c] = 0;
    }
    /* The frame spanned the whole region so far, so every earlier frame of the same
     * function in this thread (nested in it, or an inner pre-existing one) lies
     * inside it: its total is the region's growth, counted once. */
    total_now(t, fn, have);
    for (unsigned c = 0; c < n; c++)
        total[c] += now[c] - rd->first[c] - have[c];
}

void cprof_thread_expect_exits(struct cprof_thread *t, const cprof_key *keys, unsigned n)
{
    if (n > CPROF_MAX_OUTSIDE)
        n = CPROF_MAX_OUTSIDE;
    memcpy(t->stack.outside, keys, n * sizeof(*keys));
    t->stack.noutside = n;
    t->stack.outside_next = 0;
}

/* An exit that matches no open frame: the next return expected of a frame left out
 * at the start (consumed), or not (0).  Off the hot path: only unmatched exits. */
static int expected_exit(struct cprof_thread *t, cprof_key key)
{
    struct cprof_stack *s = &t->stack;

    if (s->outside_next < s->noutside && s->outside[s->outside_next] == key) {
        s->outside_next++;
        return 1;
    }
    return 0;
}

/* An exit of a key that is not the top frame's: frames above the matching one were
 * missed (closed on the way), or it matches none. */
static __attribute__((noinline)) void exit_other(struct cprof_thread *t, cprof_key key,
                                                 const uint64_t *v)
{
    size_t i = t->stack.depth;

    if (i == 0) {
        if (!expected_exit(t, key))
            exit_preexisting(t, key, v);
        return;
    }
    while (i > 0 && cprof_thread_frame_key(t, i - 1) != key)
        i--;
    if (i == 0) {
        if (!expected_exit(t, key))
            t->health.unmatched_exits++;
        return;
    }
    while (t->stack.depth > i)
        pop(t, v, 0);
    pop(t, v, 1);
}

static ALWAYS_INLINE void exit_n(struct cprof_thread *t, cprof_key key, const uint64_t *now,
                                 int quick, unsigned n)
{
    const uint64_t *v = observe_n(t, now, n, quick);
    const struct cprof_frame *top = t->stack.frames + t->stack.depth - 1; /* or the sentinel */

    /* the common case calls nothing: fewer registers to save on every exit */
    if (__builtin_expect(top->key != key, 0))
        exit_other(t, key, v);
    else if (__builtin_expect((!quick && t->extras.any) || !top->own_node, 0))
        pop(t, v, 1);
    else
        pop_n(t, v, 1, n, 0);
}

void cprof_thread_exit(struct cprof_thread *t, cprof_key key, const uint64_t *now)
{
    BY_N(exit_n, t, key, now, 0)
    after_event(t);
}

void cprof_thread_set_readers(struct cprof_thread *t, const cprof_read_fn *read,
                              void *const *state)
{
    memcpy(t->read, read, t->n * sizeof(*read));
    memcpy(t->rstate, state, t->n * sizeof(*state));
}

static ALWAYS_INLINE void read_n(const struct cprof_thread *t, uint64_t *now, unsigned n)
{
    for (unsigned c = 0; c < n; c++)
        now[c] = t->read[c](t->rstate[c]);
}

static ALWAYS_INLINE void enter_read_n(struct cprof_thread *t, cprof_key key, unsigned n,
                                       int quick)
{
    uint64_t now[CPROF_MAX_COUNTERS];

    read_n(t, now, n);
    enter_n(t, key, now, quick, n);
    after_event(t);
}

static ALWAYS_INLINE void exit_read_n(struct cprof_thread *t, cprof_key key, unsigned n,
                                      int quick)
{
    uint64_t now[CPROF_MAX_COUNTERS];

    read_n(t, now, n);
    exit_n(t, key, now, quick, n);
    after_event(t);
}

/* One function per n, event and path, each compiled on its own (no switch on n, and
 * a register allocation of its own: the 1-counter path saves fewer registers than a
 * function holding every instantiation would); cprof_pick_read_events picks them.
 * The quick ones (suffix q) test neither rd.quick nor the extras. */
#define READ_EVENTS(suffix, n, quick)                                                            \
    static __attribute__((noinline)) void enter_read_##suffix(struct cprof_thread *t,            \
                                                              cprof_key key)                     \
    {                                                                                            \
        enter_read_n(t, key, n, quick);                                                          \
    }                                                                                            \
    static __attribute__((noinline)) void exit_read_##suffix(struct cprof_thread *t,             \
                                                             cprof_key key)                      \
    {                                                                                            \
        exit_read_n(t, key, n, quick);                                                           \
    }
READ_EVENTS(1, 1, 0)
READ_EVENTS(2, 2, 0)
READ_EVENTS(any, t->n, 0)
READ_EVENTS(1q, 1, 1)
READ_EVENTS(2q, 2, 1)
READ_EVENTS(anyq, t->n, 1)

/* The *_read events for this n, quick when observe has nothing else to do (rd.quick)
 * and no per-call extras are kept; called wherever either changes.  A muted engine
 * stays muted. */
void cprof_pick_read_events(struct cprof_thread *t)
{
    int q = t->rd.quick && !t->extras.any;

    if (t->enter_read == ignore_event)
        return;
    if (q) {
        t->enter_read = t->n == 1 ? enter_read_1q : t->n == 2 ? enter_read_2q : enter_read_anyq;
        t->exit_read = t->n == 1 ? exit_read_1q : t->n == 2 ? exit_read_2q : exit_read_anyq;
    } else {
        t->enter_read = t->n == 1 ? enter_read_1 : t->n == 2 ? enter_read_2 : enter_read_any;
        t->exit_read = t->n == 1 ? exit_read_1 : t->n == 2 ? exit_read_2 : exit_read_any;
    }
}

void cprof_thread_tick(struct cprof_thread *t, const uint64_t *now)
{
    observe_n(t, now, t->n, 0);
    t->rd.events--;             /* not an event */
}

void cprof_thread_pause(struct cprof_thread *t)
{
    t->rd.paused = t->rd.started;
    t->rd.quick = 0;
    cprof_pick_read_events(t);
}

void cprof_thread_flush(struct cprof_thread *t)
{
    struct cprof_readings *rd = &t->rd;
    uint64_t *self = cprof_self(&t->tab.fns, CPROF_ROOT);
    uint64_t *nself = cprof_self(&t->tab.nodes, CPROF_ROOT);

    while (t->stack.depth)
        pop(t, rd->last, 0);
    for (unsigned c = 0; c < t->n; c++) {
        uint64_t d = rd->last[c] - rd->mark[c] - rd->mark_child[c];
        self[c] += d;
        nself[c] += d;
        rd->mark[c] = rd->last[c];
        rd->mark_child[c] = 0;
    }
}

int cprof_thread_set_bound(struct cprof_thread *t, unsigned c, unsigned by)
{
    struct cprof_readings *rd = &t->rd;

    if (c >= t->n || by >= t->n || c == by || (rd->bound_by && rd->bound_by != by + 1))
        return -EINVAL;
    for (unsigned i = 0; i < rd->nbound; i++)
        if (rd->bounded[i] == c)
            return 0;           /* already */
        else if (rd->bounded[i] == by)
            return -EINVAL;     /* by is bounded itself: no chains */
    if (rd->nbound == CPROF_MAX_BOUNDED)
        return -EINVAL;
    rd->bounded[rd->nbound++] = c;
    rd->quick = 0;
    cprof_pick_read_events(t);
    rd->bound_by = by + 1;
    return 0;
}

void cprof_thread_set_compensation(struct cprof_thread *t, const uint64_t *per_event)
{
    memcpy(t->rd.comp, per_event, t->n * sizeof(*per_event));
}

void cprof_thread_set_periodic(struct cprof_thread *t, cprof_periodic_fn fn, void *arg)
{
    t->periodic = fn;
    t->periodic_arg = arg;
}

void cprof_thread_exclude(struct cprof_thread *t, const uint64_t *before, const uint64_t *after)
{
    for (unsigned c = 0; c < t->n; c++)
        if (after[c] > before[c]) {
            t->rd.excl[c] += after[c] - before[c];
            t->rd.quick = 0;
            cprof_pick_read_events(t);
        }
}

uint64_t cprof_thread_compensated(const struct cprof_thread *t, unsigned c)
{
    return t->rd.comp_off[c] - t->rd.excl_off[c];   /* the estimate's share only */
}

uint64_t cprof_thread_region(const struct cprof_thread *t, unsigned c)
{
    return t->rd.last[c] - t->rd.first[c];
}

uint64_t cprof_thread_unattributed(const struct cprof_thread *t, unsigned c)
{
    return cprof_self(&t->tab.fns, CPROF_ROOT)[c];
}

/* ---- asyncio mode (cprof_thread_resume): apart from the event path above ---------- */

void cprof_thread_resume(struct cprof_thread *t, cprof_key key, cprof_key await_key,
                         const uint64_t *since, const uint64_t *now)
{
    struct cprof_stack *st = &t->stack;
    unsigned n = t->n;
    size_t d = st->depth;
    const uint64_t *v = observe_n(t, now, n, 0);
    uint64_t start[CPROF_MAX_COUNTERS], *up, *fv;

    for (unsigned c = 0; c < n; c++)    /* never later than now, nor earlier than the region */
        start[c] = since[c] < v[c] ? since[c] : v[c];
    push_n(t, key, start, 0, n);
    if (st->depth != d + 1)             /* out of memory: counted there */
        return;
    /* the frame below pays only for the time it ran: the suspended interval its
     * child's total will hold is taken out of what it hears from the child ahead */
    up = d ? st->fvals + (d - 1) * 2 * (size_t)n + n : t->rd.mark_child;
    fv = st->fvals + d * 2 * (size_t)n;
    for (unsigned c = 0; c < n; c++)
        up[c] -= v[c] - start[c];
    if (await_key) {
        push_n(t, await_key, start, 1, n);
        if (st->depth == d + 2)
            pop(t, v, 1);               /* the [await] child: the interval, one call */
    } else {
        for (unsigned c = 0; c < n; c++)
            fv[n + c] += v[c] - start[c]; /* in a child coroutine's total, not its self */
    }
    after_event(t);
}
