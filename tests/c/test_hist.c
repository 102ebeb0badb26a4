/* Histogram arithmetic (core/hist.c): bucket bounds, adds, merges and quantiles,
 * all exact; and the engine's per-call distributions and slow calls driven by
 * synthetic streams. */
#include <criterion/criterion.h>

#include <string.h>

#include "engine.h"
#include "hist.h"

/* The index of key (it must be there). */
static size_t tfind(const struct cprof_table *tb, uint64_t key)
{
    size_t i = 0;

    cr_assert_eq(cprof_table_find(tb, key, &i), 0);
    return i;
}

Test(hist, buckets_are_exact_below_64_then_32_per_power_of_two)
{
    for (uint64_t v = 0; v < 64; v++) {
        cr_assert_eq(cprof_hist_bucket(v), v);
        cr_assert_eq(cprof_hist_low((unsigned)v), v);
        cr_assert_eq(cprof_hist_high((unsigned)v), v);
    }
    cr_assert_eq(cprof_hist_bucket(64), 64);
    cr_assert_eq(cprof_hist_bucket(65), 64);  /* [64, 65] share a bucket of width 2 */
    cr_assert_eq(cprof_hist_bucket(66), 65);
    cr_assert_eq(cprof_hist_bucket(127), 95);
    cr_assert_eq(cprof_hist_bucket(128), 96);
    cr_assert_eq(cprof_hist_low(96), 128);
    cr_assert_eq(cprof_hist_high(96), 131);
    cr_assert_eq(cprof_hist_bucket(UINT64_MAX), CPROF_HIST_BUCKETS - 1);
    cr_assert_eq(cprof_hist_high(CPROF_HIST_BUCKETS - 1), UINT64_MAX);
}

/* Every value lies in its bucket, buckets tile the line without gaps, and the
 * midpoint is within 1/64 of any value in the bucket. */
Test(hist, bounds_tile_and_bound_the_error)
{
    for (unsigned i = 0; i + 1 < CPROF_HIST_BUCKETS; i++) {
        uint64_t lo = cprof_hist_low(i), hi = cprof_hist_high(i);
        cr_assert_leq(lo, hi);
        cr_assert_eq(cprof_hist_low(i + 1), hi + 1, "gap after bucket %u", i);
        cr_assert_eq(cprof_hist_bucket(lo), i);
        cr_assert_eq(cprof_hist_bucket(hi), i);
        uint64_t mid = lo + (hi - lo) / 2;
        cr_assert_leq((double)(hi - mid), (double)lo / 64.0 + 0.5, "bucket %u too wide", i);
    }
    uint64_t x = 0x9E3779B97F4A7C15ull;
    for (int k = 0; k < 100000; k++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        uint64_t v = x >> (x % 64);
        unsigned b = cprof_hist_bucket(v);
        cr_assert(cprof_hist_low(b) <= v && v <= cprof_hist_high(b));
    }
}

Test(hist, quantiles_and_merge)
{
    struct cprof_arena a = {0};
    struct cprof_hist h, g;

    memset(&h, 0, sizeof(h));
    memset(&g, 0, sizeof(g));
    /* 995 calls of 10 and 5 of 1000 */
    for (int i = 0; i < 995; i++)
        cr_assert_eq(cprof_hist_add(&h, 10, &a), 0);
    for (int i = 0; i < 5; i++)
        cr_assert_eq(cprof_hist_add(&h, 1000, &a), 0);
    cr_assert_eq(h.count, 1000);
    cr_assert_eq(h.max, 1000);
    cr_assert_eq(cprof_hist_quantile(&h, 0.5), 10);
    cr_assert_eq(cprof_hist_quantile(&h, 0.995), 10);  /* rank 995 is the last 10 */
    cr_assert_eq(cprof_hist_quantile(&h, 0.996), 1000 - 1000 % 16 + 7); /* bucket [992, 1007] */
    cr_assert_eq(cprof_hist_quantile(&h, 1.0), 1000);
    /* merge: adds counts, keeps the larger max */
    cr_assert_eq(cprof_hist_add(&g, 5000, &a), 0);
    cr_assert_eq(cprof_hist_add(&g, 10, &a), 0);
    cr_assert_eq(cprof_hist_merge(&h, &g, &a), 0);
    cr_assert_eq(h.count, 1002);
    cr_assert_eq(h.max, 5000);
    cr_assert_eq(cprof_hist_at(&h, cprof_hist_bucket(10)), 996);
    cr_assert_eq(cprof_hist_at(&h, cprof_hist_bucket(5000)), 1);
    cr_assert_eq(cprof_hist_quantile(&h, 1.0), 5000);
    struct cprof_hist empty;
    memset(&empty, 0, sizeof(empty));
    cr_assert_eq(cprof_hist_quantile(&empty, 0.5), 0);
    cprof_arena_free(&a);
}

