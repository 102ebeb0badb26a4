/* pymalloc-bytes and pymalloc-calls: Python's own allocator.
 *
 * Small objects (512 bytes and less) come from pymalloc's arenas, which malloc
 * never sees: the malloc-* counters miss them.  These count every request made
 * through the PYMEM_DOMAIN_OBJ (PyObject_Malloc) and PYMEM_DOMAIN_MEM
 * (PyMem_Malloc) domains, with hooks installed by PyMem_SetAllocator while a
 * profile using them runs; the hooks forward to the allocator that was there.
 *
 * Per thread and monotonic, like every counter: the hook adds to this thread's
 * two totals (initial-exec TLS), and a read is a load.  Both domains are called
 * with the GIL held.  A realloc counts as a request of its new size: unlike
 * malloc, Python's allocator cannot say how big the old block was.
 *
 * The hooks never allocate, so they cannot re-enter themselves. */
#define PY_SSIZE_T_CLEAN
#include "allocators.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "../counters/counters.h"

#define CPROF_TLS _Thread_local __attribute__((tls_model("initial-exec")))

enum { PYM_BYTES, PYM_CALLS, PYM_N };

static CPROF_TLS uint64_t pym_counts[PYM_N];    /* this thread's totals */

struct pym_domain {
    PyMemAllocatorDomain domain;
    const char *name;           /* for messages */
    PyMemAllocatorEx prev;      /* what the hook forwards to */
    int chained;                /* the hook is in the domain's chain (on top, or under a
                                 * hook installed after it, which it cannot leave) */
};

static struct pym_domain domains[] = {
    {.domain = PYMEM_DOMAIN_MEM, .name = "MEM"},
    {.domain = PYMEM_DOMAIN_OBJ, .name = "OBJ"},
};
#define NDOMAINS (sizeof(domains) / sizeof(domains[0]))

static int counting;            /* a profile using these runs (under the GIL) */
static unsigned users;          /* how many */

/* ---- the hooks --------------------------------------------------------------------- */

static inline void add(size_t bytes)
{
    if (counting) {
        pym_counts[PYM_BYTES] += bytes;
        pym_counts[PYM_CALLS]++;
    }
}

static void *pym_malloc(void *ctx, size_t size)
{
    struct pym_domain *d = ctx;
    void *p = d->prev.malloc(d->prev.ctx, size);

    if (p)
        add(size);
    return p;
}

static void *pym_calloc(void *ctx, size_t nelem, size_t elsize)
{
    struct pym_domain *d = ctx;
    void *p = d->prev.calloc(d->prev.ctx, nelem, elsize);

    if (p)
        add(nelem * elsize);    /* no overflow: the allocator gave the block */
    return p;
}

static void *pym_realloc(void *ctx, void *ptr, size_t new_size)
{
    struct pym_domain *d = ctx;
    void *p = d->prev.realloc(d->prev.ctx, ptr, new_size);

    if (p)
        add(new_size);
    return p;
}

static void pym_free(void *ctx, void *ptr)
{
    struct pym_domain *d = ctx;

    d->prev.free(d->prev.ctx, ptr);
}

/* ---- install / restore ------------------------------------------------------------- */

static void install(void)
{
    for (size_t i = 0; i < NDOMAINS; i++) {
        struct pym_domain *d = &domains[i];
        PyMemAllocatorEx mine = {d, pym_malloc, pym_calloc, pym_realloc, pym_free};
        if (d->chained)
            continue;   /* still under a hook installed after ours: it calls us */
        /* prev first: the hook may run as soon as it is set */
        PyMem_GetAllocator(d->domain, &d->prev);
        PyMem_SetAllocator(d->domain, &mine);
        d->chained = 1;
    }
    counting = 1;
}

static void restore(void)
{
    counting = 0;
    for (size_t i = 0; i < NDOMAINS; i++) {
        struct pym_domain *d = &domains[i];
        PyMemAllocatorEx cur;
        PyMem_GetAllocator(d->domain, &cur);
        /* Only if ours is on top.  A hook set after ours (tracemalloc.start() during
         * the profile) forwards to ours: we stay in its chain, only forwarding. */
        if (d->chained && cur.malloc == pym_malloc && cur.ctx == d) {
            PyMem_SetAllocator(d->domain, &d->prev);
            d->chained = 0;
        }
    }
}

