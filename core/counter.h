/* The counter module interface: everything a counter needs to plug into cprof.
 *
 * A counter is one descriptor.  Built-in ones live in counters/, one file each,
 * and are listed in counters/builtin.c.  The engine never calls a counter itself:
 * the caller (pyext/, or a test) reads every counter of a thread into an array
 * of uint64 and hands that array to cprof_thread_enter/exit.  This header has no
 * dependency on Python. */
#ifndef CPROF_COUNTER_H
#define CPROF_COUNTER_H

#include <stddef.h>
#include <stdint.h>

#define CPROF_COUNTER_ABI 1     /* bumped when struct cprof_counter_def changes */
#define CPROF_ERROR_LEN 320

/* An error a user can act on: one sentence naming the problem and the fix. */
struct cprof_error {
    int code;                   /* 0 = no error; otherwise a positive errno value */
    char msg[CPROF_ERROR_LEN];  /* the sentence, NUL-terminated */
};

void cprof_error_set(struct cprof_error *err, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

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
};

#endif
