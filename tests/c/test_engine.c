/* Tests of core/engine.c: synthetic enter/exit streams with injected readings of
 * two counters ("time", which moves at nearly every event, and "other", which
 * moves rarely and by different amounts), checked against exact numbers.
 *
 * Hand-written scenarios give the numbers directly; randomized streams compare
 * the engine with an independent reference model in this file, which attributes
 * every interval between two readings to the state of the stack during it
 * (self: the top frame; total: every distinct function on the stack; edge
 * total: every distinct caller->callee pair on the stack), instead of the
 * engine's per-frame bookkeeping. */
#include <criterion/criterion.h>

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "engine.h"

#define NC 2            /* counters in every scenario */
#define NONE ((size_t)-1) /* not found, in tfind() */

/* Pointer-like function keys. */
#define KA 0x7f0000001000ull
#define KB 0x7f0000002000ull
#define KC 0x7f0000003000ull
#define KD 0x7f0000004000ull
#define KF 0x7f0000005000ull
#define KG 0x7f0000006000ull
#define KH 0x7f0000007000ull
#define KM 0x7f0000008000ull
#define KN 0x7f0000009000ull
#define KX 0x7f000000a000ull
#define KY 0x7f000000b000ull
#define KZ 0x7f000000c000ull

typedef unsigned long long ull;

/* The index of key, or NONE (cprof_table_find's -ENOENT). */
static size_t tfind(const struct cprof_table *tb, uint64_t key)
{
    size_t i;

    return cprof_table_find(tb, key, &i) == 0 ? i : NONE;
}

/* The thread's functions and edges as a profile gives them: derived from its call
 * tree (engine.h, CPROF_FIRST_FN) by merging the thread alone, which keeps its
 * function and edge indices; nodes are the thread's own.  Valid until the next call. */
static const struct cprof_tables *settled(const struct cprof_thread *t)
{
    static struct cprof_merged m;
    static struct cprof_tables view;
    static uint64_t was[6 + 2 * NC];  /* what the tables last merged were: every change
                                      * is an event, or a flush that moves the roots */
    uint64_t is[6 + 2 * NC] = {(uintptr_t)t, t->rd.events, t->stack.depth, t->tab.fns.len,
                               t->tab.edges.len, t->tab.nodes.len};
    struct cprof_thread *th = (struct cprof_thread *)t;

    for (unsigned c = 0; c < t->n && c < NC; c++) {
        is[6 + c] = cprof_self(&t->tab.fns, CPROF_ROOT)[c];
        is[6 + NC + c] = cprof_self(&t->tab.nodes, CPROF_ROOT)[c];
    }
    if (t->rd.started && m.tab.fns.recs && !memcmp(is, was, sizeof(is)))
        return &view;
    memcpy(was, is, sizeof(is));
    cprof_merged_free(&m);
    cr_assert_eq(cprof_merge(&th, 1, t->n, NULL, NULL, &m), 0);
    if (t->rd.started) {
        cr_assert_eq(m.tab.fns.len, t->tab.fns.len);
        cr_assert_eq(m.tab.edges.len, t->tab.edges.len);
        view.fns = m.tab.fns;
        view.edges = m.tab.edges;
    } else
        view = t->tab;
    view.nodes = t->tab.nodes;
    return &view;
}

/* ---- stream helpers ----------------------------------------------------------- */

static void init2(struct cprof_thread *t)
{
    cr_assert_eq(cprof_thread_init(t, NC, NULL, NULL), 0);
    cr_assert_eq(t->n, NC);
    cr_assert_eq(t->tab.fns.len, 1);
    cr_assert_eq(t->tab.fns.recs[CPROF_ROOT].key, 0);
    cr_assert_eq(t->stack.depth, 0);
    cr_assert_eq(t->rd.started, 0);
}

static void ent(struct cprof_thread *t, cprof_key k, uint64_t time, uint64_t other)
{
    uint64_t v[NC] = {time, other};
    cprof_thread_enter(t, k, v);
}

static void ex(struct cprof_thread *t, cprof_key k, uint64_t time, uint64_t other)
{
    uint64_t v[NC] = {time, other};
    cprof_thread_exit(t, k, v);
}

static void pex(struct cprof_thread *t, cprof_key k, uint64_t time, uint64_t other)
{
    uint64_t v[NC] = {time, other};
    cprof_thread_push_existing(t, k, v);
}

/* ---- checks ----------------------------------------------------------------------- */

static size_t fn_at(const struct cprof_thread *t, cprof_key k, int line)
{
    size_t i = tfind(&t->tab.fns, k);

    cr_assert_neq(i, NONE, "line %d: function %#llx not in the table", line, (ull)k);
    cr_assert_eq(t->tab.fns.recs[i].key, k);
    cr_assert_eq(settled(t)->fns.recs[i].key, k);
    return i;
}

static void check_fn(const struct cprof_thread *t, cprof_key k, uint64_t calls, uint64_t prim,
                     uint64_t self0, uint64_t self1, uint64_t tot0, uint64_t tot1, int line)
{
    size_t i = fn_at(t, k, line);
    const struct cprof_tables *v = settled(t);
    const struct cprof_rec *r = &v->fns.recs[i];
    const uint64_t *s = cprof_self(&v->fns, i), *tt = cprof_total(&v->fns, i);

    cr_assert_eq(r->calls, calls, "line %d: fn %#llx calls %llu, want %llu", line, (ull)k,
                 (ull)r->calls, (ull)calls);
    cr_assert_eq(r->primitive_calls, prim, "line %d: fn %#llx primitive_calls %llu, want %llu",
                 line, (ull)k, (ull)r->primitive_calls, (ull)prim);
    cr_assert_eq(s[0], self0, "line %d: fn %#llx self[0] %llu, want %llu", line, (ull)k,
                 (ull)s[0], (ull)self0);
    cr_assert_eq(s[1], self1, "line %d: fn %#llx self[1] %llu, want %llu", line, (ull)k,
                 (ull)s[1], (ull)self1);
    cr_assert_eq(tt[0], tot0, "line %d: fn %#llx total[0] %llu, want %llu", line, (ull)k,
                 (ull)tt[0], (ull)tot0);
    cr_assert_eq(tt[1], tot1, "line %d: fn %#llx total[1] %llu, want %llu", line, (ull)k,
                 (ull)tt[1], (ull)tot1);
}
#define FN(t, k, calls, prim, s0, s1, t0, t1) check_fn(t, k, calls, prim, s0, s1, t0, t1, __LINE__)

static size_t edge_at(const struct cprof_thread *t, cprof_key caller, cprof_key callee, int line)
{
    uint64_t ek = (uint64_t)fn_at(t, caller, line) << 32 | fn_at(t, callee, line);
    size_t e = tfind(&t->tab.edges, ek);

    cr_assert_neq(e, NONE, "line %d: edge %#llx->%#llx not in the table", line, (ull)caller,
                  (ull)callee);
    return e;
}

static void check_edge(const struct cprof_thread *t, cprof_key caller, cprof_key callee,
                       uint64_t calls, uint64_t prim, uint64_t tot0, uint64_t tot1, int line)
{
    size_t e = edge_at(t, caller, callee, line);
    const struct cprof_tables *v = settled(t);
    const struct cprof_rec *r = &v->edges.recs[e];
    const uint64_t *tt = cprof_total(&v->edges, e);

    cr_assert_eq(r->calls, calls, "line %d: edge %#llx->%#llx calls %llu, want %llu", line,
                 (ull)caller, (ull)callee, (ull)r->calls, (ull)calls);
    cr_assert_eq(r->primitive_calls, prim,
                 "line %d: edge %#llx->%#llx primitive_calls %llu, want %llu", line, (ull)caller,
                 (ull)callee, (ull)r->primitive_calls, (ull)prim);
    cr_assert_eq(tt[0], tot0, "line %d: edge %#llx->%#llx total[0] %llu, want %llu", line,
                 (ull)caller, (ull)callee, (ull)tt[0], (ull)tot0);
    cr_assert_eq(tt[1], tot1, "line %d: edge %#llx->%#llx total[1] %llu, want %llu", line,
                 (ull)caller, (ull)callee, (ull)tt[1], (ull)tot1);
}
#define EDGE(t, a, b, calls, prim, t0, t1) check_edge(t, a, b, calls, prim, t0, t1, __LINE__)

/* The call tree: the selfs of all nodes (root included) add up to the region, and
 * every node's total is its self plus its children's totals (a node is one path,
 * so no recursion rule applies; frames folded into it add to its self). */
static void check_tree(const struct cprof_table *nodes, uint64_t dropped,
                       uint64_t (*region)(const struct cprof_thread *, unsigned),
                       const struct cprof_thread *t, int line)
{
    unsigned n = nodes->n;
    uint64_t *kids = calloc(nodes->len * n + 1, sizeof(uint64_t));

    cr_assert(kids);
    for (size_t i = 1; i < nodes->len; i++) {
        size_t parent = (size_t)(nodes->recs[i].key >> 32);
        cr_assert_lt(parent, i, "line %d: node %zu before its parent %zu", line, i, parent);
        for (unsigned c = 0; c < n; c++)
            kids[parent * n + c] += cprof_total(nodes, i)[c];
    }
    for (unsigned c = 0; c < n; c++) {
        uint64_t sum = 0;
        for (size_t i = 0; i < nodes->len; i++)
            sum += cprof_self(nodes, i)[c];
        cr_assert_eq(sum, region(t, c), "line %d: counter %u: tree self %llu != region %llu",
                     line, c, (ull)sum, (ull)region(t, c));
    }
    (void)dropped;
    for (size_t i = 1; i < nodes->len; i++)
        for (unsigned c = 0; c < n; c++)
            cr_assert_eq(cprof_total(nodes, i)[c], cprof_self(nodes, i)[c] + kids[i * n + c],
                         "line %d: node %zu counter %u: total != self + children", line, i, c);
    free(kids);
}

/* After a flush: the stack is empty, nothing is active, and for every counter the
 * sum of self over all functions (root included) is the region's growth. */
static void check_conservation(const struct cprof_thread *t, int line)
{
    const struct cprof_tables *v = settled(t);

    cr_assert_eq(t->stack.depth, 0, "line %d: depth %zu after flush", line, t->stack.depth);
    for (unsigned c = 0; c < t->n; c++) {
        uint64_t sum = 0;
        for (size_t i = 0; i < v->fns.len; i++) {
            uint64_t s = cprof_self(&v->fns, i)[c];
            cr_assert_leq(s, cprof_thread_region(t, c), "line %d: fn %zu self[%u] %llu > region",
                          line, i, c, (ull)s);
            sum += s;
        }
        cr_assert_eq(sum, cprof_thread_region(t, c),
                     "line %d: counter %u: sum of self %llu != region %llu", line, c, (ull)sum,
                     (ull)cprof_thread_region(t, c));
        cr_assert_eq(cprof_thread_unattributed(t, c), cprof_self(&v->fns, CPROF_ROOT)[c]);
        /* the tree's root holds what no function got (unless full paths folded into it) */
        if (!t->health.tree_folded)
            cr_assert_eq(cprof_self(&t->tab.nodes, CPROF_ROOT)[c], cprof_thread_unattributed(t, c),
                         "line %d: counter %u: tree root self %llu != unattributed %llu", line, c,
                         (ull)cprof_self(&t->tab.nodes, CPROF_ROOT)[c],
                         (ull)cprof_thread_unattributed(t, c));
    }
    check_tree(&t->tab.nodes, t->health.tree_folded, cprof_thread_region, t, line);
}
#define CONSERVED(t) check_conservation(t, __LINE__)

static void check_region(const struct cprof_thread *t, uint64_t r0, uint64_t r1)
{
    cr_assert_eq(cprof_thread_region(t, 0), r0, "region[0] %llu, want %llu",
                 (ull)cprof_thread_region(t, 0), (ull)r0);
    cr_assert_eq(cprof_thread_region(t, 1), r1, "region[1] %llu, want %llu",
                 (ull)cprof_thread_region(t, 1), (ull)r1);
}

/* ---- hand-written scenarios -------------------------------------------------------- */

Test(engine, chain_a_b_c)
{
    struct cprof_thread t;

    init2(&t);
    ent(&t, KA, 0, 0);
    ent(&t, KB, 10, 1);
    ent(&t, KC, 25, 1);
    cr_assert_eq(t.stack.depth, 3);
    ex(&t, KC, 45, 6);
    ex(&t, KB, 50, 6);
    ex(&t, KA, 70, 10);
    cr_assert_eq(t.stack.depth, 0);
    cprof_thread_flush(&t);

    /*      calls prim self     total */
    FN(&t, KA, 1, 1, 30, 5, 70, 10);
    FN(&t, KB, 1, 1, 20, 0, 40, 5);
    FN(&t, KC, 1, 1, 20, 5, 20, 5);
    FN(&t, 0, 0, 0, 0, 0, 0, 0);
    cr_assert_eq(t.tab.fns.len, 4);
    cr_assert_eq(t.tab.edges.len, 3);
    EDGE(&t, 0, KA, 1, 1, 70, 10);
    EDGE(&t, KA, KB, 1, 1, 40, 5);
    EDGE(&t, KB, KC, 1, 1, 20, 5);
    /* No edge in the reverse direction. */
    cr_assert_eq(tfind(&t.tab.edges, (uint64_t)fn_at(&t, KB, __LINE__) << 32 |
                                                fn_at(&t, KA, __LINE__)),
                 NONE);
    check_region(&t, 70, 10);
    cr_assert_eq(t.rd.events, 6);
    cr_assert_eq(t.health.unmatched_exits, 0);
    cr_assert_eq(t.health.backwards_readings, 0);
    cr_assert_eq(t.health.out_of_memory, 0);
    CONSERVED(&t);
    cprof_thread_free(&t);
}

Test(engine, chain_called_twice_with_root_gaps)
{
    struct cprof_thread t;

    init2(&t);
    ent(&t, KA, 100, 7); /* first reading: region starts here */
    ent(&t, KB, 110, 7);
    ex(&t, KB, 130, 9);
    ex(&t, KA, 135, 10);
    /* 15 / 2 at root level */
    ent(&t, KA, 150, 12);
    ent(&t, KB, 151, 12);
    ex(&t, KB, 160, 20);
    ent(&t, KC, 161, 20);
    ex(&t, KC, 171, 21);
    ex(&t, KA, 175, 21);
    /* 5 / 4 at root level, up to the last reading */
    ent(&t, KD, 180, 25);
    cprof_thread_flush(&t); /* KD closed at its own entry reading: 0 */

    FN(&t, KA, 2, 2, 10 + 5 + 1 + 1 + 4, 1 + 0 + 0 + 0 + 0, 35 + 25, 3 + 9);
    FN(&t, KB, 2, 2, 20 + 9, 2 + 8, 29, 10);
    FN(&t, KC, 1, 1, 10, 1, 10, 1);
    FN(&t, KD, 1, 1, 0, 0, 0, 0);
    FN(&t, 0, 0, 0, 15 + 5, 2 + 4, 0, 0);
    EDGE(&t, 0, KA, 2, 2, 60, 12);
    EDGE(&t, KA, KB, 2, 2, 29, 10);
    EDGE(&t, KA, KC, 1, 1, 10, 1);
    EDGE(&t, 0, KD, 1, 1, 0, 0);
    cr_assert_eq(cprof_thread_unattributed(&t, 0), 20);
    cr_assert_eq(cprof_thread_unattributed(&t, 1), 6);
    check_region(&t, 80, 18);
    CONSERVED(&t);
    cprof_thread_free(&t);
}

Test(engine, direct_recursion)
{
    struct cprof_thread t;

    init2(&t);
    ent(&t, KF, 0, 0);
    ent(&t, KF, 10, 2);
    ent(&t, KF, 30, 3);
    ent(&t, KG, 32, 3);
    ex(&t, KG, 34, 6);
    ex(&t, KF, 35, 7);
    ex(&t, KF, 50, 7);
    cr_assert_eq(t.stack.depth, 1);
    ex(&t, KF, 60, 9);
    cprof_thread_flush(&t);

    /* calls 3, primitive 1; total once (outermost frame); self over all frames */
    FN(&t, KF, 3, 1, 58, 6, 60, 9);
    FN(&t, KG, 1, 1, 2, 3, 2, 3);
    EDGE(&t, 0, KF, 1, 1, 60, 9);
    /* f->f: 2 calls, 1 primitive, total of the outermost f->f frame (10..50) */
    EDGE(&t, KF, KF, 2, 1, 40, 5);
    EDGE(&t, KF, KG, 1, 1, 2, 3);
    cr_assert_eq(t.tab.edges.len, 3);
    CONSERVED(&t);
    cprof_thread_free(&t);
}

Test(engine, direct_recursion_called_again)
{
    /* After the recursion ends, a new outermost frame counts its total again. */
    struct cprof_thread t;

    init2(&t);
    ent(&t, KF, 0, 0);
    ent(&t, KF, 5, 1);
    ex(&t, KF, 8, 1);
    ex(&t, KF, 10, 2);
    ent(&t, KF, 20, 2);
    ent(&t, KF, 21, 4);
    ex(&t, KF, 23, 4);
    ex(&t, KF, 30, 5);
    cprof_thread_flush(&t);

    FN(&t, KF, 4, 2, 20, 5, 20, 5);
    EDGE(&t, 0, KF, 2, 2, 20, 5);
    EDGE(&t, KF, KF, 2, 2, 3 + 2, 0 + 0);
    FN(&t, 0, 0, 0, 10, 0, 0, 0);
    CONSERVED(&t);
    cprof_thread_free(&t);
}