/* ---- the engine ------------------------------------------------------------------ */

#define KF 0x7f0000005000ull
#define KG 0x7f0000006000ull

static void ent(struct cprof_thread *t, cprof_key k, uint64_t a, uint64_t b)
{
    const uint64_t now[2] = {a, b};
    cprof_thread_enter(t, k, now);
}

static void ex(struct cprof_thread *t, cprof_key k, uint64_t a, uint64_t b)
{
    const uint64_t now[2] = {a, b};
    cprof_thread_exit(t, k, now);
}

/* Per-call inclusive values, recursion included: f(3) calls f(2) calls f(1). */
Test(dist, recursion_records_every_call)
{
    struct cprof_thread t;
    const struct cprof_fn_ext *x;

    cr_assert_eq(cprof_thread_init(&t, 2, NULL, NULL), 0);
    cprof_thread_set_distributions(&t, 1);
    ent(&t, KF, 0, 0);
    ent(&t, KF, 10, 1);
    ent(&t, KF, 20, 2);
    ex(&t, KF, 25, 2);  /* 5 */
    ex(&t, KF, 40, 3);  /* 30 */
    ex(&t, KF, 100, 9); /* 100 */
    cprof_thread_flush(&t);
    x = cprof_extras_at(&t.extras, tfind(&t.tab.fns, KF));
    cr_assert(x && x->hist);
    cr_assert_eq(x->hist[0].count, 3);
    cr_assert_eq(x->hist[0].max, 100);
    cr_assert_eq(cprof_hist_at(&x->hist[0], 5), 1);
    cr_assert_eq(cprof_hist_at(&x->hist[0], 30), 1);
    cr_assert_eq(cprof_hist_at(&x->hist[0], cprof_hist_bucket(100)), 1);
    cr_assert_eq(cprof_hist_quantile(&x->hist[0], 0.5), 30);
    cr_assert_eq(x->hist[1].max, 9);
    cprof_thread_free(&t);
}

struct slow_log {
    int calls, current, evictions;
    uint64_t last_evicted;
    uint64_t next_tag;
};

static uint64_t on_slow(void *arg, cprof_key key, const uint64_t *values, int current,
                        int evicting, uint64_t evicted)
{
    struct slow_log *l = arg;
    (void)key;
    (void)values;
    l->calls++;
    l->current += current;
    if (evicting) {
        l->evictions++;
        l->last_evicted = evicted;
    }
    return ++l->next_tag;
}

/* K = 3: of 1,000 calls where 5 are slow (by the first counter), the set ends with
 * the 3 slowest, and the callback ran only when a call entered the top 3. */
