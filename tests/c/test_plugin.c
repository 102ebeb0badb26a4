/* The plugin resolver (counters/plugin.c) with real shared libraries: the example
 * plugin (examples/plugin/launches.c), one that is no plugin, one with a wrong ABI,
 * and ones built for the older ABIs 1 and 2. */
#include <criterion/criterion.h>

#include <dlfcn.h>
#include <errno.h>
#include <string.h>

#include "registry.h"
#include "../../counters/counters.h"

static int parse(const char *spec, struct cprof_counter_spec *out, unsigned *n,
                 struct cprof_error *err)
{
    return cprof_spec_resolve(spec, cprof_builtin_counters, cprof_counter_resolvers, out, 4, n,
                              err);
}

Test(plugin, example_counts_exactly)
{
    static struct cprof_counter_spec specs[4];
    struct cprof_error err = {0, ""};
    char path[256];
    unsigned n;
    void *st;

    cr_assert_eq(parse("wall,plugin:" PLUGIN_LAUNCHES ":", specs, &n, &err), 0, "%s", err.msg);
    cr_assert_eq(n, 2);
    cr_assert_str_eq(specs[1].def->name, "launches");
    cr_assert_str_eq(specs[1].def->unit, "launches");
    cr_assert_str_eq(specs[1].arg, "");
    cr_assert_eq(specs[1].def->probe(specs[1].arg, specs[1].ctx, path, sizeof(path), &err), 0,
                 "%s", err.msg);
    cr_assert_eq(specs[1].def->thread_open(&st, specs[1].arg, specs[1].ctx, NULL, &err), 0);
    /* the same library, as a program would load it to call its function */
    void *h = dlopen(PLUGIN_LAUNCHES, RTLD_NOW | RTLD_LOCAL);
    cr_assert_not_null(h, "%s", dlerror());
    void (*launch)(void) = (void (*)(void))dlsym(h, "example_launch");
    cr_assert_not_null(launch);
    uint64_t v0 = specs[1].def->read(st);
    for (int i = 0; i < 30; i++)
        launch();
    cr_assert_eq(specs[1].def->read(st) - v0, 30);
}

/* The example's descriptor takes no argument: the registry says so, naming what to
 * write instead (the plugin no longer checks it itself). */
Test(plugin, argument_refused_by_the_registry)
{
    static struct cprof_counter_spec specs[4];
    struct cprof_error err = {0, ""};
    unsigned n;

    cr_assert_eq(parse("plugin:" PLUGIN_LAUNCHES ":oops", specs, &n, &err), -EINVAL);
    cr_assert_eq(err.code, EINVAL);
    cr_assert_str_eq(err.msg, "counter 'launches' takes no argument; write just 'plugin:"
                              PLUGIN_LAUNCHES "'");
}

Test(plugin, missing_library_is_one_sentence)
{
    static struct cprof_counter_spec specs[4];
    struct cprof_error err = {0, ""};
    unsigned n;

    cr_assert_eq(parse("plugin:/nonexistent/libnope.so", specs, &n, &err), -ENOENT);
    cr_assert(strstr(err.msg, "cannot load counter plugin '/nonexistent/libnope.so'"), "%s", err.msg);
    cr_assert(strstr(err.msg, "check the path"), "%s", err.msg);
    cr_assert_eq(parse("plugin:", specs, &n, &err), -EINVAL);
    cr_assert(strstr(err.msg, "names no library"), "%s", err.msg);
}

Test(plugin, not_a_plugin_is_one_sentence)
{
    static struct cprof_counter_spec specs[4];
    struct cprof_error err = {0, ""};
    unsigned n;

    cr_assert_eq(parse("plugin:" PLUGIN_NO_SYMBOL, specs, &n, &err), -EINVAL);
    cr_assert(strstr(err.msg, "is not a cprof counter plugin: it exports no 'cprof_plugin'"), "%s",
              err.msg);
}

Test(plugin, wrong_abi_is_one_sentence)
{
    static struct cprof_counter_spec specs[4];
    struct cprof_error err = {0, ""};
    unsigned n;

    cr_assert_eq(parse("plugin:" PLUGIN_BAD_ABI, specs, &n, &err), -EINVAL);
    cr_assert(strstr(err.msg, "was built for counter ABI 100, and this cprof has ABI 3"), "%s",
              err.msg);
    cr_assert(strstr(err.msg, "rebuild it"), "%s", err.msg);
}

/* ABI 1 (before descriptors had flags) still loads; its counter is not compensated. */
Test(plugin, abi1_loads_without_flags)
{
    static struct cprof_counter_spec specs[4];
    struct cprof_error err = {0, ""};
    unsigned n;

    cr_assert_eq(parse("plugin:" PLUGIN_ABI1, specs, &n, &err), 0, "%s", err.msg);
    cr_assert_eq(n, 1);
    cr_assert_str_eq(specs[0].def->name, "old");
    cr_assert_eq(specs[0].def->flags, CPROF_COUNTER_TAKES_ARG, "ABI 1 plugins check their own "
                 "argument, and are never compensated");
}

/* ABI 2 (flags, no context pointer) still loads: flags kept, argument passed to its
 * functions through the adapter, its -1 failures turned into -errno. */
Test(plugin, abi2_loads_with_its_flags_and_argument)
{
    static struct cprof_counter_spec specs[4];
    struct cprof_error err = {0, ""};
    void *states[4], *shared[4];
    char path[64];
    unsigned n;

    cr_assert_eq(parse("wall,plugin:" PLUGIN_ABI2 ":42", specs, &n, &err), 0, "%s", err.msg);
    cr_assert_eq(n, 2);
    cr_assert_str_eq(specs[1].def->name, "fixed");
    cr_assert_str_eq(specs[1].arg, "42");
    cr_assert_eq(specs[1].def->flags, CPROF_COUNTER_TRACER_COST | CPROF_COUNTER_TIME |
                                      CPROF_COUNTER_TAKES_ARG);
    cr_assert_eq(specs[1].def->probe(specs[1].arg, specs[1].ctx, path, sizeof(path), &err), 0);
    cr_assert_str_eq(path, "the number 42");
    cr_assert_eq(cprof_counters_open(specs, n, states, shared, &err), 0, "%s", err.msg);
    cr_assert_eq(specs[1].def->read(states[1]), 42);
    cprof_counters_close(specs, n, states, shared);

    cr_assert_eq(parse("plugin:" PLUGIN_ABI2 ":x", specs, &n, &err), 0, "%s", err.msg);
    cr_assert_eq(specs[0].def->probe(specs[0].arg, specs[0].ctx, path, sizeof(path), &err), -EDOM);
    cr_assert_str_eq(err.msg, "counter 'fixed' wants a number, not 'x'");
    err.code = 0;
    cr_assert_eq(cprof_counters_open(specs, n, states, shared, &err), -EDOM);
    cr_assert_eq(err.code, EDOM);
}