Test(engine, mutual_recursion)
{
    struct cprof_thread t;

    init2(&t);
    ent(&t, KA, 0, 0);
    ent(&t, KB, 5, 1);
    ent(&t, KA, 12, 1);
    ent(&t, KB, 20, 4);
    ex(&t, KB, 26, 4);
    ex(&t, KA, 30, 5);
    ex(&t, KB, 41, 8);
    ex(&t, KA, 50, 8);
    cprof_thread_flush(&t);

    FN(&t, KA, 2, 1, 5 + 8 + 4 + 9, 1 + 3 + 1 + 0, 50, 8);
    FN(&t, KB, 2, 1, 7 + 6 + 11, 0 + 0 + 3, 36, 7);
    EDGE(&t, 0, KA, 1, 1, 50, 8);
    EDGE(&t, KA, KB, 2, 1, 36, 7); /* outermost a->b frame only */
    EDGE(&t, KB, KA, 1, 1, 18, 4);
    cr_assert_eq(t.tab.edges.len, 3);
    CONSERVED(&t);
    cprof_thread_free(&t);
}

Test(engine, exception_unwinds_several_frames)
{
    struct cprof_thread t;

    init2(&t);
    ent(&t, KA, 0, 0);
    ent(&t, KB, 10, 1);
    ent(&t, KC, 20, 2);
    ent(&t, KD, 30, 4);
    /* The exits of d and c were missed: b's exit closes them at the same reading. */
    ex(&t, KB, 45, 9);
    cr_assert_eq(t.stack.depth, 1);
    cr_assert_eq(t.stack.frames[0].fn, fn_at(&t, KA, __LINE__));
    /* a calls b again: the a->b edge is primitive again (nothing left active). */
    ent(&t, KB, 50, 9);
    ex(&t, KB, 52, 10);
    ex(&t, KA, 60, 10);
    cprof_thread_flush(&t);

    FN(&t, KD, 1, 1, 15, 5, 15, 5);
    FN(&t, KC, 1, 1, 10, 2, 25, 7);
    FN(&t, KB, 2, 2, 10 + 2, 1 + 1, 35 + 2, 8 + 1);
    FN(&t, KA, 1, 1, 10 + 5 + 8, 1 + 0 + 0, 60, 10);
    EDGE(&t, KC, KD, 1, 1, 15, 5);
    EDGE(&t, KB, KC, 1, 1, 25, 7);
    EDGE(&t, KA, KB, 2, 2, 37, 9);
    EDGE(&t, 0, KA, 1, 1, 60, 10);
    cr_assert_eq(t.health.unmatched_exits, 0);
    CONSERVED(&t);
    cprof_thread_free(&t);
}

Test(engine, exception_exit_matches_innermost_frame_of_key)
{
    /* f -> g -> f -> g: an exit of f closes the top g and the inner f only. */
    struct cprof_thread t;

    init2(&t);
    ent(&t, KF, 0, 0);
    ent(&t, KG, 10, 0);
    ent(&t, KF, 20, 1);
    ent(&t, KG, 30, 3);
    ex(&t, KF, 40, 6);
    cr_assert_eq(t.stack.depth, 2);
    cr_assert_eq(t.stack.frames[1].fn, fn_at(&t, KG, __LINE__));
    ex(&t, KG, 55, 6);
    ex(&t, KF, 60, 7);
    cprof_thread_flush(&t);

    FN(&t, KF, 2, 1, 10 + 10 + 5, 0 + 2 + 1, 60, 7);
    FN(&t, KG, 2, 1, 10 + 10 + 15, 1 + 3 + 0, 45, 6);
    EDGE(&t, KF, KG, 2, 1, 45, 6);
    EDGE(&t, KG, KF, 1, 1, 20, 5);
    EDGE(&t, 0, KF, 1, 1, 60, 7);
    CONSERVED(&t);
    cprof_thread_free(&t);
}

Test(engine, exception_unwinds_to_the_outermost_frame)
{
    /* The exit of the bottom frame closes the whole stack. */
    struct cprof_thread t;

    init2(&t);
    ent(&t, KA, 0, 0);
    ent(&t, KB, 1, 0);
    ent(&t, KC, 2, 0);
    ent(&t, KB, 3, 1);
    ex(&t, KA, 10, 3);
    cr_assert_eq(t.stack.depth, 0);
    cprof_thread_flush(&t);

    FN(&t, KA, 1, 1, 1, 0, 10, 3);
    FN(&t, KB, 2, 1, 1 + 7, 0 + 2, 9, 3);
    FN(&t, KC, 1, 1, 1, 1, 8, 3);
    EDGE(&t, KC, KB, 1, 1, 7, 2);
    EDGE(&t, KA, KB, 1, 1, 9, 3);
    CONSERVED(&t);
    cprof_thread_free(&t);
}

Test(engine, mid_stack_start)
{
    /* X and Y were running before profiling started (Y called X).  Their exits
     * arrive with an empty stack. */
    struct cprof_thread t;

    init2(&t);
    ent(&t, KA, 100, 50); /* first reading */
    ex(&t, KA, 130, 55);
    ex(&t, KX, 140, 57);
    cr_assert_eq(t.stack.depth, 0);
    cr_assert_eq(t.health.unmatched_exits, 0);
    ex(&t, KY, 150, 60);
    ent(&t, KB, 160, 61);
    ex(&t, KB, 165, 63);
    cprof_thread_flush(&t);

    FN(&t, KA, 1, 1, 30, 5, 30, 5);
    /* self: root-level growth since the first reading, minus a's frame */
    FN(&t, KX, 0, 0, 40 - 30, 7 - 5, 40, 7);
    /* self: root-level growth since X's exit; total: since the first reading */
    FN(&t, KY, 0, 0, 10, 3, 50, 10);
    FN(&t, KB, 1, 1, 5, 2, 5, 2);
    /* flush: the rest of the root-level growth (150..165 minus b) */
    FN(&t, 0, 0, 0, 10, 1, 0, 0);
    cr_assert_eq(cprof_thread_unattributed(&t, 0), 10);
    cr_assert_eq(cprof_thread_unattributed(&t, 1), 1);
    /* No edges for functions that were never entered. */
    cr_assert_eq(t.tab.edges.len, 2);
    EDGE(&t, 0, KA, 1, 1, 30, 5);
    EDGE(&t, 0, KB, 1, 1, 5, 2);
    check_region(&t, 65, 13);
    CONSERVED(&t);
    cprof_thread_free(&t);
}

Test(engine, mid_stack_start_first_event_is_an_exit)
{
    struct cprof_thread t;

    init2(&t);
    ex(&t, KX, 1000, 500); /* first reading: nothing has grown yet */
    ex(&t, KY, 1010, 503);
    ex(&t, KZ, 1013, 503);
    cprof_thread_flush(&t);

    FN(&t, KX, 0, 0, 0, 0, 0, 0);
    FN(&t, KY, 0, 0, 10, 3, 10, 3);
    FN(&t, KZ, 0, 0, 3, 0, 13, 3);
    FN(&t, 0, 0, 0, 0, 0, 0, 0);
    cr_assert_eq(t.tab.fns.len, 4);
    cr_assert_eq(t.tab.edges.len, 0);
    check_region(&t, 13, 3);
    CONSERVED(&t);
    cprof_thread_free(&t);
}

Test(engine, unmatched_exit_with_nonempty_stack_is_ignored)
{
    struct cprof_thread t;

    init2(&t);
    ent(&t, KA, 0, 0);
    ent(&t, KB, 10, 1);
    ex(&t, KZ, 15, 2); /* never entered, not on the stack */
    cr_assert_eq(t.health.unmatched_exits, 1);
    cr_assert_eq(t.stack.depth, 2);
    cr_assert_eq(t.stack.frames[0].fn, fn_at(&t, KA, __LINE__));
    cr_assert_eq(t.stack.frames[1].fn, fn_at(&t, KB, __LINE__));
    cr_assert_eq(tfind(&t.tab.fns, KZ), NONE);
    ex(&t, KC, 17, 2); /* also never entered */
    cr_assert_eq(t.health.unmatched_exits, 2);
    ex(&t, KB, 20, 3);
    ent(&t, KC, 21, 3);
    ex(&t, KC, 22, 3);
    ex(&t, KC, 23, 3); /* c was entered before, but is not on the stack now */
    cr_assert_eq(t.health.unmatched_exits, 3);
    cr_assert_eq(t.stack.depth, 1);
    ex(&t, KA, 30, 4);
    cprof_thread_flush(&t);

    FN(&t, KB, 1, 1, 10, 2, 10, 2);
    FN(&t, KC, 1, 1, 1, 0, 1, 0);
    FN(&t, KA, 1, 1, 19, 2, 30, 4);
    cr_assert_eq(tfind(&t.tab.fns, KZ), NONE);
    cr_assert_eq(t.rd.events, 9);
    CONSERVED(&t);
    cprof_thread_free(&t);
}

Test(engine, push_existing_then_flush)
{
    /* m -> n were running when profiling started. */
    struct cprof_thread t;

    init2(&t);
    pex(&t, KM, 0, 0);
    pex(&t, KN, 0, 0);
    cr_assert_eq(t.stack.depth, 2);
    ent(&t, KA, 5, 1);
    ex(&t, KA, 9, 3);
    ent(&t, KB, 12, 3);
    ex(&t, KB, 20, 3);
    /* n recurses into itself: n was active, so not a primitive call */
    ent(&t, KN, 21, 3);
    ex(&t, KN, 22, 4);
    ent(&t, KC, 30, 5); /* still open at the end */
    cprof_thread_flush(&t); /* closes c, n, m at the last reading (30, 5) */

    FN(&t, KM, 0, 0, 0, 0, 30, 5);
    /* outer (pushed) frame 17/2, inner frame 1/1; total from the outer frame only */
    FN(&t, KN, 1, 0, 5 + 3 + 1 + 8 + 1, 1 + 0 + 0 + 1 + 1, 30, 5);
    FN(&t, KA, 1, 1, 4, 2, 4, 2);
    FN(&t, KB, 1, 1, 8, 0, 8, 0);
    FN(&t, KC, 1, 1, 0, 0, 0, 0);
    FN(&t, 0, 0, 0, 0, 0, 0, 0);
    EDGE(&t, 0, KM, 0, 0, 30, 5);
    EDGE(&t, KM, KN, 0, 0, 30, 5);
    EDGE(&t, KN, KN, 1, 1, 1, 1);
    EDGE(&t, KN, KA, 1, 1, 4, 2);
    EDGE(&t, KN, KC, 1, 1, 0, 0);
    cr_assert_eq(t.stack.depth, 0);
    CONSERVED(&t);
    cprof_thread_free(&t);
}

Test(engine, push_existing_then_real_exits)
{
    /* Pushed frames exit normally later; then a pre-existing caller exits with
     * an empty stack. */
    struct cprof_thread t;

    init2(&t);
    pex(&t, KM, 10, 10);
    pex(&t, KN, 10, 10);
    ent(&t, KA, 12, 11);
    ex(&t, KA, 15, 11);
    ex(&t, KN, 20, 13);
    ex(&t, KM, 26, 13);
    ex(&t, KY, 30, 14);
    cprof_thread_flush(&t);

    FN(&t, KA, 1, 1, 3, 0, 3, 0);
    FN(&t, KN, 0, 0, 7, 3, 10, 3);
    FN(&t, KM, 0, 0, 6, 0, 16, 3);
    FN(&t, KY, 0, 0, 4, 1, 20, 4);
    FN(&t, 0, 0, 0, 0, 0, 0, 0);
    CONSERVED(&t);
    cprof_thread_free(&t);
}

/* The profiler's own frames left out at the start (Profile.__enter__ calling
 * _start calling enable): their returns, innermost first, are expected: no
 * function, no unmatched exit, and a second return of the same key is unmatched
 * again; the same returns at an empty stack are not taken for pre-existing frames. */
Test(engine, expected_exits_of_frames_left_out)
{
    struct cprof_thread t;
    const cprof_key left_out[] = {KX, KY};

    init2(&t);
    pex(&t, KM, 10, 10);
    cprof_thread_expect_exits(&t, left_out, 2);
    ex(&t, KX, 11, 10);
    ex(&t, KY, 12, 10);
    ent(&t, KA, 13, 11);
    ex(&t, KA, 15, 11);
    ex(&t, KY, 16, 11);         /* not expected any more: unmatched */
    ex(&t, KM, 20, 13);
    cprof_thread_flush(&t);

    cr_assert_eq(t.health.unmatched_exits, 1);
    cr_assert_eq(tfind(&t.tab.fns, KX), NONE);
    FN(&t, KA, 1, 1, 2, 0, 2, 0);
    FN(&t, KM, 0, 0, 8, 3, 10, 3);
    CONSERVED(&t);
    cprof_thread_free(&t);

    /* at an empty stack (nothing pushed below them) */
    init2(&t);
    cprof_thread_expect_exits(&t, left_out, 2);
    ent(&t, KA, 0, 0);
    ex(&t, KA, 5, 1);
    ex(&t, KX, 6, 1);
    ex(&t, KY, 7, 1);
    cprof_thread_flush(&t);
    cr_assert_eq(tfind(&t.tab.fns, KX), NONE);
    cr_assert_eq(tfind(&t.tab.fns, KY), NONE);
    cr_assert_eq(t.health.unmatched_exits, 0);
    CONSERVED(&t);
    cprof_thread_free(&t);
}

Test(engine, flush_twice_and_flush_of_unstarted_thread)
{
    struct cprof_thread t, u;

    init2(&t);
    ent(&t, KA, 3, 4);
    ex(&t, KA, 8, 6);
    cprof_thread_flush(&t);
    cprof_thread_flush(&t);
    FN(&t, KA, 1, 1, 5, 2, 5, 2);
    FN(&t, 0, 0, 0, 0, 0, 0, 0);
    CONSERVED(&t);

    init2(&u);
    cprof_thread_flush(&u);
    cr_assert_eq(u.rd.started, 0);
    cr_assert_eq(u.rd.events, 0);
    check_region(&u, 0, 0);
    FN(&u, 0, 0, 0, 0, 0, 0, 0);
    CONSERVED(&u);
    cprof_thread_free(&t);
    cprof_thread_free(&u);
}

Test(engine, generators)
{
    /* main resumes generator g three times; g yields twice and returns. Each resume
     * is an entry (a call, like cProfile); time while g is suspended goes to
     * whoever runs (main, h). */
    struct cprof_thread t;

    init2(&t);
    ent(&t, KM, 0, 0);
    ent(&t, KG, 10, 1); /* next(g) */
    ex(&t, KG, 15, 2);  /* yield */
    ent(&t, KH, 20, 2);
    ex(&t, KH, 30, 5);
    ent(&t, KG, 32, 5); /* next(g) */
    ex(&t, KG, 40, 5);  /* yield */
    ent(&t, KA, 41, 5);
    ent(&t, KG, 45, 6); /* a resumes g */
    ent(&t, KB, 46, 6); /* g yields from b: b runs ... */
    ex(&t, KB, 46, 8);  /* ... and yields */
    ex(&t, KG, 47, 9);  /* g yields */
    ex(&t, KA, 48, 9);
    ent(&t, KG, 49, 9); /* last resume: StopIteration */
    ex(&t, KG, 50, 10);
    ex(&t, KM, 52, 10);
    cprof_thread_flush(&t);

    FN(&t, KG, 4, 4, 5 + 8 + 1 + 1 + 1, 1 + 0 + 0 + 1 + 1, 5 + 8 + 2 + 1, 1 + 0 + 3 + 1);
    FN(&t, KB, 1, 1, 0, 2, 0, 2);
    FN(&t, KH, 1, 1, 10, 3, 10, 3);
    FN(&t, KA, 1, 1, 4 + 1, 1, 7, 4);
    /* main's children: g (5 + 8 + 1), h 10, a 7 */
    FN(&t, KM, 1, 1, 52 - 14 - 10 - 7, 10 - 2 - 3 - 4, 52, 10);
    EDGE(&t, KM, KG, 3, 3, 5 + 8 + 1, 1 + 0 + 1);
    EDGE(&t, KA, KG, 1, 1, 2, 3);
    EDGE(&t, KG, KB, 1, 1, 0, 2);
    EDGE(&t, KM, KA, 1, 1, 7, 4);
    CONSERVED(&t);
    cprof_thread_free(&t);
}

