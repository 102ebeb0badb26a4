/* A plugin built against counter ABI 1, whose descriptor ends before `flags`:
 * cprof still loads it, and never compensates its counter.  The ABI 1 layout is
 * written out here, as that header declared it. */
#include <stddef.h>
#include <stdint.h>

struct cprof_error;

struct abi1_counter_def {
    const char *name, *unit, *description;
    int (*probe)(const char *arg, char *path, size_t pathlen, struct cprof_error *err);
    int (*thread_open)(void **state, const char *arg, struct cprof_error *err);
    uint64_t (*read)(void *state);
    void (*thread_close)(void *state);
    void (*corrections)(void *state, uint64_t *count, uint64_t *amount);
};

struct abi1_plugin {
    unsigned abi, count;
    const struct abi1_counter_def *const *counters;
};

static int probe(const char *arg, char *path, size_t pathlen, struct cprof_error *err)
{
    (void)arg;
    (void)err;
    if (pathlen)
        path[0] = '\0';
    return 0;
}

static int open_state(void **state, const char *arg, struct cprof_error *err)
{
    (void)arg;
    (void)err;
    *state = NULL;
    return 0;
}

static uint64_t read_zero(void *state)
{
    (void)state;
    return 0;
}

/* followed in memory by anything at all: cprof must not read past the ABI 1 end */
static const struct abi1_counter_def old_counter[2] = {{
    .name = "old", .unit = "events", .description = "a counter built for ABI 1",
    .probe = probe, .thread_open = open_state, .read = read_zero,
}, {.name = (const char *)-1}};
static const struct abi1_counter_def *const list[] = {&old_counter[0]};

__attribute__((visibility("default"))) const struct abi1_plugin cprof_plugin = {
    .abi = 1,
    .count = 1,
    .counters = list,
};
