/* Tests of core/registry.c: counter spec parsing, descriptor checks, error
 * sentences.  The descriptors here are fakes with dummy functions; nothing is
 * ever read. */
#include <criterion/criterion.h>

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "registry.h"

/* ---- fake descriptors ------------------------------------------------------ */

static int dummy_probe(const char *arg, void *ctx, char *path, size_t pathlen,
                       struct cprof_error *err)
{
    (void)arg;
    (void)ctx;
    (void)err;
    if (pathlen)
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
    return 42;
}

static void dummy_close(void *state)
{
    (void)state;
}

#define FAKE(nm)                                                                               \
    {                                                                                          \
        .name = nm, .unit = "events", .description = "fake counter " nm,                     \
        .probe = dummy_probe, .thread_open = dummy_open, .read = dummy_read,                   \
        .flags = CPROF_COUNTER_TAKES_ARG,                                                      \
    }

static const struct cprof_counter_def def_a = FAKE("a");
static const struct cprof_counter_def def_b = FAKE("b");
static const struct cprof_counter_def def_cc = FAKE("cc");
/* "ab" starts with "a": lookups must compare whole names. */
static const struct cprof_counter_def def_ab = FAKE("ab");

static const struct cprof_counter_def *const known[] = {&def_a, &def_b, &def_cc, &def_ab, NULL};

/* Many descriptors, for the CPROF_MAX_COUNTERS limit and long name lists. */
#define NMANY 40
static char many_names[NMANY][32];
static struct cprof_counter_def many_defs[NMANY];
static const struct cprof_counter_def *many_known[NMANY + 1];

static void setup_many(void)
{
    for (int i = 0; i < NMANY; i++) {
        snprintf(many_names[i], sizeof(many_names[i]), "cnt_%02d", i);
        many_defs[i] = (struct cprof_counter_def)FAKE("x");
        many_defs[i].name = many_names[i];
        many_known[i] = &many_defs[i];
    }
    many_known[NMANY] = NULL;
}

/* Parse `spec` against `known`, expecting failure; returns the error. */
static struct cprof_error parse_fail(const char *spec, unsigned max, int code)
{
    struct cprof_counter_spec out[CPROF_MAX_COUNTERS];
    struct cprof_error err = {0, ""};
    unsigned n = 12345;

    cr_assert(max <= CPROF_MAX_COUNTERS);
    cr_assert_eq(cprof_spec_parse(spec, known, out, max, &n, &err), -code, "spec '%s' should fail",
                 spec);
    cr_assert_eq(err.code, code, "spec '%s': code %d, expected %d (msg: %s)", spec, err.code, code,
                 err.msg);
    cr_assert(err.msg[0] != '\0', "spec '%s': empty message", spec);
    cr_assert(strlen(err.msg) < CPROF_ERROR_LEN);
    return err;
}

#define HAS(msg, sub) cr_assert(strstr((msg), (sub)) != NULL, "'%s' not in message: %s", (sub), (msg))

static void assert_lists_valid_names(const char *msg)
{
    HAS(msg, "a");
    HAS(msg, "b");
    HAS(msg, "cc");
    HAS(msg, "ab");
    HAS(msg, "a, b, cc, ab");
}

/* ---- cprof_spec_parse: success ---------------------------------------------------- */

Test(spec_parse, two_names_in_order)
{
    struct cprof_counter_spec out[CPROF_MAX_COUNTERS];
    struct cprof_error err = {0, ""};
    unsigned n = 0;

    cr_assert_eq(cprof_spec_parse("a,b", known, out, CPROF_MAX_COUNTERS, &n, &err), 0, "%s",
                 err.msg);
    cr_assert_eq(n, 2);
    cr_assert_eq(out[0].def, &def_a);
    cr_assert_eq(out[1].def, &def_b);
    cr_assert_str_eq(out[0].arg, "");
    cr_assert_str_eq(out[1].arg, "");
    cr_assert_eq(err.code, 0);
}