Test(engine, generator_suspended_across_other_calls_nested)
{
    /* f resumes generator g; g calls f, which resumes another generator object
     * of the same code (same key): f -> g -> f -> g is recursion of both keys.
     * The outer g is then resumed once more. */
    struct cprof_thread t;

    init2(&t);
    ent(&t, KF, 0, 0);
    ent(&t, KG, 1, 0);
    ent(&t, KF, 2, 1);
    ent(&t, KG, 4, 1);
    ex(&t, KG, 8, 2);  /* inner g yields */
    ex(&t, KF, 9, 2);
    ex(&t, KG, 11, 4); /* outer g yields */
    ent(&t, KG, 20, 4); /* outer g resumed again */
    ex(&t, KG, 21, 4);
    ex(&t, KF, 25, 5);
    cprof_thread_flush(&t);

    FN(&t, KG, 3, 2, 1 + 2 + 4 + 1, 1 + 0 + 1 + 2, 10 + 1, 4 + 0);
    FN(&t, KF, 2, 1, 1 + 9 + 4 + 2 + 1, 0 + 0 + 0 + 0 + 1, 25, 5);
    EDGE(&t, KF, KG, 3, 2, 10 + 1, 4);
    EDGE(&t, KG, KF, 1, 1, 7, 1);
    CONSERVED(&t);
    cprof_thread_free(&t);
}

/* ---- backwards readings ---------------------------------------------------------- */

Test(engine, backwards_reading_is_clamped)
{
    struct cprof_thread t;

    init2(&t);
    ent(&t, KA, 100, 10);
    ent(&t, KB, 110, 12);
    ex(&t, KB, 105, 15); /* time went back 5: clamped to 110 */
    cr_assert_eq(t.health.backwards_readings, 1);
    cr_assert_eq(t.health.backwards_counter, 0);
    cr_assert_eq(t.health.backwards_key, KB);
    ex(&t, KA, 120, 11); /* other went back 4: clamped to 15 */
    cr_assert_eq(t.health.backwards_readings, 2);
    cr_assert_eq(t.health.backwards_counter, 0); /* the first one is kept */
    cr_assert_eq(t.health.backwards_key, KB);
    cprof_thread_flush(&t);

    FN(&t, KB, 1, 1, 0, 3, 0, 3);
    FN(&t, KA, 1, 1, 20, 2, 20, 5);
    check_region(&t, 20, 5);
    CONSERVED(&t);
    cprof_thread_free(&t);
}

Test(engine, backwards_reading_second_counter_names_counter_and_function)
{
    struct cprof_thread t;

    init2(&t);
    ent(&t, KA, 100, 10);
    ent(&t, KB, 110, 12);
    ex(&t, KB, 112, 13);
    ent(&t, KC, 115, 3); /* other jumps back by 10 while a is on top */
    cr_assert_eq(t.health.backwards_readings, 1);
    cr_assert_eq(t.health.backwards_counter, 1);
    cr_assert_eq(t.health.backwards_key, KA);
    ex(&t, KC, 118, 12); /* still below 13: clamped again, counted again */
    cr_assert_eq(t.health.backwards_readings, 2);
    cr_assert_eq(t.health.backwards_counter, 1);
    cr_assert_eq(t.health.backwards_key, KA);
    ex(&t, KA, 120, 14);
    cprof_thread_flush(&t);

    FN(&t, KB, 1, 1, 2, 1, 2, 1);
    FN(&t, KC, 1, 1, 3, 0, 3, 0);
    FN(&t, KA, 1, 1, 15, 3, 20, 4);
    for (size_t i = 0; i < t.tab.fns.len; i++)
        for (unsigned c = 0; c < NC; c++) {
            cr_assert_leq(cprof_self(&settled(&t)->fns, i)[c], 20);
            cr_assert_leq(cprof_total(&settled(&t)->fns, i)[c], 20);
        }
    check_region(&t, 20, 4);
    CONSERVED(&t);
    cprof_thread_free(&t);
}

Test(engine, backwards_reading_at_root_level)
{
    struct cprof_thread t;

    init2(&t);
    ent(&t, KA, 100, 10);
    ex(&t, KA, 110, 12);
    ex(&t, KX, 90, 12); /* pre-existing exit, time went back: key 0 (root on top) */
    cr_assert_eq(t.health.backwards_readings, 1);
    cr_assert_eq(t.health.backwards_counter, 0);
    cr_assert_eq(t.health.backwards_key, 0);
    cprof_thread_flush(&t);

    FN(&t, KX, 0, 0, 0, 0, 10, 2);
    FN(&t, KA, 1, 1, 10, 2, 10, 2);
    CONSERVED(&t);
    cprof_thread_free(&t);
}

/* ---- new-key callback --------------------------------------------------------------- */

#define MAXSEEN 64
struct seen {
    cprof_key keys[MAXSEEN];
    int n;
};

static void on_new_key(void *arg, cprof_key key)
{
    struct seen *s = arg;

    if (s->n < MAXSEEN)
        s->keys[s->n] = key;
    s->n++;
}

static int seen_count(const struct seen *s, cprof_key key)
{
    int c = 0;

    for (int i = 0; i < s->n && i < MAXSEEN; i++)
        c += s->keys[i] == key;
    return c;
}

Test(engine, new_key_callback_once_per_key)
{
    struct cprof_thread t;
    struct seen s;

    memset(&s, 0, sizeof(s));
    cr_assert_eq(cprof_thread_init(&t, NC, on_new_key, &s), 0);
    cr_assert_eq(s.n, 0); /* the root is not reported */
    ex(&t, KX, 0, 0);    /* pre-existing: a new key */
    cr_assert_eq(s.n, 1);
    ent(&t, KA, 1, 0);
    ent(&t, KB, 2, 0);
    ent(&t, KA, 3, 0);
    ex(&t, KZ, 4, 0); /* unmatched: not added, not reported */
    ex(&t, KA, 5, 0);
    ex(&t, KB, 6, 0);
    ent(&t, KB, 7, 0);
    ent(&t, KC, 8, 0);
    pex(&t, KD, 9, 0); /* push_existing of a new key: reported */
    pex(&t, KA, 9, 0);
    ex(&t, KA, 10, 0);
    ex(&t, KX, 11, 0); /* not on the stack: unmatched, already known */
    cprof_thread_flush(&t);
    ex(&t, KX, 12, 0); /* pre-existing exit of a known key */
    ex(&t, KY, 13, 0); /* pre-existing exit of a new key */
    cprof_thread_flush(&t);

    cr_assert_eq(s.n, 6, "callback fired %d times", s.n);
    cr_assert_eq(seen_count(&s, KX), 1);
    cr_assert_eq(seen_count(&s, KA), 1);
    cr_assert_eq(seen_count(&s, KB), 1);
    cr_assert_eq(seen_count(&s, KC), 1);
    cr_assert_eq(seen_count(&s, KD), 1);
    cr_assert_eq(seen_count(&s, KY), 1);
    cr_assert_eq(seen_count(&s, KZ), 0);
    cr_assert_eq(seen_count(&s, 0), 0);
    cr_assert_eq(s.keys[0], KX);
    cr_assert_eq(s.keys[1], KA);
    cr_assert_eq(s.keys[2], KB);
    cr_assert_eq(t.tab.fns.len, 7); /* root + 6 */
    cr_assert_eq(t.health.unmatched_exits, 2);
    CONSERVED(&t);
    cprof_thread_free(&t);
}

/* ---- growth: many keys, deep stacks ---------------------------------------------------- */

#define BIG 12000

static cprof_key big_key(size_t i)
{
    return 0x7f1000000000ull + (uint64_t)i * 0x40;
}

Test(engine, many_distinct_keys)
{
    /* root -> k_i -> h for BIG distinct k_i. */
    struct cprof_thread t;
    struct seen s;

    memset(&s, 0, sizeof(s));
    cr_assert_eq(cprof_thread_init(&t, NC, on_new_key, &s), 0);
    for (uint64_t i = 1; i <= BIG; i++) {
        ent(&t, big_key(i), 10 * i, 2 * i);
        ent(&t, KH, 10 * i + 3, 2 * i);
        ex(&t, KH, 10 * i + 5, 2 * i + 1);
        ex(&t, big_key(i), 10 * i + 6, 2 * i + 1);
    }
    cprof_thread_flush(&t);

    cr_assert_eq(s.n, BIG + 1);
    cr_assert_eq(t.tab.fns.len, BIG + 2);
    cr_assert_eq(t.tab.edges.len, 2 * BIG);
    cr_assert_eq(t.health.out_of_memory, 0);
    for (uint64_t i = 1; i <= BIG; i++) {
        FN(&t, big_key(i), 1, 1, 4, 0, 6, 1);
        EDGE(&t, 0, big_key(i), 1, 1, 6, 1);
        EDGE(&t, big_key(i), KH, 1, 1, 2, 1);
    }
    FN(&t, KH, BIG, BIG, 2 * BIG, BIG, 2 * BIG, BIG);
    FN(&t, 0, 0, 0, 4 * (BIG - 1), BIG - 1, 0, 0);
    cr_assert_eq(tfind(&t.tab.fns, big_key(BIG + 1)), NONE);
    CONSERVED(&t);
    cprof_thread_free(&t);
}

static uint64_t chain_in(uint64_t i, unsigned c)
{
    return c == 0 ? i : 2 * i;
}

static uint64_t chain_out(uint64_t i, unsigned c)
{
    return c == 0 ? 2 * BIG + 1 - i : 2 * (2 * BIG + 1 - i) + (i % 2);
}

Test(engine, deep_stack_of_distinct_keys)
{
    struct cprof_thread t;

    init2(&t);
    for (uint64_t i = 1; i <= BIG; i++)
        ent(&t, big_key(i), chain_in(i, 0), chain_in(i, 1));
    cr_assert_eq(t.stack.depth, BIG);
    for (uint64_t i = BIG; i >= 1; i--)
        ex(&t, big_key(i), chain_out(i, 0), chain_out(i, 1));
    cprof_thread_flush(&t);

    cr_assert_eq(t.health.out_of_memory, 0);
    cr_assert_eq(t.tab.fns.len, BIG + 1);
    cr_assert_eq(t.tab.edges.len, BIG);
    for (uint64_t i = 1; i <= BIG; i++) {
        uint64_t self[NC], tot[NC];
        for (unsigned c = 0; c < NC; c++) {
            tot[c] = chain_out(i, c) - chain_in(i, c);
            self[c] = i < BIG ? tot[c] - (chain_out(i + 1, c) - chain_in(i + 1, c)) : tot[c];
        }
        FN(&t, big_key(i), 1, 1, self[0], self[1], tot[0], tot[1]);
        EDGE(&t, i == 1 ? 0 : big_key(i - 1), big_key(i), 1, 1, tot[0], tot[1]);
    }
    CONSERVED(&t);
    cprof_thread_free(&t);
}

Test(engine, deep_direct_recursion)
{
    struct cprof_thread t;

    init2(&t);
    for (uint64_t i = 1; i <= BIG; i++)
        ent(&t, KF, i, i);
    cr_assert_eq(t.stack.depth, BIG);
    for (uint64_t i = 0; i < BIG; i++)
        cr_assert_eq(t.stack.frames[i].fn, fn_at(&t, KF, __LINE__));
    /* the k-th exit closes frame BIG+1-k */
    for (uint64_t k = 1; k <= BIG; k++)
        ex(&t, KF, BIG + k, BIG + 2 * k);
    cprof_thread_flush(&t);

    FN(&t, KF, BIG, 1, 2 * BIG - 1, 3 * BIG - 1, 2 * BIG - 1, 3 * BIG - 1);
    EDGE(&t, 0, KF, 1, 1, 2 * BIG - 1, 3 * BIG - 1);
    /* outermost f->f frame: depth 2, entered at (2, 2), closed by exit k = BIG-1 */
    EDGE(&t, KF, KF, BIG - 1, 1, (2 * BIG - 1) - 2, (BIG + 2 * (BIG - 1)) - 2);
    cr_assert_eq(t.tab.edges.len, 2);
    CONSERVED(&t);
    cprof_thread_free(&t);
}

Test(engine, deep_stack_unwound_by_one_exit)
{
    struct cprof_thread t;

    init2(&t);
    ent(&t, KA, 0, 0);
    for (uint64_t i = 1; i <= BIG; i++)
        ent(&t, big_key(i % 97), i, i / 3);
    ex(&t, KA, 2 * BIG, BIG);
    cr_assert_eq(t.stack.depth, 0);
    cprof_thread_flush(&t);
    FN(&t, KA, 1, 1, 1, 0, 2 * BIG, BIG);
    CONSERVED(&t);
    cprof_thread_free(&t);
}

/* ---- the table itself ---------------------------------------------------------------- */

Test(table, get_find_grow)
{
    struct cprof_table tb;
    const size_t nkeys = 100000;
    size_t ix;

    cr_assert_eq(cprof_table_init(&tb, 3, 4), 0);
    cr_assert_eq(tfind(&tb, 0), NONE);
    for (size_t i = 0; i < nkeys; i++) {
        /* keys differing in low bits, high bits, and index pairs */
        uint64_t k = i % 3 == 0 ? i : i % 3 == 1 ? (uint64_t)i << 32 : (uint64_t)i << 32 | 7;
        cr_assert_eq(cprof_table_get(&tb, k, &ix), 1);    /* inserted */
        cr_assert_eq(ix, i);
        for (unsigned c = 0; c < 6; c++)
            cr_assert_eq(tb.vals[ix * 6 + c], 0);
        cr_assert_eq(tb.recs[ix].calls, 0);
        cprof_self(&tb, ix)[2] = k + 1;
        cprof_total(&tb, ix)[0] = k + 2;
        tb.recs[ix].calls = i;
    }
    cr_assert_eq(tb.len, nkeys);
    for (size_t i = 0; i < nkeys; i++) {
        uint64_t k = i % 3 == 0 ? i : i % 3 == 1 ? (uint64_t)i << 32 : (uint64_t)i << 32 | 7;
        cr_assert_eq(tfind(&tb, k), i);
        cr_assert_eq(cprof_table_get(&tb, k, &ix), 0);    /* found */
        cr_assert_eq(ix, i);
        cr_assert_eq(tb.recs[i].key, k);
        cr_assert_eq(tb.recs[i].calls, i);
        cr_assert_eq(cprof_self(&tb, i)[2], k + 1);
        cr_assert_eq(cprof_total(&tb, i)[0], k + 2);
        cr_assert_eq(cprof_self(&tb, i)[0], 0);
    }
    cr_assert_eq(tfind(&tb, 0xdeadbeefull << 20), NONE);
    cr_assert_eq(tb.len, nkeys);
    cprof_table_free(&tb);
}

/* ---- reference model and randomized streams ------------------------------------------ */

#define POOL 48
#define MAXDEPTH 400

struct model {
    int started;
    uint64_t first[NC], last[NC], pending[NC];
    int stack[MAXDEPTH + 8];
    size_t depth;
    int seen[POOL + 1]; /* 0 is the root */
    uint64_t calls[POOL + 1], prim[POOL + 1], self[POOL + 1][NC], total[POOL + 1][NC];
    int eseen[POOL + 1][POOL + 1];
    uint64_t ecalls[POOL + 1][POOL + 1], eprim[POOL + 1][POOL + 1];
    uint64_t etotal[POOL + 1][POOL + 1][NC];
    uint64_t stamp, kstamp[POOL + 1], estamp[POOL + 1][POOL + 1];
    uint64_t events, unmatched, backwards;
};

static cprof_key pool_key(int i)
{
    return i == 0 ? 0 : 0x7f2000000000ull + (uint64_t)i * 0x1000;
}

/* Clamp, and attribute the interval since the last reading to the stack as it is. */
static void model_observe(struct model *m, const uint64_t *now, uint64_t *v)
{
    m->events++;
    if (!m->started) {
        memcpy(m->first, now, sizeof(m->first));
        memcpy(m->last, now, sizeof(m->last));
        m->started = 1;
    }
    m->stamp++;
    for (unsigned c = 0; c < NC; c++) {
        uint64_t d;
        v[c] = now[c];
        if (v[c] < m->last[c]) {
            m->backwards++;
            v[c] = m->last[c];
        }
        d = v[c] - m->last[c];
        m->last[c] = v[c];
        if (m->depth == 0) {
            m->pending[c] += d;
            continue;
        }
        m->self[m->stack[m->depth - 1]][c] += d;
        for (size_t j = 0; j < m->depth; j++) {
            int k = m->stack[j], caller = j ? m->stack[j - 1] : 0;
            if (m->kstamp[k] != m->stamp * NC + c) {
                m->kstamp[k] = m->stamp * NC + c;
                m->total[k][c] += d;
            }
            if (m->estamp[caller][k] != m->stamp * NC + c) {
                m->estamp[caller][k] = m->stamp * NC + c;
                m->etotal[caller][k][c] += d;
            }
        }
    }
}

static int model_on_stack(const struct model *m, int k)
{
    for (size_t j = 0; j < m->depth; j++)
        if (m->stack[j] == k)
            return 1;
    return 0;
}

static int model_edge_on_stack(const struct model *m, int caller, int k)
{
    for (size_t j = 0; j < m->depth; j++)
        if (m->stack[j] == k && (j ? m->stack[j - 1] : 0) == caller)
            return 1;
    return 0;
}

