#include "hist.h"

#include <stdlib.h>
#include <string.h>

#define ARENA_CHUNK (64u * 1024u)

struct cprof_arena_chunk {
    struct cprof_arena_chunk *next;
    max_align_t data[];         /* the chunk's memory */
};

void *cprof_arena_alloc(struct cprof_arena *a, size_t bytes)
{
    void *p;

    bytes = (bytes + sizeof(max_align_t) - 1) / sizeof(max_align_t) * sizeof(max_align_t);
    if (!a->chunks || a->used + bytes > a->size) {
        size_t size = bytes > ARENA_CHUNK ? bytes : ARENA_CHUNK;
        struct cprof_arena_chunk *c = calloc(1, sizeof(*c) + size);
        if (!c)
            return NULL;
        c->next = a->chunks;
        a->chunks = c;
        a->used = 0;
        a->size = size;
    }
    p = (char *)a->chunks->data + a->used;
    a->used += bytes;
    return p;
}

void cprof_arena_free(struct cprof_arena *a)
{
    while (a->chunks) {
        struct cprof_arena_chunk *c = a->chunks;
        a->chunks = c->next;
        free(c);
    }
    a->used = a->size = 0;
}

uint64_t cprof_hist_low(unsigned i)
{
    unsigned e;

    if (i < 2 * CPROF_HIST_SUB)
        return i;
    e = i / CPROF_HIST_SUB - 1;
    return (uint64_t)(CPROF_HIST_SUB + i % CPROF_HIST_SUB) << e;
}

uint64_t cprof_hist_high(unsigned i)
{
    unsigned e;

    if (i < 2 * CPROF_HIST_SUB)
        return i;
    e = i / CPROF_HIST_SUB - 1;
    return cprof_hist_low(i) + (((uint64_t)1 << e) - 1);
}

int cprof_hist_merge(struct cprof_hist *dst, const struct cprof_hist *src, struct cprof_arena *a)
{
    for (unsigned b = 0; b < CPROF_HIST_BLOCKS; b++) {
        if (!src->blocks[b])
            continue;
        if (!dst->blocks[b]) {
            dst->blocks[b] = cprof_arena_alloc(a, CPROF_HIST_SUB * sizeof(uint32_t));
            if (!dst->blocks[b])
                return -ENOMEM;
        }
        for (unsigned i = 0; i < CPROF_HIST_SUB; i++)
            dst->blocks[b][i] += src->blocks[b][i];
    }
    dst->count += src->count;
    if (src->max > dst->max)
        dst->max = src->max;
    return 0;
}

uint64_t cprof_hist_quantile(const struct cprof_hist *h, double q)
{
    uint64_t rank, seen = 0;

    if (h->count == 0)
        return 0;
    if (q >= 1.0)
        return h->max;
    rank = (uint64_t)(q * (double)h->count);
    if ((double)rank < q * (double)h->count)
        rank++;                 /* ceil, without libm */
    if (rank < 1)
        rank = 1;
    for (unsigned i = 0; i < CPROF_HIST_BUCKETS; i++) {
        seen += cprof_hist_at(h, i);
        if (seen >= rank) {
            uint64_t lo = cprof_hist_low(i), mid = lo + (cprof_hist_high(i) - lo) / 2;
            return mid < h->max ? mid : h->max;
        }
    }
    return h->max;
}
