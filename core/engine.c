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
    t->first = calloc(8 * (size_t)(n ? n : 1), sizeof(uint64_t));
    if (!t->frames || !t->fvals || !t->first)
        goto err;
    t->last = t->first + n;
    t->mark = t->last + n;
    t->mark_child = t->mark + n;
    t->scratch = t->mark_child + n;
    t->raw_last = t->scratch + n;
    t->comp = t->raw_last + n;
    t->comp_off = t->comp + n;
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
    free(t->frames);
    free(t->fvals);
    free(t->first);
    t->frames = NULL;
    t->fvals = NULL;
    t->first = NULL;
    t->depth = t->cap = 0;
}

/* Clamp the reading so no counter goes backwards; the result is in t->scratch. */
/* Turn a raw reading into the engine's: clamped so no counter goes backwards, and
 * with the tracer's own cost taken out.  Each interval between two readings holds
 * one event's worth of tracer work (the end of one hook and the start of the
 * next), so comp[c] is subtracted from every interval, never more than the
 * interval itself: the adjusted reading is raw - comp_off.  The result is in
 * t->scratch. */
static const uint64_t *observe(struct cprof_thread *t, const uint64_t *now)
{
    unsigned n = t->n;
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
        cut = fresh ? 0 : d < t->comp[c] ? d : t->comp[c];
        t->comp_off[c] += cut;
        t->raw_last[c] = v;
        t->scratch[c] = t->last[c] = v - t->comp_off[c];
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
        if (node != (size_t)-1 && !inserted) {
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

/* Close the top frame at reading `now`. */
static void pop(struct cprof_thread *t, const uint64_t *now)
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

/* An exit at an empty stack: `key` was running since before the region began. */
static void exit_preexisting(struct cprof_thread *t, cprof_key key, const uint64_t *now)
{
    unsigned n = t->n;
    size_t fn = fn_index(t, key);
    uint64_t *self, *total, *nself;

    if (fn == (size_t)-1) {
        t->oom = 1;
        return;
    }
    self = cprof_self(&t->fns, fn);
    total = cprof_total(&t->fns, fn);
    nself = cprof_self(&t->nodes, CPROF_ROOT);
    /* The frame spanned the whole region so far, so every earlier frame of the same
     * function in this thread (nested in it, or an inner pre-existing one) lies
     * inside it: its total is the region's growth, counted once. */
    for (unsigned c = 0; c < n; c++) {
        uint64_t d = now[c] - t->mark[c] - t->mark_child[c];
        self[c] += d;
        nself[c] += d;          /* the tree has no path to it: its root keeps the growth */
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
    while (t->depth >= i)
        pop(t, v);
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
        pop(t, t->last);
    for (unsigned c = 0; c < t->n; c++) {
        uint64_t d = t->last[c] - t->mark[c] - t->mark_child[c];
        self[c] += d;
        nself[c] += d;
        t->mark[c] = t->last[c];
        t->mark_child[c] = 0;
    }
}

void cprof_thread_set_compensation(struct cprof_thread *t, const uint64_t *per_event)
{
    memcpy(t->comp, per_event, t->n * sizeof(*per_event));
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
    free(m->region);
    m->region = m->unattributed = m->compensated = NULL;
}
