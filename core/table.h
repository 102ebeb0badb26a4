/* The engine's open-addressing table: records (a function, an edge or a call-tree
 * node) in insertion order, each with 2n counter values, found by a 64-bit key.
 * The lookup is inline (it runs at every entry); inserting is not. */
#ifndef CPROF_TABLE_H
#define CPROF_TABLE_H

#include <errno.h>
#include <stddef.h>
#include <stdint.h>

struct cprof_rec {              /* one function, one edge, or one call-tree node */
    uint64_t key;               /* function key; (caller index << 32 | callee index) for an
                                 * edge; (parent node << 32 | function index) for a node */
    uint64_t calls;             /* entries observed */
    union {
        uint64_t primitive_calls; /* functions, edges: entries while not already active */
        uint64_t first;         /* a thread's nodes: CPROF_FIRST_* (engine.h) */
    };
    uint64_t edge;              /* nodes: index of the (caller, callee) edge it belongs to */
};

#define CPROF_TABLE_MAX (UINT32_MAX - 1u) /* records a table can index (slots hold index + 1) */

/* vals[i*2n + c] = self of counter c, vals[i*2n + n + c] = total of counter c. */
struct cprof_table {
    struct cprof_rec *recs;     /* dense, in insertion order */
    uint64_t *vals;             /* 2n values per record */
    uint32_t *slots;            /* index+1 into recs, 0 = empty; size is a power of 2 */
    size_t len;                 /* records used */
    size_t cap;                 /* records allocated */
    size_t nslots;              /* slots allocated */
    size_t max;                 /* records it may hold (<= CPROF_TABLE_MAX): inserting past
                                 * it fails as running out of memory would */
    unsigned n;                 /* counters */
};

/* 0, or -ENOMEM (t is then empty and safe to free). */
int cprof_table_init(struct cprof_table *t, unsigned n, size_t cap);
void cprof_table_free(struct cprof_table *t);
/* Append key at empty slot `slot` (found by a lookup): 1 with its index, or -ENOMEM. */
int cprof_table_insert(struct cprof_table *t, uint64_t key, size_t slot, size_t *index);

static inline size_t cprof_table_slot(uint64_t key, size_t nslots)
{
    /* Fibonacci hashing: keys are pointers (low bits zero) or index pairs. */
    return (size_t)((key * 0x9E3779B97F4A7C15ull) >> 32) & (nslots - 1);
}

/* The index of key: 0 and *index if present, else -ENOENT. */
static inline int cprof_table_find(const struct cprof_table *t, uint64_t key, size_t *index)
{
    size_t mask = t->nslots - 1;

    for (size_t s = cprof_table_slot(key, t->nslots);; s = (s + 1) & mask) {
        uint32_t ix = t->slots[s];
        if (ix == 0)
            return -ENOENT;
        if (t->recs[ix - 1].key == key) {
            *index = ix - 1;
            return 0;
        }
    }
}

/* The index of key, inserting a zeroed record if absent: 0 (found) or 1
 * (inserted) with *index, or -ENOMEM. */
static inline int cprof_table_get(struct cprof_table *t, uint64_t key, size_t *index)
{
    size_t mask = t->nslots - 1;

    for (size_t s = cprof_table_slot(key, t->nslots);; s = (s + 1) & mask) {
        uint32_t ix = t->slots[s];
        if (ix == 0)
            return cprof_table_insert(t, key, s, index);
        if (t->recs[ix - 1].key == key) {
            *index = ix - 1;
            return 0;
        }
    }
}

static inline uint64_t *cprof_self(const struct cprof_table *t, size_t i)
{
    return t->vals + i * 2 * t->n;
}

static inline uint64_t *cprof_total(const struct cprof_table *t, size_t i)
{
    return t->vals + i * 2 * t->n + t->n;
}

/* Functions, edges and the call tree: what a thread keeps and what a merge makes. */
struct cprof_tables {
    struct cprof_table fns;     /* per function key (or merged identity); record 0 is the root */
    struct cprof_table edges;   /* key = caller index << 32 | callee index */
    struct cprof_table nodes;   /* key = parent node << 32 | function index; 0 is the root */
};

#define CPROF_ROOT 0u           /* index of the root record in fns and in nodes */

/* The three tables, with the root in fns and nodes: 0 or -ENOMEM. */
int cprof_tables_init(struct cprof_tables *tab, unsigned n);
void cprof_tables_free(struct cprof_tables *tab);

#endif
