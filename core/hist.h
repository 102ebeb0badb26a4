/* Log-linear histograms of per-call values (HDR-style): exact below 64, then 32
 * buckets per power of two, so a bucket's midpoint is within 1/64 (1.6%) of any
 * value in it.  Buckets live in 32-bucket blocks allocated on first use from an
 * arena, so a function's histogram costs a few hundred bytes, not 7.5 KiB. */
#ifndef CPROF_HIST_H
#define CPROF_HIST_H

#include <errno.h>
#include <stddef.h>
#include <stdint.h>

#define CPROF_HIST_SUB_BITS 5
#define CPROF_HIST_SUB (1u << CPROF_HIST_SUB_BITS)    /* buckets per block */
#define CPROF_HIST_BLOCKS 60                          /* covers all of uint64 */
#define CPROF_HIST_BUCKETS (CPROF_HIST_SUB * CPROF_HIST_BLOCKS)

/* A bump allocator of zeroed memory, freed all at once. */
struct cprof_arena {
    struct cprof_arena_chunk *chunks; /* newest first */
    size_t used;                /* bytes used in the newest chunk */
    size_t size;                /* its size */
};

void *cprof_arena_alloc(struct cprof_arena *a, size_t bytes); /* NULL: out of memory */
void cprof_arena_free(struct cprof_arena *a);

struct cprof_hist {
    uint64_t count;             /* values recorded */
    uint64_t max;               /* the largest, exactly */
    uint32_t *blocks[CPROF_HIST_BLOCKS]; /* block b holds buckets [32b, 32b + 32) */
};

static inline unsigned cprof_hist_bucket(uint64_t v)
{
    unsigned msb, e;

    if (v < 2 * CPROF_HIST_SUB)
        return (unsigned)v;
    msb = 63u - (unsigned)__builtin_clzll(v);
    e = msb - CPROF_HIST_SUB_BITS;
    return CPROF_HIST_SUB * (e + 1) + (unsigned)(v >> e) - CPROF_HIST_SUB;
}

/* The smallest and largest value of bucket i. */
uint64_t cprof_hist_low(unsigned i);
uint64_t cprof_hist_high(unsigned i);

/* Record v: 0, or -ENOMEM if a block could not be allocated (the value is then lost). */
static inline int cprof_hist_add(struct cprof_hist *h, uint64_t v, struct cprof_arena *a)
{
    unsigned i = cprof_hist_bucket(v);
    uint32_t *b = h->blocks[i / CPROF_HIST_SUB];

    if (!b) {
        b = cprof_arena_alloc(a, CPROF_HIST_SUB * sizeof(*b));
        if (!b)
            return -ENOMEM;
        h->blocks[i / CPROF_HIST_SUB] = b;
    }
    b[i % CPROF_HIST_SUB]++;
    h->count++;
    if (v > h->max)
        h->max = v;
    return 0;
}

/* Bucket i's count. */
static inline uint32_t cprof_hist_at(const struct cprof_hist *h, unsigned i)
{
    const uint32_t *b = h->blocks[i / CPROF_HIST_SUB];
    return b ? b[i % CPROF_HIST_SUB] : 0;
}

/* dst += src: 0, or -ENOMEM if a block could not be allocated. */
int cprof_hist_merge(struct cprof_hist *dst, const struct cprof_hist *src, struct cprof_arena *a);

/* The q-quantile (0 < q <= 1): the midpoint of the bucket holding the value of
 * rank ceil(q * count), never above max; q = 1 gives max exactly.  0 if empty. */
uint64_t cprof_hist_quantile(const struct cprof_hist *h, double q);

#endif
