/* The CPython side of cprof, shared by its files: the profiler object, the
 * per-thread state, and the inline event path both hook mechanisms call.
 *
 * The extension turns the interpreter's call events into the engine's
 * enter(key)/exit(key) stream, one engine state per thread:
 *
 *   3.12+   sys.monitoring (PEP 669), callbacks registered from C as vectorcall
 *           objects on a free tool id.
 *   3.9-11  PyEval_SetProfile-style hook, installed on every existing thread and,
 *           through threading.setprofile, on threads started later.
 *
 * Keys: a Python function is its code object's address (the code object is kept
 * alive by the Profiler's key registry, so the address is never reused while the
 * profile exists); a C function is its PyMethodDef's address.  Names are
 * resolved at report time, in Python, from the objects in the registry.
 *
 * The hooks never raise: a failure sets a sticky error, raised from disable(). */
#ifndef CPROF_PROFILER_H
#define CPROF_PROFILER_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <frameobject.h>
#include <pythread.h>
#include <structmember.h>

#include <stdint.h>
#include <string.h>

#include "../core/engine.h"
#include "../core/registry.h"
#include "../counters/counters.h"
#include "compat.h"
#include "pycounters.h"

#if PY_VERSION_HEX >= 0x030C0000
#define CPROF_MONITORING 1
#else
#define CPROF_MONITORING 0
#endif

#define MAX_EXISTING_FRAMES 4096 /* deepest pre-existing stack pushed at enable() */

typedef struct {
    PyObject *error;            /* cprof's exception class (CprofError) */
    PyTypeObject *profiler_type;
    PyTypeObject *hook_type;
    PyTypeObject *counter_type;     /* cprof.Counter */
    PyTypeObject *user_counter_type; /* cprof.UserCounter */
} module_state;

typedef struct ProfilerObject ProfilerObject;

/* One thread's profiling state: its engine and its counters' per-thread state. */
struct tstate {
    struct cprof_thread eng;    /* shadow stack and tables */
    uint64_t (*read[CPROF_MAX_COUNTERS])(void *); /* the counters' read functions */
    void *cstate[CPROF_MAX_COUNTERS];   /* their per-thread states */
    void *shared[CPROF_MAX_COUNTERS];   /* their groups' per-thread states (NULL: none) */
    unsigned opened;            /* counters opened: all (cprof_counters_open) or none */
    int failed;                 /* a counter could not be opened: thread not profiled */
    unsigned long ident;        /* PyThread_get_thread_ident() of the owning thread */
    uint64_t tstate_id;         /* its PyThreadState's id (never reused, unlike ident) */
    ProfilerObject *prof;       /* owner (borrowed) */
    PyObject *pending;          /* object behind the key being handled (borrowed) */
    PyObject *pending_globals;  /* its frame's globals, or NULL: the current frame's (borrowed) */
    struct tstate *next;        /* the owner's list of threads */
};

struct ProfilerObject {
    PyObject_HEAD
    unsigned n;                 /* counters */
    struct cprof_counter_spec specs[CPROF_MAX_COUNTERS];
    char paths[CPROF_MAX_COUNTERS][240];        /* read path of each counter, from probe() */
    uint64_t generation;        /* unique per Profiler, to recognise its thread states */
    struct tstate *threads;     /* every thread state it created */
    PyObject *keys;             /* dict: int key -> (code or callable, module name or None) */
    PyObject *error;            /* sticky error message (str) from a hook, or NULL */
    int enabled;
    int tool_id;                /* sys.monitoring tool id in use, or -1 */
    int all_call_sites;         /* keep CALL events at sites that call Python functions */
    unsigned long outside_ident; /* enable(push_existing=False)'s thread, or 0 */
    int outside_depth;          /* its frames then (the enabling one and its callers): never
                                 * pushed when that thread's stack is rebuilt (3.9-3.11) */
    uint64_t comp[CPROF_MAX_COUNTERS];  /* tracer cost per event, per counter (0: none) */
    PyObject *disable;          /* sys.monitoring.DISABLE, or NULL (3.12+) */
    PyObject *objects;          /* the Counter/UserCounter objects its specs point to */
    int has_pycall;             /* a counter may stop (take_failure: a Python Counter) */
    PyObject *failures;         /* list of (counter, function entry or None, reason) */
    int dist;                   /* keep per-call distributions */
    unsigned slow_k;            /* keep the K slowest calls per function (0: none) */
    PyObject *capture;          /* capture(frame) -> (args repr, thread name), or NULL */
    PyObject *captures;         /* list: slow call tag - 1 -> (args, thread, values) or None */
    PyObject *hooks;            /* list of hook objects registered with sys.monitoring */
    PyObject *bootstrap;        /* threading.setprofile() function for new threads (< 3.12) */
    PyObject *prev_thread_hook; /* threading's hook for new threads before ours (< 3.12) */
    PyObject *replaced;         /* list of dicts: threads whose hook the program replaced */
    Py_ssize_t replaced_said;   /* entries of `replaced` already raised by disable() */
};
/* initial-exec TLS: a direct load on the hot path, no __tls_get_addr call */
#define CPROF_TLS _Thread_local __attribute__((tls_model("initial-exec")))
extern CPROF_TLS uint64_t cprof_tls_owner;      /* generation owning cprof_tls_ts */
extern CPROF_TLS struct tstate *cprof_tls_ts;   /* this thread's state for that profiler */

