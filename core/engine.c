/* The attribution stack: readings observed (clamped, compensated, bounded), frames
 * pushed and popped, growth attributed to functions, edges and call-tree nodes.
 * The table is table.[ch], the per-call extras extras.c, the merge merge.c. */
#include "engine_int.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* The n-value arrays of struct cprof_readings, carved in this order from one block. */
#define READINGS_ARRAYS(X) X(first) X(last) X(mark) X(mark_child) X(scratch) X(raw_last) \
    X(comp) X(comp_off) X(excl) X(excl_off)
#define COUNT_ONE(name) +1
enum { READINGS_NARRAYS = 0 READINGS_ARRAYS(COUNT_ONE) };

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

int cprof_thread_init(struct cprof_thread *t, unsigned n, cprof_newkey_fn on_new_key,
                      void *new_key_arg)
{
    struct cprof_stack *st = &t->stack;

    memset(t, 0, sizeof(*t));
    t->n = n;
    st->on_new_key = on_new_key;
    st->new_key_arg = new_key_arg;
    st->cap = 64;
    st->max_nodes = CPROF_MAX_NODES_DEFAULT;
    if (cprof_tables_init(&t->tab, n) < 0 || readings_init(&t->rd, n) < 0)
        goto err;
    st->frames = calloc(st->cap, sizeof(*st->frames));
    st->fvals = calloc(st->cap * 2 * (n ? n : 1), sizeof(*st->fvals));
    if (!st->frames || !st->fvals)
        goto err;
    return 0;
err:
    cprof_thread_free(t);
    return -ENOMEM;
}

void cprof_thread_free(struct cprof_thread *t)
{
    cprof_tables_free(&t->tab);
    cprof_extras_free(&t->extras);
    readings_free(&t->rd);
    free(t->stack.frames);
    free(t->stack.fvals);
    t->stack.frames = NULL;
    t->stack.fvals = NULL;
    t->stack.depth = t->stack.cap = 0;
}

/* Turn a raw reading into the engine's: clamped so no counter goes backwards, and
 * with the tracer's own cost taken out.  Each interval between two readings holds
 * one event's worth of tracer work (the end of one hook and the start of the
 * next), so comp[c] is subtracted from every interval, never more than the
 * interval itself: the adjusted reading is raw - comp_off.  A bounded counter
 * (cprof_thread_set_bound) then grows no more than its bound did: the rest waits
 * (its reading stays below raw - comp_off) for the next intervals with room.  The
 * result is in rd->scratch. */
static const uint64_t *observe(struct cprof_thread *t, const uint64_t *now)
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
    return rd->scratch;
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
    struct cprof_frame *frames = realloc(st->frames, cap * sizeof(*frames));
    uint64_t *fvals;

    if (!frames)
        return -ENOMEM;
    st->frames = frames;
    fvals = realloc(st->fvals, cap * stride * sizeof(*fvals));
    if (!fvals)
        return -ENOMEM;
    st->fvals = fvals;
    st->cap = cap;
    return 0;
}

#define NO_EDGE UINT64_MAX /* a node made by a pre-existing frame's exit: no call yet */

/* The node of path (parent, fn) while the tree has room, else only if it exists:
 * 1 inserted, 0 found, -ENOENT (full, absent), -ENOMEM. */
static inline int node_of(struct cprof_thread *t, uint64_t nk, size_t *node)
{
    if (t->tab.nodes.len < t->stack.max_nodes)
        return cprof_table_get(&t->tab.nodes, nk, node);
    return cprof_table_find(&t->tab.nodes, nk, node);
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
        t->tab.nodes.recs[node].edge = edge;
        f->node = (uint32_t)node;
        f->own_node = 1;
    } else {
        t->health.tree_folded++;
        f->node = parent;
        f->own_node = 0;
    }
    return 0;
}

static void push(struct cprof_thread *t, cprof_key key, const uint64_t *now, int counted)
{
    struct cprof_stack *st = &t->stack;
    unsigned n = t->n;
    size_t fn, caller = st->depth ? st->frames[st->depth - 1].fn : CPROF_ROOT;
    struct cprof_frame *f;
    struct cprof_rec *r, *e;
    uint64_t *fv;

    if (st->depth == st->cap && stack_grow(t) < 0)
        goto oom;
    if (fn_index(t, key, &fn) < 0)
        goto oom;
    f = &st->frames[st->depth];
    f->fn = (uint32_t)fn;
    if (link(t, caller, fn, f) < 0)
        goto oom;
    r = &t->tab.fns.recs[fn];
    e = &t->tab.edges.recs[f->edge];
    if (counted) {
        r->calls++;
        r->primitive_calls += r->active == 0;
        e->calls++;
        e->primitive_calls += e->active == 0;
        if (f->own_node)
            t->tab.nodes.recs[f->node].calls++;
    }
    r->active++;
    e->active++;
    fv = st->fvals + st->depth * 2 * n;
    memcpy(fv, now, n * sizeof(*now));
    memset(fv + n, 0, n * sizeof(*fv));
    st->depth++;
    return;
oom:
    t->health.out_of_memory++;
}