Test(slow, keeps_the_k_largest)
{
    struct cprof_thread t;
    struct slow_log log = {0};
    const struct cprof_fn_ext *x;
    uint64_t now = 0;

    cr_assert_eq(cprof_thread_init(&t, 2, NULL, NULL), 0);
    cprof_thread_set_slow_calls(&t, 3, on_slow, &log);
    ent(&t, KG, now, 0);
    for (int i = 0; i < 1000; i++) {
        uint64_t cost = (i % 200 == 7) ? 1000 + (uint64_t)i : 10; /* 5 slow calls */
        ent(&t, KF, now, 0);
        now += cost;
        ex(&t, KF, now, 0);
    }
    ex(&t, KG, now, 0);
    cprof_thread_flush(&t);
    x = cprof_extras_at(&t.extras, tfind(&t.tab.fns, KF));
    cr_assert(x && x->slow);
    cr_assert_eq(x->slow->count, 3);
    cr_assert_eq(x->slow->e[0].value, 1000 + 407);
    cr_assert_eq(x->slow->e[1].value, 1000 + 607);
    cr_assert_eq(x->slow->e[2].value, 1000 + 807);
    /* 3 fast calls fill the set, then each of the 5 slow ones enters it */
    cr_assert_eq(log.calls, 3 + 5 + 1 /* KG, once */);
    cr_assert_eq(log.current, log.calls);
    cr_assert_eq(log.evictions, 5);
    cprof_thread_free(&t);
}

/* Frames closed because an outer one exited are reported as not current. */
Test(slow, unwound_frames_are_not_current)
{
    struct cprof_thread t;
    struct slow_log log = {0};

    cr_assert_eq(cprof_thread_init(&t, 1, NULL, NULL), 0);
    cprof_thread_set_slow_calls(&t, 2, on_slow, &log);
    const uint64_t r0[1] = {0}, r1[1] = {5}, r2[1] = {9};
    cprof_thread_enter(&t, KG, r0);
    cprof_thread_enter(&t, KF, r1);
    cprof_thread_exit(&t, KG, r2); /* f's exit was missed */
    cr_assert_eq(log.calls, 2);
    cr_assert_eq(log.current, 1);
    cprof_thread_free(&t);
}

/* Merging keeps the K largest over all threads, with their tags. */
Test(slow, merge_keeps_the_k_largest)
{
    struct cprof_thread a, b;
    struct cprof_thread *th[2] = {&a, &b};
    struct slow_log la = {0, 0, 0, 0, 100}, lb = {0, 0, 0, 0, 200};
    struct cprof_merged m;
    const struct cprof_fn_ext *x;

    cr_assert_eq(cprof_thread_init(&a, 1, NULL, NULL), 0);
    cr_assert_eq(cprof_thread_init(&b, 1, NULL, NULL), 0);
    cprof_thread_set_slow_calls(&a, 2, on_slow, &la);
    cprof_thread_set_slow_calls(&b, 2, on_slow, &lb);
    cprof_thread_set_distributions(&a, 1);
    cprof_thread_set_distributions(&b, 1);
    uint64_t ta = 0, tb = 0;
    const uint64_t costs_a[3] = {50, 7, 30}, costs_b[3] = {40, 60, 1};
    for (int i = 0; i < 3; i++) {
        uint64_t r[1] = {ta};
        cprof_thread_enter(&a, KF, r);
        ta += costs_a[i];
        r[0] = ta;
        cprof_thread_exit(&a, KF, r);
        r[0] = tb;
        cprof_thread_enter(&b, KF, r);
        tb += costs_b[i];
        r[0] = tb;
        cprof_thread_exit(&b, KF, r);
    }
    cprof_thread_flush(&a);
    cprof_thread_flush(&b);
    cr_assert_eq(cprof_merge(th, 2, 1, NULL, NULL, &m), 0);
    x = cprof_extras_at(&m.extras, tfind(&m.tab.fns, KF));
    cr_assert(x && x->slow && x->hist);
    cr_assert_eq(x->slow->count, 2);
    cr_assert_eq(x->slow->e[0].value, 50);
    cr_assert_eq(x->slow->e[0].tag, 101);   /* a's first call */
    cr_assert_eq(x->slow->e[1].value, 60);
    cr_assert_eq(x->slow->e[1].tag, 202);   /* b's second call */
    cr_assert_eq(x->hist[0].count, 6);
    cr_assert_eq(x->hist[0].max, 60);
    cprof_merged_free(&m);
    cprof_thread_free(&a);
    cprof_thread_free(&b);
}

/* Work the tracer excludes (argument capture) comes out of the next interval, never
 * more than it; it is measured work, not the per-event estimate, so not "compensated". */