Test(spec_parse, order_is_kept)
{
    struct cprof_counter_spec out[CPROF_MAX_COUNTERS];
    struct cprof_error err = {0, ""};
    unsigned n = 0;

    cr_assert_eq(cprof_spec_parse("cc,ab,b,a", known, out, CPROF_MAX_COUNTERS, &n, &err), 0,
                 "%s", err.msg);
    cr_assert_eq(n, 4);
    cr_assert_eq(out[0].def, &def_cc);
    cr_assert_eq(out[1].def, &def_ab);
    cr_assert_eq(out[2].def, &def_b);
    cr_assert_eq(out[3].def, &def_a);
}

Test(spec_parse, single_name)
{
    struct cprof_counter_spec out[1];
    struct cprof_error err = {0, ""};
    unsigned n = 0;

    cr_assert_eq(cprof_spec_parse("ab", known, out, 1, &n, &err), 0, "%s", err.msg);
    cr_assert_eq(n, 1);
    cr_assert_eq(out[0].def, &def_ab);
}

Test(spec_parse, argument)
{
    struct cprof_counter_spec out[CPROF_MAX_COUNTERS];
    struct cprof_error err = {0, ""};
    unsigned n = 0;

    cr_assert_eq(cprof_spec_parse("a:xyz", known, out, CPROF_MAX_COUNTERS, &n, &err), 0, "%s",
                 err.msg);
    cr_assert_eq(n, 1);
    cr_assert_eq(out[0].def, &def_a);
    cr_assert_str_eq(out[0].arg, "xyz");
}

Test(spec_parse, arguments_on_several_names)
{
    struct cprof_counter_spec out[CPROF_MAX_COUNTERS];
    struct cprof_error err = {0, ""};
    unsigned n = 0;

    cr_assert_eq(cprof_spec_parse("b:1,a,cc:x:y:z,ab:", known, out, CPROF_MAX_COUNTERS, &n, &err),
                 0, "%s", err.msg);
    cr_assert_eq(n, 4);
    cr_assert_eq(out[0].def, &def_b);
    cr_assert_str_eq(out[0].arg, "1");
    cr_assert_eq(out[1].def, &def_a);
    cr_assert_str_eq(out[1].arg, "");
    cr_assert_eq(out[2].def, &def_cc);
    cr_assert_str_eq(out[2].arg, "x:y:z"); /* only the first ':' separates */
    cr_assert_eq(out[3].def, &def_ab);
    cr_assert_str_eq(out[3].arg, ""); /* "ab:" is an empty argument */
}

Test(spec_parse, argument_max_length)
{
    struct cprof_counter_spec out[CPROF_MAX_COUNTERS];
    struct cprof_error err = {0, ""};
    char spec[CPROF_ARG_LEN + 16];
    unsigned n = 0;

    /* CPROF_ARG_LEN - 1 bytes fit (with the NUL). */
    strcpy(spec, "a:");
    memset(spec + 2, 'q', CPROF_ARG_LEN - 1);
    spec[2 + CPROF_ARG_LEN - 1] = '\0';
    strcat(spec, ",b");
    cr_assert_eq(cprof_spec_parse(spec, known, out, CPROF_MAX_COUNTERS, &n, &err), 0, "%s",
                 err.msg);
    cr_assert_eq(n, 2);
    cr_assert_eq(strlen(out[0].arg), CPROF_ARG_LEN - 1);
    for (int i = 0; i < CPROF_ARG_LEN - 1; i++)
        cr_assert_eq(out[0].arg[i], 'q');
    cr_assert_eq(out[1].def, &def_b);
    cr_assert_str_eq(out[1].arg, "");
}

