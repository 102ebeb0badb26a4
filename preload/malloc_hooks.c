/* libcprof_malloc.so: the malloc family, interposed through LD_PRELOAD.
 *
 * Each interposed function is one line generated from CPROF_MC_FUNCS
 * (malloc_count.h) that calls its cprof_mc_ counterpart, where the counting is.
 * This file is the part that cannot run under AddressSanitizer: it defines
 * malloc itself.  What it adds to the logic is the platform: the real functions
 * by dlsym(RTLD_NEXT), thread exit through a pthread key, fork handlers, and the
 * ABI readers find with dlsym(RTLD_DEFAULT, "cprof_malloc_api").
 *
 * Order at start-up: the dynamic loader may call malloc before this library's
 * constructor has run; the hooks resolve the real functions on first use, so
 * the constructor only adds what counting needs later (the key, the handlers),
 * and counting starts only when a reader calls activate(). */
#define _GNU_SOURCE
#include "malloc_count.h"

#include <dlfcn.h>
#include <malloc.h>
#include <pthread.h>
#include <stdlib.h>

#define EXPORT __attribute__((visibility("default")))

/* ---- the interposed functions ---------------------------------------------------- */

/* Each one is a local function, exported under its C library name by an alias:
 * the hooks table below takes the local address, which is ours even if the
 * program defines a malloc of its own. */
#define CPROF_MC_DEFINE(ret, name, params, args, rkw, req)                                      \
    static ret hook_##name params                                                               \
    {                                                                                           \
        rkw cprof_mc_##name args;                                                               \
    }                                                                                           \
    EXPORT ret name params __attribute__((alias("hook_" #name)));
CPROF_MC_FUNCS(CPROF_MC_DEFINE)
#undef CPROF_MC_DEFINE

static const struct cprof_mc_real hooks = {
#define CPROF_MC_HOOK(ret, name, params, args, rkw, req) .name = hook_##name,
    CPROF_MC_FUNCS(CPROF_MC_HOOK)
#undef CPROF_MC_HOOK
};

/* ---- platform ----------------------------------------------------------------------- */

static void resolve_next(struct cprof_mc_real *real)
{
    /* dlsym may call calloc (its error buffer): the guard is set, so that comes
     * from the bootstrap arena */
#define CPROF_MC_RESOLVE(ret, name, params, args, rkw, req)                                     \
    *(void **)&real->name = dlsym(RTLD_NEXT, #name);
    CPROF_MC_FUNCS(CPROF_MC_RESOLVE)
#undef CPROF_MC_RESOLVE
}

static pthread_key_t exit_key;
static int have_exit_key;

static void on_thread_exit(void *block)
{
    cprof_mc_thread_exit(block);
}

static int watch_thread_exit(void *block)
{
    return have_exit_key && pthread_setspecific(exit_key, block) == 0 ? 0 : -1;
}

const struct cprof_mc_platform cprof_mc_platform = {
    .resolve = resolve_next,
    .watch_thread_exit = watch_thread_exit,
    .hooks = &hooks,
};

__attribute__((constructor)) static void cprof_mc_init(void)
{
    cprof_mc_dl_init();         /* the C library's dlsym, which the resolution calls */
    cprof_mc_unresolved();      /* resolve now, if no allocation did it yet */
    have_exit_key = pthread_key_create(&exit_key, on_thread_exit) == 0;
    pthread_atfork(cprof_mc_atfork_prepare, cprof_mc_atfork_parent, cprof_mc_atfork_child);
}

/* ---- the ABI -------------------------------------------------------------------------- */

EXPORT const struct cprof_malloc_api *cprof_malloc_api(void)
{
    static struct cprof_malloc_api a = {
        .version = CPROF_MALLOC_ABI_VERSION,
        .thread_counts = cprof_mc_thread_counts,
        .activate = cprof_mc_activate,
        .process_total = cprof_mc_process_total,
    };

    a.unresolved = cprof_mc_unresolved();   /* a static buffer, filled once */
    return &a;
}

/* The same as cprof_malloc_api()->process_total, for ctypes (tests, benches). */
EXPORT void cprof_malloc_process_total(uint64_t out[CPROF_MALLOC_NCOUNTS])
{
    cprof_mc_process_total(out);
}
