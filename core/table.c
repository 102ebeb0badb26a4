#include "table.h"

#include <stdlib.h>
#include <string.h>

int cprof_table_init(struct cprof_table *t, unsigned n, size_t cap)
{
    memset(t, 0, sizeof(*t));
    t->n = n;
    t->cap = cap ? cap : 16;
    t->max = CPROF_TABLE_MAX;
    t->nslots = 1;
    while (t->nslots < t->cap * 2)
        t->nslots <<= 1;
    t->recs = malloc(t->cap * sizeof(*t->recs));  /* zeroed record by record (insert) */
    t->vals = malloc(t->cap * 2 * (n ? n : 1) * sizeof(*t->vals));
    t->slots = calloc(t->nslots, sizeof(*t->slots));
    if (!t->recs || !t->vals || !t->slots) {
        cprof_table_free(t);
        return -ENOMEM;
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

static int table_grow(struct cprof_table *t)
{
    size_t cap = t->cap * 2, nslots = t->nslots * 2, stride = 2 * (size_t)(t->n ? t->n : 1);
    struct cprof_rec *recs = realloc(t->recs, cap * sizeof(*recs));
    uint64_t *vals;
    uint32_t *slots;

    if (!recs)
        return -ENOMEM;
    t->recs = recs;
    vals = realloc(t->vals, cap * stride * sizeof(*vals));
    if (!vals)
        return -ENOMEM;
    t->vals = vals;
    slots = calloc(nslots, sizeof(*slots));
    if (!slots)
        return -ENOMEM;
    /* The new records are left as realloc gave them: insert zeroes each one it appends, so
     * pages of the capacity not used yet are never touched (a doubled 1M-node tree's second
     * half is no resident memory until paths fill it). */
    free(t->slots);
    t->slots = slots;
    t->nslots = nslots;
    t->cap = cap;
    for (size_t i = 0; i < t->len; i++) {
        size_t s = cprof_table_slot(t->recs[i].key, nslots);
        while (slots[s])
            s = (s + 1) & (nslots - 1);
        slots[s] = (uint32_t)(i + 1);
    }
    return 0;
}

int cprof_table_insert(struct cprof_table *t, uint64_t key, size_t slot, size_t *index)
{
    if (t->len >= t->max || t->len >= CPROF_TABLE_MAX)
        return -ENOMEM;
    if (t->len == t->cap) {
        size_t mask;
        if (table_grow(t) < 0)
            return -ENOMEM;
        mask = t->nslots - 1;
        for (slot = cprof_table_slot(key, t->nslots); t->slots[slot]; slot = (slot + 1) & mask)
            ;
    }
    {
        size_t stride = 2 * (size_t)(t->n ? t->n : 1);
        memset(&t->recs[t->len], 0, sizeof(t->recs[0]));
        memset(t->vals + t->len * stride, 0, stride * sizeof(*t->vals));
    }
    t->recs[t->len].key = key;
    t->slots[slot] = (uint32_t)(t->len + 1);
    *index = t->len++;
    return 1;
}

int cprof_tables_init(struct cprof_tables *tab, unsigned n)
{
    size_t root;

    memset(tab, 0, sizeof(*tab));
    if (cprof_table_init(&tab->fns, n, 256) < 0 || cprof_table_init(&tab->edges, n, 1024) < 0 ||
        cprof_table_init(&tab->nodes, n, 1024) < 0 ||
        cprof_table_get(&tab->fns, 0, &root) != 1 || cprof_table_get(&tab->nodes, 0, &root) != 1) {
        cprof_tables_free(tab);
        return -ENOMEM;
    }
    return 0;
}

void cprof_tables_free(struct cprof_tables *tab)
{
    cprof_table_free(&tab->fns);
    cprof_table_free(&tab->edges);
    cprof_table_free(&tab->nodes);
}
