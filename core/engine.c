#include "engine.h"

#include <stdlib.h>
#include <string.h>

/* ---- table ------------------------------------------------------------------ */

static inline size_t slot_of(uint64_t key, size_t nslots)
{
    /* Fibonacci hashing: keys are pointers (low bits zero) or index pairs. */
    return (size_t)((key * 0x9E3779B97F4A7C15ull) >> 32) & (nslots - 1);
}

int cprof_table_init(struct cprof_table *t, unsigned n, size_t cap)
{
    memset(t, 0, sizeof(*t));
    t->n = n;
    t->cap = cap ? cap : 16;
    t->nslots = 1;
    while (t->nslots < t->cap * 2)
        t->nslots <<= 1;
    t->recs = calloc(t->cap, sizeof(*t->recs));
    t->vals = calloc(t->cap * 2 * (n ? n : 1), sizeof(*t->vals));
    t->slots = calloc(t->nslots, sizeof(*t->slots));
    if (!t->recs || !t->vals || !t->slots) {
        cprof_table_free(t);
        return -1;
    }
    return 0;
}

void cprof_table_free(struct cprof_table *t)
{
    free(t->recs);
    free(t->vals);
    free(t->slots);
    t->recs = NULL;
    t->vals = NULL;
    t->slots = NULL;
    t->len = t->cap = t->nslots = 0;
}

size_t cprof_table_find(const struct cprof_table *t, uint64_t key)
{
    size_t mask = t->nslots - 1;

    for (size_t s = slot_of(key, t->nslots);; s = (s + 1) & mask) {
        uint32_t ix = t->slots[s];
        if (ix == 0)
            return (size_t)-1;
        if (t->recs[ix - 1].key == key)
            return ix - 1;
    }
}

static int table_grow(struct cprof_table *t)
{
    size_t cap = t->cap * 2, nslots = t->nslots * 2, stride = 2 * (size_t)(t->n ? t->n : 1);
    struct cprof_rec *recs = realloc(t->recs, cap * sizeof(*recs));
    uint64_t *vals;
    uint32_t *slots;

    if (!recs)
        return -1;
    t->recs = recs;
    vals = realloc(t->vals, cap * stride * sizeof(*vals));
    if (!vals)
        return -1;
    t->vals = vals;
    slots = calloc(nslots, sizeof(*slots));
    if (!slots)
        return -1;
    memset(t->recs + t->cap, 0, (cap - t->cap) * sizeof(*recs));
    memset(t->vals + t->cap * stride, 0, (cap - t->cap) * stride * sizeof(*vals));
    free(t->slots);
    t->slots = slots;
    t->nslots = nslots;
    t->cap = cap;
    for (size_t i = 0; i < t->len; i++) {
        size_t s = slot_of(t->recs[i].key, nslots);
        while (slots[s])
            s = (s + 1) & (nslots - 1);
        slots[s] = (uint32_t)(i + 1);
    }
    return 0;
}

size_t cprof_table_get(struct cprof_table *t, uint64_t key, int *inserted)
{
    size_t mask = t->nslots - 1, s;

    *inserted = 0;
    for (s = slot_of(key, t->nslots);; s = (s + 1) & mask) {
        uint32_t ix = t->slots[s];
        if (ix == 0)
            break;
        if (t->recs[ix - 1].key == key)
            return ix - 1;
    }
    if (t->len == t->cap || t->len >= UINT32_MAX - 1) {
        if (t->len >= UINT32_MAX - 1 || table_grow(t) < 0)
            return (size_t)-1;
        mask = t->nslots - 1;
        for (s = slot_of(key, t->nslots); t->slots[s]; s = (s + 1) & mask)
            ;
    }
    t->recs[t->len].key = key;
    t->slots[s] = (uint32_t)(t->len + 1);
    *inserted = 1;
    return t->len++;
}

/* ---- thread ------------------------------------------------------------------ */

