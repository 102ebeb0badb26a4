/* Tests of the resolver step of core/registry.c: names that are not built-in
 * counters go to resolvers (perf events are named at run time).  The resolver
 * here is a fake that knows names starting with "ev" and refuses "evbad". */
#include <criterion/criterion.h>

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "registry.h"

#define HAS(msg, sub) cr_assert(strstr((msg), (sub)) != NULL, "'%s' not in: %s", (sub), (msg))

static int dummy_probe(const char *arg, void *ctx, char *path, size_t pathlen,
                       struct cprof_error *err)
{
    (void)arg;
    (void)ctx;
    (void)err;
    snprintf(path, pathlen, "dummy");
    return 0;
}

static int dummy_open(void **state, const char *arg, void *ctx, void *shared,
                      struct cprof_error *err)
{
    (void)arg;
    (void)ctx;
    (void)shared;
    (void)err;
    *state = NULL;
    return 0;
}

static uint64_t dummy_read(void *state)
{
    (void)state;
    return 1;
}

static const struct cprof_counter_def def_cpu = {
    .name = "cpu", .unit = "ns", .description = "fake cpu",
    .probe = dummy_probe, .thread_open = dummy_open, .read = dummy_read,
    .flags = CPROF_COUNTER_TAKES_ARG,
};
static const struct cprof_counter_def def_wall = {
    .name = "wall", .unit = "ns", .description = "fake wall",
    .probe = dummy_probe, .thread_open = dummy_open, .read = dummy_read,
};
static const struct cprof_counter_def *const known[] = {&def_cpu, &def_wall, NULL};

/* As perf's: named by the whole token, which is also its argument. */
static const struct cprof_counter_def ev_tmpl = {
    .name = "ev-template", .unit = "events", .description = "fake event",
    .probe = dummy_probe, .thread_open = dummy_open, .read = dummy_read,
    .flags = CPROF_COUNTER_TAKES_ARG,
};

static unsigned last_nprev;     /* what the resolver saw of the earlier counters */

static int ev_resolve(const char *name, const struct cprof_counter_spec *prev, unsigned nprev,
                      struct cprof_counter_spec *out, struct cprof_error *err)
{
    last_nprev = nprev;
    (void)prev;
    struct cprof_counter_def def = ev_tmpl;

    if (strncmp(name, "ev", 2) != 0)
        return cprof_error_set(err, ENOENT, "%s", "");
    if (strcmp(name, "evbad") == 0)
        return cprof_error_set(err, EACCES, "counter 'evbad' is refused for a reason");
    def.name = name;
    snprintf(out->arg, sizeof(out->arg), "%s", name);
    out->ctx = NULL;
    return cprof_registry_keep(&def, &out->def, err);
}

static void ev_suggest(const char *name, char *buf, size_t len)
{
    if (strcmp(name, "EVX") == 0)
        snprintf(buf, len, "evx, evy");
}

static const char *const ev_listed[] = {"events-a", "events-b", NULL};
static const struct cprof_resolver ev_resolver = {
    .name = "ev", .resolve = ev_resolve, .listed = ev_listed, .suggest = ev_suggest,
};
static const struct cprof_resolver *const resolvers[] = {&ev_resolver, NULL};

static int parse(const char *spec, struct cprof_counter_spec *out, unsigned max, unsigned *n,
                 struct cprof_error *err)
{
    return cprof_spec_resolve(spec, known, resolvers, out, max, n, err);
}