Test(compensation, exclude_the_tracers_own_work)
{
    struct cprof_thread t;
    const uint64_t r0[1] = {0}, r1[1] = {10}, b[1] = {10}, a[1] = {16}, r2[1] = {20}, r3[1] = {22};
    const uint64_t b2[1] = {22}, a2[1] = {30}, r4[1] = {31};

    cr_assert_eq(cprof_thread_init(&t, 1, NULL, NULL), 0);
    cprof_thread_enter(&t, KG, r0);
    cprof_thread_enter(&t, KF, r1);
    cprof_thread_exit(&t, KF, r2);
    cprof_thread_exclude(&t, b, a);         /* 6 of the next interval were ours */
    cprof_thread_enter(&t, KF, r3);          /* g: 22 - 20 = 2 < 6: g gets 0, 2 out */
    cprof_thread_exclude(&t, b2, a2);       /* 8 more */
    cprof_thread_exit(&t, KF, r4);           /* f: 31 - 22 = 9, 8 out: 1 */
    cprof_thread_exit(&t, KG, r4);
    cprof_thread_flush(&t);
    struct cprof_thread *th = &t;
    struct cprof_merged m;     /* the functions' figures: derived from the tree */
    cr_assert_eq(cprof_merge(&th, 1, 1, NULL, NULL, &m), 0);
    size_t f = tfind(&m.tab.fns, KF), g = tfind(&m.tab.fns, KG);
    cr_assert_eq(cprof_self(&m.tab.fns, f)[0], 10 + 1);
    cr_assert_eq(cprof_self(&m.tab.fns, g)[0], 10 + 0);
    cr_assert_eq(cprof_thread_compensated(&t, 0), 0);  /* measured, not the estimate's share */
    cr_assert_eq(cprof_thread_region(&t, 0), 31 - 10);
    cprof_merged_free(&m);
    cprof_thread_free(&t);
}

/* Threads with different K merge (the largest K holds the largest values of
 * all): this was refused as if memory had run out once a smaller K's set was made. */
Test(slow, merge_of_different_k)
{
    struct cprof_thread a, b;
    struct cprof_thread *th[2] = {&a, &b};
    struct slow_log la = {0, 0, 0, 0, 100}, lb = {0, 0, 0, 0, 200};
    struct cprof_merged m;
    const struct cprof_fn_ext *x;
    const uint64_t costs_a[2] = {50, 7}, costs_b[3] = {40, 60, 1};
    uint64_t now = 0;

    cr_assert_eq(cprof_thread_init(&a, 1, NULL, NULL), 0);
    cr_assert_eq(cprof_thread_init(&b, 1, NULL, NULL), 0);
    cprof_thread_set_slow_calls(&a, 1, on_slow, &la);
    cprof_thread_set_slow_calls(&b, 3, on_slow, &lb);
    for (int i = 0; i < 2; i++) {
        uint64_t r[1] = {now};
        cprof_thread_enter(&a, KF, r);
        r[0] = now += costs_a[i];
        cprof_thread_exit(&a, KF, r);
    }
    for (int i = 0; i < 3; i++) {
        uint64_t r[1] = {now};
        cprof_thread_enter(&b, KF, r);
        r[0] = now += costs_b[i];
        cprof_thread_exit(&b, KF, r);
    }
    cprof_thread_flush(&a);
    cprof_thread_flush(&b);
    cr_assert_eq(cprof_merge(th, 2, 1, NULL, NULL, &m), 0);
    cr_assert_eq(m.extras.slow_k, 3);
    x = cprof_extras_at(&m.extras, tfind(&m.tab.fns, KF));
    cr_assert(x && x->slow);
    cr_assert_eq(x->slow->count, 3);
    cr_assert_eq(x->slow->e[0].value, 40);
    cr_assert_eq(x->slow->e[1].value, 50);
    cr_assert_eq(x->slow->e[1].tag, 101);
    cr_assert_eq(x->slow->e[2].value, 60);
    cprof_merged_free(&m);
    cprof_thread_free(&a);
    cprof_thread_free(&b);
}