int cprof_thread_init(struct cprof_thread *t, unsigned n, cprof_newkey_fn on_new_key,
                      void *new_key_arg)
{
    int inserted;

    memset(t, 0, sizeof(*t));
    t->n = n;
    t->on_new_key = on_new_key;
    t->new_key_arg = new_key_arg;
    t->cap = 64;
    t->max_nodes = CPROF_MAX_NODES_DEFAULT;
    if (cprof_table_init(&t->fns, n, 256) < 0 || cprof_table_init(&t->edges, n, 1024) < 0 ||
        cprof_table_init(&t->nodes, n, 1024) < 0)
        goto err;
    t->frames = calloc(t->cap, sizeof(*t->frames));
    t->fvals = calloc(t->cap * 2 * (n ? n : 1), sizeof(*t->fvals));
    t->first = calloc(9 * (size_t)(n ? n : 1), sizeof(uint64_t));
    if (!t->frames || !t->fvals || !t->first)
        goto err;
    t->last = t->first + n;
    t->mark = t->last + n;
    t->mark_child = t->mark + n;
    t->scratch = t->mark_child + n;
    t->raw_last = t->scratch + n;
    t->comp = t->raw_last + n;
    t->comp_off = t->comp + n;
    t->excl = t->comp_off + n;
    if (cprof_table_get(&t->fns, 0, &inserted) != CPROF_ROOT ||
        cprof_table_get(&t->nodes, 0, &inserted) != CPROF_ROOT)
        goto err;
    return 0;
err:
    cprof_thread_free(t);
    return -1;
}

void cprof_thread_free(struct cprof_thread *t)
{
    cprof_table_free(&t->fns);
    cprof_table_free(&t->edges);
    cprof_table_free(&t->nodes);
    free(t->ext);
    t->ext = NULL;
    t->ext_cap = 0;
    cprof_arena_free(&t->arena);
    free(t->frames);
    free(t->fvals);
    free(t->first);
    t->frames = NULL;
    t->fvals = NULL;
    t->first = NULL;
    t->depth = t->cap = 0;
}

/* Turn a raw reading into the engine's: clamped so no counter goes backwards, and
 * with the tracer's own cost taken out.  Each interval between two readings holds
 * one event's worth of tracer work (the end of one hook and the start of the
 * next), so comp[c] is subtracted from every interval, never more than the
 * interval itself: the adjusted reading is raw - comp_off.  A bounded counter
 * (cprof_thread_set_bound) then grows no more than its bound did: the rest waits
 * (its reading stays below raw - comp_off) for the next intervals with room.  The
 * result is in t->scratch. */
static const uint64_t *observe(struct cprof_thread *t, const uint64_t *now)
{
    unsigned n = t->n, w = t->bound_by;
    int back = 0, fresh = 0;

    t->events++;
    if (!t->started) {
        memcpy(t->first, now, n * sizeof(*now));
        memcpy(t->last, now, n * sizeof(*now));
        memcpy(t->mark, now, n * sizeof(*now));
        memcpy(t->raw_last, now, n * sizeof(*now));
        t->started = 1;
        fresh = 1;
    }
    if (t->paused) {            /* the gap is not profiled: shift the region past it */
        for (unsigned c = 0; c < n; c++) {
            uint64_t gap = now[c] > t->raw_last[c] ? now[c] - t->raw_last[c] : 0;
            t->first[c] += gap;
            t->mark[c] += gap;
            t->last[c] += gap;
            t->raw_last[c] += gap;
        }
        t->paused = 0;
        fresh = 1;
    }
    for (unsigned i = 0; i < t->nbound; i++)  /* how far each bounded one is behind, before */
        t->behind[i] = t->last[w - 1] - t->last[t->bounded[i]];
    for (unsigned c = 0; c < n; c++) {
        uint64_t v = now[c], d, cut;
        if (v < t->raw_last[c]) {
            if (t->backwards == 0 && !back) {
                t->backwards_counter = c;
                t->backwards_key = t->depth ? t->fns.recs[t->frames[t->depth - 1].fn].key : 0;
            }
            back = 1;
            v = t->raw_last[c];
        }
        d = v - t->raw_last[c];
        if (t->excl[c]) {       /* work of the tracer's own between events (excluded) */
            uint64_t x = t->excl[c] < d ? t->excl[c] : d;
            t->comp_off[c] += x;
            d -= x;
            t->excl[c] = 0;
        }
        cut = fresh ? 0 : d < t->comp[c] ? d : t->comp[c];
        t->comp_off[c] += cut;
        t->raw_last[c] = v;
        t->scratch[c] = t->last[c] = v - t->comp_off[c];
    }
    for (unsigned i = 0; i < t->nbound; i++) {  /* never further ahead than at the last reading */
        unsigned c = t->bounded[i];
        uint64_t cap = t->scratch[w - 1] - t->behind[i];       /* >= the last reading */
        if (t->scratch[c] > cap)
            t->scratch[c] = t->last[c] = cap;
    }
    t->backwards += back;
    return t->scratch;
}