Test(spec_parse, exactly_max_counters)
{
    struct cprof_counter_spec out[CPROF_MAX_COUNTERS];
    struct cprof_error err = {0, ""};
    char spec[1024] = "";
    unsigned n = 0;

    setup_many();
    for (int i = 0; i < CPROF_MAX_COUNTERS; i++) {
        if (i)
            strcat(spec, ",");
        strcat(spec, many_names[i]);
    }
    cr_assert_eq(cprof_spec_parse(spec, many_known, out, CPROF_MAX_COUNTERS, &n, &err), 0, "%s",
                 err.msg);
    cr_assert_eq(n, CPROF_MAX_COUNTERS);
    for (int i = 0; i < CPROF_MAX_COUNTERS; i++)
        cr_assert_eq(out[i].def, &many_defs[i]);
}

/* ---- cprof_spec_parse: errors ------------------------------------------------------ */

Test(spec_parse, unknown_name)
{
    struct cprof_error err = parse_fail("a,zzz", CPROF_MAX_COUNTERS, ENOENT);

    HAS(err.msg, "'zzz'");
    HAS(err.msg, "unknown");
    assert_lists_valid_names(err.msg);
}

Test(spec_parse, unknown_first_name)
{
    struct cprof_error err = parse_fail("nope,a", CPROF_MAX_COUNTERS, ENOENT);

    HAS(err.msg, "'nope'");
    assert_lists_valid_names(err.msg);
}

Test(spec_parse, unknown_name_with_argument_names_only_the_name)
{
    struct cprof_error err = parse_fail("b,zzz:arg", CPROF_MAX_COUNTERS, ENOENT);

    HAS(err.msg, "'zzz'");
    cr_assert(strstr(err.msg, "zzz:arg") == NULL, "message: %s", err.msg);
    assert_lists_valid_names(err.msg);
}

Test(spec_parse, prefix_of_a_name_is_unknown)
{
    /* "c" is a prefix of "cc", "abc" extends "ab": neither is a counter. */
    struct cprof_error err = parse_fail("c", CPROF_MAX_COUNTERS, ENOENT);

    HAS(err.msg, "'c'");
    err = parse_fail("abc", CPROF_MAX_COUNTERS, ENOENT);
    HAS(err.msg, "'abc'");
}

Test(spec_parse, name_is_case_sensitive)
{
    struct cprof_error err = parse_fail("A", CPROF_MAX_COUNTERS, ENOENT);

    HAS(err.msg, "'A'");
}

Test(spec_parse, empty_name_in_the_middle)
{
    struct cprof_error err = parse_fail("a,,b", CPROF_MAX_COUNTERS, EINVAL);

    HAS(err.msg, "empty");
    HAS(err.msg, "a,,b");
    assert_lists_valid_names(err.msg);
}

Test(spec_parse, empty_spec)
{
    struct cprof_error err = parse_fail("", CPROF_MAX_COUNTERS, EINVAL);

    HAS(err.msg, "empty");
    assert_lists_valid_names(err.msg);
}

Test(spec_parse, empty_name_leading_trailing_or_with_argument)
{
    struct cprof_error err = parse_fail(",a", CPROF_MAX_COUNTERS, EINVAL);

    HAS(err.msg, "empty");
    err = parse_fail("a,", CPROF_MAX_COUNTERS, EINVAL);
    HAS(err.msg, "empty");
    err = parse_fail(":x", CPROF_MAX_COUNTERS, EINVAL);
    HAS(err.msg, "empty");
    err = parse_fail(",", CPROF_MAX_COUNTERS, EINVAL);
    HAS(err.msg, "empty");
}

Test(spec_parse, duplicate)
{
    struct cprof_error err = parse_fail("a,a", CPROF_MAX_COUNTERS, EINVAL);

    HAS(err.msg, "'a'");
    HAS(err.msg, "twice");
}

Test(spec_parse, duplicate_with_different_arguments)
{
    struct cprof_error err = parse_fail("cc:1,b,cc:2", CPROF_MAX_COUNTERS, EINVAL);

    HAS(err.msg, "'cc'");
    HAS(err.msg, "twice");
}

Test(spec_parse, too_many_for_max)
{
    struct cprof_error err = parse_fail("a,b,cc", 2, E2BIG);

    HAS(err.msg, "too many");
    HAS(err.msg, "at most 2");
    err = parse_fail("a", 0, E2BIG);
    HAS(err.msg, "at most 0");
}

