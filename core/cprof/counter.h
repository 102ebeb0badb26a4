/* The counter module interface: everything a counter needs to plug into cprof.
 * This is cprof's public C header, installed with the package: cprof.get_include()
 * gives its folder, so a plugin does `#include <cprof/counter.h>`.
 *
 * A counter is one descriptor.  Built-in ones live in counters/, one file each,
 * and are listed in counters/builtin.c.  A plugin is a shared library exporting
 * `const struct cprof_plugin cprof_plugin` (below), loaded with
 * --counter=plugin:/path/libmine.so[:arg].  The engine never calls a counter
 * itself: the caller (pyext/, or a test) reads every counter of a thread into an
 * array of uint64 and hands that array to cprof_thread_enter/exit.  No Python. */
#ifndef CPROF_COUNTER_H
#define CPROF_COUNTER_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define CPROF_COUNTER_ABI 2     /* bumped when struct cprof_counter_def changes (2: flags) */
#define CPROF_ERROR_LEN 320

/* An error a user can act on: one sentence naming the problem and the fix. */
struct cprof_error {
    int code;                   /* 0 = no error; otherwise a positive errno value */
    char msg[CPROF_ERROR_LEN];  /* the sentence, NUL-terminated */
};

static inline __attribute__((format(printf, 3, 4))) void
cprof_error_set(struct cprof_error *err, int code, const char *fmt, ...)
{
    va_list ap;

    if (!err)
        return;
    err->code = code;
    va_start(ap, fmt);
    vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
    va_end(ap);
}

struct cprof_counter_def {
    const char *name;           /* "cpu", "ctxsw": what users type after --counter= */
    const char *unit;           /* "ns", "switches", "B", "events" */
    const char *description;    /* one line for --list-counters */
    /* Is it usable here?  0 if yes; otherwise fill err and return -1.
     * On success may describe the read path in `path` (for --list-counters). */
    int (*probe)(const char *arg, char *path, size_t pathlen, struct cprof_error *err);
    /* Per-thread state, opened in the thread that will read it. 0 or -1 + err. */
    int (*thread_open)(void **state, const char *arg, struct cprof_error *err);
    /* Hot path: the current value for the calling thread.  No allocation, no lock,
     * and in the common case no system call.  Never decreases within a thread. */
    uint64_t (*read)(void *state);
    /* Safe to call from any thread, once per successful thread_open.  Optional. */
    void (*thread_close)(void *state);
    /* Optional: number of corrections made to keep the value monotonic, and
     * their total size in the counter's unit (see DESIGN.md, synthetic clocks). */
    void (*corrections)(void *state, uint64_t *count, uint64_t *amount);
    /* CPROF_COUNTER_* bits below; 0 for a counter of the program's own events. */
    unsigned flags;
};

/* The tracer's own work raises this counter (time, cycles, instructions): cprof
 * measures that cost per event at start-up and takes it out of every interval
 * ("compensation").  Counts of discrete events the program makes (allocations,
 * context switches, page faults, user counts) must not set it: the tracer does
 * not cause them, and subtracting a calibrated share would remove real ones. */
#define CPROF_COUNTER_TRACER_COST 0x1u
/* A time in ns that advances with the thread's work (cpu, wall, task-clock):
 * these share one calibrated cost, so cpu never loses more than wall does. */
#define CPROF_COUNTER_TIME 0x2u
/* Elapsed (wall-clock) time: a thread's other time counters, its CPU time, never
 * grow more than this one between two readings, and cprof holds them to that. */
#define CPROF_COUNTER_ELAPSED 0x4u

/* What a plugin exports, under the name CPROF_PLUGIN_SYMBOL:
 *     const struct cprof_plugin cprof_plugin = {
 *         .abi = CPROF_COUNTER_ABI, .count = 1, .counters = my_counters };
 * --counter=plugin:PATH uses its first counter, plugin:PATH:ARG passes ARG to it. */
#define CPROF_PLUGIN_SYMBOL "cprof_plugin"

struct cprof_plugin {
    unsigned abi;               /* CPROF_COUNTER_ABI it was built against */
    unsigned count;             /* entries in counters */
    const struct cprof_counter_def *const *counters;
};

#endif