/* ---- the descriptors ------------------------------------------------------------------ */

static uint64_t pym_read(void *state)
{
    return *(const uint64_t *)state;    /* this thread's own total */
}

#define PYM_COUNTER(ident, cname, cunit, slot, desc)                                             \
    static int ident##_probe(const char *arg, void *ctx, char *path, size_t pathlen,             \
                             struct cprof_error *err)                                            \
    {                                                                                            \
        (void)arg;                                                                               \
        (void)ctx;                                                                               \
        (void)err;                                                                               \
        snprintf(path, pathlen, "a load of this thread's total, raised by PyMem_SetAllocator "   \
                                "hooks on the OBJ and MEM domains while profiling");             \
        return 0;                                                                                \
    }                                                                                            \
    static int ident##_open(void **state, const char *arg, void *ctx, void *shared,              \
                            struct cprof_error *err)                                             \
    {                                                                                            \
        (void)arg;                                                                               \
        (void)ctx;                                                                               \
        (void)shared;                                                                            \
        (void)err;                                                                               \
        *state = &pym_counts[slot]; /* this thread's: opened in the thread that reads it */     \
        return 0;                                                                                \
    }                                                                                            \
    static const struct cprof_counter_def ident = {                                              \
        .name = cname,                                                                           \
        .unit = cunit,                                                                           \
        .description = desc,                                                                     \
        .probe = ident##_probe,                                                                  \
        .thread_open = ident##_open,                                                             \
        .read = pym_read,                                                                        \
    };

PYM_COUNTER(pymalloc_bytes, "pymalloc-bytes", "B", PYM_BYTES,
            "bytes requested from Python's allocator (PyObject_Malloc, PyMem_Malloc; a realloc "
            "counts its new size), small objects included")
PYM_COUNTER(pymalloc_calls, "pymalloc-calls", "calls", PYM_CALLS,
            "allocations through Python's allocator (PyObject_Malloc, PyMem_Malloc, their calloc "
            "and realloc)")

const struct cprof_counter_def *const *cprof_py_counters(void)
{
    static const struct cprof_counter_def *all[CPROF_MAX_COUNTERS * 2];
    size_t n = 0;

    if (all[0])
        return all;
    for (const struct cprof_counter_def *const *d = cprof_builtin_counters; *d; d++)
        all[n++] = *d;
    all[n++] = &pymalloc_bytes;
    all[n++] = &pymalloc_calls;
    all[n] = NULL;
    return all;
}

static int uses_pymalloc(const struct cprof_counter_spec *specs, unsigned n)
{
    for (unsigned i = 0; i < n; i++)
        if (specs[i].def->read == pym_read)
            return 1;
    return 0;
}

void cprof_pymalloc_profile_start(const struct cprof_counter_spec *specs, unsigned n)
{
    if (uses_pymalloc(specs, n) && users++ == 0)
        install();
}

void cprof_pymalloc_profile_stop(const struct cprof_counter_spec *specs, unsigned n)
{
    if (uses_pymalloc(specs, n) && users > 0 && --users == 0)
        restore();
}

/* ---- the CLI's question ----------------------------------------------------------------- */

PyObject *cprof_py_malloc_interposer(PyObject *module, PyObject *args)
{
    const char *name = "malloc-bytes";
    const struct cprof_counter_def *def;
    struct cprof_error err = {0, ""};
    char path[240];

    (void)module;
    if (!PyArg_ParseTuple(args, "|s:malloc_interposer", &name))
        return NULL;
    def = cprof_registry_find(cprof_builtin_counters, name, strlen(name));
    if (!def || !(def->flags & CPROF_COUNTER_NEEDS_PRELOAD)) {
        PyErr_Format(PyExc_ValueError, "'%s' is not one of the malloc counters", name);
        return NULL;
    }
    if (def->probe("", NULL, path, sizeof(path), &err) == 0)
        Py_RETURN_NONE;
    return Py_BuildValue("(is)", err.code, err.msg);
}