static void model_push(struct model *m, int k, const uint64_t *now, int counted)
{
    uint64_t v[NC];
    int caller = m->depth ? m->stack[m->depth - 1] : 0;

    model_observe(m, now, v);
    if (counted) {
        m->calls[k]++;
        m->prim[k] += !model_on_stack(m, k);
        m->ecalls[caller][k]++;
        m->eprim[caller][k] += !model_edge_on_stack(m, caller, k);
    }
    m->seen[k] = 1;
    m->eseen[caller][k] = 1;
    m->stack[m->depth++] = k;
}

static void model_exit(struct model *m, int k, const uint64_t *now)
{
    uint64_t v[NC];
    size_t j;

    model_observe(m, now, v);
    if (m->depth == 0) {
        m->seen[k] = 1;
        for (unsigned c = 0; c < NC; c++) {
            m->self[k][c] += m->pending[c];
            m->pending[c] = 0;
            /* it spanned everything since the first reading: earlier frames of k
             * were inside it, so its total is that span, counted once */
            m->total[k][c] = v[c] - m->first[c];
        }
        return;
    }
    for (j = m->depth; j > 0 && m->stack[j - 1] != k; j--)
        ;
    if (j == 0) {
        m->unmatched++;
        return;
    }
    m->depth = j - 1;
}

static void model_flush(struct model *m)
{
    m->depth = 0;
    for (unsigned c = 0; c < NC; c++) {
        m->self[0][c] += m->pending[c];
        m->pending[c] = 0;
    }
}

static uint64_t rng(uint64_t *s)
{
    uint64_t x = *s;

    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *s = x;
    return x * 0x2545F4914F6CDD1Dull;
}

struct stream {
    uint64_t seed;
    uint64_t reading[NC]; /* the true, monotonic readings */
    int pool;             /* keys 1..pool */
    int backwards_per_mille;
};

static int pick_key(struct stream *s)
{
    uint64_t r = rng(&s->seed);
    /* half of the time one of a few hot keys, so recursion is frequent */
    uint64_t hot = s->pool < 6 ? (uint64_t)s->pool : 6;

    return (int)(r % 2 ? 1 + (r >> 8) % hot : 1 + (r >> 8) % (uint64_t)s->pool);
}

/* One random event, applied to the engine and (if given) to the model. */
static void random_event(struct stream *s, struct cprof_thread *t, struct model *m)
{
    uint64_t r = rng(&s->seed) % 1000, now[NC];
    int k, kind; /* 0 enter, 1 exit, 2 push_existing */
    size_t depth = t->stack.depth;

    s->reading[0] += rng(&s->seed) % 4 ? rng(&s->seed) % 1000 : 0;
    s->reading[1] += rng(&s->seed) % 3 == 0 ? rng(&s->seed) % 20 : 0;
    memcpy(now, s->reading, sizeof(now));
    if ((int)(rng(&s->seed) % 1000) < s->backwards_per_mille) {
        unsigned c = (unsigned)(rng(&s->seed) % NC);
        now[c] -= rng(&s->seed) % (now[c] < 3000 ? now[c] + 1 : 3000);
    }

    if (depth == 0) {
        kind = r < 250 ? 1 : r < 300 ? 2 : 0; /* 1: a pre-existing function exits */
        k = pick_key(s);
    } else if (depth >= MAXDEPTH || r < 350) {
        kind = 1; /* return */
        k = (int)((t->tab.fns.recs[t->stack.frames[depth - 1].fn].key - 0x7f2000000000ull) / 0x1000);
    } else if (r < 420) {
        kind = 1; /* exception: exit of a frame lower down */
        k = (int)((t->tab.fns.recs[t->stack.frames[rng(&s->seed) % depth].fn].key - 0x7f2000000000ull) /
                  0x1000);
    } else if (r < 480) {
        kind = 1; /* random exit: unmatched, or matching some frame */
        k = pick_key(s);
    } else if (r < 510) {
        kind = 2;
        k = pick_key(s);
    } else {
        kind = 0;
        k = pick_key(s);
    }
    cr_assert(k >= 1 && k <= s->pool);
    switch (kind) {
    case 0:
        cprof_thread_enter(t, pool_key(k), now);
        if (m)
            model_push(m, k, now, 1);
        break;
    case 1:
        cprof_thread_exit(t, pool_key(k), now);
        if (m)
            model_exit(m, k, now);
        break;
    default:
        cprof_thread_push_existing(t, pool_key(k), now);
        if (m)
            model_push(m, k, now, 0);
        break;
    }
    if (m)
        cr_assert_eq(t->stack.depth, m->depth, "depth %zu, model %zu", t->stack.depth, m->depth);
}

/* On a mismatch, "line 100kk" names pool key kk, "line 2aabb" the edge aa->bb. */
static void compare_with_model(const struct cprof_thread *t, const struct model *m)
{
    size_t nfns = 0, nedges = 0;

    cr_assert_eq(t->rd.events, m->events);
    cr_assert_eq(t->health.unmatched_exits, m->unmatched);
    cr_assert_eq(t->health.backwards_readings, m->backwards);
    cr_assert_eq(t->health.out_of_memory, 0);
    for (unsigned c = 0; c < NC; c++)
        cr_assert_eq(cprof_thread_region(t, c), m->last[c] - m->first[c]);
    for (int k = 0; k <= POOL; k++) {
        if (!m->seen[k] && k != 0) {
            cr_assert_eq(tfind(&t->tab.fns, pool_key(k)), NONE, "key %d", k);
            continue;
        }
        nfns++;
        check_fn(t, pool_key(k), m->calls[k], m->prim[k], m->self[k][0], m->self[k][1],
                 m->total[k][0], m->total[k][1], 10000 + k);
        for (int j = 0; j <= POOL; j++) {
            if (!m->eseen[k][j])
                continue;
            nedges++;
            check_edge(t, pool_key(k), pool_key(j), m->ecalls[k][j], m->eprim[k][j],
                       m->etotal[k][j][0], m->etotal[k][j][1], 20000 + k * 100 + j);
        }
    }
    cr_assert_eq(t->tab.fns.len, nfns);
    cr_assert_eq(t->tab.edges.len, nedges);
}

static void run_random_bounded(uint64_t seed, int nevents, int pool, int backwards_per_mille,
                               size_t max_nodes)
{
    struct cprof_thread t;
    struct model *m = calloc(1, sizeof(*m));
    struct stream s = {seed, {1000000, 5}, pool, backwards_per_mille};
    struct seen cb;
    int nseen = 0;

    cr_assert_not_null(m);
    memset(&cb, 0, sizeof(cb));
    cr_assert(pool <= POOL && pool < MAXSEEN);
    cr_assert_eq(cprof_thread_init(&t, NC, on_new_key, &cb), 0);
    if (max_nodes)
        t.stack.max_nodes = max_nodes;
    for (int i = 0; i < nevents; i++) {
        random_event(&s, &t, m);
        /* flush now and then (profiling stopped and restarted on this thread) */
        if (i % 5000 == 4999) {
            cprof_thread_flush(&t);
            model_flush(m);
            CONSERVED(&t);
        }
    }
    cprof_thread_flush(&t);
    model_flush(m);
    compare_with_model(&t, m);
    CONSERVED(&t);
    for (int k = 1; k <= POOL; k++) {
        nseen += m->seen[k];
        cr_assert_eq(seen_count(&cb, pool_key(k)), m->seen[k], "key %d reported %d times", k,
                     seen_count(&cb, pool_key(k)));
    }
    cr_assert_eq(cb.n, nseen);
    free(m);
    cprof_thread_free(&t);
}

static void run_random(uint64_t seed, int nevents, int pool, int backwards_per_mille)
{
    run_random_bounded(seed, nevents, pool, backwards_per_mille, 0);
}

Test(random, long_stream_matches_model)
{
    run_random(0x9e3779b97f4a7c15ull, 20000, 40, 0);
}

/* A tiny call tree: most paths fold into ancestors; functions and edges stay exact
 * (compare_with_model) and the tree stays conserved (CONSERVED). */
Test(random, bounded_tree)
{
    for (uint64_t seed = 1; seed <= 10; seed++)
        run_random_bounded(seed * 0x9E3779B97F4A7C15ull, 5000, 20, 0, 1 + (size_t)seed * 3);
}

Test(random, many_seeds)
{
    for (uint64_t seed = 1; seed <= 30; seed++)
        run_random(seed * 0x2545F4914F6CDD1Dull, 3000, 1 + (int)(seed % POOL), 0);
}

Test(random, with_backwards_readings)
{
    for (uint64_t seed = 100; seed < 110; seed++)
        run_random(seed * 0x9e3779b97f4a7c15ull, 5000, 20, 20);
}

/* ---- merge ------------------------------------------------------------------------------ */

/* Merged numbers must be the sums over the started threads, key by key. */
static void check_merge_sums(struct cprof_thread *const *th, size_t nth, const struct cprof_merged *mg)
{
    uint64_t started = 0, events = 0, unmatched = 0, backwards = 0;
    struct cprof_merged *one = calloc(nth ? nth : 1, sizeof(*one)); /* each thread settled */

    cr_assert_not_null(one);
    for (size_t ti = 0; ti < nth; ti++)
        cr_assert_eq(cprof_merge(&th[ti], 1, NC, NULL, NULL, &one[ti]), 0);

    for (size_t ti = 0; ti < nth; ti++) {
        const struct cprof_thread *t = th[ti];
        if (!t->rd.started)
            continue;
        started++;
        events += t->rd.events;
        unmatched += t->health.unmatched_exits;
        backwards += t->health.backwards_readings;
        /* every function and edge of every started thread is in the merge */
        for (size_t i = 0; i < t->tab.fns.len; i++)
            cr_assert_neq(tfind(&mg->tab.fns, t->tab.fns.recs[i].key), NONE);
        for (size_t i = 0; i < t->tab.edges.len; i++) {
            uint64_t k = t->tab.edges.recs[i].key;
            size_t a = tfind(&mg->tab.fns, t->tab.fns.recs[k >> 32].key);
            size_t b = tfind(&mg->tab.fns, t->tab.fns.recs[k & 0xffffffffu].key);
            cr_assert_neq(tfind(&mg->tab.edges, (uint64_t)a << 32 | b), NONE);
        }
    }
    cr_assert_eq(mg->threads, started);
    cr_assert_eq(mg->events, events);
    cr_assert_eq(mg->health.unmatched_exits, unmatched);
    cr_assert_eq(mg->health.backwards_readings, backwards);
    cr_assert_eq(mg->tab.fns.recs[CPROF_ROOT].key, 0);

    for (unsigned c = 0; c < NC; c++) {
        uint64_t region = 0, unattr = 0, sum = 0;
        for (size_t ti = 0; ti < nth; ti++)
            if (th[ti]->rd.started) {
                region += cprof_thread_region(th[ti], c);
                unattr += cprof_thread_unattributed(th[ti], c);
            }
        cr_assert_eq(mg->region[c], region);
        cr_assert_eq(mg->unattributed[c], unattr);
        cr_assert_eq(mg->unattributed[c], cprof_self(&mg->tab.fns, CPROF_ROOT)[c]);
        for (size_t i = 0; i < mg->tab.fns.len; i++)
            sum += cprof_self(&mg->tab.fns, i)[c];
        cr_assert_eq(sum, region, "merged conservation, counter %u", c);
    }

    for (size_t i = 0; i < mg->tab.fns.len; i++) {
        cprof_key key = mg->tab.fns.recs[i].key;
        uint64_t calls = 0, prim = 0, self[NC] = {0}, tot[NC] = {0};
        int found = 0;
        for (size_t ti = 0; ti < nth; ti++) {
            size_t j = tfind(&th[ti]->tab.fns, key);
            if (j == NONE || !th[ti]->rd.started)
                continue;
            found = 1;
            calls += one[ti].tab.fns.recs[j].calls;
            prim += one[ti].tab.fns.recs[j].primitive_calls;
            for (unsigned c = 0; c < NC; c++) {
                self[c] += cprof_self(&one[ti].tab.fns, j)[c];
                tot[c] += cprof_total(&one[ti].tab.fns, j)[c];
            }
        }
        cr_assert(found || key == 0, "merged key %#llx in no thread", (ull)key);
        cr_assert_eq(mg->tab.fns.recs[i].calls, calls);
        cr_assert_eq(mg->tab.fns.recs[i].primitive_calls, prim);
        for (unsigned c = 0; c < NC; c++) {
            cr_assert_eq(cprof_self(&mg->tab.fns, i)[c], self[c]);
            cr_assert_eq(cprof_total(&mg->tab.fns, i)[c], tot[c]);
        }
    }

    for (size_t i = 0; i < mg->tab.edges.len; i++) {
        uint64_t k = mg->tab.edges.recs[i].key;
        cprof_key a = mg->tab.fns.recs[k >> 32].key, b = mg->tab.fns.recs[k & 0xffffffffu].key;
        uint64_t calls = 0, prim = 0, tot[NC] = {0};
        int found = 0;
        cr_assert_lt(k >> 32, mg->tab.fns.len);
        cr_assert_lt(k & 0xffffffffu, mg->tab.fns.len);
        for (size_t ti = 0; ti < nth; ti++) {
            const struct cprof_thread *t = th[ti];
            size_t ia = tfind(&t->tab.fns, a), ib = tfind(&t->tab.fns, b), e;
            if (!t->rd.started || ia == NONE || ib == NONE)
                continue;
            e = tfind(&t->tab.edges, (uint64_t)ia << 32 | ib);
            if (e == NONE)
                continue;
            found = 1;
            calls += one[ti].tab.edges.recs[e].calls;
            prim += one[ti].tab.edges.recs[e].primitive_calls;
            for (unsigned c = 0; c < NC; c++)
                tot[c] += cprof_total(&one[ti].tab.edges, e)[c];
        }
        cr_assert(found, "merged edge %#llx->%#llx in no thread", (ull)a, (ull)b);
        cr_assert_eq(mg->tab.edges.recs[i].calls, calls);
        cr_assert_eq(mg->tab.edges.recs[i].primitive_calls, prim);
        for (unsigned c = 0; c < NC; c++)
            cr_assert_eq(cprof_total(&mg->tab.edges, i)[c], tot[c]);
    }
    for (size_t ti = 0; ti < nth; ti++)
        cprof_merged_free(&one[ti]);
    free(one);
}

static size_t mfn(const struct cprof_merged *mg, cprof_key k)
{
    size_t i = tfind(&mg->tab.fns, k);

    cr_assert_neq(i, NONE, "merged: no function %#llx", (ull)k);
    return i;
}

static const struct cprof_rec *medge(const struct cprof_merged *mg, cprof_key a, cprof_key b,
                                     size_t *ix)
{
    size_t e = tfind(&mg->tab.edges, (uint64_t)mfn(mg, a) << 32 | mfn(mg, b));

    cr_assert_neq(e, NONE, "merged: no edge %#llx->%#llx", (ull)a, (ull)b);
    *ix = e;
    return &mg->tab.edges.recs[e];
}

Test(merge, hand_made_threads)
{
    struct cprof_thread t1, t2, t3, t4;
    struct cprof_thread *th[4] = {&t1, &t2, &t3, &t4};
    struct cprof_merged mg;
    size_t i, e;

    init2(&t1);
    ent(&t1, KA, 0, 0);
    ent(&t1, KB, 10, 1);
    ex(&t1, KB, 30, 2);
    ex(&t1, KA, 40, 5);
    ent(&t1, KC, 50, 6);
    ex(&t1, KC, 52, 6);
    cprof_thread_flush(&t1);
    FN(&t1, 0, 0, 0, 10, 1, 0, 0);

    init2(&t2); /* different insertion order: indices differ from t1's */
    ent(&t2, KX, 100, 100);
    ex(&t2, KX, 101, 100);
    ent(&t2, KB, 105, 100);
    ent(&t2, KA, 110, 103);
    ex(&t2, KA, 115, 104);
    ex(&t2, KB, 120, 104);
    ex(&t2, KY, 130, 110); /* pre-existing */
    cprof_thread_flush(&t2);
    FN(&t2, KB, 1, 1, 10, 3, 15, 4);
    FN(&t2, KY, 0, 0, 14, 6, 30, 10);

    init2(&t3); /* never started */

    init2(&t4);
    ent(&t4, KA, 7, 7);
    ex(&t4, KA, 9, 8);
    ex(&t4, KA, 12, 9); /* pre-existing exit of a known key: the earlier frame was inside it */
    cprof_thread_flush(&t4);
    FN(&t4, KA, 1, 1, 5, 2, 5, 2);

    cr_assert_eq(cprof_merge(th, 4, NC, NULL, NULL, &mg), 0);
    cr_assert_eq(mg.threads, 3);
    cr_assert_eq(mg.tab.fns.len, 6); /* root, a, b, c, x, y */
    i = mfn(&mg, KA);
    cr_assert_eq(mg.tab.fns.recs[i].calls, 3);
    cr_assert_eq(mg.tab.fns.recs[i].primitive_calls, 3);
    cr_assert_eq(cprof_self(&mg.tab.fns, i)[0], 20 + 5 + 5);
    cr_assert_eq(cprof_self(&mg.tab.fns, i)[1], 4 + 1 + 2);
    cr_assert_eq(cprof_total(&mg.tab.fns, i)[0], 40 + 5 + 5);
    cr_assert_eq(cprof_total(&mg.tab.fns, i)[1], 5 + 1 + 2);
    i = mfn(&mg, KB);
    cr_assert_eq(mg.tab.fns.recs[i].calls, 2);
    cr_assert_eq(cprof_self(&mg.tab.fns, i)[0], 30);
    cr_assert_eq(cprof_total(&mg.tab.fns, i)[1], 1 + 4);
    i = mfn(&mg, KY);
    cr_assert_eq(mg.tab.fns.recs[i].calls, 0);
    cr_assert_eq(cprof_total(&mg.tab.fns, i)[0], 30);
    cr_assert_eq(mg.tab.edges.len, 6); /* root->a, a->b, root->c, root->x, root->b, b->a */
    medge(&mg, 0, KA, &e);
    cr_assert_eq(mg.tab.edges.recs[e].calls, 2);
    cr_assert_eq(cprof_total(&mg.tab.edges, e)[0], 40 + 2);
    cr_assert_eq(cprof_total(&mg.tab.edges, e)[1], 5 + 1);
    medge(&mg, KA, KB, &e);
    cr_assert_eq(mg.tab.edges.recs[e].calls, 1);
    cr_assert_eq(cprof_total(&mg.tab.edges, e)[0], 20);
    medge(&mg, KB, KA, &e);
    cr_assert_eq(mg.tab.edges.recs[e].calls, 1);
    cr_assert_eq(cprof_total(&mg.tab.edges, e)[0], 5);
    cr_assert_eq(cprof_total(&mg.tab.edges, e)[1], 1);
    medge(&mg, 0, KB, &e);
    cr_assert_eq(cprof_total(&mg.tab.edges, e)[0], 15);
    cr_assert_eq(mg.region[0], 52 + 30 + 5);
    cr_assert_eq(mg.region[1], 6 + 10 + 2);
    cr_assert_eq(mg.unattributed[0], 10);
    cr_assert_eq(mg.unattributed[1], 1);
    cr_assert_eq(mg.events, t1.rd.events + t2.rd.events + t4.rd.events);
    check_merge_sums(th, 4, &mg);

    cprof_merged_free(&mg);
    for (int k = 0; k < 4; k++)
        cprof_thread_free(th[k]);
}