Test(spec_parse, more_than_max_counters)
{
    struct cprof_counter_spec out[CPROF_MAX_COUNTERS + 1];
    struct cprof_error err = {0, ""};
    char spec[1024] = "";
    char want[32];
    unsigned n = 0;

    setup_many();
    for (int i = 0; i <= CPROF_MAX_COUNTERS; i++) {
        if (i)
            strcat(spec, ",");
        strcat(spec, many_names[i]);
    }
    cr_assert_eq(cprof_spec_parse(spec, many_known, out, CPROF_MAX_COUNTERS, &n, &err), -E2BIG);
    cr_assert_eq(err.code, E2BIG);
    HAS(err.msg, "too many");
    snprintf(want, sizeof(want), "at most %d", CPROF_MAX_COUNTERS);
    HAS(err.msg, want);
    cr_assert(n <= CPROF_MAX_COUNTERS);
}

Test(spec_parse, argument_too_long)
{
    char spec[CPROF_ARG_LEN + 16];
    char want[32];
    struct cprof_error err;

    strcpy(spec, "b,cc:");
    memset(spec + 5, 'q', CPROF_ARG_LEN);
    spec[5 + CPROF_ARG_LEN] = '\0';
    err = parse_fail(spec, CPROF_MAX_COUNTERS, E2BIG);
    HAS(err.msg, "'cc'");
    HAS(err.msg, "too long");
    snprintf(want, sizeof(want), "%d", CPROF_ARG_LEN - 1);
    HAS(err.msg, want);
}

Test(spec_parse, long_list_of_valid_names_stays_terminated)
{
    /* 40 names of 6 bytes do not fit the 200-byte list: it must be cut, not overrun. */
    struct cprof_counter_spec out[CPROF_MAX_COUNTERS];
    struct cprof_error err;
    unsigned n = 0;

    setup_many();
    memset(&err, 'X', sizeof(err));
    cr_assert_eq(cprof_spec_parse("cnt_00,bogus", many_known, out, CPROF_MAX_COUNTERS,
                                  &n, &err),
                 -ENOENT);
    cr_assert_eq(err.code, ENOENT);
    cr_assert(memchr(err.msg, '\0', sizeof(err.msg)) != NULL);
    HAS(err.msg, "'bogus'");
    HAS(err.msg, "cnt_00, cnt_01, cnt_02");
    cr_assert(strstr(err.msg, "cnt_39") == NULL, "list was not cut: %s", err.msg);
}

/* ---- cprof_registry_find ----------------------------------------------------------- */

Test(registry_find, whole_names_only)
{
    cr_assert_eq(cprof_registry_find(known, "a", 1), &def_a);
    cr_assert_eq(cprof_registry_find(known, "ab", 2), &def_ab);
    cr_assert_eq(cprof_registry_find(known, "abc", 2), &def_ab); /* length-bounded */
    cr_assert_eq(cprof_registry_find(known, "abc", 1), &def_a);
    cr_assert_eq(cprof_registry_find(known, "cc", 2), &def_cc);
    cr_assert_null(cprof_registry_find(known, "c", 1));
    cr_assert_null(cprof_registry_find(known, "abc", 3));
    cr_assert_null(cprof_registry_find(known, "", 0));
}

/* ---- cprof_registry_check ------------------------------------------------------------ */

static void check_bad(const struct cprof_counter_def *def, const char *piece)
{
    struct cprof_error err = {0, ""};

    cr_assert_eq(cprof_registry_check(def, &err), -EINVAL, "descriptor without %s accepted",
                 piece);
    cr_assert_eq(err.code, EINVAL);
    HAS(err.msg, piece);
}

