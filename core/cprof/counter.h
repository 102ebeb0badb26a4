/* The counter module interface: everything a counter needs to plug into cprof.
 * This is cprof's public C header, installed with the package: cprof.get_include()
 * gives its folder, so a plugin does `#include <cprof/counter.h>`.
 *
 * A counter is one descriptor.  Built-in ones live in counters/, one file each,
 * and are listed in counters/meson.build.  A plugin is a shared library exporting
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

/* Bumped when struct cprof_counter_def changes.  1: the first; 2: flags; 3: probe and
 * thread_open get the spec's context pointer, thread_open a group's shared state,
 * and the descriptor says whether it takes an argument (CPROF_COUNTER_TAKES_ARG).
 * Plugins built for 1 and 2 still load (counters/plugin.c adapts them). */
#define CPROF_COUNTER_ABI 3
#define CPROF_ERROR_LEN 320

/* An error a user can act on: one sentence naming the problem and the fix.
 *
 * One convention everywhere in cprof's C: a function returns 0 on success and a
 * negative errno value on failure, the sentence (when there is one) in the
 * caller's struct cprof_error, whose code is the same errno, positive. */
struct cprof_error {
    int code;                   /* 0 = no error; otherwise a positive errno value */
    char msg[CPROF_ERROR_LEN];  /* the sentence, NUL-terminated */
};

/* Fill err (if any) and return -code, so that a failure is one statement:
 *     return cprof_error_set(err, EINVAL, "counter '%s' ...", name); */
static inline __attribute__((format(printf, 3, 4))) int
cprof_error_set(struct cprof_error *err, int code, const char *fmt, ...)
{
    va_list ap;

    if (!err)
        return -code;
    err->code = code;
    va_start(ap, fmt);
    vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
    va_end(ap);
    return -code;
}

/* State shared by a run's counters of one group in each thread: perf's hardware
 * events, which the kernel schedules and reads together, share one perf group.
 * The caller (cprof_counters_open, core/registry.h) opens it in a thread before
 * the first of its counters and closes it after the last. */
struct cprof_counter_group {
    const char *name;           /* "perf hardware", for messages */
    /* The thread's shared state, into *shared.  0 or -errno + err. */
    int (*thread_open)(void **shared, struct cprof_error *err);
    /* After every counter of the group closed in this thread. */
    void (*thread_close)(void *shared);
};

struct cprof_counter_def {
    const char *name;           /* "cpu", "ctxsw": what users type after --counter= */
    const char *unit;           /* "ns", "switches", "B", "events" */
    const char *description;    /* one line for --list-counters */
    /* Is it usable here?  0 if yes; otherwise fill err and return -errno.  On
     * success may describe the read path in `path` (for --list-counters).  `arg`
     * is the text after ':' in the spec ("" if none; the registry refuses one
     * unless flags has CPROF_COUNTER_TAKES_ARG), `ctx` the spec's context pointer
     * (NULL for a counter named in the registry; a resolver's choice otherwise). */
    int (*probe)(const char *arg, void *ctx, char *path, size_t pathlen,
                 struct cprof_error *err);
    /* Per-thread state, opened in the thread that will read it.  `shared` is this
     * thread's state of the descriptor's group (NULL without one).  0 or -errno +
     * err. */
    int (*thread_open)(void **state, const char *arg, void *ctx, void *shared,
                       struct cprof_error *err);
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
    /* Optional: the group whose per-thread state its thread_open shares. */
    const struct cprof_counter_group *group;
    /* Optional, for a counter whose readings can stop (a Python Counter whose
     * read() raised): 1 and the sentence saying why, once per stop; else 0. */
    int (*take_failure)(void *state, char *reason, size_t len);
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
/* It takes an argument ("name:ARG"); without this bit the registry refuses one. */
#define CPROF_COUNTER_TAKES_ARG 0x8u
/* Counted by cprof's malloc interposer, which must be preloaded when the program
 * starts (cprof's CLI restarts Python with it). */
#define CPROF_COUNTER_NEEDS_PRELOAD 0x10u

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