Test(resolve, builtins_and_resolved_names_mix_in_order)
{
    struct cprof_counter_spec s[CPROF_MAX_COUNTERS];
    struct cprof_error err = {0, ""};
    unsigned n = 0;

    cr_assert_eq(parse("cpu,ev1,wall,ev:two:u", s, CPROF_MAX_COUNTERS, &n, &err), 0, "%s",
                 err.msg);
    cr_assert_eq(n, 4);
    cr_assert_eq(s[0].def, &def_cpu);
    cr_assert_str_eq(s[0].arg, "");
    cr_assert_str_eq(s[1].def->name, "ev1");
    cr_assert_str_eq(s[1].arg, "ev1");
    cr_assert_eq(s[2].def, &def_wall);
    cr_assert_str_eq(s[3].def->name, "ev:two:u", "a resolved name keeps its ':' parts");
    cr_assert_str_eq(s[3].arg, "ev:two:u");
    cr_assert_eq(last_nprev, 3, "the resolver sees the counters parsed before");
    for (unsigned i = 0; i < n; i++)
        cr_assert_eq(cprof_spec_check(&s[i], &err), 0, "%s", err.msg);
}

/* A spec is plain data: a copy is as good as the original, and a name resolved
 * twice shares one kept descriptor (one per name for the process, not per parse). */
Test(resolve, specs_copy_by_value)
{
    struct cprof_counter_spec s[2], t[2], copy;
    struct cprof_error err = {0, ""};
    unsigned n = 0;

    cr_assert_eq(parse("ev:a,wall", s, 2, &n, &err), 0, "%s", err.msg);
    copy = s[0];
    memset(&s[0], 0xa5, sizeof(s[0]));
    cr_assert_str_eq(copy.def->name, "ev:a");
    cr_assert_str_eq(copy.arg, "ev:a");
    cr_assert_eq(cprof_spec_check(&copy, &err), 0, "%s", err.msg);
    cr_assert_eq(parse("ev:a", t, 2, &n, &err), 0, "%s", err.msg);
    cr_assert_eq(t[0].def, copy.def, "kept once");
}

Test(resolve, a_builtin_name_wins)
{
    struct cprof_counter_spec s[2];
    struct cprof_error err = {0, ""};
    unsigned n = 0;

    cr_assert_eq(parse("cpu:x", s, 2, &n, &err), 0, "%s", err.msg);
    cr_assert_eq(s[0].def, &def_cpu);
    cr_assert_str_eq(s[0].arg, "x", "a built-in counter's argument as before");
    cr_assert_eq(parse("wall:x", s, 2, &n, &err), -EINVAL, "wall takes no argument");
    cr_assert_str_eq(err.msg, "counter 'wall' takes no argument; write just 'wall'");
    cr_assert_eq(parse("wall:", s, 2, &n, &err), 0, "an empty argument is none: %s", err.msg);
}

Test(resolve, unknown_names_get_close_suggestions)
{
    struct cprof_counter_spec s[4];
    struct cprof_error err = {0, ""};
    unsigned n = 0;

    cr_assert_eq(parse("cpu,wal", s, 4, &n, &err), -ENOENT);
    cr_assert_eq(err.code, ENOENT);
    HAS(err.msg, "unknown counter 'wal'");
    HAS(err.msg, "did you mean wall?");
    HAS(err.msg, "cpu, wall");
    cr_assert_eq(parse("vents-a", s, 4, &n, &err), -ENOENT);
    HAS(err.msg, "did you mean events-a");
    HAS(err.msg, "and the ev events that cprof --list-counters shows");
    cr_assert_eq(parse("EVX", s, 4, &n, &err), -ENOENT);
    HAS(err.msg, "evx, evy"); /* the resolver's own suggestions, not repeated */
    cr_assert_eq(parse("zzzzzzzz", s, 4, &n, &err), -ENOENT);
    cr_assert(strstr(err.msg, "did you mean") == NULL, "%s", err.msg);
    HAS(err.msg, "'zzzzzzzz'");
}

Test(resolve, a_resolvers_definite_error_passes_through)
{
    struct cprof_counter_spec s[4];
    struct cprof_error err = {0, ""};
    unsigned n = 0;

    cr_assert_eq(parse("cpu,evbad", s, 4, &n, &err), -EACCES);
    cr_assert_eq(err.code, EACCES);
    cr_assert_str_eq(err.msg, "counter 'evbad' is refused for a reason");
}

