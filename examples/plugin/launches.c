/* An example cprof counter plugin: "launches", how many times the calling thread
 * called example_launch() -- think of a native library counting its GPU kernel
 * launches, or its cache misses, where Python cannot see them.
 *
 * Build:   cc -shared -fPIC -O2 -I"$(python -c 'import cprof; print(cprof.get_include())')" \
 *              launches.c -o liblaunches.so
 * Use:     cprof --counter=wall,plugin:./liblaunches.so script.py
 * The script (or a native library it uses) calls example_launch(), e.g. through
 * ctypes.CDLL("./liblaunches.so").example_launch(). */
#include <cprof/counter.h>

#include <string.h>

static _Thread_local uint64_t launches; /* this thread's count */

/* The instrumented "library" function. */
__attribute__((visibility("default"))) void example_launch(void)
{
    launches++;
}

/* Usable here?  Always; and how it is read.  (cprof refuses an argument, as the
 * descriptor's flags do not say CPROF_COUNTER_TAKES_ARG.) */
static int launches_probe(const char *arg, void *ctx, char *path, size_t pathlen,
                          struct cprof_error *err)
{
    (void)arg;
    (void)ctx;
    (void)err;
    snprintf(path, pathlen, "a thread-local count kept by the plugin, a load per read");
    return 0;
}

static int launches_open(void **state, const char *arg, void *ctx, void *shared,
                         struct cprof_error *err)
{
    (void)arg;
    (void)ctx;
    (void)shared;
    (void)err;
    *state = NULL;
    return 0;
}

static uint64_t launches_read(void *state)
{
    (void)state;
    return launches;
}

static const struct cprof_counter_def launches_counter = {
    .name = "launches",
    .unit = "launches",
    .description = "calls of example_launch() by the thread (example plugin)",
    .probe = launches_probe,
    .thread_open = launches_open,
    .read = launches_read,
};

static const struct cprof_counter_def *const counters[] = {&launches_counter};

__attribute__((visibility("default"))) const struct cprof_plugin cprof_plugin = {
    .abi = CPROF_COUNTER_ABI,
    .count = 1,
    .counters = counters,
};
