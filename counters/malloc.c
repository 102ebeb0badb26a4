/* malloc-bytes, malloc-calls, free-bytes, free-calls: the malloc family of the
 * whole process (interpreter, C extensions, native libraries), counted per thread
 * by cprof's interposer, libcprof_malloc.so, which must be preloaded when the
 * program starts (cprof's CLI restarts Python with it; preload/ has the code).
 *
 * This module never links against the interposer: it finds its ABI with
 * dlsym(RTLD_DEFAULT) (preload/cprof_malloc.h).  thread_open takes the calling
 * thread's counts block; a read is one load from it. */
#define _GNU_SOURCE
#include "counters.h"

#include "../preload/cprof_malloc.h"

#include <dlfcn.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static _Atomic(const struct cprof_malloc_api *) found_api;  /* set by the first good probe */

/* Where the interposer is installed: beside the object this code is linked into
 * (the extension module, in cprof's package folder). */
static void library_path(char *buf, size_t len)
{
    Dl_info info;
    const char *slash;

    if (dladdr((void *)library_path, &info) && info.dli_fname &&
        (slash = strrchr(info.dli_fname, '/')) != NULL)
        snprintf(buf, len, "%.*s/%s", (int)(slash - info.dli_fname), info.dli_fname,
                 CPROF_MALLOC_LIBRARY);
    else
        snprintf(buf, len, "/path/to/cprof/%s", CPROF_MALLOC_LIBRARY);
}

/* The interposer's ABI, if it is in the process and takes the malloc calls, into
 * *out; otherwise -errno and a sentence saying how to start the program. */
static int find_api(const char *name, const struct cprof_malloc_api **out,
                    struct cprof_error *err)
{
    const struct cprof_malloc_api *api = atomic_load(&found_api);
    cprof_malloc_api_fn fn;
    Dl_info mine, theirs;
    void *m;
    char lib[200];

    if ((*out = api))
        return 0;
    library_path(lib, sizeof(lib));
    *(void **)&fn = dlsym(RTLD_DEFAULT, CPROF_MALLOC_API_SYMBOL);
    if (!fn)
        return cprof_error_set(err, ENOPKG,
                               "counter '%s' needs cprof's malloc interposer loaded at start-up: "
                               "run `cprof --counter=%s script.py` (it restarts Python with it), "
                               "or `LD_PRELOAD=%s python ...`",
                               name, name, lib);
    api = fn();
    if (api->version != CPROF_MALLOC_ABI_VERSION)
        return cprof_error_set(err, EINVAL,
                               "counter '%s': the preloaded malloc interposer speaks ABI %u, this "
                               "cprof %u; preload the one installed with this cprof (%s)",
                               name, api->version, CPROF_MALLOC_ABI_VERSION, lib);
    if (api->unresolved[0])
        return cprof_error_set(err, ENOSYS,
                               "counter '%s': cprof's malloc interposer could not find the C "
                               "library's %s behind it; this C library is not supported",
                               name, api->unresolved);
    m = dlsym(RTLD_DEFAULT, "malloc");
    if (!m || !dladdr(m, &theirs) || !dladdr((void *)fn, &mine) ||
        theirs.dli_fbase != mine.dli_fbase)
        return cprof_error_set(err, EBUSY,
                               "counter '%s': cprof's malloc interposer is loaded, but the process "
                               "takes malloc from %s; put %s first in LD_PRELOAD (AddressSanitizer "
                               "and other malloc replacements cannot be combined with it)",
                               name, m && theirs.dli_fname ? theirs.dli_fname : "another library",
                               lib);
    atomic_store(&found_api, api);
    *out = api;
    return 0;
}

static int malloc_probe(const char *name, char *path, size_t pathlen, struct cprof_error *err)
{
    const struct cprof_malloc_api *api;
    int r = find_api(name, &api, err);

    if (r < 0)
        return r;
    snprintf(path, pathlen, "a load from this thread's counts, kept by the interposed malloc "
                            "family (%s, preloaded)", CPROF_MALLOC_LIBRARY);
    return 0;
}

static int malloc_open(const char *name, enum cprof_malloc_count which, void **state,
                       struct cprof_error *err)
{
    const struct cprof_malloc_api *api;
    struct cprof_malloc_counts *c;
    int r = find_api(name, &api, err);

    if (r < 0)
        return r;
    api->activate();
    c = api->thread_counts();
    if (!c)
        return cprof_error_set(err, ENOMEM, "out of memory opening counter '%s'", name);
    *state = &c->v[which];
    return 0;
}

/* Written by this thread only (the interposer's hooks); a relaxed load is a plain one. */
static uint64_t malloc_read(void *state)
{
    return atomic_load_explicit((_Atomic uint64_t *)state, memory_order_relaxed);
}

/* One descriptor per count; they differ only in name, unit and slot. */
#define MALLOC_COUNTER(ident, cname, cunit, slot, desc)                                          \
    static int ident##_probe(const char *arg, void *ctx, char *path, size_t pathlen,             \
                             struct cprof_error *err)                                            \
    {                                                                                            \
        (void)arg;                                                                               \
        (void)ctx;                                                                               \
        return malloc_probe(cname, path, pathlen, err);                                          \
    }                                                                                            \
    static int ident##_open(void **state, const char *arg, void *ctx, void *shared,              \
                            struct cprof_error *err)                                             \
    {                                                                                            \
        (void)arg;                                                                               \
        (void)ctx;                                                                               \
        (void)shared;                                                                            \
        return malloc_open(cname, slot, state, err);                                             \
    }                                                                                            \
    const struct cprof_counter_def cprof_counter_##ident = {                                     \
        .name = cname,                                                                           \
        .unit = cunit,                                                                           \
        .description = desc,                                                                     \
        .probe = ident##_probe,                                                                  \
        .thread_open = ident##_open,                                                             \
        .read = malloc_read,                                                                     \
        .flags = CPROF_COUNTER_NEEDS_PRELOAD,                                                    \
    };

MALLOC_COUNTER(malloc_bytes, "malloc-bytes", "B", CPROF_MALLOC_BYTES,
               "bytes requested from malloc, calloc, realloc (its growth), posix_memalign, "
               "aligned_alloc, memalign, valloc by anything in the process")
MALLOC_COUNTER(malloc_calls, "malloc-calls", "calls", CPROF_MALLOC_CALLS,
               "calls of the malloc family that allocated (realloc included)")
MALLOC_COUNTER(free_bytes, "free-bytes", "B", CPROF_FREE_BYTES,
               "bytes freed (the usable size of each block, which may exceed what was asked)")
MALLOC_COUNTER(free_calls, "free-calls", "calls", CPROF_FREE_CALLS,
               "free() of a block (and realloc to size 0)")