Test(merge, nothing_to_merge)
{
    struct cprof_thread t;
    struct cprof_thread *th[1] = {&t};
    struct cprof_merged mg;

    cr_assert_eq(cprof_merge(th, 0, NC, NULL, NULL, &mg), 0);
    cr_assert_eq(mg.threads, 0);
    cr_assert_eq(mg.tab.fns.len, 1);
    cr_assert_eq(mg.tab.edges.len, 0);
    cprof_merged_free(&mg);

    init2(&t);
    cr_assert_eq(cprof_merge(th, 1, NC, NULL, NULL, &mg), 0);
    cr_assert_eq(mg.threads, 0);
    cr_assert_eq(mg.tab.fns.len, 1);
    cr_assert_eq(mg.region[0], 0);
    cr_assert_eq(mg.region[1], 0);
    cprof_merged_free(&mg);
    cprof_thread_free(&t);
}

Test(merge, many_random_threads)
{
    enum { NTH = 8 };
    struct cprof_thread ts[NTH];
    struct cprof_thread *th[NTH];
    struct cprof_merged mg;

    for (int i = 0; i < NTH; i++) {
        struct stream s = {0x1234567ull * (uint64_t)(i + 1) + 99, {(uint64_t)i * 1000000, 0},
                           10 + 4 * i, i == 3 ? 10 : 0};
        th[i] = &ts[i];
        init2(&ts[i]);
        if (i == 5)
            continue; /* a thread that never started */
        for (int k = 0; k < 4000; k++)
            random_event(&s, &ts[i], NULL);
        cprof_thread_flush(&ts[i]);
        CONSERVED(&ts[i]);
    }
    cr_assert_eq(cprof_merge(th, NTH, NC, NULL, NULL, &mg), 0);
    cr_assert_eq(mg.threads, NTH - 1);
    check_merge_sums(th, NTH, &mg);
    cprof_merged_free(&mg);

    /* merging the same thread twice doubles everything */
    {
        struct cprof_thread *twice[2] = {&ts[0], &ts[0]};
        cr_assert_eq(cprof_merge(twice, 2, NC, NULL, NULL, &mg), 0);
        cr_assert_eq(mg.threads, 2);
        check_merge_sums(twice, 2, &mg);
        cr_assert_eq(mg.tab.fns.len, ts[0].tab.fns.len);
        cr_assert_eq(mg.tab.edges.len, ts[0].tab.edges.len);
        cprof_merged_free(&mg);
    }
    for (int i = 0; i < NTH; i++)
        cprof_thread_free(&ts[i]);
}

/* ---- pre-existing recursion ------------------------------------------------------------ */

/* Two pre-existing frames of the same function (f was recursing when profiling
 * started) both exit with an empty stack.  The second is the outer frame of the
 * first, so f's total is the region's growth, counted once (was 30/6 before the
 * fix: each exit added its whole span). */
Test(engine, preexisting_recursion_total_counted_once)
{
    struct cprof_thread t;

    init2(&t);
    ent(&t, KA, 0, 0);
    ex(&t, KA, 5, 1);
    ex(&t, KF, 10, 2); /* inner pre-existing frame of f */
    ex(&t, KF, 20, 4); /* outer pre-existing frame of f */
    cprof_thread_flush(&t);

    FN(&t, KF, 0, 0, 15, 3, 20, 4);
    CONSERVED(&t);
    cprof_thread_free(&t);
}

/* f was running before the start and called f after it: the inner frame looked
 * outermost when it returned, but the pre-existing exit shows it was nested. */
Test(engine, preexisting_frame_contains_later_frames_of_itself)
{
    struct cprof_thread t;

    init2(&t);
    ent(&t, KF, 0, 0);
    ex(&t, KF, 10, 2);
    ex(&t, KF, 20, 4);
    cprof_thread_flush(&t);

    FN(&t, KF, 1, 1, 20, 4, 20, 4);
    CONSERVED(&t);
    cprof_thread_free(&t);
}

/* One reading where both counters go back counts once. */
Test(engine, backwards_reading_of_two_counters_counts_once)
{
    struct cprof_thread t;

    init2(&t);
    ent(&t, KA, 10, 10);
    ex(&t, KA, 5, 5);
    cr_assert_eq(t.health.backwards_readings, 1);
    cr_assert_eq(t.health.backwards_counter, 0);
    cr_assert_eq(t.health.backwards_key, KA);
    cprof_thread_free(&t);
}

/* ---- call tree ------------------------------------------------------------------------------ */

static size_t node_at(const struct cprof_thread *t, size_t parent, cprof_key k)
{
    size_t fn = tfind(&t->tab.fns, k);
    cr_assert_neq(fn, NONE);
    return tfind(&t->tab.nodes, (uint64_t)parent << 32 | fn);
}

/* a -> b -> c and a -> c: c has two nodes, one per path, with their own numbers. */
Test(tree, paths_are_separate_nodes)
{
    struct cprof_thread t;
    size_t a, ab, abc, ac;

    init2(&t);
    ent(&t, KA, 0, 0);
    ent(&t, KB, 10, 1);
    ent(&t, KC, 20, 2);
    ex(&t, KC, 25, 3);
    ex(&t, KB, 30, 3);
    ent(&t, KC, 40, 4);
    ex(&t, KC, 47, 6);
    ex(&t, KA, 50, 6);
    cprof_thread_flush(&t);
    a = node_at(&t, CPROF_ROOT, KA);
    ab = node_at(&t, a, KB);
    abc = node_at(&t, ab, KC);
    ac = node_at(&t, a, KC);
    cr_assert(a != NONE && ab != NONE && abc != NONE && ac != NONE);
    cr_assert_eq(t.tab.nodes.len, 5); /* root, a, ab, abc, ac */
    cr_assert_eq(t.tab.nodes.recs[abc].calls, 1);
    cr_assert_eq(cprof_self(&t.tab.nodes, abc)[0], 5);
    cr_assert_eq(cprof_self(&t.tab.nodes, ac)[0], 7);
    cr_assert_eq(cprof_total(&t.tab.nodes, ab)[0], 20);
    cr_assert_eq(cprof_self(&t.tab.nodes, ab)[0], 15);
    cr_assert_eq(cprof_total(&t.tab.nodes, a)[0], 50);
    cr_assert_eq(cprof_self(&t.tab.nodes, a)[0], 50 - 20 - 7);
    cr_assert_eq(cprof_total(&t.tab.nodes, a)[1], 6);
    FN(&t, KC, 2, 2, 12, 3, 12, 3); /* the function view adds both paths */
    CONSERVED(&t);
    cprof_thread_free(&t);
}

/* A frame running before the start that exits at an empty stack has a node of its
 * own under the root, holding its self, so the root keeps exactly the unattributed
 * growth (it took the frame's self too, and the folded stacks came out short).  Its
 * calls were seen at the root, so they stay the root's children; a later call of
 * the same function from the root finds the node and makes its edge then. */
Test(tree, preexisting_exit_has_its_own_node)
{
    struct cprof_thread t;
    size_t x, a, b;

    init2(&t);
    ent(&t, KA, 100, 50);       /* first reading: X (running) called a */
    ex(&t, KA, 130, 55);
    ex(&t, KX, 140, 57);        /* X returns: 10 and 2 of its own */
    ent(&t, KB, 150, 60);       /* 10 and 3 outside any function */
    ex(&t, KB, 155, 61);
    ent(&t, KX, 160, 62);       /* X called again from the root */
    ex(&t, KX, 170, 64);
    cprof_thread_flush(&t);

    x = node_at(&t, CPROF_ROOT, KX);
    a = node_at(&t, CPROF_ROOT, KA);
    b = node_at(&t, CPROF_ROOT, KB);
    cr_assert(x != NONE && a != NONE && b != NONE);
    cr_assert_eq(t.tab.nodes.len, 4);
    cr_assert_eq(t.tab.nodes.recs[x].calls, 1); /* the later call only */
    cr_assert_eq(cprof_self(&t.tab.nodes, x)[0], 10 + 10);
    cr_assert_eq(cprof_self(&t.tab.nodes, x)[1], 2 + 2);
    cr_assert_eq(cprof_total(&t.tab.nodes, x)[0], 20);
    cr_assert_eq(cprof_self(&t.tab.nodes, CPROF_ROOT)[0], 10 + 5);
    cr_assert_eq(cprof_self(&t.tab.nodes, CPROF_ROOT)[1], 3 + 1);
    FN(&t, KX, 1, 1, 20, 4, 40 + 10, 7 + 2);
    FN(&t, 0, 0, 0, 15, 4, 0, 0);
    EDGE(&t, 0, KX, 1, 1, 10, 2); /* made by the later call, with its numbers only */
    cr_assert_eq(t.tab.edges.len, 3);
    CONSERVED(&t);
    cprof_thread_free(&t);
}

/* Recursion is a chain of nodes, one per depth; each node's total counts its path. */
Test(tree, recursion_is_a_chain)
{
    struct cprof_thread t;
    size_t f1, f2, f3;

    init2(&t);
    ent(&t, KF, 0, 0);
    ent(&t, KF, 1, 0);
    ent(&t, KF, 2, 0);
    ex(&t, KF, 4, 0);
    ex(&t, KF, 7, 0);
    ent(&t, KF, 8, 0);
    ex(&t, KF, 9, 0);
    ex(&t, KF, 10, 0);
    cprof_thread_flush(&t);
    f1 = node_at(&t, CPROF_ROOT, KF);
    f2 = node_at(&t, f1, KF);
    f3 = node_at(&t, f2, KF);
    cr_assert_eq(t.tab.nodes.recs[f1].calls, 1);
    cr_assert_eq(t.tab.nodes.recs[f2].calls, 2);
    cr_assert_eq(t.tab.nodes.recs[f3].calls, 1);
    cr_assert_eq(cprof_total(&t.tab.nodes, f1)[0], 10);
    cr_assert_eq(cprof_total(&t.tab.nodes, f2)[0], 6 + 1);
    cr_assert_eq(cprof_total(&t.tab.nodes, f3)[0], 2);
    FN(&t, KF, 4, 1, 10, 0, 10, 0);
    CONSERVED(&t);
    cprof_thread_free(&t);
}

/* Past max_nodes, new paths fold into their parent's node (counted) while functions
 * and edges stay exact. */
Test(tree, bounded)
{
    struct cprof_thread t;

    init2(&t);
    t.stack.max_nodes = 3; /* root, a, b */
    ent(&t, KA, 0, 0);
    ent(&t, KB, 1, 0);
    ent(&t, KC, 2, 0);  /* left out */
    ent(&t, KD, 3, 0);  /* its child: left out too */
    ex(&t, KD, 4, 0);
    ex(&t, KC, 5, 0);
    ex(&t, KB, 6, 0);
    ent(&t, KB, 7, 0);  /* an existing node: still counted */
    ex(&t, KB, 8, 0);
    ex(&t, KA, 9, 0);
    cprof_thread_flush(&t);
    cr_assert_eq(t.tab.nodes.len, 3);
    cr_assert_eq(t.health.tree_folded, 2);
    cr_assert_eq(t.tab.nodes.recs[node_at(&t, CPROF_ROOT, KA)].calls, 1);
    cr_assert_eq(t.tab.nodes.recs[node_at(&t, node_at(&t, CPROF_ROOT, KA), KB)].calls, 2);
    /* b took all of its first frame (its self 2, c 2, d 1) and its second (1) */
    cr_assert_eq(cprof_self(&t.tab.nodes, node_at(&t, node_at(&t, CPROF_ROOT, KA), KB))[0], 5 + 1);
    FN(&t, KC, 1, 1, 2, 0, 3, 0);
    FN(&t, KD, 1, 1, 1, 0, 1, 0);
    EDGE(&t, KC, KD, 1, 1, 1, 0);
    CONSERVED(&t);
    cprof_thread_free(&t);
}

/* The merged node of key (merged parent << 32 | merged function): its index, calls and
 * counter 0's total, from the base thread's table read in place and the records added. */
static size_t mnode(const struct cprof_merged *mg, uint64_t key, uint64_t *calls, uint64_t *total)
{
    size_t i = mg->base ? tfind(mg->base, key) : NONE, r = tfind(&mg->tab.nodes, key);

    *calls = i != NONE ? mg->base->recs[i].calls : 0;
    *total = i != NONE ? cprof_total(mg->base, i)[0] : 0;
    if (r != NONE) {
        i = mg->base ? mg->node_ix[r] : r;
        *calls += mg->tab.nodes.recs[r].calls;
        *total += cprof_total(&mg->tab.nodes, r)[0];
    }
    return i;
}

/* Merged trees add node by path across threads. */
Test(tree, merge_by_path)
{
    struct cprof_thread t1, t2;
    struct cprof_thread *th[2] = {&t1, &t2};
    struct cprof_merged mg;
    size_t fa, fb, na, nb;
    uint64_t calls, total;

    init2(&t1);
    ent(&t1, KA, 0, 0);
    ent(&t1, KB, 1, 0);
    ex(&t1, KB, 3, 0);
    ex(&t1, KA, 4, 0);
    cprof_thread_flush(&t1);
    init2(&t2);
    ent(&t2, KB, 100, 0); /* b at the root: a different path */
    ex(&t2, KB, 101, 0);
    ent(&t2, KA, 110, 0);
    ent(&t2, KB, 111, 0);
    ex(&t2, KB, 116, 0);
    ex(&t2, KA, 120, 0);
    cprof_thread_flush(&t2);
    cr_assert_eq(cprof_merge(th, 2, NC, NULL, NULL, &mg), 0);
    fa = tfind(&mg.tab.fns, KA);
    fb = tfind(&mg.tab.fns, KB);
    cr_assert_eq(mg.base, &t2.tab.nodes); /* the most nodes, read in place */
    na = mnode(&mg, (uint64_t)CPROF_ROOT << 32 | fa, &calls, &total);
    cr_assert_eq(total, 4 + 10);
    nb = mnode(&mg, (uint64_t)na << 32 | fb, &calls, &total);
    cr_assert(na != NONE && nb != NONE);
    cr_assert_eq(calls, 2);
    cr_assert_eq(total, 2 + 5);
    cr_assert_neq(mnode(&mg, (uint64_t)CPROF_ROOT << 32 | fb, &calls, &total), NONE);
    cr_assert_eq(mg.nodes, 4); /* root, a, a/b, b */
    cprof_merged_free(&mg);
    cprof_thread_free(&t1);
    cprof_thread_free(&t2);
}

/* ---- compensation of the tracer's own cost ------------------------------------------------ */

/* 3 units per interval come out of counter 0 (never more than the interval);
 * counter 1 is left alone.  Every number is net of it, and it is reported. */
