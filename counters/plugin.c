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
#include <string.h>

#define PREFIX "plugin:"

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

    (void)prev;
    (void)nprev;
    if (strncmp(name, PREFIX, strlen(PREFIX)) != 0) {
        err->code = ENOENT;     /* not ours, and nothing to add */
        err->msg[0] = '\0';
        return -1;
    }
    colon = strchr(path, ':');
    len = colon ? (size_t)(colon - path) : strlen(path);
    if (len == 0) {
        cprof_error_set(err, EINVAL, "'%s' names no library; write --counter=plugin:/path/libmine.so",
                        name);
        return -1;
    }
    memcpy(file, path, len);    /* len < CPROF_ARG_LEN: the whole name fits the caller's buffer */
    file[len] = '\0';
    h = dlopen(file, RTLD_NOW | RTLD_LOCAL);
    if (!h) {
        const char *why = dlerror();
        cprof_error_set(err, ENOENT, "cannot load counter plugin '%s' (%s); check the path%s",
                        file, why ? why : "unknown reason",
                        strchr(file, '/') ? "" : ", and give it with a '/' (e.g. ./libmine.so)");
        return -1;
    }
    pl = (const struct cprof_plugin *)dlsym(h, CPROF_PLUGIN_SYMBOL);
    if (!pl) {
        dlclose(h);
        cprof_error_set(err, EINVAL,
                        "'%s' is not a cprof counter plugin: it exports no '%s' "
                        "(see cprof/counter.h, folder given by cprof.get_include())",
                        file, CPROF_PLUGIN_SYMBOL);
        return -1;
    }
    if (pl->abi != CPROF_COUNTER_ABI && pl->abi != 1) {
        unsigned abi = pl->abi;
        dlclose(h);
        cprof_error_set(err, EINVAL,
                        "counter plugin '%s' was built for counter ABI %u, and this cprof has ABI "
                        "%d; rebuild it with the header in cprof.get_include()",
                        file, abi, CPROF_COUNTER_ABI);
        return -1;
    }
    def = pl->count && pl->counters ? pl->counters[0] : NULL;
    if (!def) {
        dlclose(h);
        cprof_error_set(err, EINVAL, "counter plugin '%s' lists no counter", file);
        return -1;
    }
    if (cprof_registry_check(def, &e) < 0) {
        dlclose(h);
        cprof_error_set(err, EINVAL, "counter plugin '%s' is incomplete: %s", file, e.msg);
        return -1;
    }
    if (pl->abi == 1) {
        /* ABI 1 descriptors end before `flags`: their counters are not compensated */
        memset(&out->own, 0, sizeof(out->own));
        memcpy(&out->own, def, offsetof(struct cprof_counter_def, flags));
    }
    else
        out->own = *def;
    out->def = &out->own;
    snprintf(out->arg, sizeof(out->arg), "%s", colon ? colon + 1 : "");
    return 0;
}

const struct cprof_resolver cprof_plugin_resolver = {
    .name = "plugin",
    .resolve = plugin_resolve,
};
