/* plugin:PATH[:ARG] -- counters from a shared library, loaded with dlopen.
 *
 * The library exports `const struct cprof_plugin cprof_plugin` (cprof/counter.h);
 * its first counter is used, named by its own descriptor, with ARG as argument.
 * The library stays loaded for the life of the process (the descriptor lives in
 * it).  Paths cannot contain ':' (it separates the argument). */
#include "counters.h"

#include <dlfcn.h>
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define PREFIX "plugin:"

/* A descriptor as ABI 1 and 2 laid it out: probe and thread_open without the
 * context pointer or a group's state, failures as -1; `flags` came with ABI 2. */
struct legacy_def {
    const char *name;
    const char *unit;
    const char *description;
    int (*probe)(const char *arg, char *path, size_t pathlen, struct cprof_error *err);
    int (*thread_open)(void **state, const char *arg, struct cprof_error *err);
    uint64_t (*read)(void *state);
    void (*thread_close)(void *state);
    void (*corrections)(void *state, uint64_t *count, uint64_t *amount);
    unsigned flags;             /* ABI 2 only: CPROF_COUNTER_TRACER_COST, _TIME, _ELAPSED */
};

#define LEGACY_FLAGS (CPROF_COUNTER_TRACER_COST | CPROF_COUNTER_TIME | CPROF_COUNTER_ELAPSED)

/* An ABI 1 or 2 plugin's functions, called through its descriptor (the spec's ctx). */
static int legacy_probe(const char *arg, void *ctx, char *path, size_t pathlen,
                        struct cprof_error *err)
{
    const struct legacy_def *d = ctx;

    if (d->probe(arg, path, pathlen, err) == 0)
        return 0;
    return -(err->code > 0 ? err->code : (err->code = EINVAL));
}

static int legacy_open(void **state, const char *arg, void *ctx, void *shared,
                       struct cprof_error *err)
{
    const struct legacy_def *d = ctx;

    (void)shared;
    if (d->thread_open(state, arg, err) == 0)
        return 0;
    return -(err->code > 0 ? err->code : (err->code = EINVAL));
}

/* The ABI 3 descriptor of an ABI 1 or 2 one (the ABI 1 layout ends before flags):
 * it takes its argument as before, and checks it itself. */
static int adapt_legacy(unsigned abi, const struct legacy_def *d, const char *file,
                        const struct cprof_counter_def **out, struct cprof_error *err)
{
    struct cprof_counter_def def = {
        .name = d->name,
        .unit = d->unit,
        .description = d->description,
        .probe = d->probe ? legacy_probe : NULL,
        .thread_open = d->thread_open ? legacy_open : NULL,
        .read = d->read,
        .thread_close = d->thread_close,
        .corrections = d->corrections,
        .flags = (abi == 1 ? 0 : d->flags & LEGACY_FLAGS) | CPROF_COUNTER_TAKES_ARG,
    };
    struct cprof_error e = {0, ""};
    int r = cprof_registry_check(&def, &e);

    if (r < 0)
        return cprof_error_set(err, -r, "counter plugin '%s' is incomplete: %s", file, e.msg);
    return cprof_registry_keep(&def, out, err);
}

static int plugin_resolve(const char *name, const struct cprof_counter_spec *prev, unsigned nprev,
                          struct cprof_counter_spec *out, struct cprof_error *err)
{
    char file[CPROF_ARG_LEN];
    const char *path = name + strlen(PREFIX), *colon;
    const struct cprof_plugin *pl;
    const struct cprof_counter_def *def;
    struct cprof_error e = {0, ""};
    size_t len;
    void *h;
    int r;

    (void)prev;
    (void)nprev;
    if (strncmp(name, PREFIX, strlen(PREFIX)) != 0) {
        err->code = ENOENT;     /* not ours, and nothing to add */
        err->msg[0] = '\0';
        return -ENOENT;
    }
    colon = strchr(path, ':');
    len = colon ? (size_t)(colon - path) : strlen(path);
    if (len == 0)
        return cprof_error_set(err, EINVAL,
                               "'%s' names no library; write --counter=plugin:/path/libmine.so",
                               name);
    memcpy(file, path, len);    /* len < CPROF_ARG_LEN: the whole name fits the caller's buffer */
    file[len] = '\0';
    h = dlopen(file, RTLD_NOW | RTLD_LOCAL);
    if (!h) {
        const char *why = dlerror();
        return cprof_error_set(err, ENOENT, "cannot load counter plugin '%s' (%s); check the path%s",
                               file, why ? why : "unknown reason",
                               strchr(file, '/') ? "" : ", and give it with a '/' (e.g. ./libmine.so)");
    }
    pl = (const struct cprof_plugin *)dlsym(h, CPROF_PLUGIN_SYMBOL);
    if (!pl) {
        dlclose(h);
        return cprof_error_set(err, EINVAL,
                               "'%s' is not a cprof counter plugin: it exports no '%s' "
                               "(see cprof/counter.h, folder given by cprof.get_include())",
                               file, CPROF_PLUGIN_SYMBOL);
    }
    if (pl->abi != CPROF_COUNTER_ABI && pl->abi != 1 && pl->abi != 2) {
        unsigned abi = pl->abi;
        dlclose(h);
        return cprof_error_set(err, EINVAL,
                               "counter plugin '%s' was built for counter ABI %u, and this cprof "
                               "has ABI %d; rebuild it with the header in cprof.get_include()",
                               file, abi, CPROF_COUNTER_ABI);
    }
    def = pl->count && pl->counters ? pl->counters[0] : NULL;
    if (!def) {
        dlclose(h);
        return cprof_error_set(err, EINVAL, "counter plugin '%s' lists no counter", file);
    }
    /* the library stays loaded from here on: its descriptor is in it */
    out->ctx = NULL;
    if (pl->abi != CPROF_COUNTER_ABI) {
        const struct legacy_def *old = (const void *)def;
        if ((r = adapt_legacy(pl->abi, old, file, &out->def, err)) < 0)
            return r;
        out->ctx = (void *)(uintptr_t)old;
    } else if ((r = cprof_registry_check(def, &e)) < 0) {
        return cprof_error_set(err, -r, "counter plugin '%s' is incomplete: %s", file, e.msg);
    } else {
        out->def = def;
    }
    snprintf(out->arg, sizeof(out->arg), "%s", colon ? colon + 1 : "");
    return 0;
}

const struct cprof_resolver cprof_plugin_resolver = {
    .name = "plugin",
    .resolve = plugin_resolve,
};