Test(registry_check, complete_descriptors_pass)
{
    struct cprof_error err = {0, ""};
    struct cprof_counter_def full = FAKE("full");

    cr_assert_eq(cprof_registry_check(&def_a, &err), 0, "%s", err.msg);
    cr_assert_eq(cprof_registry_check(&def_cc, &err), 0, "%s", err.msg);
    full.thread_close = dummy_close; /* optional members may be set ... */
    cr_assert_eq(cprof_registry_check(&full, &err), 0, "%s", err.msg);
    full.thread_close = NULL; /* ... or not */
    full.corrections = NULL;
    cr_assert_eq(cprof_registry_check(&full, &err), 0, "%s", err.msg);
    cr_assert_eq(err.code, 0);
}

Test(registry_check, missing_read)
{
    struct cprof_counter_def d = FAKE("x");

    d.read = NULL;
    check_bad(&d, "read");
}

Test(registry_check, missing_probe)
{
    struct cprof_counter_def d = FAKE("x");

    d.probe = NULL;
    check_bad(&d, "probe");
}

Test(registry_check, missing_thread_open)
{
    struct cprof_counter_def d = FAKE("x");

    d.thread_open = NULL;
    check_bad(&d, "thread_open");
}

Test(registry_check, missing_unit)
{
    struct cprof_counter_def d = FAKE("x");

    d.unit = NULL;
    check_bad(&d, "unit");
    d.unit = "";
    check_bad(&d, "unit");
}

Test(registry_check, missing_description)
{
    struct cprof_counter_def d = FAKE("x");

    d.description = NULL;
    check_bad(&d, "description");
}

Test(registry_check, missing_name)
{
    struct cprof_counter_def d = FAKE("x");

    d.name = NULL;
    check_bad(&d, "name");
    d.name = "";
    check_bad(&d, "name");
}

Test(registry_check, names_the_module)
{
    struct cprof_counter_def d = FAKE("mymod");
    struct cprof_error err = {0, ""};

    d.read = NULL;
    cr_assert_eq(cprof_registry_check(&d, &err), -EINVAL);
    HAS(err.msg, "mymod");
    HAS(err.msg, "read");
}

Test(registry_check, name_with_separator)
{
    struct cprof_counter_def d = FAKE("x");
    struct cprof_error err = {0, ""};

    d.name = "a,b";
    cr_assert_eq(cprof_registry_check(&d, &err), -EINVAL);
    cr_assert_eq(err.code, EINVAL);
    HAS(err.msg, "'a,b'");
    d.name = "a:b";
    check_bad(&d, "a:b");
    d.name = "a b";
    check_bad(&d, "a b");
    d.name = "a\tb";
    check_bad(&d, "a\tb");
}

/* ---- cprof_error_set ------------------------------------------------------------------ */

Test(error_set, formats)
{
    struct cprof_error err = {0, ""};

    cprof_error_set(&err, ENOENT, "counter '%s' failed %d times (%u%%)", "cpu", 3, 50u);
    cr_assert_eq(err.code, ENOENT);
    cr_assert_str_eq(err.msg, "counter 'cpu' failed 3 times (50%)");
    cprof_error_set(&err, EINVAL, "second");
    cr_assert_eq(err.code, EINVAL);
    cr_assert_str_eq(err.msg, "second");
}