Test(compensation, every_interval_loses_its_share)
{
    struct cprof_thread t;
    const uint64_t comp[NC] = {3, 0};

    init2(&t);
    cprof_thread_set_compensation(&t, comp);
    ent(&t, KA, 100, 0);  /* first reading: nothing to take out */
    ent(&t, KB, 110, 1);  /* a: 10 - 3 = 7 */
    ex(&t, KB, 112, 2);   /* b: 2 < 3, so 2 comes out and b's self is 0 */
    ex(&t, KA, 122, 3);   /* a: 10 - 3 = 7 */
    cprof_thread_flush(&t);
    FN(&t, KA, 1, 1, 14, 2, 14, 3);
    FN(&t, KB, 1, 1, 0, 1, 0, 1);
    EDGE(&t, KA, KB, 1, 1, 0, 1);
    cr_assert_eq(cprof_thread_compensated(&t, 0), 3 + 2 + 3);
    cr_assert_eq(cprof_thread_compensated(&t, 1), 0);
    check_region(&t, 22 - 8, 3);
    CONSERVED(&t);
    cprof_thread_free(&t);
}

/* After a pause the gap is not profiled and the first interval after it is not cut. */
Test(compensation, not_across_a_pause)
{
    struct cprof_thread t;
    const uint64_t comp[NC] = {1, 1};

    init2(&t);
    cprof_thread_set_compensation(&t, comp);
    ent(&t, KA, 0, 0);
    ex(&t, KA, 5, 5);         /* a: 5 - 1 */
    cprof_thread_flush(&t);
    cprof_thread_pause(&t);
    ent(&t, KA, 100, 100);    /* resumes: nothing taken out of the gap */
    ex(&t, KA, 104, 104);     /* a: 4 - 1 */
    cprof_thread_flush(&t);
    FN(&t, KA, 2, 2, 7, 7, 7, 7);
    cr_assert_eq(cprof_thread_compensated(&t, 0), 2);
    check_region(&t, 7, 7);
    CONSERVED(&t);
    cprof_thread_free(&t);
}

/* The periodic callback: after every CPROF_PERIOD_EVENTS-th event, so a cost it sets
 * applies from the next interval on. */
static unsigned periodic_calls;
static void raise_cost(struct cprof_thread *t, void *arg)
{
    const uint64_t comp[NC] = {5, 0};

    cr_assert_eq(arg, &periodic_calls);
    cr_assert_eq(t->rd.events % CPROF_PERIOD_EVENTS, 0);
    periodic_calls++;
    cprof_thread_set_compensation(t, comp);
}

Test(compensation, periodic_callback_changes_the_cost_from_then_on)
{
    struct cprof_thread t;
    const uint64_t comp[NC] = {1, 0};
    uint64_t time = 0;

    init2(&t);
    cprof_thread_set_compensation(&t, comp);
    cprof_thread_set_periodic(&t, raise_cost, &periodic_calls);
    ent(&t, KA, time, 0);                       /* event 1: nothing taken out */
    for (unsigned i = 1; i < CPROF_PERIOD_EVENTS; i += 2) {    /* events 2 .. PERIOD */
        ent(&t, KB, time += 10, 0);
        if (i + 1 < CPROF_PERIOD_EVENTS)
            ex(&t, KB, time += 10, 0);
    }
    cr_assert_eq(periodic_calls, 1);           /* after the PERIOD-th event, a KB enter */
    ex(&t, KB, time += 10, 0);                 /* cut by 5 now */
    ex(&t, KA, time += 10, 0);
    cprof_thread_flush(&t);
    /* PERIOD - 1 intervals up to it (events 2 .. PERIOD) lose 1, the two after 5 */
    cr_assert_eq(cprof_thread_compensated(&t, 0), (CPROF_PERIOD_EVENTS - 1) * 1 + 2 * 5);
    check_region(&t, time - cprof_thread_compensated(&t, 0), 0);
    CONSERVED(&t);
    cprof_thread_set_periodic(&t, NULL, NULL);
    for (unsigned i = 0; i < CPROF_PERIOD_EVENTS; i++)
        ent(&t, KC, time += 10, 0);
    cr_assert_eq(periodic_calls, 1);           /* none after it is unset */
    cprof_thread_free(&t);
}

/* The same from the paths the hooks take: the *_read events (the engine reads the
 * counters itself; quick and slow paths), and a pre-existing frame's push. */
static uint64_t tick_reading(void *state)
{
    return *(uint64_t *)state += 10;
}

static unsigned counted_calls;
static void count_call(struct cprof_thread *t, void *arg)
{
    (void)t;
    (*(unsigned *)arg)++;
}

Test(compensation, periodic_callback_on_every_event_path)
{
    struct cprof_thread t;
    uint64_t clock0 = 0, clock1 = 0;
    const cprof_read_fn read[NC] = {tick_reading, tick_reading};
    void *const state[NC] = {&clock0, &clock1};
    const uint64_t none[NC] = {0, 0};

    init2(&t);
    cprof_thread_set_readers(&t, read, state);
    cprof_thread_set_periodic(&t, count_call, &counted_calls);
    for (unsigned i = 0; i < CPROF_PERIOD_EVENTS / 2; i++) {   /* the quick path */
        cprof_thread_enter_read(&t, KA);
        cprof_thread_exit_read(&t, KA);
    }
    cr_assert_eq(counted_calls, 1);
    cr_assert_eq(cprof_thread_set_bound(&t, 1, 0), 0);        /* the slow path from here */
    for (unsigned i = 0; i < CPROF_PERIOD_EVENTS / 2; i++) {
        cprof_thread_enter_read(&t, KA);
        cprof_thread_exit_read(&t, KA);
    }
    cr_assert_eq(counted_calls, 2);
    for (unsigned i = 0; i < CPROF_PERIOD_EVENTS - 1; i++)
        cprof_thread_enter_read(&t, KB);
    cr_assert_eq(counted_calls, 2);
    cprof_thread_push_existing(&t, KC, none);                  /* the 3 x PERIOD-th event */
    cr_assert_eq(counted_calls, 3);
    cr_assert_eq(t.rd.events, 3 * CPROF_PERIOD_EVENTS);
    cprof_thread_free(&t);
}

/* Merged profiles add what each thread took out. */
Test(compensation, merged)
{
    struct cprof_thread t1, t2;
    struct cprof_thread *th[2] = {&t1, &t2};
    struct cprof_merged mg;
    const uint64_t comp[NC] = {2, 1};

    init2(&t1);
    init2(&t2);
    cprof_thread_set_compensation(&t1, comp);
    cprof_thread_set_compensation(&t2, comp);
    ent(&t1, KA, 0, 0);
    ex(&t1, KA, 10, 10);
    ent(&t2, KA, 0, 0);
    ent(&t2, KB, 5, 5);
    ex(&t2, KB, 6, 5);
    ex(&t2, KA, 9, 9);
    cprof_thread_flush(&t1);
    cprof_thread_flush(&t2);
    cr_assert_eq(cprof_merge(th, 2, NC, NULL, NULL, &mg), 0);
    cr_assert_eq(mg.compensated[0], 2 + (2 + 1 + 2));
    cr_assert_eq(mg.compensated[1], 1 + (1 + 0 + 1));
    cr_assert_eq(mg.region[0], 8 + 4);
    cprof_merged_free(&mg);
    cprof_thread_free(&t1);
    cprof_thread_free(&t2);
}

/* ---- a counter bounded by another (a thread's CPU time by its wall time) ------------------- */

/* Counter 0 may not grow more than counter 1 in any interval: the excess waits and
 * comes out in the next intervals that have room. */
Test(bound, excess_is_held_then_released)
{
    struct cprof_thread t;

    init2(&t);
    cr_assert_eq(cprof_thread_set_bound(&t, 0, 1), 0);
    ent(&t, KA, 0, 0);
    ent(&t, KB, 10, 8);     /* a: 10 > 8, so 8, and 2 wait */
    ex(&t, KB, 12, 15);     /* b: 2 + the 2 waiting = 4 <= 7 */
    ex(&t, KA, 20, 30);     /* a: 8 <= 15 */
    cprof_thread_flush(&t);
    FN(&t, KA, 1, 1, 16, 23, 20, 30);
    FN(&t, KB, 1, 1, 4, 7, 4, 7);
    check_region(&t, 20, 30);
    CONSERVED(&t);
    cprof_thread_free(&t);
}

/* What never finds room stays out of the region, and the bound holds everywhere. */
Test(bound, never_above_the_bound)
{
    struct cprof_thread t;

    init2(&t);
    cr_assert_eq(cprof_thread_set_bound(&t, 0, 1), 0);
    ent(&t, KA, 0, 0);
    ex(&t, KA, 10, 5);
    cprof_thread_flush(&t);
    FN(&t, KA, 1, 1, 5, 5, 5, 5);
    check_region(&t, 5, 5);
    CONSERVED(&t);
    cprof_thread_free(&t);
}

/* Applied after compensation: with the same share taken from both, an interval
 * that compensation empties for the bound holds the other back too. */
Test(bound, after_compensation)
{
    struct cprof_thread t;
    const uint64_t comp[NC] = {3, 3};

    init2(&t);
    cprof_thread_set_compensation(&t, comp);
    cr_assert_eq(cprof_thread_set_bound(&t, 0, 1), 0);
    ent(&t, KA, 0, 0);
    ent(&t, KB, 10, 10);    /* a: 7 and 7 */
    ex(&t, KB, 20, 12);     /* b: cpu 10 - 3 = 7, wall 2 - 2 = 0: cpu 0, 7 wait */
    ex(&t, KA, 21, 30);     /* a: cpu 1 - 1 + 7 = 7, wall 18 - 3 = 15 */
    cprof_thread_flush(&t);
    FN(&t, KA, 1, 1, 14, 22, 14, 22);
    FN(&t, KB, 1, 1, 0, 0, 0, 0);
    cr_assert_eq(cprof_thread_compensated(&t, 0), 3 + 3 + 1);
    cr_assert_eq(cprof_thread_compensated(&t, 1), 3 + 2 + 3);
    check_region(&t, 14, 22);
    CONSERVED(&t);
    cprof_thread_free(&t);
}

Test(bound, refused_when_it_cannot_hold)
{
    struct cprof_thread t;

    init2(&t);
    cr_assert_eq(cprof_thread_set_bound(&t, 0, 0), -EINVAL);   /* by itself */
    cr_assert_eq(cprof_thread_set_bound(&t, 2, 0), -EINVAL);   /* out of range */
    cr_assert_eq(cprof_thread_set_bound(&t, 0, 2), -EINVAL);
    cr_assert_eq(cprof_thread_set_bound(&t, 0, 1), 0);
    cr_assert_eq(cprof_thread_set_bound(&t, 1, 0), -EINVAL);   /* 0 is bounded: no chains */
    cr_assert_eq(cprof_thread_set_bound(&t, 0, 1), 0);    /* again: the same bound */
    cprof_thread_free(&t);
}

/* ---- health ------------------------------------------------------------------------ */

/* A table that may not grow (as when memory runs out) drops the frame and says so:
 * the call is not counted, its time stays with its caller, its exit is unmatched. */
Test(health, out_of_memory_is_counted)
{
    struct cprof_thread t;

    init2(&t);
    t.tab.fns.max = 3;          /* root, a, b */
    ent(&t, KA, 0, 0);
    ent(&t, KB, 10, 0);
    ent(&t, KC, 20, 0);         /* no room for c: dropped */
    cr_assert_eq(t.health.out_of_memory, 1);
    cr_assert_eq(t.stack.depth, 2);
    ex(&t, KC, 30, 0);          /* c is not on the stack */
    cr_assert_eq(t.health.unmatched_exits, 1);
    ex(&t, KB, 40, 0);
    ex(&t, KA, 50, 0);
    ex(&t, KD, 60, 0);          /* a pre-existing exit needing a new key: dropped too */
    cr_assert_eq(t.health.out_of_memory, 2);
    cprof_thread_flush(&t);
    FN(&t, KA, 1, 1, 20, 0, 50, 0);
    FN(&t, KB, 1, 1, 30, 0, 30, 0);
    cr_assert_eq(tfind(&t.tab.fns, KC), NONE);
    cr_assert_eq(cprof_thread_unattributed(&t, 0), 10);
    cr_assert_eq(t.health.tree_folded, 0);
    cr_assert(!cprof_health_clean(&t.health));
    CONSERVED(&t);
    cprof_thread_free(&t);
}

/* A full node table folds the path into its parent and counts it, and the tables
 * refuse past their bound alone (the edge and function are still kept). */
Test(health, node_table_out_of_memory_folds)
{
    struct cprof_thread t;

    init2(&t);
    t.tab.nodes.max = 2;        /* root, a */
    ent(&t, KA, 0, 0);
    ent(&t, KB, 10, 0);         /* b's node: no room, folds into a's */
    ex(&t, KB, 15, 0);
    ex(&t, KA, 20, 0);
    cprof_thread_flush(&t);
    cr_assert_eq(t.health.out_of_memory, 1);
    cr_assert_eq(t.health.tree_folded, 1);
    FN(&t, KB, 1, 1, 5, 0, 5, 0);
    EDGE(&t, KA, KB, 1, 1, 5, 0);
    cr_assert_eq(t.tab.nodes.len, 2);
    CONSERVED(&t);
    cprof_thread_free(&t);
}

Test(health, clean_stream_is_clean)
{
    struct cprof_thread t;

    init2(&t);
    ent(&t, KA, 0, 0);
    ex(&t, KA, 5, 1);
    cprof_thread_flush(&t);
    cr_assert(cprof_health_clean(&t.health));
    cprof_thread_free(&t);
}

/* Health adds up over threads; the first backwards reading is the first thread's
 * that had one, with its function given as the merged identity. */
static int ident_by_page(void *arg, cprof_key key, uint64_t *ident)
{
    int *calls = arg;

    (*calls)++;
    *ident = key & ~0x3fffull;  /* KA..KC -> one identity, KD..KF -> another, ... */
    return 0;
}

Test(health, merged)
{
    struct cprof_thread t1, t2;
    struct cprof_thread *th[2] = {&t1, &t2};
    struct cprof_merged mg;
    struct cprof_health h;
    int calls = 0;

    init2(&t1);
    ent(&t1, KA, 10, 5);
    ex(&t1, KZ, 11, 5);         /* unmatched */
    ex(&t1, KA, 12, 5);
    init2(&t2);
    ent(&t2, KB, 10, 5);
    ex(&t2, KB, 12, 3);         /* other went back while b was on top */
    ent(&t2, KC, 9, 3);         /* time went back while nothing was */
    ex(&t2, KC, 15, 5);
    cprof_thread_flush(&t1);
    cprof_thread_flush(&t2);
    cr_assert_eq(t2.health.backwards_readings, 2);
    cr_assert_eq(t2.health.backwards_counter, 1);
    cr_assert_eq(t2.health.backwards_key, KB);
    cr_assert_eq(cprof_merge(th, 2, NC, ident_by_page, &calls, &mg), 0);
    cr_assert_eq(mg.health.unmatched_exits, 1);
    cr_assert_eq(mg.health.backwards_readings, 2);
    cr_assert_eq(mg.health.backwards_counter, 1);
    cr_assert_eq(mg.health.backwards_key, KB & ~0x3fffull);
    cr_assert_eq(mg.health.out_of_memory, 0);
    memset(&h, 0, sizeof(h));
    cprof_health_add(&h, &t1.health);
    cprof_health_add(&h, &t2.health);
    cr_assert_eq(h.unmatched_exits, 1);
    cr_assert_eq(h.backwards_readings, 2);
    cr_assert_eq(h.backwards_key, KB);
    cprof_merged_free(&mg);
    cprof_thread_free(&t1);
    cprof_thread_free(&t2);
}

/* ---- merging by identity ------------------------------------------------------------ */

/* Keys with one identity become one function, in one pass: calls, self and total
 * add (total as two separate functions would: the keys never nest here), edges
 * and tree paths that become equal merge, and the callback's error stops the merge. */
