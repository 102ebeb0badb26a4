/* The merge: threads into one aggregate, by function identity, in one pass per
 * thread (functions, extras, edges, tree, health). */
#include "engine_int.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* The n-value arrays of struct cprof_merged, carved in this order from one block. */
#define MERGED_ARRAYS(X) X(region) X(unattributed) X(compensated)
#define COUNT_ONE(name) +1
enum { MERGED_NARRAYS = 0 MERGED_ARRAYS(COUNT_ONE) };

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

/* What a thread's call-tree nodes give its functions and edges (engine.h,
 * CPROF_FIRST_FN): map and emap take its function and edge indices to merged ones.
 * The root's node is no function's. */
static void derive_from_nodes(struct cprof_merged *out, const struct cprof_thread *t,
                              const size_t *map, const size_t *emap, unsigned n)
{
    const struct cprof_table *nodes = &t->tab.nodes;

    for (size_t i = 1; i < nodes->len; i++) {
        const struct cprof_rec *r = &nodes->recs[i];
        const uint64_t *s = cprof_self(nodes, i), *tot = s + n;
        size_t f = map[r->key & 0xffffffffu];
        struct cprof_rec *fr = &out->tab.fns.recs[f];
        uint64_t *fs = cprof_self(&out->tab.fns, f), *ft = fs + n;

        fr->calls += r->calls;
        for (unsigned c = 0; c < n; c++)
            fs[c] += s[c];
        if (r->first & CPROF_FIRST_FN) {
            fr->primitive_calls += r->calls;
            for (unsigned c = 0; c < n; c++)
                ft[c] += tot[c];
        }
        if (r->edge != CPROF_NO_EDGE) {
            size_t e = emap[r->edge];
            struct cprof_rec *er = &out->tab.edges.recs[e];
            uint64_t *et = cprof_total(&out->tab.edges, e);
            er->calls += r->calls;
            if (r->first & CPROF_FIRST_EDGE) {
                er->primitive_calls += r->calls;
                for (unsigned c = 0; c < n; c++)
                    et[c] += tot[c];
            }
        }
    }
}

/* Add a thread's histograms and slow sets into the merged ones (map: its function
 * indices to merged ones).  0, or -ENOMEM. */
static int merge_extras(struct cprof_merged *out, const struct cprof_thread *t, const size_t *map,
                        unsigned n)
{
    struct cprof_extras *dx = &out->extras;
    const struct cprof_extras *sx = &t->extras;

    for (size_t i = 0; i < sx->cap && i < t->tab.fns.len; i++) {
        const struct cprof_fn_ext *src = &sx->ext[i];
        struct cprof_fn_ext *dst;

        if (!src->hist && !src->slow)
            continue;
        dst = cprof_extras_slot(dx, map[i]);
        if (!dst)
            return -ENOMEM;
        if (src->hist) {
            if (!dst->hist && !(dst->hist = cprof_arena_alloc(&dx->arena, n * sizeof(*dst->hist))))
                return -ENOMEM;
            for (unsigned c = 0; c < n; c++)
                if (cprof_hist_merge(&dst->hist[c], &src->hist[c], &dx->arena) < 0)
                    return -ENOMEM;
        }
        if (src->slow) {
            if (!dst->slow) {
                dst->slow = cprof_arena_alloc(&dx->arena, sizeof(*dst->slow) +
                                                              dx->slow_k * sizeof(dst->slow->e[0]));
                if (!dst->slow)
                    return -ENOMEM;
            }
            for (unsigned j = 0; j < src->slow->count; j++) {
                const struct cprof_slow_entry *e = &src->slow->e[j];
                if (dst->slow->count < dx->slow_k || e->value > dst->slow->e[0].value)
                    cprof_slow_insert(dst->slow, dx->slow_k, e->value, e->tag);
            }
        }
    }
    return 0;
}

void cprof_health_add(struct cprof_health *a, const struct cprof_health *b)
{
    if (!a->backwards_readings && b->backwards_readings) {
        a->backwards_counter = b->backwards_counter;
        a->backwards_key = b->backwards_key;
    }
    a->out_of_memory += b->out_of_memory;
    a->backwards_readings += b->backwards_readings;
    a->tree_folded += b->tree_folded;
    a->distribution_values_lost += b->distribution_values_lost;
    a->unmatched_exits += b->unmatched_exits;
}