Test(error_set, truncates_long_messages)
{
    struct cprof_error err;
    char big[2 * CPROF_ERROR_LEN];

    memset(&err, 'X', sizeof(err));
    memset(big, 'y', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    cprof_error_set(&err, E2BIG, "<%s>", big);
    cr_assert_eq(err.code, E2BIG);
    cr_assert_eq(strlen(err.msg), CPROF_ERROR_LEN - 1);
    cr_assert_eq(err.msg[0], '<');
    cr_assert_eq(err.msg[CPROF_ERROR_LEN - 2], 'y');
}

Test(error_set, null_error_is_ignored)
{
    cprof_error_set(NULL, EINVAL, "nobody reads this %d", 1);
}

Test(registry_check, a_group_needs_open_and_close)
{
    static const struct cprof_counter_group half = {.name = "half"};
    struct cprof_counter_def d = FAKE("x");

    d.group = &half;
    check_bad(&d, "group");
}

/* ---- cprof_counters_open / close ------------------------------------------------------ */

static char opened_log[128];    /* what happened, in order: "G" group open, "g" close, ... */
static int fail_at;             /* the counter whose open fails ('0' + index), or 0 */
static int group_state = 7;     /* what the group's open hands its members */

static void note(char c)
{
    size_t n = strlen(opened_log);
    opened_log[n] = c;
    opened_log[n + 1] = '\0';
}

static int grp_open(void **shared, struct cprof_error *err)
{
    (void)err;
    note('G');
    *shared = &group_state;
    return 0;
}

static void grp_close(void *shared)
{
    cr_assert_eq(shared, &group_state);
    note('g');
}

static const struct cprof_counter_group grp = {"test", grp_open, grp_close};

static int log_open(void **state, const char *arg, void *ctx, void *shared,
                    struct cprof_error *err)
{
    const struct cprof_counter_def *def = ctx;   /* each spec's ctx: its own descriptor */

    (void)arg;
    cr_assert_eq(shared, def->group ? (void *)&group_state : NULL, "%s's shared state", def->name);
    if (fail_at == def->name[0])
        return cprof_error_set(err, EMFILE, "counter '%s' cannot be opened", def->name);
    note(def->name[0]);
    *state = (void *)def;
    return 0;
}

static void log_close(void *state)
{
    note((char)(((const struct cprof_counter_def *)state)->name[0] - '0' + 'a'));
}

#define LOGGED(nm, g)                                                                           \
    {                                                                                          \
        .name = nm, .unit = "events", .description = "logged counter " nm,                   \
        .probe = dummy_probe, .thread_open = log_open, .read = dummy_read,                     \
        .thread_close = log_close, .group = g,                                                 \
    }

static const struct cprof_counter_def log0 = LOGGED("0", NULL);
static const struct cprof_counter_def log1 = LOGGED("1", &grp);
static const struct cprof_counter_def log2 = LOGGED("2", NULL);
static const struct cprof_counter_def log3 = LOGGED("3", &grp);

static void four_specs(struct cprof_counter_spec *specs)
{
    const struct cprof_counter_def *defs[] = {&log0, &log1, &log2, &log3};

    for (int i = 0; i < 4; i++) {
        specs[i].def = defs[i];
        specs[i].arg[0] = '\0';
        specs[i].ctx = (void *)defs[i];
    }
}

Test(counters_open, a_group_opens_once_before_its_first_member)
{
    struct cprof_counter_spec specs[4];
    struct cprof_error err = {0, ""};
    void *states[4], *shared[4];

    four_specs(specs);
    opened_log[0] = '\0';
    fail_at = 0;
    cr_assert_eq(cprof_counters_open(specs, 4, states, shared, &err), 0, "%s", err.msg);
    cr_assert_str_eq(opened_log, "0G123");
    cr_assert_eq(shared[1], &group_state);
    cr_assert_eq(shared[3], &group_state);
    cr_assert_null(shared[0]);
    cprof_counters_close(specs, 4, states, shared);
    cr_assert_str_eq(opened_log, "0G123dcbag", "counters in reverse, then the group");
}

Test(counters_open, all_or_nothing)
{
    struct cprof_counter_spec specs[4];
    struct cprof_error err = {0, ""};
    void *states[4], *shared[4];

    four_specs(specs);
    opened_log[0] = '\0';
    fail_at = '3';
    cr_assert_eq(cprof_counters_open(specs, 4, states, shared, &err), -EMFILE);
    cr_assert_eq(err.code, EMFILE);
    cr_assert_str_eq(err.msg, "counter '3' cannot be opened");
    cr_assert_str_eq(opened_log, "0G12cbag", "what was opened is closed, the group last");
    opened_log[0] = '\0';
    fail_at = '1';      /* the group's first member: its group is closed too */
    cr_assert_eq(cprof_counters_open(specs, 4, states, shared, &err), -EMFILE);
    cr_assert_str_eq(opened_log, "0Gga");
}