Test(merge, by_identity)
{
    struct cprof_thread t1, t2;
    struct cprof_thread *th[2] = {&t1, &t2};
    struct cprof_merged mg;
    size_t a, d, e, n1;
    int calls = 0;

    init2(&t1);
    ent(&t1, KD, 0, 0);         /* page 0x4000: KD; page 0: KA, KB, KC */
    ent(&t1, KA, 10, 1);
    ex(&t1, KA, 20, 2);
    ent(&t1, KB, 30, 2);
    ex(&t1, KB, 35, 4);
    ex(&t1, KD, 40, 4);
    cprof_thread_flush(&t1);
    init2(&t2);
    ent(&t2, KD, 100, 10);
    ent(&t2, KC, 101, 10);
    ex(&t2, KC, 103, 11);
    ex(&t2, KD, 110, 12);
    cprof_thread_flush(&t2);
    cr_assert_eq(cprof_merge(th, 2, NC, ident_by_page, &calls, &mg), 0);
    cr_assert_eq(calls, 5);     /* each thread's functions, root aside */
    cr_assert_eq(mg.tab.fns.len, 3);        /* root, KD's identity, KA..KC's */
    cr_assert_eq(mg.tab.fns.recs[1].key, KD & ~0x3fffull);  /* first seen first */
    a = mfn(&mg, KA & ~0x3fffull);
    d = mfn(&mg, KD & ~0x3fffull);
    cr_assert_eq(mg.tab.fns.recs[a].calls, 3);
    cr_assert_eq(mg.tab.fns.recs[a].primitive_calls, 3);
    cr_assert_eq(cprof_self(&mg.tab.fns, a)[0], 10 + 5 + 2);
    cr_assert_eq(cprof_total(&mg.tab.fns, a)[1], 1 + 2 + 1);
    cr_assert_eq(cprof_self(&mg.tab.fns, d)[0], 25 + 8);
    cr_assert_eq(mg.tab.edges.len, 2);      /* root->d, d->(a, b, c) */
    cr_assert_eq(tfind(&mg.tab.edges, (uint64_t)d << 32 | a) != NONE, 1);
    e = tfind(&mg.tab.edges, (uint64_t)d << 32 | a);
    cr_assert_eq(mg.tab.edges.recs[e].calls, 3);
    cr_assert_eq(cprof_total(&mg.tab.edges, e)[0], 10 + 5 + 2);
    cr_assert_eq(mg.tab.nodes.len, 3);      /* root, root/d, root/d/a */
    n1 = tfind(&mg.tab.nodes, (uint64_t)CPROF_ROOT << 32 | d);
    cr_assert_neq(n1, NONE);
    e = tfind(&mg.tab.nodes, (uint64_t)n1 << 32 | a);
    cr_assert_neq(e, NONE);
    cr_assert_eq(mg.tab.nodes.recs[e].calls, 3);
    cr_assert_eq(cprof_total(&mg.tab.nodes, e)[0], 17);
    cprof_merged_free(&mg);
    cprof_thread_free(&t1);
    cprof_thread_free(&t2);
}

static int ident_fails(void *arg, cprof_key key, uint64_t *ident)
{
    (void)arg;
    *ident = key;
    return key == KB ? -EINVAL : 0;
}

Test(merge, identity_error_stops_the_merge)
{
    struct cprof_thread t;
    struct cprof_thread *th[1] = {&t};
    struct cprof_merged mg;

    init2(&t);
    ent(&t, KA, 0, 0);
    ent(&t, KB, 1, 0);
    cprof_thread_flush(&t);
    cr_assert_eq(cprof_merge(th, 1, NC, ident_fails, NULL, &mg), -EINVAL);
    cr_assert_null(mg.tab.fns.recs);        /* freed */
    cprof_merged_free(&mg);                 /* and safe to free again */
    cprof_thread_free(&t);
}

/* A frame's slot is reused by the next push at its depth (no table lookup) only for
 * the same key under the same parent node: the same function called from another
 * parent, or under a parent folded into an ancestor, takes its own path. */
Test(tree, frame_slot_reused_only_for_the_same_path)
{
    struct cprof_thread t;
    size_t a, b, ac, bc;

    init2(&t);
    t.stack.max_nodes = 5;      /* root, a, a->c, b, b->c */
    ent(&t, KA, 0, 0);
    ent(&t, KC, 1, 0);
    ex(&t, KC, 3, 0);
    ex(&t, KA, 4, 0);
    ent(&t, KB, 5, 0);
    ent(&t, KC, 6, 0);          /* depth 1, key c again, parent b: not a->c */
    ex(&t, KC, 10, 0);
    ex(&t, KB, 11, 0);
    ent(&t, KA, 12, 0);
    ent(&t, KC, 13, 0);         /* a->c again */
    ex(&t, KC, 20, 0);
    ex(&t, KA, 21, 0);
    ent(&t, KD, 22, 0);         /* the tree is full: d folds into the root */
    ent(&t, KC, 23, 0);         /* and c under it, though the slot says c */
    ex(&t, KC, 27, 0);
    ex(&t, KD, 28, 0);
    ent(&t, KB, 30, 0);
    ent(&t, KC, 31, 0);         /* b->c, after a folded frame used the slot */
    ex(&t, KC, 32, 0);
    ex(&t, KB, 33, 0);
    cprof_thread_flush(&t);
    a = node_at(&t, CPROF_ROOT, KA);
    b = node_at(&t, CPROF_ROOT, KB);
    ac = node_at(&t, a, KC);
    bc = node_at(&t, b, KC);
    cr_assert(a != NONE && b != NONE && ac != NONE && bc != NONE);
    cr_assert_eq(t.tab.nodes.len, 5);
    cr_assert_eq(t.health.tree_folded, 2);
    cr_assert_eq(t.tab.nodes.recs[ac].calls, 2);
    cr_assert_eq(cprof_self(&t.tab.nodes, ac)[0], 2 + 7);
    cr_assert_eq(t.tab.nodes.recs[bc].calls, 2);
    cr_assert_eq(cprof_self(&t.tab.nodes, bc)[0], 4 + 1);
    cr_assert_eq(cprof_total(&t.tab.nodes, b)[0], 6 + 3);
    /* d and the c under it went to the root's node; the root fn keeps what no one got */
    cr_assert_eq(cprof_self(&t.tab.nodes, CPROF_ROOT)[0], 6 + 1 + 1 + 2 + 1);
    FN(&t, KC, 5, 5, 2 + 4 + 7 + 4 + 1, 0, 18, 0);
    EDGE(&t, KA, KC, 2, 2, 9, 0);
    EDGE(&t, KB, KC, 2, 2, 5, 0);
    EDGE(&t, KD, KC, 1, 1, 4, 0);
    CONSERVED(&t);
    cprof_thread_free(&t);
}

/* The engine reading the counters itself (enter_read/exit_read) attributes exactly
 * as when the readings are passed in: two readers stepping through fixed values. */
static uint64_t script_vals[2][8] = {{0, 10, 20, 25, 30, 40, 47, 50}, {0, 1, 2, 3, 3, 4, 6, 6}};
static unsigned script_pos[2];

static uint64_t script_read(void *state)
{
    unsigned c = (unsigned)(uintptr_t)state;
    return script_vals[c][script_pos[c]++];
}

/* t and u hold the same tables: functions (key, calls, self and total per counter) and
 * tree nodes (self and total per counter), record for record. */
static void assert_same_tables(const struct cprof_thread *t, const struct cprof_thread *u,
                               unsigned n)
{
    struct cprof_thread *a = (struct cprof_thread *)t, *b = (struct cprof_thread *)u;
    struct cprof_merged ma, mb;     /* the functions' figures as derived */

    cr_assert_eq(cprof_merge(&a, 1, n, NULL, NULL, &ma), 0);
    cr_assert_eq(cprof_merge(&b, 1, n, NULL, NULL, &mb), 0);
    cr_assert_eq(t->tab.fns.len, u->tab.fns.len);
    cr_assert_eq(t->tab.nodes.len, u->tab.nodes.len);
    cr_assert_eq(ma.tab.fns.len, t->tab.fns.len);
    for (size_t i = 0; i < t->tab.fns.len; i++) {
        cr_assert_eq(ma.tab.fns.recs[i].key, mb.tab.fns.recs[i].key);
        cr_assert_eq(ma.tab.fns.recs[i].calls, mb.tab.fns.recs[i].calls);
        cr_assert_eq(ma.tab.fns.recs[i].primitive_calls, mb.tab.fns.recs[i].primitive_calls);
        for (unsigned c = 0; c < 2 * n; c++)
            cr_assert_eq(ma.tab.fns.vals[i * 2 * n + c], mb.tab.fns.vals[i * 2 * n + c]);
    }
    for (size_t i = 0; i < t->tab.nodes.len; i++)
        for (unsigned c = 0; c < 2 * n; c++)
            cr_assert_eq(t->tab.nodes.vals[i * 2 * n + c], u->tab.nodes.vals[i * 2 * n + c]);
    cprof_merged_free(&ma);
    cprof_merged_free(&mb);
}

Test(engine, reads_counters_itself)
{
    struct cprof_thread t, u;
    const cprof_read_fn rd[NC] = {script_read, script_read};
    void *const st[NC] = {(void *)(uintptr_t)0, (void *)(uintptr_t)1};
    static const cprof_key keys[8] = {KA, KB, KC, KC, KB, KC, KC, KA};
    static const int is_enter[8] = {1, 1, 1, 0, 0, 1, 0, 0};

    init2(&t);
    init2(&u);
    cprof_thread_set_readers(&t, rd, st);
    for (int i = 0; i < 8; i++) {
        if (is_enter[i])
            cprof_thread_enter_read(&t, keys[i]);
        else
            cprof_thread_exit_read(&t, keys[i]);
        (is_enter[i] ? ent : ex)(&u, keys[i], script_vals[0][i], script_vals[1][i]);
    }
    cr_assert_eq(script_pos[0], 8);
    cr_assert_eq(script_pos[1], 8);
    cprof_thread_flush(&t);
    cprof_thread_flush(&u);
    FN(&t, KC, 2, 2, 12, 3, 12, 3);
    assert_same_tables(&t, &u, NC);
    CONSERVED(&t);
    cprof_thread_free(&t);
    cprof_thread_free(&u);
}

/* enter_read/exit_read are instantiated apart for 1, 2 and any n counters (picked at
 * init): engines of 1 and 3 counters reading the same script attribute as those
 * given the readings (2 is reads_counters_itself). */
static const uint64_t script3[8] = {5, 6, 9, 9, 12, 20, 21, 30};
static unsigned script3_pos;

static uint64_t script3_read(void *state)
{
    (void)state;
    return script3[script3_pos++];
}

Test(engine, reads_counters_itself_for_1_and_3_counters)
{
    static const unsigned ncs[2] = {1, 3};
    static const cprof_key keys[8] = {KA, KB, KC, KC, KB, KC, KC, KA};
    static const int is_enter[8] = {1, 1, 1, 0, 0, 1, 0, 0};
    const cprof_read_fn rd[3] = {script_read, script_read, script3_read};
    void *const st[3] = {(void *)(uintptr_t)0, (void *)(uintptr_t)1, NULL};

    for (unsigned k = 0; k < 2; k++) {
        struct cprof_thread t, u;
        unsigned n = ncs[k];

        cr_assert_eq(cprof_thread_init(&t, n, NULL, NULL), 0);
        cr_assert_eq(cprof_thread_init(&u, n, NULL, NULL), 0);
        cprof_thread_set_readers(&t, rd, st);
        for (int i = 0; i < 8; i++) {
            uint64_t v[3] = {script_vals[0][i], script_vals[1][i], script3[i]};
            script_pos[0] = script_pos[1] = script3_pos = (unsigned)i;
            if (is_enter[i]) {
                cprof_thread_enter_read(&t, keys[i]);
                cprof_thread_enter(&u, keys[i], v);
            } else {
                cprof_thread_exit_read(&t, keys[i]);
                cprof_thread_exit(&u, keys[i], v);
            }
            cr_assert_eq(script_pos[0], (unsigned)i + 1);
            cr_assert_eq(script3_pos, (unsigned)i + (n == 3));
        }
        cprof_thread_flush(&t);
        cprof_thread_flush(&u);
        cr_assert_eq(t.tab.fns.len, 4);
        assert_same_tables(&t, &u, n);
        cprof_thread_free(&t);
        cprof_thread_free(&u);
    }
}

/* A muted engine (a thread whose counters could not be opened) ignores the *_read
 * events: its readers are never called (they may not exist), nothing is recorded;
 * so does a freed one (a failed init's). */
static uint64_t must_not_read(void *state)
{
    (void)state;
    cr_assert_fail("a muted engine read a counter");
    return 0;
}

Test(engine, muted_engine_ignores_read_events)
{
    struct cprof_thread t;
    const cprof_read_fn rd[NC] = {must_not_read, must_not_read};
    void *const st[NC] = {NULL, NULL};

    init2(&t);
    cprof_thread_set_readers(&t, rd, st);
    cprof_thread_mute(&t);
    cprof_thread_enter_read(&t, KA);
    cprof_thread_exit_read(&t, KA);
    cprof_thread_exit_read(&t, KB);
    cr_assert_eq(t.stack.depth, 0);
    cr_assert_eq(t.rd.events, 0);
    cr_assert_eq(t.tab.fns.len, 1);
    cr_assert_eq(t.health.unmatched_exits, 0);
    cprof_thread_free(&t);
    cprof_thread_enter_read(&t, KA);    /* freed: still nothing, no crash */
    cprof_thread_exit_read(&t, KA);
    cr_assert_eq(t.stack.depth, 0);
}

/* The event path is instantiated for 1 counter, 2, and any n: one stream (recursion,
 * exceptions unwinding several frames, backwards readings, a bounded tree) fed to
 * engines of 1, 2 and 3 counters whose counters are copies of two streams of values
 * gives the same tables, counter by counter. */
Test(engine, instantiations_for_1_2_and_n_counters_agree)
{
    static const unsigned ncs[3] = {1, 2, 3};
    static const unsigned src[3][3] = {{0}, {0, 1}, {1, 0, 1}}; /* value stream of counter c */
    static const cprof_key pool[5] = {KA, KB, KC, KD, KF};
    struct cprof_thread th[3];
    cprof_key stack[64];
    size_t depth = 0;
    uint64_t seed = 12345, v[2] = {1000, 1000};

    for (int i = 0; i < 3; i++) {
        cr_assert_eq(cprof_thread_init(&th[i], ncs[i], NULL, NULL), 0);
        th[i].stack.max_nodes = 40;
    }
    for (int ev = 0; ev < 20000; ev++) {
        uint64_t r, now[3];
        int enter;
        cprof_key k;

        seed = seed * 6364136223846793005ull + 1442695040888963407ull;
        r = seed >> 33;
        v[0] += r % 7 == 0 && r % 11 == 0 ? (uint64_t)-3 : r % 13;  /* now and then back */
        v[1] += r % 5 == 0 ? r % 3 : 0;
        enter = depth == 0 || (depth < 64 && (r >> 8) % 100 < 52);
        if (enter) {
            k = pool[(r >> 16) % 5];
            stack[depth++] = k;
        } else if ((r >> 16) % 10 == 0 && depth > 2) {
            depth -= 3;                     /* an exception: the exit of an outer frame */
            k = stack[depth];
        } else
            k = stack[--depth];
        for (int i = 0; i < 3; i++) {
            for (unsigned c = 0; c < ncs[i]; c++)
                now[c] = v[src[i][c]];
            (enter ? cprof_thread_enter : cprof_thread_exit)(&th[i], k, now);
        }
    }
    struct cprof_merged mg[3];      /* the functions' and edges' figures as derived */
    for (int i = 0; i < 3; i++) {
        struct cprof_thread *one = &th[i];
        cprof_thread_flush(&th[i]);
        cr_assert_eq(cprof_merge(&one, 1, ncs[i], NULL, NULL, &mg[i]), 0);
        cr_assert_eq(mg[i].tab.fns.len, th[i].tab.fns.len);
        cr_assert_eq(mg[i].tab.edges.len, th[i].tab.edges.len);
    }
    for (int i = 1; i < 3; i++) {
        const struct cprof_table *a[3] = {&mg[0].tab.fns, &mg[0].tab.edges, &th[0].tab.nodes};
        const struct cprof_table *b[3] = {&mg[i].tab.fns, &mg[i].tab.edges, &th[i].tab.nodes};
        cr_assert_eq(th[i].health.backwards_readings, th[0].health.backwards_readings);
        cr_assert_eq(th[i].health.tree_folded, th[0].health.tree_folded);
        cr_assert_eq(th[i].rd.events, th[0].rd.events);
        for (int tb = 0; tb < 3; tb++) {
            cr_assert_eq(a[tb]->len, b[tb]->len);
            for (size_t j = 0; j < a[tb]->len; j++) {
                cr_assert_eq(a[tb]->recs[j].key, b[tb]->recs[j].key);
                cr_assert_eq(a[tb]->recs[j].calls, b[tb]->recs[j].calls);
                cr_assert_eq(a[tb]->recs[j].primitive_calls, b[tb]->recs[j].primitive_calls);
                for (unsigned c = 0; c < ncs[i]; c++) {
                    if (src[i][c] != 0)
                        continue;   /* compare counters fed with stream 0 with th[0]'s */
                    cr_assert_eq(cprof_self(b[tb], j)[c], cprof_self(a[tb], j)[0],
                                 "engine of %u counters, table %d, record %zu", ncs[i], tb, j);
                    cr_assert_eq(cprof_total(b[tb], j)[c], cprof_total(a[tb], j)[0]);
                }
            }
        }
        /* stream 1 in the 2- and 3-counter engines agrees too */
        for (int tb = 0; tb < 3 && i == 2; tb++) {
            const struct cprof_table *x[3] = {&mg[1].tab.fns, &mg[1].tab.edges, &th[1].tab.nodes};
            for (size_t j = 0; j < x[tb]->len; j++) {
                cr_assert_eq(cprof_self(b[tb], j)[0], cprof_self(x[tb], j)[1]);
                cr_assert_eq(cprof_self(b[tb], j)[2], cprof_self(x[tb], j)[1]);
                cr_assert_eq(cprof_total(b[tb], j)[2], cprof_total(x[tb], j)[1]);
            }
        }
    }
    cr_assert_gt(th[0].health.backwards_readings, 0);
    cr_assert_gt(th[0].health.tree_folded, 0);
    for (int i = 0; i < 3; i++)
        cprof_merged_free(&mg[i]);
    for (int i = 0; i < 3; i++) {
        CONSERVED(&th[i]);
        cprof_thread_free(&th[i]);
    }
}

