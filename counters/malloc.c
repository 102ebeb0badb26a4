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

/* The interposer's ABI if it is in the process and takes the malloc calls;
 * otherwise NULL and a sentence saying how to start the program. */
static const struct cprof_malloc_api *find_api(const char *name, struct cprof_error *err)
{
    const struct cprof_malloc_api *api = atomic_load(&found_api);
    cprof_malloc_api_fn fn;
    Dl_info mine, theirs;
    void *m;
    char lib[200];

    if (api)
        return api;
    library_path(lib, sizeof(lib));
    *(void **)&fn = dlsym(RTLD_DEFAULT, CPROF_MALLOC_API_SYMBOL);
    if (!fn) {
        cprof_error_set(err, ENOPKG,
                        "counter '%s' needs cprof's malloc interposer loaded at start-up: run "
                        "`cprof --counter=%s script.py` (it restarts Python with it), or "
                        "`LD_PRELOAD=%s python ...`",
                        name, name, lib);
        return NULL;
    }
    api = fn();
    if (api->version != CPROF_MALLOC_ABI_VERSION) {
        cprof_error_set(err, EINVAL,
                        "counter '%s': the preloaded malloc interposer speaks ABI %u, this cprof "
                        "%u; preload the one installed with this cprof (%s)",
                        name, api->version, CPROF_MALLOC_ABI_VERSION, lib);
        return NULL;
    }
    if (api->unresolved[0]) {
        cprof_error_set(err, ENOSYS,
                        "counter '%s': cprof's malloc interposer could not find the C library's "
                        "%s behind it; this C library is not supported",
                        name, api->unresolved);
        return NULL;
    }
    m = dlsym(RTLD_DEFAULT, "malloc");
    if (!m || !dladdr(m, &theirs) || !dladdr((void *)fn, &mine) ||
        theirs.dli_fbase != mine.dli_fbase) {
        cprof_error_set(err, EBUSY,
                        "counter '%s': cprof's malloc interposer is loaded, but the process "
                        "takes malloc from %s; put %s first in LD_PRELOAD (AddressSanitizer and "
                        "other malloc replacements cannot be combined with it)",
                        name, m && theirs.dli_fname ? theirs.dli_fname : "another library", lib);
        return NULL;
    }
    atomic_store(&found_api, api);
    return api;
}

static int malloc_probe(const char *name, const char *arg, char *path, size_t pathlen,
                        struct cprof_error *err)
{
    if (arg && arg[0]) {
        cprof_error_set(err, EINVAL, "counter '%s' takes no argument; write just '%s'", name,
                        name);
        return -1;
    }
    if (!find_api(name, err))
        return -1;
    snprintf(path, pathlen, "a load from this thread's counts, kept by the interposed malloc "
                            "family (%s, preloaded)", CPROF_MALLOC_LIBRARY);
    return 0;
}

static int malloc_open(const char *name, enum cprof_malloc_count which, void **state,
                       struct cprof_error *err)
{
    const struct cprof_malloc_api *api = find_api(name, err);
    struct cprof_malloc_counts *c;

    if (!api)
        return -1;
    api->activate();
    c = api->thread_counts();
    if (!c) {
        cprof_error_set(err, ENOMEM, "out of memory opening counter '%s'", name);
        return -1;
    }
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
    static int ident##_probe(const char *arg, char *path, size_t pathlen,                        \
                             struct cprof_error *err)                                            \
    {                                                                                            \
        return malloc_probe(cname, arg, path, pathlen, err);                                     \
    }                                                                                            \
    static int ident##_open(void **state, const char *arg, struct cprof_error *err)              \
    {                                                                                            \
        (void)arg;                                                                               \
        return malloc_open(cname, slot, state, err);                                             \
    }                                                                                            \
    const struct cprof_counter_def cprof_counter_##ident = {                                     \
        .name = cname,                                                                           \
        .unit = cunit,                                                                           \
        .description = desc,                                                                     \
        .probe = ident##_probe,                                                                  \
        .thread_open = ident##_open,                                                             \
        .read = malloc_read,                                                                     \
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