static size_t fn_index(struct cprof_thread *t, cprof_key key)
{
    int inserted;
    size_t i = cprof_table_get(&t->fns, key, &inserted);

    if (inserted && t->on_new_key)
        t->on_new_key(t->new_key_arg, key);
    return i;
}

static int stack_grow(struct cprof_thread *t)
{
    size_t cap = t->cap * 2, stride = 2 * (size_t)(t->n ? t->n : 1);
    struct cprof_frame *frames = realloc(t->frames, cap * sizeof(*frames));
    uint64_t *fvals;

    if (!frames)
        return -1;
    t->frames = frames;
    fvals = realloc(t->fvals, cap * stride * sizeof(*fvals));
    if (!fvals)
        return -1;
    t->fvals = fvals;
    t->cap = cap;
    return 0;
}

#define NO_EDGE UINT64_MAX /* a node made by a pre-existing frame's exit: no call yet */

/* The edge of (caller, fn), found through the call-tree node of (parent, fn): a node
 * remembers its edge, so the common case is one table lookup per entry.  When the
 * tree is full, a new path folds into its parent's node (self only, no call). */
static int link(struct cprof_thread *t, size_t caller, size_t fn, struct cprof_frame *f)
{
    const struct cprof_frame *up = t->depth ? &t->frames[t->depth - 1] : NULL;
    uint32_t parent = up ? up->node : CPROF_ROOT;
    size_t node = (size_t)-1, edge;
    int inserted = 0;

    if (!up || up->own_node) {
        if (t->nodes.len < t->max_nodes)
            node = cprof_table_get(&t->nodes, (uint64_t)parent << 32 | fn, &inserted);
        else
            node = cprof_table_find(&t->nodes, (uint64_t)parent << 32 | fn);
        if (node != (size_t)-1 && !inserted && t->nodes.recs[node].edge != NO_EDGE) {
            f->node = (uint32_t)node;
            f->own_node = 1;
            f->edge = (uint32_t)t->nodes.recs[node].edge;
            return 0;
        }
    }
    edge = cprof_table_get(&t->edges, (uint64_t)caller << 32 | fn, &inserted);
    if (edge == (size_t)-1)
        return -1;
    f->edge = (uint32_t)edge;
    if (node != (size_t)-1) {
        t->nodes.recs[node].edge = edge;
        f->node = (uint32_t)node;
        f->own_node = 1;
    } else {
        t->tree_dropped++;
        f->node = parent;
        f->own_node = 0;
    }
    return 0;
}

static void push(struct cprof_thread *t, cprof_key key, const uint64_t *now, int counted)
{
    unsigned n = t->n;
    size_t fn, caller = t->depth ? t->frames[t->depth - 1].fn : CPROF_ROOT;
    struct cprof_frame *f;
    struct cprof_rec *r, *e;
    uint64_t *fv;

    if (t->depth == t->cap && stack_grow(t) < 0)
        goto oom;
    fn = fn_index(t, key);
    if (fn == (size_t)-1)
        goto oom;
    f = &t->frames[t->depth];
    f->fn = (uint32_t)fn;
    if (link(t, caller, fn, f) < 0)
        goto oom;
    r = &t->fns.recs[fn];
    e = &t->edges.recs[f->edge];
    if (counted) {
        r->calls++;
        r->primitive_calls += r->active == 0;
        e->calls++;
        e->primitive_calls += e->active == 0;
        if (f->own_node)
            t->nodes.recs[f->node].calls++;
    }
    r->active++;
    e->active++;
    fv = t->fvals + t->depth * 2 * n;
    memcpy(fv, now, n * sizeof(*now));
    memset(fv + n, 0, n * sizeof(*fv));
    t->depth++;
    return;
oom:
    t->oom = 1;
}

