/* Per-call extras: histograms and slow sets, filled at each call's exit. */
#include "engine_int.h"

#include <stdlib.h>
#include <string.h>

struct cprof_fn_ext *cprof_extras_slot(struct cprof_extras *x, size_t fn)
{
    if (fn >= x->cap) {
        size_t ncap = x->cap ? x->cap : 256;
        struct cprof_fn_ext *e;
        while (ncap <= fn)
            ncap *= 2;
        e = realloc(x->ext, ncap * sizeof(*e));
        if (!e)
            return NULL;
        memset(e + x->cap, 0, (ncap - x->cap) * sizeof(*e));
        x->ext = e;
        x->cap = ncap;
    }
    return &x->ext[fn];
}

void cprof_extras_free(struct cprof_extras *x)
{
    free(x->ext);
    x->ext = NULL;
    x->cap = 0;
    cprof_arena_free(&x->arena);
}

void cprof_slow_insert(struct cprof_slow_set *s, unsigned k, uint64_t value, uint64_t tag)
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

void cprof_record_call(struct cprof_thread *t, size_t fn, const uint64_t *start,
                       const uint64_t *now, int current)
{
    unsigned n = t->n;
    struct cprof_extras *xs = &t->extras;
    struct cprof_fn_ext *x = cprof_extras_slot(xs, fn);
    uint64_t d[CPROF_MAX_COUNTERS];

    if (!x || n > CPROF_MAX_COUNTERS) {
        t->health.distribution_values_lost++;
        return;
    }
    for (unsigned c = 0; c < n; c++)
        d[c] = now[c] - start[c];
    if (xs->dist) {
        if (!x->hist && !(x->hist = cprof_arena_alloc(&xs->arena, n * sizeof(*x->hist)))) {
            t->health.distribution_values_lost++;
        } else {
            for (unsigned c = 0; c < n; c++)
                if (cprof_hist_add(&x->hist[c], d[c], &xs->arena) < 0)
                    t->health.distribution_values_lost++;
        }
    }
    if (xs->slow_k && n) {
        struct cprof_slow_set *sl = x->slow;
        if (!sl) {
            sl = x->slow =
                cprof_arena_alloc(&xs->arena, sizeof(*sl) + xs->slow_k * sizeof(sl->e[0]));
            if (!sl) {
                t->health.distribution_values_lost++;
                return;
            }
        }
        if (sl->count < xs->slow_k || d[0] > sl->e[0].value) {
            int evicting = sl->count == xs->slow_k;
            uint64_t tag = xs->on_slow(xs->slow_arg, t->tab.fns.recs[fn].key, d, current,
                                       evicting, evicting ? sl->e[0].tag : 0);
            cprof_slow_insert(sl, xs->slow_k, d[0], tag);
        }
    }
}

void cprof_thread_set_distributions(struct cprof_thread *t, int on)
{
    t->extras.dist = on;
    t->extras.any = t->extras.dist || t->extras.slow_k;
    cprof_pick_read_events(t);
}

void cprof_thread_set_slow_calls(struct cprof_thread *t, unsigned k, cprof_slow_fn fn, void *arg)
{
    t->extras.slow_k = k > CPROF_MAX_SLOW ? CPROF_MAX_SLOW : k;
    t->extras.on_slow = fn;
    t->extras.slow_arg = arg;
    t->extras.any = t->extras.dist || t->extras.slow_k;
    cprof_pick_read_events(t);
}