/* The merged index of each of thread t's functions, into map (t->tab.fns.len). */
static int merge_functions(struct cprof_merged *out, const struct cprof_thread *t,
                           cprof_ident_fn ident, void *ident_arg, size_t *map)
{
    for (size_t i = 0; i < t->tab.fns.len; i++) {
        uint64_t id = t->tab.fns.recs[i].key;
        int r;
        if (i != CPROF_ROOT && ident && (r = ident(ident_arg, id, &id)) < 0)
            return r;
        if (cprof_table_get(&out->tab.fns, id, &map[i]) < 0)
            return -ENOMEM;
        add_rec(&out->tab.fns, map[i], &t->tab.fns, i);
    }
    return 0;
}

/* Thread t's call tree merged in place (cprof_merge_consume): node i becomes node nmap[i],
 * keyed by merged indices (its parent's nmap, its function's map), the first node of each
 * merged key in thread order keeping it and the later ones added into it, so the nodes come
 * out numbered as a copy into an empty merged table would number them.  Records only move
 * down (a node's merged index is at most its own), so each is read before it is written
 * over; the table's own slots index the merged keys as they are written. */
static void merge_nodes_in_place(struct cprof_table *nodes, const size_t *map, size_t *nmap)
{
    size_t w = 0, mask = nodes->nslots - 1, stride = 2 * (size_t)(nodes->n ? nodes->n : 1);

    memset(nodes->slots, 0, nodes->nslots * sizeof(*nodes->slots));
    for (size_t i = 0; i < nodes->len; i++) {
        const struct cprof_rec r = nodes->recs[i];
        uint64_t mk = i == CPROF_ROOT ? 0 : (uint64_t)nmap[r.key >> 32] << 32 | map[r.key & 0xffffffffu];
        size_t s = cprof_table_slot(mk, nodes->nslots);
        uint32_t ix;

        while ((ix = nodes->slots[s]) != 0 && nodes->recs[ix - 1].key != mk)
            s = (s + 1) & mask;
        if (ix) {               /* a node merged before it: add into that one */
            add_rec(nodes, ix - 1, nodes, i);
            nmap[i] = ix - 1;
            continue;
        }
        nodes->recs[w] = (struct cprof_rec){.key = mk, .calls = r.calls,
                                            .primitive_calls = r.primitive_calls};
        if (w != i)
            memcpy(nodes->vals + w * stride, nodes->vals + i * stride, stride * sizeof(*nodes->vals));
        nodes->slots[s] = (uint32_t)(w + 1);
        nmap[i] = w++;
    }
    nodes->len = w;
}

static int merge(struct cprof_thread *const *threads, size_t nthreads, unsigned n,
                 cprof_ident_fn ident, void *ident_arg, int consume, struct cprof_merged *out);

int cprof_merge(struct cprof_thread *const *threads, size_t nthreads, unsigned n,
                cprof_ident_fn ident, void *ident_arg, struct cprof_merged *out)
{
    return merge(threads, nthreads, n, ident, ident_arg, 0, out);
}

int cprof_merge_consume(struct cprof_thread *const *threads, size_t nthreads, unsigned n,
                        cprof_ident_fn ident, void *ident_arg, struct cprof_merged *out)
{
    return merge(threads, nthreads, n, ident, ident_arg, 1, out);
}