extern const PyMethodDef *const cprof_own_methods_begin, *const cprof_own_methods_end;
extern PyMethodDef *cprof_tp_new_def; /* the one PyMethodDef behind every type's __new__ */

/* threads.c: per-thread state and the engine's callbacks */
struct tstate *cprof_ts_new(ProfilerObject *p);
void cprof_ts_free(ProfilerObject *p, struct tstate *ts);
void cprof_ts_note_failures(ProfilerObject *p, struct tstate *ts);
int cprof_ts_stack_depth(PyFrameObject *frame);
void cprof_ts_push_frames(ProfilerObject *p, struct tstate *ts, PyFrameObject *frame, int skip,
                          int outside, int counted);
void cprof_py_set_sticky(ProfilerObject *p, const char *msg);
PyObject *cprof_py_u64_list(const uint64_t *v, unsigned n);

/* profiler.c */
extern PyType_Spec cprof_profiler_spec;
/* spec.c: counters= of Profiler(), resolved into p->specs */
int cprof_py_parse_counters(ProfilerObject *p, PyObject *counters, module_state *st);
/* stats.c: Profiler.stats() */
PyObject *cprof_py_profiler_stats(PyObject *self, PyObject *unused);

/* ---- the event path (inline: it runs at every call and return) ------------------- */

/* This thread's state for p, created at its first event. */
static inline struct tstate *get_ts(ProfilerObject *p)
{
    struct tstate *ts;

    if (cprof_tls_owner == p->generation) {
        ts = cprof_tls_ts;
        return ts->failed ? NULL : ts;
    }
    return cprof_ts_new(p);
}

static inline void read_all(const struct tstate *ts, unsigned n, uint64_t *now)
{
    for (unsigned i = 0; i < n; i++)
        now[i] = ts->read[i](ts->cstate[i]);
}

typedef void (*engine_op)(struct cprof_thread *, cprof_key, const uint64_t *);

/* The event entry point shared by both hook mechanisms; `op` is
 * cprof_thread_enter or cprof_thread_exit (a constant at every call site, so
 * this inlines into two specialised copies). */
static inline void ev(ProfilerObject *p, engine_op op, cprof_key key, PyObject *obj,
                      PyObject *globals)
{
    uint64_t now[CPROF_MAX_COUNTERS];
    struct tstate *ts = get_ts(p);

    if (!ts)
        return;
    read_all(ts, p->n, now);
    if (p->has_pycall && cprof_pycounter_failed)
        cprof_ts_note_failures(p, ts);
    ts->pending = obj;
    ts->pending_globals = globals;
    op(&ts->eng, key, now);
}

/* The key of a C callable, or 0 if it is not one we report (a class, a Python
 * function, or one of cprof's own methods).  A method descriptor called with its
 * instance as first argument (list.sort) counts as that C function. */
static inline cprof_key c_key(PyObject *callable, PyObject *self_arg)
{
    PyMethodDef *ml;

    if (PyCFunction_Check(callable)) {
        ml = ((PyCFunctionObject *)callable)->m_ml;
        /* every type's __new__ shares one PyMethodDef: its type tells them apart (kept
         * alive, with the callable, by the key registry) */
        if (ml == cprof_tp_new_def && ((PyCFunctionObject *)callable)->m_self)
            return (cprof_key)(uintptr_t)((PyCFunctionObject *)callable)->m_self;
    } else if (Py_IS_TYPE(callable, &PyMethodDescr_Type) && self_arg &&
             PyObject_TypeCheck(self_arg, PyDescr_TYPE(callable)))
        ml = ((PyMethodDescrObject *)callable)->d_method;
    else
        return 0;
    if ((ml >= cprof_own_methods_begin && ml < cprof_own_methods_end) || cprof_pycounters_own_method(ml))
        return 0;
    return (cprof_key)(uintptr_t)ml;
}

static inline module_state *state_of(PyObject *self)
{
    return PyType_GetModuleState(Py_TYPE(self));
}


#endif
