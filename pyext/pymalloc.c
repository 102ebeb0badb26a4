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
 * The hooks never allocate, so they cannot re-enter themselves.
 *
 * What is here is one per process, because the allocator is: PyMem_SetAllocator
 * sets it for the whole process, every interpreter in it included.  So the
 * domain table, the count of profiles using the hooks and the `counting` flag are
 * process globals, not module state: `users` and the table change only under
 * `lock` (profile start and stop, never the hot path), and the hooks read
 * `counting` with a relaxed atomic load (a plain load on x86-64 and arm64).  The
 * totals are per thread.  PyMem_SetAllocator itself is safe here because the MEM
 * and OBJ domains are only called with the GIL held, and so is our caller.  Not so
 * on the free-threaded build with the GIL off, where these counters are refused
 * (pym_ft_why). */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include "pymalloc.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#define CPROF_TLS _Thread_local __attribute__((tls_model("initial-exec")))

enum { PYM_BYTES, PYM_CALLS, PYM_N };

static CPROF_TLS uint64_t pym_counts[PYM_N];    /* this thread's totals */

/* Refused on the free-threaded build: PyMem_SetAllocator is only safe when no
 * other thread allocates, which that build has no GIL to ensure once threads run
 * (and a profile starts and stops while they do), and its objects come from
 * mimalloc heaps that the garbage collector walks, which a hook in front of the
 * OBJ domain would have to preserve exactly. */
#ifdef Py_GIL_DISABLED
#define PYM_FREE_THREADED 1
#else
#define PYM_FREE_THREADED 0
#endif
static const char pym_ft_why[] =
    "the pymalloc-* counters do not work on the free-threaded build with the GIL off: they "
    "would swap Python's allocator (PyMem_SetAllocator) while other threads allocate, with "
    "no GIL to stop them; run with PYTHON_GIL=1 to use them";

/* Whether this process runs with the GIL (always, but on a free-threaded build run
 * with PYTHON_GIL=1 or -X gil=1): then swapping the allocator is as safe as on a
 * GIL build.  Asked at probe time, with a thread state. */
static int gil_off(void)
{
#if PYM_FREE_THREADED
    PyObject *f = PySys_GetObject("_is_gil_enabled"), *r; /* borrowed */
    int on = 0;

    if (f && (r = PyObject_CallNoArgs(f))) {
        on = PyObject_IsTrue(r) == 1;
        Py_DECREF(r);
    }
    PyErr_Clear();
    return !on;
#else
    return 0;
#endif
}

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

static atomic_int counting;     /* a profile using these runs: the hooks count */
static unsigned users;          /* how many (under lock) */
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER; /* users and domains[] */

/* ---- the hooks --------------------------------------------------------------------- */

static inline void add(size_t bytes)
{
    if (atomic_load_explicit(&counting, memory_order_relaxed)) {
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

/* Under lock. */
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
    atomic_store_explicit(&counting, 1, memory_order_relaxed);
}

/* Under lock. */
static void restore(void)
{
    atomic_store_explicit(&counting, 0, memory_order_relaxed);
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
        if (gil_off())                                                                           \
            return cprof_error_set(err, ENOTSUP, "%s", pym_ft_why);                              \
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
    const struct cprof_counter_def ident = {                                              \
        .name = cname,                                                                           \
        .unit = cunit,                                                                           \
        .description = desc,                                                                     \
        .probe = ident##_probe,                                                                  \
        .thread_open = ident##_open,                                                             \
        .read = pym_read,                                                                        \
    };

PYM_COUNTER(cprof_counter_pymalloc_bytes, "pymalloc-bytes", "B", PYM_BYTES,
            "bytes requested from Python's allocator (PyObject_Malloc, PyMem_Malloc; a realloc "
            "counts its new size), small objects included")
PYM_COUNTER(cprof_counter_pymalloc_calls, "pymalloc-calls", "calls", PYM_CALLS,
            "allocations through Python's allocator (PyObject_Malloc, PyMem_Malloc, their calloc "
            "and realloc)")

static int uses_pymalloc(const struct cprof_counter_spec *specs, unsigned n)
{
    for (unsigned i = 0; i < n; i++)
        if (specs[i].def->read == pym_read)
            return 1;
    return 0;
}

void cprof_pymalloc_profile_start(const struct cprof_counter_spec *specs, unsigned n)
{
    if (!uses_pymalloc(specs, n))
        return;
    pthread_mutex_lock(&lock);
    if (users++ == 0)
        install();
    pthread_mutex_unlock(&lock);
}

void cprof_pymalloc_profile_stop(const struct cprof_counter_spec *specs, unsigned n)
{
    if (!uses_pymalloc(specs, n))
        return;
    pthread_mutex_lock(&lock);
    if (users > 0 && --users == 0)
        restore();
    pthread_mutex_unlock(&lock);
}
