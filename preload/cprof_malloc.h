/* The ABI between libcprof_malloc.so (the LD_PRELOAD interposer) and its readers
 * (counters/malloc.c, benches, tests through ctypes).  Readers never link against
 * the library: they find cprof_malloc_api() with dlsym(RTLD_DEFAULT), so a process
 * started without the preload simply does not have it.
 *
 * The process uses the library's malloc iff dlsym(RTLD_DEFAULT, "malloc") lies in
 * the same object as cprof_malloc_api (dladdr): another interposer, or ASan,
 * first in line would take the calls instead.
 *
 * Counts are per thread and monotonic.  Each thread's block is written only by
 * that thread (relaxed load + store: plain instructions, no lock prefix) and may
 * be read by any thread with a relaxed load. */
#ifndef CPROF_MALLOC_H
#define CPROF_MALLOC_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#define CPROF_MALLOC_ABI_VERSION 1      /* bumped when anything below changes */
#define CPROF_MALLOC_LIBRARY "libcprof_malloc.so"
#define CPROF_MALLOC_API_SYMBOL "cprof_malloc_api"

enum cprof_malloc_count {
    CPROF_MALLOC_BYTES,         /* bytes requested: malloc, calloc, memalign family, realloc growth */
    CPROF_MALLOC_CALLS,         /* successful allocation calls, realloc included */
    CPROF_FREE_BYTES,           /* malloc_usable_size() of each block freed */
    CPROF_FREE_CALLS,           /* free() of a non-NULL block, realloc(p, 0) */
    CPROF_MALLOC_NCOUNTS
};

struct cprof_malloc_counts {
    _Atomic uint64_t v[CPROF_MALLOC_NCOUNTS];   /* indexed by enum cprof_malloc_count */
};

struct cprof_malloc_api {
    unsigned version;           /* CPROF_MALLOC_ABI_VERSION of the library */
    /* The calling thread's counts (registered on first use); NULL if out of memory. */
    struct cprof_malloc_counts *(*thread_counts)(void);
    /* Start counting, process-wide; until then the hooks only forward (one flag test). */
    void (*activate)(void);
    /* Sum over every thread that ever counted, exited ones included. */
    void (*process_total)(uint64_t out[CPROF_MALLOC_NCOUNTS]);
    /* "" if every function of the malloc family was found behind the library with
     * dlsym(RTLD_NEXT); else the names that were not. */
    const char *unresolved;
};

typedef const struct cprof_malloc_api *(*cprof_malloc_api_fn)(void);

#endif
