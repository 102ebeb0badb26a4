/* The malloc interposer's logic (see malloc_count.h for the split).
 *
 * Hot path, counting active: the real call, then two additions to the calling
 * thread's block, reached through an initial-exec TLS pointer.  No lock, no atomic
 * read-modify-write: a block is written only by its thread.  Inactive (a program
 * that never starts profiling): the real call and one flag test.
 *
 * A thread gets its block at its first counted allocation: taken from the free
 * list or carved from an mmap'd chunk, under the registry lock (once per thread).
 * When the thread exits, the block goes back to the free list with its counts in
 * it, so the process total (the sum over every block) keeps exited threads' work
 * and a new thread continues from the old values (its readings are deltas).
 *
 * Re-entry: registration (pthread_setspecific) and the lookup of the real
 * functions (dlsym) may allocate.  They run with the thread's guard set; a hook
 * entered meanwhile forwards without counting, or, while the real functions are
 * not known yet, serves the request from the bootstrap arena. */
#define _GNU_SOURCE
#include "malloc_count.h"

#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define IE_TLS __thread __attribute__((tls_model("initial-exec")))
#define LIKELY(x) __builtin_expect(!!(x), 1)
#define UNLIKELY(x) __builtin_expect(!!(x), 0)

/* ---- thread blocks -------------------------------------------------------------- */

struct mc_block {
    struct cprof_malloc_counts c;   /* the thread's counts: written by it alone */
    struct mc_block *next_free;     /* free list link, while no thread owns it */
    int in_use;                     /* owned by a live thread */
} __attribute__((aligned(64)));     /* a cache line each: no false sharing between threads */

#define CHUNK_BYTES (64 * 1024)
#define CHUNK_BLOCKS ((CHUNK_BYTES - 64) / sizeof(struct mc_block))

struct mc_chunk {
    struct mc_chunk *next;          /* chunks are never unmapped */
    size_t used;                    /* blocks carved from it */
    struct mc_block blocks[] __attribute__((aligned(64)));
};

static pthread_mutex_t reg_lock = PTHREAD_MUTEX_INITIALIZER; /* chunks and the free list */
static struct mc_chunk *chunks;     /* newest first */
static struct mc_block *free_blocks;
static size_t blocks_made;

static IE_TLS struct mc_block *tls_block;  /* this thread's block, or NULL */
static IE_TLS int tls_guard;               /* inside cprof's own code: do not count */

static _Atomic int active;          /* counting started (cprof_mc_activate) */

/* ---- the real functions ------------------------------------------------------- */

enum { UNRESOLVED, RESOLVING, RESOLVED, FAILED };
static _Atomic int resolve_state;
static struct cprof_mc_real real;   /* written once, before resolve_state = RESOLVED */
static char unresolved[160];        /* names of required functions not found */

/* ---- bootstrap arena ---------------------------------------------------------------
 * Requests made before the real functions are known (dlsym's own calloc, or a
 * thread racing the resolution).  Bump allocation, never reused: the memory is
 * zero (BSS), free() ignores it, realloc() moves out of it. */

struct boot_hdr {
    size_t size;                    /* bytes requested */
    size_t pad;                     /* keeps the payload 16-byte aligned */
};

static unsigned char boot_arena[CPROF_MC_BOOTSTRAP_SIZE] __attribute__((aligned(64)));
static _Atomic size_t boot_used;

static void *boot_alloc(size_t size, size_t align)
{
    size_t used = atomic_load_explicit(&boot_used, memory_order_relaxed), start, end;
    uintptr_t base = (uintptr_t)boot_arena;

    if (align < 16)
        align = 16;
    do {    /* the payload's address is aligned, with room for its header before it */
        start = ((base + used + sizeof(struct boot_hdr) + align - 1) & ~(uintptr_t)(align - 1)) - base;
        if (start > sizeof(boot_arena) || size > sizeof(boot_arena) - start) {
            errno = ENOMEM;
            return NULL;
        }
        end = start + size;
    } while (!atomic_compare_exchange_weak(&boot_used, &used, end));
    ((struct boot_hdr *)(boot_arena + start))[-1].size = size;
    return boot_arena + start;
}

int cprof_mc_in_bootstrap(const void *p)
{
    return (const unsigned char *)p >= boot_arena &&
           (const unsigned char *)p < boot_arena + sizeof(boot_arena);
}

static size_t boot_size(const void *p)
{
    return ((const struct boot_hdr *)p)[-1].size;
}

/* ---- resolution ------------------------------------------------------------------- */