static int merge(struct cprof_thread *const *threads, size_t nthreads, unsigned n,
                 cprof_ident_fn ident, void *ident_arg, int consume, struct cprof_merged *out)
{
    size_t *map = NULL, *nmap, *emap, basei = SIZE_MAX, ixcap, nfn = 0;
    uint64_t *block;
    int r = -ENOMEM;

    memset(out, 0, sizeof(*out));
    if (cprof_tables_init(&out->tab, n) < 0)
        goto err;
    block = calloc(MERGED_NARRAYS * (size_t)(n ? n : 1), sizeof(uint64_t));
    if (!block)
        goto err;
#define CARVE(name) out->name = block; block += n;
    MERGED_ARRAYS(CARVE)
#undef CARVE
    for (size_t ti = 0; ti < nthreads; ti++) {  /* one K for every merged slow set */
        if (threads[ti]->extras.slow_k > out->extras.slow_k)
            out->extras.slow_k = threads[ti]->extras.slow_k;
        if (threads[ti]->rd.started &&
            (basei == SIZE_MAX || threads[ti]->tab.nodes.len > threads[basei]->tab.nodes.len))
            basei = ti;
    }
    if (!(out->node_ix = malloc(sizeof(*out->node_ix))))
        goto err;
    out->node_ix[0] = CPROF_ROOT;  /* the root's record: the base's root */
    ixcap = 1;
    for (size_t k = 0; k < nthreads; k++) {     /* the base first, then the others in order */
        size_t ti = k == 0 ? basei : k <= basei ? k - 1 : k;
        struct cprof_thread *t;
        struct cprof_tables *tab;
        size_t *m, bfn;

        if (ti == SIZE_MAX || !(t = threads[ti])->rd.started)
            continue;
        tab = &t->tab;
        m = realloc(map, (tab->fns.len + tab->nodes.len + tab->edges.len) * sizeof(*map));
        if (!m)
            goto err;
        map = m;
        nmap = map + tab->fns.len;
        emap = nmap + tab->nodes.len;
        if ((r = merge_functions(out, t, ident, ident_arg, map)) < 0)
            goto err;
        r = -ENOMEM;
        if (k == 0 && consume) {
            /* Its tree becomes the merged one, merged in place: no copy of it is made. */
        } else if (k == 0 && out->tab.fns.len == tab->fns.len) {
            /* Its functions went in first and apart (the root was there already): its
             * indices are the merged ones, and so are its nodes'. */
            out->base = &tab->nodes;
            out->nodes = tab->nodes.len;
            nfn = tab->fns.len;
        }
        if (merge_extras(out, t, map, n) < 0)
            goto err;
        for (size_t i = 0; i < tab->edges.len; i++) {
            uint64_t k = tab->edges.recs[i].key;
            uint64_t mk = (uint64_t)map[k >> 32] << 32 | map[k & 0xffffffffu];
            size_t di;
            if (cprof_table_get(&out->tab.edges, mk, &di) < 0)
                goto err;
            add_rec(&out->tab.edges, di, &tab->edges, i);
            emap[i] = di;
        }
        derive_from_nodes(out, t, map, emap, n);
        if (k == 0 && consume) {
            merge_nodes_in_place(&tab->nodes, map, nmap);
            cprof_table_free(&out->tab.nodes);
            out->tab.nodes = tab->nodes;        /* moved: the thread keeps an empty table */
            memset(&tab->nodes, 0, sizeof(tab->nodes));
            tab->nodes.n = n;
        }
        /* A parent node is always inserted before its children. */
        for (size_t i = 0; &tab->nodes != out->base && !(k == 0 && consume) && i < tab->nodes.len;
             i++) {
            uint64_t k = tab->nodes.recs[i].key;
            uint64_t mk = i == CPROF_ROOT ? 0 : (uint64_t)nmap[k >> 32] << 32 | map[k & 0xffffffffu];
            size_t ri, bi;
            int got = cprof_table_get(&out->tab.nodes, mk, &ri);
            if (got < 0)
                goto err;
            if (out->base && got == 1) {
                if (ri >= ixcap) {
                    size_t *x = realloc(out->node_ix, 2 * ixcap * sizeof(*x));
                    if (!x)
                        goto err;
                    out->node_ix = x;
                    ixcap *= 2;
                }
                if ((mk >> 32) < out->base->len && (mk & 0xffffffffu) < nfn &&
                    cprof_table_find(out->base, mk, &bi) == 0)
                    out->node_ix[ri] = bi;
                else
                    out->node_ix[ri] = out->nodes++;
            }
            nmap[i] = out->base ? out->node_ix[ri] : ri;
            add_rec(&out->tab.nodes, ri, &tab->nodes, i);
        }
        if (!out->health.backwards_readings && t->health.backwards_readings) {
            /* the first backwards reading's function, as its merged identity */
            bfn = CPROF_ROOT;
            if (t->health.backwards_key)
                cprof_table_find(&tab->fns, t->health.backwards_key, &bfn);
            cprof_health_add(&out->health, &t->health);
            out->health.backwards_key = out->tab.fns.recs[map[bfn]].key;
        } else
            cprof_health_add(&out->health, &t->health);
        for (unsigned c = 0; c < n; c++) {
            out->region[c] += cprof_thread_region(t, c);
            out->unattributed[c] += cprof_thread_unattributed(t, c);
            out->compensated[c] += cprof_thread_compensated(t, c);
        }
        out->threads++;
        out->events += t->rd.events;
    }
    if (!out->base) {
        free(out->node_ix);
        out->node_ix = NULL;
        out->nodes = out->tab.nodes.len;
    }
    free(map);
    return 0;
err:
    free(map);
    cprof_merged_free(out);
    return r;
}

void cprof_merged_free(struct cprof_merged *m)
{
    cprof_tables_free(&m->tab);
    cprof_extras_free(&m->extras);
    free(m->region);            /* the block's start */
    free(m->node_ix);
    m->node_ix = NULL;
    m->base = NULL;
#define CLEAR(name) m->name = NULL;
    MERGED_ARRAYS(CLEAR)
#undef CLEAR
}