/* The figures derived from the tree while frames are open: only closed frames count,
 * and an inner frame of a recursion gives its function no total while an outer one
 * is open (the outer one's exit gives the whole); an edge likewise per pair. */
Test(derived, open_frames_and_recursion)
{
    struct cprof_thread t;

    init2(&t);
    ent(&t, KA, 0, 0);
    ent(&t, KF, 1, 0);          /* a -> f -> g -> f -> g, inner f and g closed */
    ent(&t, KG, 3, 1);
    ent(&t, KF, 6, 1);
    ent(&t, KG, 10, 2);
    ex(&t, KG, 15, 2);          /* inner g: 5, self 5 */
    ex(&t, KF, 21, 4);          /* inner f: 15, self 10 */
    FN(&t, KF, 2, 1, 10, 3, 0, 0);
    FN(&t, KG, 2, 1, 5, 0, 0, 0);
    EDGE(&t, KF, KG, 2, 1, 0, 0);
    EDGE(&t, KG, KF, 1, 1, 15, 3);  /* its only frame closed: outermost of its pair */
    EDGE(&t, KA, KF, 1, 1, 0, 0);
    ex(&t, KG, 28, 4);          /* outer g: 25, self 10 */
    FN(&t, KG, 2, 1, 15, 0, 25, 3);
    EDGE(&t, KF, KG, 2, 1, 25, 3);
    ex(&t, KF, 30, 5);          /* outer f: 29, self 4 */
    FN(&t, KF, 2, 1, 14, 5, 29, 5);
    FN(&t, KA, 1, 1, 0, 0, 0, 0);   /* open: nothing yet */
    ex(&t, KA, 31, 5);
    FN(&t, KA, 1, 1, 2, 0, 31, 5);
    cprof_thread_flush(&t);
    CONSERVED(&t);
    cprof_thread_free(&t);
}

/* Mutual recursion through a full tree: the folded frames' figures (attributed
 * directly) and the nodes' (derived) make the same totals as an unbounded tree's. */
Test(derived, folded_mutual_recursion_matches_unbounded)
{
    struct cprof_thread t[2];
    static const cprof_key keys[4] = {KA, KB, KA, KB};

    for (int i = 0; i < 2; i++) {
        init2(&t[i]);
        if (i)
            t[i].stack.max_nodes = 3;   /* root, a, b: the inner a and b fold */
    }
    for (int rep = 0; rep < 3; rep++) {
        uint64_t x = 100 * (uint64_t)rep;
        for (int i = 0; i < 2; i++) {
            for (int d = 0; d < 4; d++)
                ent(&t[i], keys[d], x + 3 * (uint64_t)d, x + (uint64_t)d);
            for (int d = 3; d >= 0; d--)
                ex(&t[i], keys[d], x + 20 - (uint64_t)d, x + 10 - (uint64_t)d);
        }
    }
    for (int i = 0; i < 2; i++)
        cprof_thread_flush(&t[i]);
    cr_assert_eq(t[0].health.tree_folded, 0);
    cr_assert_gt(t[1].health.tree_folded, 0);
    for (int k = 0; k < 2; k++) {
        cprof_key key = k ? KB : KA;
        const struct cprof_tables *v = settled(&t[0]);
        size_t i = fn_at(&t[0], key, __LINE__);
        uint64_t calls = v->fns.recs[i].calls, prim = v->fns.recs[i].primitive_calls;
        uint64_t s0 = cprof_self(&v->fns, i)[0], s1 = cprof_self(&v->fns, i)[1];
        uint64_t t0 = cprof_total(&v->fns, i)[0], t1 = cprof_total(&v->fns, i)[1];
        cr_assert_eq(calls, 6);
        cr_assert_eq(prim, 3);
        FN(&t[1], key, calls, prim, s0, s1, t0, t1);
    }
    EDGE(&t[0], KA, KB, 6, 3, 3 * 16, 3 * 8);     /* outer pair: b entered 3, left 19 */
    EDGE(&t[1], KA, KB, 6, 3, 3 * 16, 3 * 8);
    EDGE(&t[0], KB, KA, 3, 3, 3 * 12, 3 * 6);
    EDGE(&t[1], KB, KA, 3, 3, 3 * 12, 3 * 6);
    for (int i = 0; i < 2; i++) {
        CONSERVED(&t[i]);
        cprof_thread_free(&t[i]);
    }
}

/* The *_read events switch between their quick copies (no test of rd.quick nor of the
 * extras) and the general ones wherever either changes: an exclusion, a pause,
 * distributions turned on and off mid-stream.  Both engines attribute alike. */
static const uint64_t seq_vals[2][12] = {{0, 10, 20, 26, 30, 41, 47, 50, 60, 64, 70, 77},
                                         {0, 1, 2, 3, 3, 4, 6, 6, 7, 9, 9, 10}};
static unsigned seq_pos[2];

static uint64_t seq_read(void *state)
{
    unsigned c = (unsigned)(uintptr_t)state;
    return seq_vals[c][seq_pos[c]++];
}

Test(engine, read_events_switch_paths)
{
    struct cprof_thread t, u;
    const cprof_read_fn rd[NC] = {seq_read, seq_read};
    void *const st[NC] = {(void *)(uintptr_t)0, (void *)(uintptr_t)1};
    const uint64_t before[NC] = {21, 2}, after[NC] = {24, 3};
    void (*quick)(struct cprof_thread *, cprof_key);
    int i = 0;

#define BOTH(op, k)                                                                              \
    do {                                                                                         \
        cprof_thread_##op##_read(&t, k);                                                         \
        (*#op == 'e' && #op[1] == 'n' ? ent : ex)(&u, k, seq_vals[0][i], seq_vals[1][i]);        \
        i++;                                                                                     \
    } while (0)
    init2(&t);
    init2(&u);
    cprof_thread_set_readers(&t, rd, st);
    BOTH(enter, KA);            /* the first reading: the general path */
    BOTH(enter, KB);
    quick = t.enter_read;
    BOTH(enter, KC);
    cr_assert_eq(t.enter_read, quick, "the quick path stays");
    cprof_thread_exclude(&t, before, after);
    cprof_thread_exclude(&u, before, after);
    cr_assert_neq(t.enter_read, quick, "an exclusion leaves the quick path");
    BOTH(exit, KC);             /* takes the exclusion out */
    cr_assert_eq(t.enter_read, quick);
    cprof_thread_set_distributions(&t, 1);
    cprof_thread_set_distributions(&u, 1);
    cr_assert_neq(t.enter_read, quick, "extras leave the quick path");
    BOTH(enter, KC);
    BOTH(exit, KC);             /* recorded in C's distribution */
    cprof_thread_set_distributions(&t, 0);
    cprof_thread_set_distributions(&u, 0);
    cr_assert_eq(t.enter_read, quick);
    BOTH(exit, KB);
    BOTH(exit, KA);
    cprof_thread_flush(&t);     /* profiling stops (stop() flushes, then pauses) */
    cprof_thread_flush(&u);
    cprof_thread_pause(&t);
    cprof_thread_pause(&u);
    cr_assert_neq(t.enter_read, quick, "a pause leaves the quick path");
    BOTH(enter, KD);            /* resumes: the gap is left out */
    cr_assert_eq(t.enter_read, quick);
    BOTH(exit, KD);
#undef BOTH
    cr_assert_eq(i, 10);
    cr_assert_eq(seq_pos[0], 10);
    cprof_thread_flush(&t);
    cprof_thread_flush(&u);
    cr_assert_eq(t.rd.events, u.rd.events);
    for (unsigned c = 0; c < NC; c++) {
        cr_assert_eq(cprof_thread_region(&t, c), cprof_thread_region(&u, c));
        cr_assert_eq(t.rd.excl_off[c], u.rd.excl_off[c]);
    }
    cr_assert_eq(t.rd.excl_off[0], 3);
    cr_assert_not_null(cprof_extras_at(&t.extras, fn_at(&t, KC, __LINE__)));
    assert_same_tables(&t, &u, NC);
    CONSERVED(&t);
    cprof_thread_free(&t);
    cprof_thread_free(&u);
}

/* ---- asyncio mode: cprof_thread_resume ------------------------------------------ */

#define KW 0x7f00000fe000ull    /* the [await] key */

static void resume(struct cprof_thread *t, cprof_key k, cprof_key await_key, uint64_t since0,
                   uint64_t time, uint64_t other)
{
    uint64_t since[NC] = {since0, UINT64_MAX}, v[NC] = {time, other}; /* "other" does not
                                                                       * grow while waiting */
    cprof_thread_resume(t, k, await_key, since, v);
}

/* A coroutine C suspends (its exit) at 20 and resumes at 50, B running in between: C's
 * total holds the wait, as an [await] child W (time only: "other" does not grow while
 * it waits), and A, below it, pays only for the slices C ran. */
Test(engine, coroutine_resume_with_await_child)
{
    struct cprof_thread t;

    init2(&t);
    ent(&t, KA, 0, 0);
    ent(&t, KC, 10, 1);
    ex(&t, KC, 20, 2);          /* suspended */
    ent(&t, KB, 30, 3);
    ex(&t, KB, 40, 5);
    resume(&t, KC, KW, 20, 50, 6);
    cr_assert_eq(t.stack.depth, 2);
    ex(&t, KC, 60, 8);
    ex(&t, KA, 70, 9);
    cprof_thread_flush(&t);

    /*      calls prim self     total */
    FN(&t, KA, 1, 1, 40, 4, 70, 9);
    FN(&t, KB, 1, 1, 10, 2, 10, 2);
    FN(&t, KC, 1, 1, 20, 3, 50, 3);
    FN(&t, KW, 1, 1, 30, 0, 30, 0);
    EDGE(&t, KA, KC, 1, 1, 50, 3);
    EDGE(&t, KC, KW, 1, 1, 30, 0);
    check_region(&t, 70, 9);
    cprof_thread_free(&t);
}

/* An outer coroutine O waits through the inner one I it awaits: O resumes without an
 * [await] of its own (I's holds the wait), the wait in its children's share. */
Test(engine, coroutine_chain_resume)
{
    struct cprof_thread t;

    init2(&t);
    ent(&t, KA, 0, 0);
    ent(&t, KM, 10, 0);         /* O */
    ent(&t, KN, 12, 0);         /* I */
    ex(&t, KN, 14, 1);          /* I suspends, then O */
    ex(&t, KM, 15, 1);
    resume(&t, KM, 0, 15, 40, 2);
    resume(&t, KN, KW, 14, 41, 2);
    ex(&t, KN, 43, 3);
    ex(&t, KM, 44, 3);
    ex(&t, KA, 50, 4);
    cprof_thread_flush(&t);

    /*      calls prim self     total */
    FN(&t, KN, 1, 1, 4, 2, 31, 2);      /* 12..14 and 41..43; total 12..43 */
    FN(&t, KW, 1, 1, 27, 0, 27, 0);     /* 14..41 */
    FN(&t, KM, 1, 1, 5, 0, 34, 2);      /* 10..12, 14..15, 40..41, 43..44; total 10..44 */
    FN(&t, KA, 1, 1, 41, 2, 50, 4);     /* 0..10, 15..40 (on top then), 44..50 */
    check_region(&t, 50, 4);
    cprof_thread_free(&t);
}

/* ---- merging in place (cprof_merge_consume) -------------------------------------------- */

/* The merged call tree as Profiler.stats() lays it out (stats.c, tree_columns): node j's
 * parent, function, calls and 2n values, whether read from a base thread's table or not. */
struct flat_tree {
    size_t len;
    uint64_t *parent, *fn, *calls, *vals;
};

static void flatten(const struct cprof_merged *m, struct flat_tree *f)
{
    const struct cprof_table *b = m->base ? m->base : &m->tab.nodes, *x = &m->tab.nodes;
    size_t nx = m->base ? x->len : 0;

    f->len = m->nodes;
    f->parent = calloc(f->len, sizeof(uint64_t));
    f->fn = calloc(f->len, sizeof(uint64_t));
    f->calls = calloc(f->len, sizeof(uint64_t));
    f->vals = calloc(f->len * 2 * NC, sizeof(uint64_t));
    cr_assert(f->parent && f->fn && f->calls && f->vals);
    for (size_t i = 0; i < b->len; i++) {
        f->parent[i] = b->recs[i].key >> 32;
        f->fn[i] = b->recs[i].key & 0xffffffffu;
        f->calls[i] = b->recs[i].calls;
        memcpy(f->vals + i * 2 * NC, cprof_self(b, i), 2 * NC * sizeof(uint64_t));
    }
    for (size_t r = 0; r < nx; r++) {
        size_t j = m->node_ix[r];
        if (j >= b->len) {
            f->parent[j] = x->recs[r].key >> 32;
            f->fn[j] = x->recs[r].key & 0xffffffffu;
        }
        f->calls[j] += x->recs[r].calls;
        for (unsigned c = 0; c < 2 * NC; c++)
            f->vals[j * 2 * NC + c] += cprof_self(x, r)[c];
    }
}

static void assert_same_table(const struct cprof_table *a, const struct cprof_table *b)
{
    cr_assert_eq(a->len, b->len);
    for (size_t i = 0; i < a->len; i++) {
        cr_assert_eq(a->recs[i].key, b->recs[i].key, "record %zu", i);
        cr_assert_eq(a->recs[i].calls, b->recs[i].calls, "record %zu", i);
        cr_assert_eq(a->recs[i].primitive_calls, b->recs[i].primitive_calls, "record %zu", i);
        cr_assert_eq(memcmp(cprof_self(a, i), cprof_self(b, i), 2 * a->n * sizeof(uint64_t)), 0,
                     "record %zu", i);
    }
}

/* Merging in place gives what the copying merge gives, number for number and node for
 * node, with keys merging by identity (paths that become equal merge, in the tree taken
 * over too) and without; the thread whose tree was taken over is left with none. */
static void consume_equals_copy(cprof_ident_fn ident)
{
    enum { NTH = 4 };
    struct cprof_thread ts[NTH];
    struct cprof_thread *th[NTH];

    for (int round = 0; round < 2; round++) {
        struct cprof_merged copy, moved;
        struct flat_tree a, b;
        int calls = 0;

        for (int i = 0; i < NTH; i++) {
            struct stream s = {0xabcdefull * (uint64_t)(i + 1) + 7, {(uint64_t)i * 1000, 0},
                               10 + 6 * i, 0};
            th[i] = &ts[i];
            init2(&ts[i]);
            for (int k = 0; k < (round ? 3000 + 1000 * i : 6000 - 1000 * i); k++)
                random_event(&s, &ts[i], NULL);
            cprof_thread_flush(&ts[i]);
        }
        cr_assert_eq(cprof_merge(th, NTH, NC, ident, &calls, &copy), 0);
        flatten(&copy, &a);     /* before the merge in place: copy may read a thread's tree */
        cr_assert_eq(cprof_merge_consume(th, NTH, NC, ident, &calls, &moved), 0);
        cr_assert_null(moved.base);
        assert_same_table(&copy.tab.fns, &moved.tab.fns);
        assert_same_table(&copy.tab.edges, &moved.tab.edges);
        flatten(&moved, &b);
        cr_assert_eq(a.len, b.len);
        cr_assert_gt(a.len, 100);
        for (size_t j = 0; j < a.len; j++) {
            cr_assert_eq(a.parent[j], b.parent[j], "node %zu", j);
            cr_assert_eq(a.fn[j], b.fn[j], "node %zu", j);
            cr_assert_eq(a.calls[j], b.calls[j], "node %zu", j);
            cr_assert_eq(memcmp(a.vals + j * 2 * NC, b.vals + j * 2 * NC, 2 * NC * sizeof(uint64_t)),
                         0, "node %zu", j);
        }
        cr_assert_eq(copy.threads, moved.threads);
        cr_assert_eq(copy.events, moved.events);
        for (unsigned c = 0; c < NC; c++) {
            cr_assert_eq(copy.region[c], moved.region[c]);
            cr_assert_eq(copy.unattributed[c], moved.unattributed[c]);
        }
        {   /* one tree was taken over: the largest */
            size_t taken = 0, largest = 0;
            for (int i = 0; i < NTH; i++) {
                taken += ts[i].tab.nodes.recs == NULL && ts[i].tab.nodes.len == 0;
                largest = ts[i].tab.nodes.len > largest ? ts[i].tab.nodes.len : largest;
            }
            cr_assert_eq(taken, 1);
            cr_assert_lt(largest, a.len);
        }
        for (struct flat_tree *f = &a; f; f = f == &a ? &b : NULL) {
            free(f->parent);
            free(f->fn);
            free(f->calls);
            free(f->vals);
        }
        cprof_merged_free(&copy);
        cprof_merged_free(&moved);
        for (int i = 0; i < NTH; i++)
            cprof_thread_free(&ts[i]);   /* safe with the tree taken */
    }
}

Test(merge, consume_equals_copy)
{
    consume_equals_copy(NULL);
}

Test(merge, consume_equals_copy_by_identity)
{
    consume_equals_copy(ident_by_page);
}