static void check_resolved(const struct cprof_mc_real *r)
{
    size_t used = 0;

#define CHECK(ret, name, params, args, rkw, req)                                                 \
    if ((req) && !r->name && used + sizeof(#name) + 1 < sizeof(unresolved))                      \
        used += (size_t)snprintf(unresolved + used, sizeof(unresolved) - used, "%s%s",           \
                                 used ? " " : "", #name);
    CPROF_MC_FUNCS(CHECK)
#undef CHECK
}

/* 1 when the real functions can be called; 0: serve the request from the arena. */
static bool resolve_slow(void)
{
    int expected = UNRESOLVED;
    struct cprof_mc_real found;

    if (tls_guard)      /* inside the resolution (dlsym allocating): the arena */
        return false;
    if (!atomic_compare_exchange_strong(&resolve_state, &expected, RESOLVING))
        return expected == RESOLVED;    /* another thread is resolving, or it failed */
    memset(&found, 0, sizeof(found));
    tls_guard = 1;
    cprof_mc_platform.resolve(&found);
    tls_guard = 0;
    check_resolved(&found);
    real = found;
    if (unresolved[0]) {
        static const char msg[] = "libcprof_malloc.so: the C library's malloc family was not found "
                                  "behind the interposer (dlsym RTLD_NEXT); allocations now come "
                                  "from a small arena and will soon fail\n";
        if (write(2, msg, sizeof(msg) - 1) < 0) {
            /* nothing better to do */
        }
        atomic_store_explicit(&resolve_state, FAILED, memory_order_release);
        return false;
    }
    /* publish: `real` is complete before any thread sees RESOLVED */
    atomic_store_explicit(&resolve_state, RESOLVED, memory_order_release);
    return true;
}

static inline bool ready(void)
{
    if (LIKELY(atomic_load_explicit(&resolve_state, memory_order_acquire) == RESOLVED))
        return true;
    return resolve_slow();
}

const char *cprof_mc_unresolved(void)
{
    ready();
    return unresolved;
}

/* ---- registry ---------------------------------------------------------------------- */

static struct mc_block *take_block(void)
{
    struct mc_block *b = NULL;

    pthread_mutex_lock(&reg_lock);
    if (free_blocks) {
        b = free_blocks;
        free_blocks = b->next_free;
    } else {
        if (!chunks || chunks->used == CHUNK_BLOCKS) {
            struct mc_chunk *c = mmap(NULL, CHUNK_BYTES, PROT_READ | PROT_WRITE,
                                      MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
            if (c != MAP_FAILED) {
                c->next = chunks;
                c->used = 0;
                chunks = c;
            }
        }
        if (chunks && chunks->used < CHUNK_BLOCKS) {
            b = &chunks->blocks[chunks->used++];
            blocks_made++;
        }
    }
    if (b) {
        b->in_use = 1;
        b->next_free = NULL;
    }
    pthread_mutex_unlock(&reg_lock);
    return b;
}

/* The calling thread's first counted allocation (or thread_open): give it a block. */
static struct mc_block *register_thread(void)
{
    struct mc_block *b;

    tls_guard = 1;      /* watch_thread_exit may allocate: not ours to count */
    b = take_block();
    if (b) {
        cprof_mc_platform.watch_thread_exit(b);
        tls_block = b;
    }
    tls_guard = 0;
    return b;
}

void cprof_mc_thread_exit(void *block)
{
    struct mc_block *b = block;

    if (tls_block == b)
        tls_block = NULL;   /* a later allocation in this thread registers again */
    pthread_mutex_lock(&reg_lock);
    if (b->in_use) {
        b->in_use = 0;
        b->next_free = free_blocks;
        free_blocks = b;
    }
    pthread_mutex_unlock(&reg_lock);
}

struct cprof_malloc_counts *cprof_mc_thread_counts(void)
{
    struct mc_block *b = tls_block;

    if (!b && !tls_guard)
        b = register_thread();
    return b ? &b->c : NULL;
}

void cprof_mc_process_total(uint64_t out[CPROF_MALLOC_NCOUNTS])
{
    memset(out, 0, CPROF_MALLOC_NCOUNTS * sizeof(out[0]));
    pthread_mutex_lock(&reg_lock);
    for (struct mc_chunk *c = chunks; c; c = c->next)
        for (size_t i = 0; i < c->used; i++)
            for (int k = 0; k < CPROF_MALLOC_NCOUNTS; k++)
                out[k] += atomic_load_explicit(&c->blocks[i].c.v[k], memory_order_relaxed);
    pthread_mutex_unlock(&reg_lock);
}

size_t cprof_mc_blocks_made(void)
{
    size_t n;

    pthread_mutex_lock(&reg_lock);
    n = blocks_made;
    pthread_mutex_unlock(&reg_lock);
    return n;
}

int cprof_mc_guarded(void)
{
    return tls_guard;
}

void cprof_mc_atfork_prepare(void)
{
    pthread_mutex_lock(&reg_lock);  /* no thread is half-way through a registration */
}

void cprof_mc_atfork_parent(void)
{
    pthread_mutex_unlock(&reg_lock);
}

void cprof_mc_atfork_child(void)
{
    /* Only the forking thread exists here: every other block is free for the
     * child's own threads (their counts stay in the process total). */
    free_blocks = NULL;
    for (struct mc_chunk *c = chunks; c; c = c->next)
        for (size_t i = c->used; i-- > 0;) {
            struct mc_block *b = &c->blocks[i];
            if (b == tls_block)
                continue;
            b->in_use = 0;
            b->next_free = free_blocks;
            free_blocks = b;
        }
    pthread_mutex_unlock(&reg_lock);    /* taken by the prepare handler, in this thread */
}

/* ---- counting ---------------------------------------------------------------------- */

void cprof_mc_activate(void)
{
    atomic_store_explicit(&active, 1, memory_order_relaxed);
}

int cprof_mc_active(void)
{
    return atomic_load_explicit(&active, memory_order_relaxed);
}

static inline bool counting(void)
{
    return atomic_load_explicit(&active, memory_order_relaxed) && !tls_guard;
}

/* Only this thread writes its block: a relaxed load and store (plain moves). */
static inline void bump(_Atomic uint64_t *c, uint64_t n)
{
    atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + n,
                          memory_order_relaxed);
}

/* Add `bytes` and one call to the pair (bytes_idx, bytes_idx + 1). */
static inline void count(enum cprof_malloc_count bytes_idx, uint64_t bytes)
{
    struct mc_block *b = tls_block;

    if (UNLIKELY(!b) && !(b = register_thread()))
        return;
    bump(&b->c.v[bytes_idx], bytes);
    bump(&b->c.v[bytes_idx + 1], 1);
}

_Static_assert(CPROF_MALLOC_CALLS == CPROF_MALLOC_BYTES + 1 && CPROF_FREE_CALLS == CPROF_FREE_BYTES + 1,
               "count() relies on each calls slot following its bytes slot");

/* ---- the hooks ----------------------------------------------------------------------- */

void *cprof_mc_malloc(size_t size)
{
    void *p;

    if (UNLIKELY(!ready()))
        return boot_alloc(size, 16);
    p = real.malloc(size);
    if (p && counting())
        count(CPROF_MALLOC_BYTES, size);
    return p;
}

void *cprof_mc_calloc(size_t nmemb, size_t size)
{
    size_t total;
    void *p;

    if (__builtin_mul_overflow(nmemb, size, &total)) {
        errno = ENOMEM;
        return NULL;
    }
    if (UNLIKELY(!ready()))
        return boot_alloc(total, 16);   /* dlsym's calloc lands here: the arena is zero */
    p = real.calloc(nmemb, size);
    if (p && counting())
        count(CPROF_MALLOC_BYTES, total);
    return p;
}

/* What every free does before the block goes back: count it.  false when it must
 * not be passed on (NULL, or a block of the arena, never reused, or of a real
 * malloc we could not find: leaked). */
static inline bool free_counted(void *ptr)
{
    if (!ptr || cprof_mc_in_bootstrap(ptr))
        return false;
    if (UNLIKELY(!ready()))
        return false;
    /* Measure before freeing: once freed, the block may already belong to
     * another thread, and its size with it. */
    if (counting())
        count(CPROF_FREE_BYTES, real.malloc_usable_size(ptr));
    return true;
}

void cprof_mc_free(void *ptr)
{
    if (free_counted(ptr))
        real.free(ptr);
}

/* C23's sized frees: counted as a free of the block (its usable size, as free()
 * counts: the size given is what was asked, which the usable size covers), then
 * passed on, or to free() where the C library has no sized free (a valid
 * implementation: the size is a hint). */
void cprof_mc_free_sized(void *ptr, size_t size)
{
    if (!free_counted(ptr))
        return;
    if (real.free_sized)
        real.free_sized(ptr, size);
    else
        real.free(ptr);
}

void cprof_mc_free_aligned_sized(void *ptr, size_t alignment, size_t size)
{
    if (!free_counted(ptr))
        return;
    if (real.free_aligned_sized)
        real.free_aligned_sized(ptr, alignment, size);
    else
        real.free(ptr);
}

/* A block from the arena grows into a real one (its contents copied). */
static void *boot_realloc(void *ptr, size_t size)
{
    size_t old = boot_size(ptr);
    void *q = cprof_mc_malloc(size);

    if (q)
        memcpy(q, ptr, old < size ? old : size);
    return q;
}

void *cprof_mc_realloc(void *ptr, size_t size)
{
    size_t old;
    void *q;

    if (ptr && cprof_mc_in_bootstrap(ptr))
        return boot_realloc(ptr, size);
    if (UNLIKELY(!ready()))
        return ptr ? (errno = ENOMEM, NULL) : boot_alloc(size, 16);
    if (!counting())
        return real.realloc(ptr, size);
    /* the old size before the call: afterwards the block may be someone else's */
    old = ptr ? real.malloc_usable_size(ptr) : 0;
    q = real.realloc(ptr, size);
    if (q)
        count(CPROF_MALLOC_BYTES, size > old ? size - old : 0);   /* the growth */
    else if (ptr && size == 0)
        count(CPROF_FREE_BYTES, old);   /* glibc's realloc(p, 0) frees p */
    return q;
}

void *cprof_mc_reallocarray(void *ptr, size_t nmemb, size_t size)
{
    size_t total;

    /* glibc's reallocarray calls its realloc internally, out of our sight: do it here */
    if (__builtin_mul_overflow(nmemb, size, &total)) {
        errno = ENOMEM;
        return NULL;
    }
    return cprof_mc_realloc(ptr, total);
}

int cprof_mc_posix_memalign(void **memptr, size_t alignment, size_t size)
{
    int r;

    if (UNLIKELY(!ready())) {
        if (alignment < sizeof(void *) || (alignment & (alignment - 1)))
            return EINVAL;
        *memptr = boot_alloc(size, alignment);
        return *memptr ? 0 : ENOMEM;
    }
    r = real.posix_memalign(memptr, alignment, size);
    if (r == 0 && counting())
        count(CPROF_MALLOC_BYTES, size);
    return r;
}

static size_t page_size(void)
{
    long p = sysconf(_SC_PAGESIZE);

    return p > 0 ? (size_t)p : 4096;
}

static size_t round_to_page(size_t size)
{
    size_t p = page_size();

    return size ? (size + p - 1) & ~(p - 1) : p;
}

/* aligned_alloc, memalign, valloc, pvalloc: one shape. */
#define ALIGNED_HOOK(name, params, call, boot)                                                   \
    void *cprof_mc_##name params                                                                 \
    {                                                                                            \
        void *p;                                                                                 \
        if (UNLIKELY(!ready()))                                                                  \
            return boot;                                                                         \
        p = call;                                                                                \
        if (p && counting())                                                                     \
            count(CPROF_MALLOC_BYTES, size);                                                     \
        return p;                                                                                \
    }

ALIGNED_HOOK(aligned_alloc, (size_t alignment, size_t size), real.aligned_alloc(alignment, size),
             boot_alloc(size, alignment))
ALIGNED_HOOK(memalign, (size_t alignment, size_t size), real.memalign(alignment, size),
             boot_alloc(size, alignment))
ALIGNED_HOOK(valloc, (size_t size), real.valloc(size), boot_alloc(size, page_size()))
/* pvalloc (size rounded up to pages) is obsolete and may be missing: memalign does it */
ALIGNED_HOOK(pvalloc, (size_t size),
             real.pvalloc ? real.pvalloc(size) : real.memalign(page_size(), round_to_page(size)),
             boot_alloc(size, page_size()))

size_t cprof_mc_malloc_usable_size(void *ptr)
{
    if (!ptr)
        return 0;
    if (cprof_mc_in_bootstrap(ptr))
        return boot_size(ptr);
    if (UNLIKELY(!ready()))
        return 0;
    return real.malloc_usable_size(ptr);
}

/* ---- dlsym ------------------------------------------------------------------------------ */

int cprof_mc_is_family(const char *name)
{
#define IS(ret, fname, params, args, rkw, req)                                                   \
    if (strcmp(name, #fname) == 0)                                                               \
        return 1;
    if (!name)
        return 0;
    CPROF_MC_FUNCS(IS)
#undef IS
    return 0;
}

void *cprof_mc_dlsym_result(void *handle, const char *name, void *found)
{
    const struct cprof_mc_real *hooks = cprof_mc_platform.hooks;

    if (!found || !name || !hooks || handle == RTLD_DEFAULT || handle == RTLD_NEXT)
        return found;
    /* Not before the real functions are known (nor inside their resolution): then
     * there is nothing to compare with. */
    if (atomic_load_explicit(&resolve_state, memory_order_acquire) != RESOLVED)
        return found;
#define SUBSTITUTE(ret, fname, params, args, rkw, req)                                           \
    if (strcmp(name, #fname) == 0)                                                               \
        return real.fname && found == (void *)real.fname ? (void *)hooks->fname : found;
    CPROF_MC_FUNCS(SUBSTITUTE)
#undef SUBSTITUTE
    return found;
}