/* The ext entry of function fn, allocated on its first call (rarely: the array
 * doubles).  NULL when memory runs out. */
static struct cprof_fn_ext *ext_of(struct cprof_fn_ext **ext, size_t *cap, size_t fn)
{
    if (fn >= *cap) {
        size_t ncap = *cap ? *cap : 256;
        struct cprof_fn_ext *x;
        while (ncap <= fn)
            ncap *= 2;
        x = realloc(*ext, ncap * sizeof(*x));
        if (!x)
            return NULL;
        memset(x + *cap, 0, (ncap - *cap) * sizeof(*x));
        *ext = x;
        *cap = ncap;
    }
    return &(*ext)[fn];
}

/* Insert (value, tag) into a full or partial ascending set of capacity k. */
static void slow_insert(struct cprof_slow_set *s, unsigned k, uint64_t value, uint64_t tag)
{
    unsigned i;

    if (s->count == k) {        /* the smallest leaves: shift down past it */
        for (i = 1; i < k && s->e[i].value < value; i++)
            s->e[i - 1] = s->e[i];
        s->e[i - 1].value = value;
        s->e[i - 1].tag = tag;
        return;
    }
    for (i = s->count; i > 0 && s->e[i - 1].value > value; i--)
        s->e[i] = s->e[i - 1];
    s->e[i].value = value;
    s->e[i].tag = tag;
    s->count++;
}

/* One call of fn ended: its inclusive values go into its histograms, and into its
 * slow set if it is among the K largest by the first counter. */
static void record_call(struct cprof_thread *t, size_t fn, const uint64_t *start,
                        const uint64_t *now, int current)
{
    unsigned n = t->n;
    struct cprof_fn_ext *x = ext_of(&t->ext, &t->ext_cap, fn);
    uint64_t d[CPROF_HIST_MAX_COUNTERS];

    if (!x || n > CPROF_HIST_MAX_COUNTERS) {
        t->dist_lost++;
        return;
    }
    for (unsigned c = 0; c < n; c++)
        d[c] = now[c] - start[c];
    if (t->dist) {
        if (!x->hist && !(x->hist = cprof_arena_alloc(&t->arena, n * sizeof(*x->hist)))) {
            t->dist_lost++;
        } else {
            for (unsigned c = 0; c < n; c++)
                if (cprof_hist_add(&x->hist[c], d[c], &t->arena) < 0)
                    t->dist_lost++;
        }
    }
    if (t->slow_k && n) {
        struct cprof_slow_set *sl = x->slow;
        if (!sl) {
            sl = x->slow = cprof_arena_alloc(&t->arena, sizeof(*sl) + t->slow_k * sizeof(sl->e[0]));
            if (!sl) {
                t->dist_lost++;
                return;
            }
        }
        if (sl->count < t->slow_k || d[0] > sl->e[0].value) {
            int evicting = sl->count == t->slow_k;
            uint64_t tag = t->on_slow(t->slow_arg, t->fns.recs[fn].key, d, current, evicting,
                                      evicting ? sl->e[0].tag : 0);
            slow_insert(sl, t->slow_k, d[0], tag);
        }
    }
}

/* Close the top frame at reading `now`; `current`: it is the frame the exit event
 * is about (not one closed on the way to it). */
