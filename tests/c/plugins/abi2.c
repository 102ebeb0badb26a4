/* A plugin built against counter ABI 2 (flags, but no context pointer): cprof
 * still loads it, keeps its flags and passes its argument, and its -1 failures
 * become -errno.  The ABI 2 layout is written out here, as that header declared
 * it.  Its counter reads the number given as argument ("plugin:libabi2.so:42"),
 * and refuses anything else with its own sentence. */
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

struct cprof_error {
    int code;
    char msg[320];
};

struct abi2_counter_def {
    const char *name, *unit, *description;
    int (*probe)(const char *arg, char *path, size_t pathlen, struct cprof_error *err);
    int (*thread_open)(void **state, const char *arg, struct cprof_error *err);
    uint64_t (*read)(void *state);
    void (*thread_close)(void *state);
    void (*corrections)(void *state, uint64_t *count, uint64_t *amount);
    unsigned flags;
};

struct abi2_plugin {
    unsigned abi, count;
    const struct abi2_counter_def *const *counters;
};

static int number(const char *arg, uintptr_t *out, struct cprof_error *err)
{
    char *end;
    unsigned long v = strtoul(arg, &end, 10);

    if (!arg[0] || *end) {
        err->code = EDOM;
        snprintf(err->msg, sizeof(err->msg), "counter 'fixed' wants a number, not '%s'", arg);
        return -1;
    }
    *out = v;
    return 0;
}

static int probe(const char *arg, char *path, size_t pathlen, struct cprof_error *err)
{
    uintptr_t v;

    if (number(arg, &v, err) < 0)
        return -1;
    snprintf(path, pathlen, "the number %lu", (unsigned long)v);
    return 0;
}

static int open_state(void **state, const char *arg, struct cprof_error *err)
{
    uintptr_t v;

    if (number(arg, &v, err) < 0)
        return -1;
    *state = (void *)v;
    return 0;
}

static uint64_t read_number(void *state)
{
    return (uint64_t)(uintptr_t)state;
}

static const struct abi2_counter_def fixed = {
    .name = "fixed", .unit = "things", .description = "the number given (ABI 2)",
    .probe = probe, .thread_open = open_state, .read = read_number,
    .flags = 0x1u | 0x2u,       /* ABI 2's CPROF_COUNTER_TRACER_COST | CPROF_COUNTER_TIME */
};
static const struct abi2_counter_def *const list[] = {&fixed};

__attribute__((visibility("default"))) const struct abi2_plugin cprof_plugin = {
    .abi = 2,
    .count = 1,
    .counters = list,
};
