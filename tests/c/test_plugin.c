/* The plugin resolver (counters/plugin.c) with real shared libraries: the example
 * plugin (examples/plugin/launches.c), one that is no plugin, one with a wrong ABI. */
#include <criterion/criterion.h>

#include <dlfcn.h>
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
    cr_assert_eq(specs[1].def->probe(specs[1].arg, path, sizeof(path), &err), 0, "%s", err.msg);
    cr_assert_eq(specs[1].def->thread_open(&st, specs[1].arg, &err), 0);
    /* the same library, as a program would load it to call its function */
    void *h = dlopen(PLUGIN_LAUNCHES, RTLD_NOW | RTLD_LOCAL);
    cr_assert_not_null(h, "%s", dlerror());
    void (*launch)(void) = (void (*)(void))dlsym(h, "example_launch");
    cr_assert_not_null(launch);
    uint64_t v0 = specs[1].def->read(st);
    for (int i = 0; i < 30; i++)
        launch();
    cr_assert_eq(specs[1].def->read(st) - v0, 30);
    cr_assert_eq(specs[1].def->probe("oops", path, sizeof(path), &err), -1);
    cr_assert(strstr(err.msg, "takes no argument"), "%s", err.msg);
}

Test(plugin, argument_is_passed)
{
    static struct cprof_counter_spec specs[4];
    struct cprof_error err = {0, ""};
    unsigned n;

    cr_assert_eq(parse("plugin:" PLUGIN_LAUNCHES ":xyz", specs, &n, &err), 0, "%s", err.msg);
    cr_assert_str_eq(specs[0].arg, "xyz");
}

Test(plugin, missing_library_is_one_sentence)
{
    static struct cprof_counter_spec specs[4];
    struct cprof_error err = {0, ""};
    unsigned n;

    cr_assert_eq(parse("plugin:/nonexistent/libnope.so", specs, &n, &err), -1);
    cr_assert(strstr(err.msg, "cannot load counter plugin '/nonexistent/libnope.so'"), "%s", err.msg);
    cr_assert(strstr(err.msg, "check the path"), "%s", err.msg);
    cr_assert_eq(parse("plugin:", specs, &n, &err), -1);
    cr_assert(strstr(err.msg, "names no library"), "%s", err.msg);
}

Test(plugin, not_a_plugin_is_one_sentence)
{
    static struct cprof_counter_spec specs[4];
    struct cprof_error err = {0, ""};
    unsigned n;

    cr_assert_eq(parse("plugin:" PLUGIN_NO_SYMBOL, specs, &n, &err), -1);
    cr_assert(strstr(err.msg, "is not a cprof counter plugin: it exports no 'cprof_plugin'"), "%s",
              err.msg);
}

Test(plugin, wrong_abi_is_one_sentence)
{
    static struct cprof_counter_spec specs[4];
    struct cprof_error err = {0, ""};
    unsigned n;

    cr_assert_eq(parse("plugin:" PLUGIN_BAD_ABI, specs, &n, &err), -1);
    cr_assert(strstr(err.msg, "was built for counter ABI 100, and this cprof has ABI 2"), "%s",
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
    cr_assert_eq(specs[0].def->flags, 0);
}