static void pop(struct cprof_thread *t, const uint64_t *now, int current)
{
    unsigned n = t->n;
    const struct cprof_frame *f = &t->frames[t->depth - 1];
    const uint64_t *fv = t->fvals + (t->depth - 1) * 2 * n;
    struct cprof_rec *r = &t->fns.recs[f->fn], *e = &t->edges.recs[f->edge];
    uint64_t *self = cprof_self(&t->fns, f->fn), *total = cprof_total(&t->fns, f->fn);
    uint64_t *etotal = cprof_total(&t->edges, f->edge);
    uint64_t *nself = cprof_self(&t->nodes, f->node), *ntotal = cprof_total(&t->nodes, f->node);
    uint64_t *up = t->depth > 1 ? t->fvals + (t->depth - 2) * 2 * n + n : t->mark_child;
    int outer = --r->active == 0, eouter = --e->active == 0;

    if (t->dist || t->slow_k)
        record_call(t, f->fn, fv, now, current);

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
    t->depth--;
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
 * itself, as for any new path.  Never -1 but when memory runs out. */
static size_t preexisting_node(struct cprof_thread *t, size_t fn)
{
    uint64_t nk = (uint64_t)CPROF_ROOT << 32 | fn;
    int inserted = 0;
    size_t node;

    if (t->nodes.len < t->max_nodes)
        node = cprof_table_get(&t->nodes, nk, &inserted);
    else
        node = cprof_table_find(&t->nodes, nk);
    if (node == (size_t)-1) {
        if (t->nodes.len < t->max_nodes)
            return (size_t)-1;
        t->tree_dropped++;
        return CPROF_ROOT;
    }
    if (inserted)               /* no edge until it is called from the root (link()) */
        t->nodes.recs[node].edge = NO_EDGE;
    return node;
}

/* An exit at an empty stack: `key` was running since before the region began. */
static void exit_preexisting(struct cprof_thread *t, cprof_key key, const uint64_t *now)
{
    unsigned n = t->n;
    size_t fn = fn_index(t, key), node;
    uint64_t *self, *total, *nself, *ntotal;

    if (fn == (size_t)-1 || (node = preexisting_node(t, fn)) == (size_t)-1) {
        t->oom = 1;
        return;
    }
    self = cprof_self(&t->fns, fn);
    total = cprof_total(&t->fns, fn);
    nself = cprof_self(&t->nodes, node);
    ntotal = cprof_total(&t->nodes, node);
    /* The frame spanned the whole region so far, so every earlier frame of the same
     * function in this thread (nested in it, or an inner pre-existing one) lies
     * inside it: its total is the region's growth, counted once. */
    for (unsigned c = 0; c < n; c++) {
        uint64_t d = now[c] - t->mark[c] - t->mark_child[c];
        self[c] += d;
        nself[c] += d;          /* the root's self stays what no function got */
        if (node != CPROF_ROOT)
            ntotal[c] += d;
        total[c] = now[c] - t->first[c];
        t->mark[c] = now[c];
        t->mark_child[c] = 0;
    }
}

void cprof_thread_exit(struct cprof_thread *t, cprof_key key, const uint64_t *now)
{
    const uint64_t *v = observe(t, now);
    size_t i = t->depth;

    if (i == 0) {
        exit_preexisting(t, key, v);
        return;
    }
    while (i > 0 && t->fns.recs[t->frames[i - 1].fn].key != key)
        i--;
    if (i == 0) {
        t->unmatched_exits++;
        return;
    }
    while (t->depth > i)
        pop(t, v, 0);
    pop(t, v, 1);
}

void cprof_thread_tick(struct cprof_thread *t, const uint64_t *now)
{
    observe(t, now);
    t->events--;                /* not an event */
}

void cprof_thread_pause(struct cprof_thread *t)
{
    t->paused = t->started;
}

void cprof_thread_flush(struct cprof_thread *t)
{
    uint64_t *self = cprof_self(&t->fns, CPROF_ROOT), *nself = cprof_self(&t->nodes, CPROF_ROOT);

    while (t->depth)
        pop(t, t->last, 0);
    for (unsigned c = 0; c < t->n; c++) {
        uint64_t d = t->last[c] - t->mark[c] - t->mark_child[c];
        self[c] += d;
        nself[c] += d;
        t->mark[c] = t->last[c];
        t->mark_child[c] = 0;
    }
}

void cprof_thread_set_distributions(struct cprof_thread *t, int on)
{
    t->dist = on;
}

void cprof_thread_set_slow_calls(struct cprof_thread *t, unsigned k, cprof_slow_fn fn, void *arg)
{
    t->slow_k = k > CPROF_MAX_SLOW ? CPROF_MAX_SLOW : k;
    t->on_slow = fn;
    t->slow_arg = arg;
}

const struct cprof_fn_ext *cprof_thread_ext(const struct cprof_thread *t, size_t fn)
{
    return fn < t->ext_cap ? &t->ext[fn] : NULL;
}

const struct cprof_fn_ext *cprof_merged_ext(const struct cprof_merged *m, size_t fn)
{
    return fn < m->ext_cap ? &m->ext[fn] : NULL;
}

int cprof_thread_set_bound(struct cprof_thread *t, unsigned c, unsigned by)
{
    if (c >= t->n || by >= t->n || c == by || (t->bound_by && t->bound_by != by + 1))
        return -1;
    for (unsigned i = 0; i < t->nbound; i++)
        if (t->bounded[i] == c)
            return 0;           /* already */
        else if (t->bounded[i] == by)
            return -1;          /* by is bounded itself: no chains */
    if (t->nbound == CPROF_MAX_BOUNDED)
        return -1;
    t->bounded[t->nbound++] = c;
    t->bound_by = by + 1;
    return 0;
}

void cprof_thread_set_compensation(struct cprof_thread *t, const uint64_t *per_event)
{
    memcpy(t->comp, per_event, t->n * sizeof(*per_event));
}

void cprof_thread_exclude(struct cprof_thread *t, const uint64_t *before, const uint64_t *after)
{
    for (unsigned c = 0; c < t->n; c++)
        if (after[c] > before[c])
            t->excl[c] += after[c] - before[c];
}

uint64_t cprof_thread_compensated(const struct cprof_thread *t, unsigned c)
{
    return t->comp_off[c];
}

uint64_t cprof_thread_region(const struct cprof_thread *t, unsigned c)
{
    return t->last[c] - t->first[c];
}

uint64_t cprof_thread_unattributed(const struct cprof_thread *t, unsigned c)
{
    return cprof_self(&t->fns, CPROF_ROOT)[c];
}

/* ---- merge --------------------------------------------------------------------- */

static void add_rec(struct cprof_table *dst, size_t di, const struct cprof_table *src, size_t si)
{
    unsigned n = dst->n;
    const uint64_t *sv = src->vals + si * 2 * n;
    uint64_t *dv = dst->vals + di * 2 * n;

    dst->recs[di].calls += src->recs[si].calls;
    dst->recs[di].primitive_calls += src->recs[si].primitive_calls;
    for (unsigned c = 0; c < 2 * n; c++)
        dv[c] += sv[c];
}

/* Add a thread's histograms and slow sets into the merged ones (map: its function
 * indices to merged ones). */
static int merge_ext(struct cprof_merged *out, const struct cprof_thread *t, const size_t *map,
                     unsigned n)
{
    if (t->slow_k > out->slow_k) {
        if (out->slow_k && out->ext_cap) /* sets already made with a smaller K */
            return -1;
        out->slow_k = t->slow_k;
    }
    out->dist_lost += t->dist_lost;
    for (size_t i = 0; i < t->ext_cap && i < t->fns.len; i++) {
        const struct cprof_fn_ext *src = &t->ext[i];
        struct cprof_fn_ext *dst;

        if (!src->hist && !src->slow)
            continue;
        dst = ext_of(&out->ext, &out->ext_cap, map[i]);
        if (!dst)
            return -1;
        if (src->hist) {
            if (!dst->hist && !(dst->hist = cprof_arena_alloc(&out->arena, n * sizeof(*dst->hist))))
                return -1;
            for (unsigned c = 0; c < n; c++)
                if (cprof_hist_merge(&dst->hist[c], &src->hist[c], &out->arena) < 0)
                    return -1;
        }
        if (src->slow) {
            if (!dst->slow) {
                dst->slow = cprof_arena_alloc(&out->arena, sizeof(*dst->slow) +
                                                               out->slow_k * sizeof(dst->slow->e[0]));
                if (!dst->slow)
                    return -1;
            }
            for (unsigned j = 0; j < src->slow->count; j++) {
                const struct cprof_slow_entry *e = &src->slow->e[j];
                if (dst->slow->count < out->slow_k || e->value > dst->slow->e[0].value)
                    slow_insert(dst->slow, out->slow_k, e->value, e->tag);
            }
        }
    }
    return 0;
}

int cprof_merge(struct cprof_thread *const *threads, size_t nthreads, unsigned n,
                struct cprof_merged *out)
{
    size_t *map = NULL, *nmap;
    int inserted;

    memset(out, 0, sizeof(*out));
    if (cprof_table_init(&out->fns, n, 256) < 0 || cprof_table_init(&out->edges, n, 1024) < 0 ||
        cprof_table_init(&out->nodes, n, 1024) < 0)
        goto err;
    out->region = calloc(3 * (size_t)(n ? n : 1), sizeof(uint64_t));
    if (!out->region)
        goto err;
    out->unattributed = out->region + n;
    out->compensated = out->unattributed + n;
    if (cprof_table_get(&out->fns, 0, &inserted) != CPROF_ROOT ||
        cprof_table_get(&out->nodes, 0, &inserted) != CPROF_ROOT)
        goto err;
    for (size_t ti = 0; ti < nthreads; ti++) {
        const struct cprof_thread *t = threads[ti];
        size_t *m;

        if (!t->started)
            continue;
        m = realloc(map, (t->fns.len + t->nodes.len) * sizeof(*map));
        if (!m)
            goto err;
        map = m;
        nmap = map + t->fns.len;
        for (size_t i = 0; i < t->fns.len; i++) {
            map[i] = cprof_table_get(&out->fns, t->fns.recs[i].key, &inserted);
            if (map[i] == (size_t)-1)
                goto err;
            add_rec(&out->fns, map[i], &t->fns, i);
        }
        if (merge_ext(out, t, map, n) < 0)
            goto err;
        for (size_t i = 0; i < t->edges.len; i++) {
            uint64_t k = t->edges.recs[i].key;
            uint64_t mk = (uint64_t)map[k >> 32] << 32 | map[k & 0xffffffffu];
            size_t di = cprof_table_get(&out->edges, mk, &inserted);
            if (di == (size_t)-1)
                goto err;
            add_rec(&out->edges, di, &t->edges, i);
        }
        /* A parent node is always inserted before its children. */
        for (size_t i = 0; i < t->nodes.len; i++) {
            uint64_t k = t->nodes.recs[i].key;
            uint64_t mk = i == CPROF_ROOT ? 0 : (uint64_t)nmap[k >> 32] << 32 | map[k & 0xffffffffu];
            nmap[i] = cprof_table_get(&out->nodes, mk, &inserted);
            if (nmap[i] == (size_t)-1)
                goto err;
            add_rec(&out->nodes, nmap[i], &t->nodes, i);
        }
        out->tree_dropped += t->tree_dropped;
        for (unsigned c = 0; c < n; c++) {
            out->region[c] += cprof_thread_region(t, c);
            out->unattributed[c] += cprof_thread_unattributed(t, c);
            out->compensated[c] += cprof_thread_compensated(t, c);
        }
        out->threads++;
        out->events += t->events;
        out->unmatched_exits += t->unmatched_exits;
        out->backwards += t->backwards;
    }
    free(map);
    return 0;
err:
    free(map);
    cprof_merged_free(out);
    return -1;
}

void cprof_merged_free(struct cprof_merged *m)
{
    cprof_table_free(&m->fns);
    cprof_table_free(&m->edges);
    cprof_table_free(&m->nodes);
    free(m->ext);
    m->ext = NULL;
    m->ext_cap = 0;
    cprof_arena_free(&m->arena);
    free(m->region);
    m->region = m->unattributed = m->compensated = NULL;
}