/* Close the top frame at reading `now`; `current`: it is the frame the exit event
 * is about (not one closed on the way to it). */
static void pop(struct cprof_thread *t, const uint64_t *now, int current)
{
    struct cprof_stack *st = &t->stack;
    struct cprof_tables *tab = &t->tab;
    unsigned n = t->n;
    const struct cprof_frame *f = &st->frames[st->depth - 1];
    const uint64_t *fv = st->fvals + (st->depth - 1) * 2 * n;
    struct cprof_rec *r = &tab->fns.recs[f->fn], *e = &tab->edges.recs[f->edge];
    uint64_t *self = cprof_self(&tab->fns, f->fn), *total = cprof_total(&tab->fns, f->fn);
    uint64_t *etotal = cprof_total(&tab->edges, f->edge);
    uint64_t *nself = cprof_self(&tab->nodes, f->node), *ntotal = cprof_total(&tab->nodes, f->node);
    uint64_t *up = st->depth > 1 ? st->fvals + (st->depth - 2) * 2 * n + n : t->rd.mark_child;
    int outer = --r->active == 0, eouter = --e->active == 0;

    if (t->extras.dist || t->extras.slow_k)
        cprof_record_call(t, f->fn, fv, now, current);

    for (unsigned c = 0; c < n; c++) {
        uint64_t d = now[c] - fv[c];
        self[c] += d - fv[n + c];
        if (outer)
            total[c] += d;
        if (eouter)
            etotal[c] += d;
        nself[c] += d - fv[n + c];
        if (f->own_node)        /* a node is on a path at most once: no recursion rule */
            ntotal[c] += d;
        up[c] += d;
    }
    st->depth--;
}

void cprof_thread_enter(struct cprof_thread *t, cprof_key key, const uint64_t *now)
{
    push(t, key, observe(t, now), 1);
}

void cprof_thread_push_existing(struct cprof_thread *t, cprof_key key, const uint64_t *now)
{
    push(t, key, observe(t, now), 0);
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
    } else if (r > 0)           /* no edge until it is called from the root (link()) */
        t->tab.nodes.recs[*node].edge = NO_EDGE;
    return 0;
}

/* An exit at an empty stack: `key` was running since before the region began. */
static void exit_preexisting(struct cprof_thread *t, cprof_key key, const uint64_t *now)
{
    struct cprof_readings *rd = &t->rd;
    unsigned n = t->n;
    size_t fn, node;
    uint64_t *self, *total, *nself, *ntotal;

    if (fn_index(t, key, &fn) < 0 || preexisting_node(t, fn, &node) < 0) {
        t->health.out_of_memory++;
        return;
    }
    self = cprof_self(&t->tab.fns, fn);
    total = cprof_total(&t->tab.fns, fn);
    nself = cprof_self(&t->tab.nodes, node);
    ntotal = cprof_total(&t->tab.nodes, node);
    /* The frame spanned the whole region so far, so every earlier frame of the same
     * function in this thread (nested in it, or an inner pre-existing one) lies
     * inside it: its total is the region's growth, counted once. */
    for (unsigned c = 0; c < n; c++) {
        uint64_t d = now[c] - rd->mark[c] - rd->mark_child[c];
        self[c] += d;
        nself[c] += d;          /* the root's self stays what no function got */
        if (node != CPROF_ROOT)
            ntotal[c] += d;
        total[c] = now[c] - rd->first[c];
        rd->mark[c] = now[c];
        rd->mark_child[c] = 0;
    }
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

void cprof_thread_exit(struct cprof_thread *t, cprof_key key, const uint64_t *now)
{
    const uint64_t *v = observe(t, now);
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

void cprof_thread_tick(struct cprof_thread *t, const uint64_t *now)
{
    observe(t, now);
    t->rd.events--;             /* not an event */
}

void cprof_thread_pause(struct cprof_thread *t)
{
    t->rd.paused = t->rd.started;
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
    rd->bound_by = by + 1;
    return 0;
}

void cprof_thread_set_compensation(struct cprof_thread *t, const uint64_t *per_event)
{
    memcpy(t->rd.comp, per_event, t->n * sizeof(*per_event));
}

void cprof_thread_exclude(struct cprof_thread *t, const uint64_t *before, const uint64_t *after)
{
    for (unsigned c = 0; c < t->n; c++)
        if (after[c] > before[c])
            t->rd.excl[c] += after[c] - before[c];
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