Test(resolve, duplicates_limits_and_lengths)
{
    struct cprof_counter_spec s[4];
    struct cprof_error err = {0, ""};
    char longname[CPROF_ARG_LEN + 8];
    unsigned n = 0;

    cr_assert_eq(parse("ev1,cpu,ev1", s, 4, &n, &err), -EINVAL);
    HAS(err.msg, "'ev1' is given twice");
    cr_assert_eq(parse("ev1,ev2", s, 1, &n, &err), -E2BIG);
    cr_assert_eq(err.code, E2BIG);
    memset(longname, 'e', sizeof(longname) - 1);
    longname[sizeof(longname) - 1] = '\0';
    longname[1] = 'v';
    cr_assert_eq(parse(longname, s, 4, &n, &err), -E2BIG);
    cr_assert_eq(err.code, E2BIG);
    HAS(err.msg, "too long");
}

Test(resolve, without_resolvers_parse_is_unchanged)
{
    struct cprof_counter_spec s[4];
    struct cprof_error err = {0, ""};
    unsigned n = 0;

    cr_assert_eq(cprof_spec_resolve("cpu,ev1:x", known, NULL, s, 4, &n, &err), -ENOENT);
    cr_assert_eq(err.code, ENOENT);
    cr_assert_str_eq(err.msg, "unknown counter 'ev1'; valid counters are: cpu, wall");
}

Test(resolve, one_name)
{
    struct cprof_counter_spec s;
    struct cprof_error err = {0, ""};

    cr_assert_eq(cprof_resolve_one("events-a", resolvers, &s, &err), 0, "%s", err.msg);
    cr_assert_str_eq(s.def->name, "events-a");
    cr_assert_eq(cprof_resolve_one("nope", resolvers, &s, &err), -ENOENT);
    cr_assert_eq(err.code, ENOENT);
    HAS(err.msg, "'nope'");
    cr_assert_eq(cprof_resolve_one("evbad", resolvers, &s, &err), -EACCES);
    cr_assert_eq(err.code, EACCES);
}

Test(resolve, spec_check)
{
    struct cprof_counter_spec s;
    struct cprof_error err = {0, ""};

    struct cprof_counter_def d;

    cr_assert_eq(cprof_resolve_one("ev:a:b", resolvers, &s, &err), 0);
    cr_assert_eq(cprof_spec_check(&s, &err), 0, "%s", err.msg);
    d = *s.def;
    s.def = &d;
    d.read = NULL;
    cr_assert_eq(cprof_spec_check(&s, &err), -EINVAL);
    HAS(err.msg, "read");
    d.read = dummy_read;
    d.name = "ev a";            /* a space in a name */
    cr_assert_eq(cprof_spec_check(&s, &err), -EINVAL);
    d.name = "ev";
    d.flags = 0;
    cr_assert_eq(cprof_spec_check(&s, &err), -EINVAL, "an argument it does not take");
    HAS(err.msg, "takes no argument");
    s.def = &def_cpu;           /* a built-in: the descriptor rules */
    cr_assert_eq(cprof_spec_check(&s, &err), 0, "%s", err.msg);
}

Test(resolve, name_distance)
{
    cr_assert_eq(cprof_name_distance("cycles", 6, "cycles", 6, 9), 0);
    cr_assert_eq(cprof_name_distance("cylces", 6, "cycles", 6, 9), 2);
    cr_assert_eq(cprof_name_distance("CYCLES", 6, "cycles", 6, 9), 0, "case folded");
    cr_assert_eq(cprof_name_distance("wal", 3, "wall", 4, 9), 1);
    cr_assert_eq(cprof_name_distance("", 0, "abc", 3, 9), 3);
    cr_assert_eq(cprof_name_distance("abcdefgh", 8, "zzzzzzzz", 8, 3), 3, "capped");
    cr_assert_eq(cprof_name_distance("a", 1, "abcdefgh", 8, 3), 3, "length gap alone caps");
}
