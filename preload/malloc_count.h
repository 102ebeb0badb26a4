/* The malloc interposer's logic, compiled apart from the symbols it interposes.
 *
 *   malloc_count.c   this logic: per-thread counts, the re-entry guard, the
 *                    bootstrap arena, the registry of thread blocks, fork handlers
 *   malloc_hooks.c   the interposition: defines malloc & co. (each one line calling
 *                    cprof_mc_<name> below), finds the real ones with
 *                    dlsym(RTLD_NEXT), exports cprof_malloc_api
 *   dlsym_hooks.c    dlsym and dlvsym, so that the family looked up on a library's
 *                    handle (ctypes.CDLL("libc.so.6").malloc) is the interposer's too
 *
 * The split lets tests/c/test_malloc.c drive the logic with a fake "real"
 * allocator, under AddressSanitizer too (ASan and an interposed malloc cannot share
 * a process, but this code can run under it). */
#ifndef CPROF_MALLOC_COUNT_H
#define CPROF_MALLOC_COUNT_H

#include <stddef.h>
#include <stdint.h>

#include "cprof_malloc.h"

/* Every interposed function, once.  The list generates the table of real
 * functions, their lookup and the check that each required one was found
 * (malloc_hooks.c), and the exported definitions.
 *
 *   X(return type, name, (parameters), (arguments), return keyword, required)
 *
 * required: 1 if glibc must provide it (the hook forwards to it).  reallocarray is
 * counted through realloc and pvalloc has a fallback, so they are optional; so are
 * C23's free_sized and free_aligned_sized (new in glibc; 2.36 has neither), which
 * fall back to free. */
#define CPROF_MC_FUNCS(X)                                                                        \
    X(void *, malloc, (size_t size), (size), return, 1)                                          \
    X(void *, calloc, (size_t nmemb, size_t size), (nmemb, size), return, 1)                     \
    X(void *, realloc, (void *ptr, size_t size), (ptr, size), return, 1)                         \
    X(void *, reallocarray, (void *ptr, size_t nmemb, size_t size), (ptr, nmemb, size), return, 0) \
    X(int, posix_memalign, (void **memptr, size_t alignment, size_t size),                       \
      (memptr, alignment, size), return, 1)                                                      \
    X(void *, aligned_alloc, (size_t alignment, size_t size), (alignment, size), return, 1)      \
    X(void *, memalign, (size_t alignment, size_t size), (alignment, size), return, 1)           \
    X(void *, valloc, (size_t size), (size), return, 1)                                          \
    X(void *, pvalloc, (size_t size), (size), return, 0)                                         \
    X(void, free, (void *ptr), (ptr), , 1)                                                       \
    X(void, free_sized, (void *ptr, size_t size), (ptr, size), , 0)                              \
    X(void, free_aligned_sized, (void *ptr, size_t alignment, size_t size),                      \
      (ptr, alignment, size), , 0)                                                               \
    X(size_t, malloc_usable_size, (void *ptr), (ptr), return, 1)

/* The next definitions of the family (the C library's), found at first use. */
struct cprof_mc_real {
#define CPROF_MC_REAL_SLOT(ret, name, params, args, r, req) ret(*name) params;
    CPROF_MC_FUNCS(CPROF_MC_REAL_SLOT)
#undef CPROF_MC_REAL_SLOT
};

/* What the logic needs from its host: the interposer (malloc_hooks.c) or a test. */
struct cprof_mc_platform {
    /* Fill `real` with the functions behind the interposer.  Runs once, with the
     * calling thread's guard set: what it allocates (dlsym's calloc) comes from
     * the bootstrap arena. */
    void (*resolve)(struct cprof_mc_real *real);
    /* Arrange for cprof_mc_thread_exit(block) when the calling thread exits (a
     * pthread key's destructor).  May allocate: runs with the guard set.  0 or -1. */
    int (*watch_thread_exit)(void *block);
    /* The interposed functions themselves (the addresses a program reaches them
     * by), which dlsym on a library's handle returns in place of the C library's. */
    const struct cprof_mc_real *hooks;
};
extern const struct cprof_mc_platform cprof_mc_platform;

/* The hooks: each behaves as its C library namesake and counts in the calling
 * thread's block when counting is active and the thread is not inside cprof's
 * own code (the guard). */
#define CPROF_MC_DECLARE(ret, name, params, args, r, req) ret cprof_mc_##name params;
CPROF_MC_FUNCS(CPROF_MC_DECLARE)
#undef CPROF_MC_DECLARE

/* dlsym(handle, name) found `found`: what the program should get instead.  The
 * interposed function when `found` is the very function the interposer forwards
 * to for `name` (the C library's malloc, found through an explicit handle such as
 * dlopen("libc.so.6")); otherwise `found` itself.  RTLD_DEFAULT already finds the
 * interposer, and RTLD_NEXT asks for the next definition on purpose (another
 * interposer behind this one): both keep their answer. */
void *cprof_mc_dlsym_result(void *handle, const char *name, void *found);

/* 1 if `name` is one of the interposed functions. */
int cprof_mc_is_family(const char *name);

/* dlsym_hooks.c (the interposer only): find the C library's dlsym and dlvsym now,
 * before anything calls the interposed ones. */
void cprof_mc_dl_init(void);

/* Start counting (process-wide, for good).  Before this the hooks only forward. */
void cprof_mc_activate(void);
int cprof_mc_active(void);

/* The calling thread's counts, registering the thread at first use; NULL only if
 * no memory could be mapped for it. */
struct cprof_malloc_counts *cprof_mc_thread_counts(void);

/* Sum over every thread block ever made (exited threads' counts stay in it). */
void cprof_mc_process_total(uint64_t out[CPROF_MALLOC_NCOUNTS]);

/* The calling thread is exiting: its block goes back to the free list, counts kept. */
void cprof_mc_thread_exit(void *block);

/* pthread_atfork handlers: no fork in the middle of a registration; the child
 * keeps the forking thread's block and frees the others' for its own threads. */
void cprof_mc_atfork_prepare(void);
void cprof_mc_atfork_parent(void);
void cprof_mc_atfork_child(void);

/* "" if every required real function was found, else their names ("memalign "). */
const char *cprof_mc_unresolved(void);

/* For tests: is p in the bootstrap arena; blocks made so far (free or in use);
 * the calling thread's guard (1 inside cprof's own code). */
int cprof_mc_in_bootstrap(const void *p);
size_t cprof_mc_blocks_made(void);
int cprof_mc_guarded(void);

#define CPROF_MC_BOOTSTRAP_SIZE (64 * 1024)    /* bytes served before the real malloc is known */

#endif
