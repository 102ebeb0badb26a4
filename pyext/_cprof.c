/* The CPython side of cprof: turns the interpreter's call events into the
 * engine's enter(key)/exit(key) stream, one engine state per thread.
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
#include "allocators.h"
#include "compat.h"
#include "pycounters.h"
#include "listing.h"

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
    unsigned opened;            /* counters whose thread_open succeeded */
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
    int has_pycall;             /* one of the counters is a Counter (a Python call) */
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

static uint64_t next_generation = 1;    /* under the GIL */
static uint64_t running_generation;     /* the enabled Profiler (profiles do not nest), or 0 */
/* initial-exec TLS: a direct load on the hot path, no __tls_get_addr call */
#define CPROF_TLS _Thread_local __attribute__((tls_model("initial-exec")))
static CPROF_TLS uint64_t tls_owner;            /* generation owning tls_ts */
static CPROF_TLS struct tstate *tls_ts;         /* this thread's state for that profiler */

static PyMethodDef *own_methods_begin, *own_methods_end;
static PyMethodDef *tp_new_def; /* the one PyMethodDef behind every type's __new__ */

/* ---- errors inside hooks ------------------------------------------------------ */

static void set_sticky(ProfilerObject *p, const char *msg)
{
    if (!p->error)
        p->error = PyUnicode_FromString(msg);
}

static PyObject *u64_list(const uint64_t *v, unsigned n);

/* ---- key registry -------------------------------------------------------------- */

/* The engine saw `key` for the first time in this thread: remember its object. */
static void on_new_key(void *arg, cprof_key key)
{
    struct tstate *ts = arg;
    ProfilerObject *p = ts->prof;
    PyObject *k, *mod = Py_None, *entry;
    SAVE_EXC(saved);

    k = PyLong_FromUnsignedLongLong(key);
    if (!k)
        goto fail;
    if (PyDict_Contains(p->keys, k) == 0 && ts->pending) {
        PyObject *globals = ts->pending_globals;
        if (!globals && PyCode_Check(ts->pending))
            globals = PyEval_GetGlobals(); /* the event's own frame is the current one */
        if (globals) {
            PyObject *m = PyDict_GetItemString(globals, "__name__");
            if (m && PyUnicode_Check(m))
                mod = m;
        }
        entry = PyTuple_Pack(2, ts->pending, mod);
        if (!entry || PyDict_SetItem(p->keys, k, entry) < 0) {
            Py_XDECREF(entry);
            Py_DECREF(k);
            goto fail;
        }
        Py_DECREF(entry);
    }
    Py_DECREF(k);
    if (PyErr_Occurred())
        goto fail;
    RESTORE_EXC(saved);
    return;
fail:
    PyErr_Clear();
    set_sticky(p, "cprof could not record a function's name (out of memory?)");
    RESTORE_EXC(saved);
}

/* ---- thread states ---------------------------------------------------------------- */

static inline void read_all(const struct tstate *ts, unsigned n, uint64_t *now);

/* A call entered its function's K slowest: remember its arguments (when its frame
 * is the current one) through the Python capture function, whose own cost is kept
 * out of the numbers.  Returns the entry's tag: 1 + its index in p->captures. */
static uint64_t on_slow(void *arg, cprof_key key, const uint64_t *values, int current,
                        int evicting, uint64_t evicted)
{
    struct tstate *ts = arg;
    ProfilerObject *p = ts->prof;
    PyObject *info = NULL, *vals = NULL, *entry;
    uint64_t tag = 0;
    SAVE_EXC(saved);

    (void)key;
    if (evicting && evicted && (Py_ssize_t)evicted <= PyList_GET_SIZE(p->captures))
        PyList_SetItem(p->captures, (Py_ssize_t)evicted - 1, Py_NewRef(Py_None));
    if (current && p->capture && ts->pending && PyCode_Check(ts->pending)) {
        uint64_t before[CPROF_MAX_COUNTERS], after[CPROF_MAX_COUNTERS];
        PyFrameObject *f = PyEval_GetFrame();
        read_all(ts, p->n, before);
        if (f)
            info = PyObject_CallFunctionObjArgs(p->capture, (PyObject *)f, NULL);
        read_all(ts, p->n, after);
        cprof_thread_exclude(&ts->eng, before, after);
        if (!info)
            PyErr_Clear();
    }
    vals = PyTuple_New(p->n);
    for (unsigned c = 0; vals && c < p->n; c++)
        PyTuple_SET_ITEM(vals, c, PyLong_FromUnsignedLongLong(values[c]));
    entry = vals ? PyTuple_Pack(2, info ? info : Py_None, vals) : NULL;
    if (entry && PyList_Append(p->captures, entry) == 0)
        tag = (uint64_t)PyList_GET_SIZE(p->captures);
    else
        set_sticky(p, "cprof could not record a slow call (out of memory?)");
    Py_XDECREF(entry);
    Py_XDECREF(vals);
    Py_XDECREF(info);
    PyErr_Clear();
    RESTORE_EXC(saved);
    return tag;
}

/* A thread's CPU time (cpu, task-clock) never outruns its wall time: hold every
 * such counter to the first wall-clock counter of the profile, if there is one. */
static void set_time_bounds(const ProfilerObject *p, struct cprof_thread *eng)
{
    unsigned wall = p->n;

    for (unsigned i = 0; i < p->n && wall == p->n; i++)
        if (p->specs[i].def->flags & CPROF_COUNTER_ELAPSED)
            wall = i;
    for (unsigned i = 0; i < p->n && wall < p->n; i++) {
        unsigned f = p->specs[i].def->flags;
        if (i != wall && (f & CPROF_COUNTER_TIME) && !(f & CPROF_COUNTER_ELAPSED))
            cprof_thread_set_bound(eng, i, wall);
    }
}

static struct tstate *tstate_new(ProfilerObject *p)
{
    struct tstate *ts = PyMem_RawCalloc(1, sizeof(*ts));
    struct cprof_error err = {0};

    if (!ts) {
        set_sticky(p, "cprof ran out of memory starting to profile a thread");
        return NULL;
    }
    ts->prof = p;
    ts->ident = PyThread_get_thread_ident();
    ts->tstate_id = PyThreadState_Get()->id;
    ts->next = p->threads;
    p->threads = ts;
    tls_ts = ts;
    tls_owner = p->generation;
    if (cprof_thread_init(&ts->eng, p->n, on_new_key, ts) < 0) {
        ts->failed = 1;
        set_sticky(p, "cprof ran out of memory starting to profile a thread");
        return NULL;
    }
    for (unsigned i = 0; i < p->n; i++) {
        const struct cprof_counter_def *def = p->specs[i].def;
        if (def->thread_open(&ts->cstate[i], p->specs[i].arg, &err) < 0) {
            char msg[CPROF_ERROR_LEN + 64];
            snprintf(msg, sizeof(msg), "a thread could not be profiled: %s", err.msg);
            ts->failed = 1;
            set_sticky(p, msg);
            return NULL;
        }
        ts->read[i] = def->read;
        ts->opened++;
    }
    set_time_bounds(p, &ts->eng);
    cprof_thread_set_compensation(&ts->eng, p->comp);
    cprof_thread_set_distributions(&ts->eng, p->dist);
    if (p->slow_k)
        cprof_thread_set_slow_calls(&ts->eng, p->slow_k, on_slow, ts);
    return ts;
}

static void tstate_free(ProfilerObject *p, struct tstate *ts)
{
    for (unsigned i = 0; i < ts->opened; i++)
        if (p->specs[i].def->thread_close)
            p->specs[i].def->thread_close(ts->cstate[i]);
    cprof_thread_free(&ts->eng);
    PyMem_RawFree(ts);
}

/* This thread's state for p, created at its first event. */
static inline struct tstate *get_ts(ProfilerObject *p)
{
    struct tstate *ts;

    if (tls_owner == p->generation) {
        ts = tls_ts;
        return ts->failed ? NULL : ts;
    }
    return tstate_new(p);
}

static inline void read_all(const struct tstate *ts, unsigned n, uint64_t *now)
{
    for (unsigned i = 0; i < n; i++)
        now[i] = ts->read[i](ts->cstate[i]);
}

/* A Counter of this thread stopped on a bad reading: record which, why, and the
 * function that was running (its registry entry), for counter_failures(). */
static void note_failures(ProfilerObject *p, struct tstate *ts)
{
    SAVE_EXC(saved);
    cprof_pycounter_failed = 0;
    for (unsigned i = 0; i < ts->opened; i++) {
        char reason[200];
        if (!cprof_pycounter_take_failure(p->specs[i].def, ts->cstate[i], reason, sizeof(reason)))
            continue;
        PyObject *where = Py_None, *k = NULL, *x;
        if (ts->eng.depth) {
            cprof_key key = ts->eng.fns.recs[ts->eng.frames[ts->eng.depth - 1].fn].key;
            k = PyLong_FromUnsignedLongLong(key);
            where = k ? PyDict_GetItemWithError(p->keys, k) : NULL;
            if (!where)
                where = Py_None;
        }
        x = Py_BuildValue("(sOs)", p->specs[i].def->name, where, reason);
        if (!x || !p->failures || PyList_Append(p->failures, x) < 0)
            set_sticky(p, "cprof could not record a counter's failure (out of memory?)");
        Py_XDECREF(x);
        Py_XDECREF(k);
    }
    PyErr_Clear();
    RESTORE_EXC(saved);
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
        note_failures(p, ts);
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
        if (ml == tp_new_def && ((PyCFunctionObject *)callable)->m_self)
            return (cprof_key)(uintptr_t)((PyCFunctionObject *)callable)->m_self;
    } else if (Py_IS_TYPE(callable, &PyMethodDescr_Type) && self_arg &&
             PyObject_TypeCheck(self_arg, PyDescr_TYPE(callable)))
        ml = ((PyMethodDescrObject *)callable)->d_method;
    else
        return 0;
    if ((ml >= own_methods_begin && ml < own_methods_end) || cprof_pycounters_own_method(ml))
        return 0;
    return (cprof_key)(uintptr_t)ml;
}

/* Push `frame` and its callers on ts's stack, outermost first, minus the `skip`
 * innermost: as frames already running (counted 0: no call) or as calls (1). */
/* Frames from `frame` outwards. */
static int stack_depth(PyFrameObject *frame)
{
    PyFrameObject *f = frame;
    int n = 0;

    Py_XINCREF(f);
    while (f) {
        PyFrameObject *back = PyFrame_GetBack(f);
        Py_DECREF(f);
        f = back;
        n++;
    }
    return n;
}

/* Push `frame` and its callers, outermost first, minus the `skip` innermost ones
 * and the `outside` outermost ones (frames below the profiled region). */
static void push_frames(ProfilerObject *p, struct tstate *ts, PyFrameObject *frame, int skip,
                        int outside, int counted)
{
    PyFrameObject *frames[MAX_EXISTING_FRAMES];
    PyFrameObject *f = frame;
    uint64_t now[CPROF_MAX_COUNTERS];
    int depth = 0, top;

    Py_XINCREF(f);
    while (f && depth < MAX_EXISTING_FRAMES) {
        frames[depth++] = f;
        f = PyFrame_GetBack(f);
    }
    /* frame i (0 = innermost) is the (total - 1 - i)th from the bottom */
    top = outside ? depth + stack_depth(f) - 1 - outside : depth - 1;
    Py_XDECREF(f);
    read_all(ts, p->n, now);
    for (int i = top < depth - 1 ? top : depth - 1; i >= skip; i--) {
        PyCodeObject *co = PyFrame_GetCode(frames[i]);
#if PY_VERSION_HEX >= 0x030B0000
        PyObject *globals = PyFrame_GetGlobals(frames[i]);
#else
        PyObject *globals = frames[i]->f_globals;
        Py_XINCREF(globals);
#endif
        ts->pending = (PyObject *)co;
        ts->pending_globals = globals;
        (counted ? cprof_thread_enter : cprof_thread_push_existing)(
            &ts->eng, (cprof_key)(uintptr_t)co, now);
        Py_XDECREF(globals);
        Py_DECREF(co);
    }
    ts->pending = ts->pending_globals = NULL;
    for (int i = 0; i < depth; i++)
        Py_DECREF(frames[i]);
}

/* ---- 3.12+: sys.monitoring ------------------------------------------------------- */

#if CPROF_MONITORING
typedef struct {
    PyObject_HEAD
    vectorcallfunc vectorcall;  /* one of the hook_* functions below */
    ProfilerObject *prof;       /* borrowed: the profiler unregisters us before it dies, or
                                 * sets this to NULL when it cannot (its tool id was freed) */
} HookObject;

/* A Python function's event: args = (code, offset, ...). */
#define PY_HOOK(name, op)                                                                        \
    static PyObject *name(PyObject *self, PyObject *const *args, size_t nargsf,                  \
                          PyObject *kwnames)                                                     \
    {                                                                                            \
        ProfilerObject *p = ((HookObject *)self)->prof;                                          \
        (void)nargsf;                                                                            \
        (void)kwnames;                                                                           \
        if (p && p->enabled)                                                                     \
            ev(p, op, (cprof_key)(uintptr_t)args[0], args[0], NULL);                             \
        Py_RETURN_NONE;                                                                          \
    }

/* A call site's event: args = (code, offset, callable, arg0); only C callables count. */
#define C_HOOK(name, op, on_other)                                                               \
    static PyObject *name(PyObject *self, PyObject *const *args, size_t nargsf,                  \
                          PyObject *kwnames)                                                     \
    {                                                                                            \
        ProfilerObject *p = ((HookObject *)self)->prof;                                          \
        cprof_key key;                                                                           \
        (void)nargsf;                                                                            \
        (void)kwnames;                                                                           \
        if (!p || !p->enabled)                                                                   \
            Py_RETURN_NONE;                                                                      \
        if ((key = c_key(args[2], args[3])) != 0)                                                \
            ev(p, op, key, args[2], NULL);                                                       \
        else                                                                                     \
            on_other;                                                                            \
        Py_RETURN_NONE;                                                                          \
    }

/* A site that called a Python function: its PY_START reports the callee, so stop
 * paying for CALL there (sys.monitoring.DISABLE, for this tool and site only).  A
 * site that later calls a C function is then not seen: all_call_sites keeps them. */
static inline PyObject *maybe_disable(ProfilerObject *p, PyObject *callable)
{
    if (p->all_call_sites || !p->disable)
        return NULL;
    if (PyFunction_Check(callable) ||
        (PyMethod_Check(callable) && PyFunction_Check(PyMethod_GET_FUNCTION(callable))))
        return Py_NewRef(p->disable);
    return NULL;
}

PY_HOOK(hook_py_enter, cprof_thread_enter) /* PY_START, PY_RESUME, PY_THROW */
PY_HOOK(hook_py_exit, cprof_thread_exit)   /* PY_RETURN, PY_YIELD, PY_UNWIND */
C_HOOK(hook_call, cprof_thread_enter,                       /* CALL */
       { PyObject *d = maybe_disable(p, args[2]); if (d) return d; })
C_HOOK(hook_c_exit, cprof_thread_exit, (void)0)             /* C_RETURN, C_RAISE */

/* Which sys.monitoring event goes to which hook (cProfile's mapping). */
static const struct {
    const char *event;          /* name in sys.monitoring.events */
    vectorcallfunc fn;
    int in_mask;                /* C_RETURN/C_RAISE follow CALL and are not set by themselves */
} hook_table[] = {
    {"PY_START", hook_py_enter, 1},  {"PY_RESUME", hook_py_enter, 1},
    {"PY_THROW", hook_py_enter, 1},  {"PY_RETURN", hook_py_exit, 1},
    {"PY_YIELD", hook_py_exit, 1},   {"PY_UNWIND", hook_py_exit, 1},
    {"CALL", hook_call, 1},          {"C_RETURN", hook_c_exit, 0},
    {"C_RAISE", hook_c_exit, 0},
};

static PyMemberDef hook_members[] = {
    {"__vectorcalloffset__", T_PYSSIZET, offsetof(HookObject, vectorcall), READONLY, NULL},
    {NULL, 0, 0, 0, NULL},
};

static void hook_dealloc(PyObject *self)
{
    PyTypeObject *tp = Py_TYPE(self);
    PyObject_Free(self);
    Py_DECREF(tp);
}

static PyType_Slot hook_slots[] = {
    {Py_tp_call, (void *)PyVectorcall_Call},
    {Py_tp_members, hook_members},
    {Py_tp_dealloc, (void *)hook_dealloc},
    {Py_tp_doc, "cprof's sys.monitoring callback (internal)"},
    {0, NULL},
};

static PyType_Spec hook_spec = {
    .name = "cprof._cprof._Hook",
    .basicsize = sizeof(HookObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_VECTORCALL | Py_TPFLAGS_DISALLOW_INSTANTIATION,
    .slots = hook_slots,
};

static PyObject *monitoring(void)
{
    PyObject *m = PySys_GetObject("monitoring"); /* borrowed */
    if (!m)
        PyErr_SetString(PyExc_RuntimeError, "sys.monitoring is missing");
    return m;
}

static int event_id(PyObject *mon, const char *name, long *out)
{
    PyObject *events = PyObject_GetAttrString(mon, "events"), *v;

    if (!events)
        return -1;
    v = PyObject_GetAttrString(events, name);
    Py_DECREF(events);
    if (!v)
        return -1;
    *out = PyLong_AsLong(v);
    Py_DECREF(v);
    return PyErr_Occurred() ? -1 : 0;
}

static int claim_tool_id(ProfilerObject *p, PyObject *mon, module_state *st)
{
    /* The ids no standard tool claims first (3, 4), so that cProfile (PROFILER_ID 2),
     * coverage (COVERAGE_ID 1), debuggers (0) and optimizers (5) still find theirs
     * free while cprof runs; the others only when both are taken, PROFILER_ID last. */
    static const int order[] = {3, 4, 5, 0, 1, 2};
    PyObject *users = PyList_New(0);

    if (!users)
        return -1;
    for (size_t i = 0; i < sizeof(order) / sizeof(order[0]); i++) {
        PyObject *r = PyObject_CallMethod(mon, "use_tool_id", "is", order[i], "cprof");
        if (r) {
            Py_DECREF(r);
            Py_DECREF(users);
            p->tool_id = order[i];
            return 0;
        }
        if (!PyErr_ExceptionMatches(PyExc_ValueError)) {
            Py_DECREF(users);
            return -1;
        }
        PyErr_Clear();
        r = PyObject_CallMethod(mon, "get_tool", "i", order[i]);
        if (r) {
            PyList_Append(users, r);
            Py_DECREF(r);
        }
        PyErr_Clear();
    }
    PyObject *joined = PyUnicode_Join(PyUnicode_FromString(", "), users);
    PyErr_Format(st->error,
                 "cprof cannot start: all 6 sys.monitoring tool ids are in use (by %S); "
                 "stop one of those tools first",
                 joined ? joined : Py_None);
    Py_XDECREF(joined);
    Py_DECREF(users);
    return -1;
}

static int hooks_install(ProfilerObject *p, module_state *st)
{
    PyObject *mon = monitoring();
    long mask = 0;

    if (!mon || claim_tool_id(p, mon, st) < 0)
        return -1;
    Py_XSETREF(p->disable, PyObject_GetAttrString(mon, "DISABLE"));
    if (!p->disable)
        goto err;
    /* sites disabled by an earlier profile on this tool id must report again */
    PyObject *rs = PyObject_CallMethod(mon, "restart_events", NULL);
    if (!rs)
        goto err;
    Py_DECREF(rs);
    p->hooks = PyList_New(0);
    if (!p->hooks)
        goto err;
    for (size_t i = 0; i < sizeof(hook_table) / sizeof(hook_table[0]); i++) {
        long ev;
        HookObject *h;
        PyObject *r;

        if (event_id(mon, hook_table[i].event, &ev) < 0)
            goto err;
        h = PyObject_New(HookObject, st->hook_type);
        if (!h)
            goto err;
        h->vectorcall = hook_table[i].fn;
        h->prof = p;
        if (PyList_Append(p->hooks, (PyObject *)h) < 0) {
            Py_DECREF(h);
            goto err;
        }
        Py_DECREF(h);
        r = PyObject_CallMethod(mon, "register_callback", "ilO", p->tool_id, ev, (PyObject *)h);
        if (!r)
            goto err;
        Py_DECREF(r);
        if (hook_table[i].in_mask)
            mask |= ev;
    }
    PyObject *r = PyObject_CallMethod(mon, "set_events", "il", p->tool_id, mask);
    if (!r)
        goto err;
    Py_DECREF(r);
    return 0;
err:;
    SAVE_EXC(saved);
    PyObject *x = PyObject_CallMethod(mon, "free_tool_id", "i", p->tool_id);
    Py_XDECREF(x);
    PyErr_Clear();
    RESTORE_EXC(saved);
    p->tool_id = -1;
    for (Py_ssize_t i = 0; p->hooks && i < PyList_GET_SIZE(p->hooks); i++)
        ((HookObject *)PyList_GET_ITEM(p->hooks, i))->prof = NULL;
    Py_CLEAR(p->hooks);
    return -1;
}

static void hooks_remove(ProfilerObject *p)
{
    PyObject *mon;
    SAVE_EXC(saved);

    if (p->tool_id < 0)
        goto out;
    mon = monitoring();
    if (mon) {
        /* a program that freed cprof's tool id may have given it to another tool: leave
         * that one alone */
        PyObject *r = PyObject_CallMethod(mon, "get_tool", "i", p->tool_id);
        int ours = r && PyUnicode_Check(r) && PyUnicode_CompareWithASCIIString(r, "cprof") == 0;
        Py_XDECREF(r);
        if (!ours) {
            set_sticky(p, "the program freed cprof's sys.monitoring tool id while it ran "
                          "(sys.monitoring.free_tool_id), so the profile may miss the end of "
                          "the run; leave tool ids other tools hold alone");
            goto done;
        }
        r = PyObject_CallMethod(mon, "set_events", "ii", p->tool_id, 0);
        Py_XDECREF(r);
        for (size_t i = 0; i < sizeof(hook_table) / sizeof(hook_table[0]); i++) {
            long ev;
            if (event_id(mon, hook_table[i].event, &ev) == 0) {
                r = PyObject_CallMethod(mon, "register_callback", "ilO", p->tool_id, ev, Py_None);
                Py_XDECREF(r);
            }
        }
        r = PyObject_CallMethod(mon, "free_tool_id", "i", p->tool_id);
        Py_XDECREF(r);
    }
done:
    for (Py_ssize_t i = 0; p->hooks && i < PyList_GET_SIZE(p->hooks); i++)
        ((HookObject *)PyList_GET_ITEM(p->hooks, i))->prof = NULL; /* any left registered */
    p->tool_id = -1;
    Py_CLEAR(p->hooks);
out:
    PyErr_Clear();
    RESTORE_EXC(saved);
}

#else /* ---- 3.9-3.11: PyEval_SetProfile ------------------------------------------ */

static int profile_func(PyObject *obj, PyFrameObject *frame, int what, PyObject *arg)
{
    ProfilerObject *p = (ProfilerObject *)obj;
    PyCodeObject *co;
    cprof_key key;

    if (!p->enabled)
        return 0;
    switch (what) {
    case PyTrace_CALL:
    case PyTrace_RETURN:
        co = PyFrame_GetCode(frame);
        ev(p, what == PyTrace_CALL ? cprof_thread_enter : cprof_thread_exit,
           (cprof_key)(uintptr_t)co, (PyObject *)co, NULL);
        Py_DECREF(co);
        break;
    case PyTrace_C_CALL:
        if ((key = c_key(arg, NULL)) != 0)
            ev(p, cprof_thread_enter, key, arg, NULL);
        break;
    case PyTrace_C_RETURN:
    case PyTrace_C_EXCEPTION:
        if ((key = c_key(arg, NULL)) != 0)
            ev(p, cprof_thread_exit, key, arg, NULL);
        break;
    default:
        break;
    }
    return 0;
}

/* An event that came through sys.setprofile's trampoline (args: frame, event, arg):
 * put cprof's C hook in its place, push the frames already running when the stack
 * is empty (as calls if `fresh_counts` and the thread is new to the profile, else
 * as running before), and handle the event. */
static void trampolined_event(ProfilerObject *p, PyObject *args, int fresh_counts)
{
    static const char *const events[] = {
        [PyTrace_CALL] = "call", [PyTrace_RETURN] = "return", [PyTrace_C_CALL] = "c_call",
        [PyTrace_C_RETURN] = "c_return", [PyTrace_C_EXCEPTION] = "c_exception",
    };
    PyObject *frame, *event, *arg;
    struct tstate *ts;
    int what = -1, fresh;

    PyEval_SetProfile(profile_func, (PyObject *)p);
    if (!PyArg_ParseTuple(args, "OUO", &frame, &event, &arg) || !PyFrame_Check(frame)) {
        PyErr_Clear();
        return;
    }
    for (int i = 0; i < (int)(sizeof(events) / sizeof(events[0])); i++)
        if (events[i] && PyUnicode_CompareWithASCIIString(event, events[i]) == 0)
            what = i;
    fresh = fresh_counts && tls_owner != p->generation;
    ts = get_ts(p);
    if (!ts || what < 0)
        return;
    if (ts->eng.depth == 0) {
        /* a call event's frame is the callee; any other event's is already running */
        PyFrameObject *f = (PyFrameObject *)frame;
        PyFrameObject *back = what == PyTrace_CALL ? PyFrame_GetBack(f) : NULL;
        /* the frames under the one that enabled profiling are not in the region */
        int outside = PyThread_get_thread_ident() == p->outside_ident ? p->outside_depth : 0;
        if (what != PyTrace_CALL || back)
            push_frames(p, ts, what == PyTrace_CALL ? back : f, 0, outside, fresh);
        Py_XDECREF(back);
    }
    profile_func((PyObject *)p, (PyFrameObject *)frame, what, arg);
}

/* threading.setprofile() target, called through the trampoline with the first event
 * of each new threading.Thread (the call of its run(), made inside _bootstrap_inner):
 * the frames already there (_bootstrap, _bootstrap_inner) are calls made while
 * profiling in a thread that starts here, as sys.monitoring sees them on 3.12+. */
static PyObject *thread_bootstrap(PyObject *self, PyObject *args)
{
    ProfilerObject *p = (ProfilerObject *)self;

    if (!p->enabled)
        PyEval_SetProfile(NULL, NULL);
    else
        trampolined_event(p, args, 1);
    Py_RETURN_NONE;
}

static PyObject *replaced_entry(ProfilerObject *p, struct tstate *ts, int alive, PyObject *holder,
                               int restored);

/* sys.setprofile(old) with old = sys.getprofile() taken while cprof's hook was in
 * place (which gives the Profiler): the trampoline calls it with each event.  The
 * thread's numbers stop where the hook was taken (its stack is closed there and the
 * gap is left out of its region, and said), then go on from this event with cprof's
 * C hook back in place. */
static PyObject *profiler_call(PyObject *self, PyObject *args, PyObject *kwds)
{
    ProfilerObject *p = (ProfilerObject *)self;

    (void)kwds;
    if (!p->enabled) {
        PyEval_SetProfile(NULL, NULL);
        Py_RETURN_NONE;
    }
    if (tls_owner == p->generation && !tls_ts->failed) {
        PyObject *entry = replaced_entry(p, tls_ts, 1, Py_None, 1);
        if (!entry || !p->replaced || PyList_Append(p->replaced, entry) < 0)
            set_sticky(p, "cprof could not record a replaced profile hook (out of memory?)");
        Py_XDECREF(entry);
        PyErr_Clear();
        cprof_thread_flush(&tls_ts->eng);
        cprof_thread_pause(&tls_ts->eng);
    }
    trampolined_event(p, args, 0);
    Py_RETURN_NONE;
}

static PyMethodDef bootstrap_def = {"_cprof_thread_bootstrap", thread_bootstrap, METH_VARARGS,
                                    NULL};

/* threading's hook for new threads (threading._profile_hook on every version that
 * uses this path), and setting it. */
static PyObject *threading_getprofile(void)
{
    PyObject *threading = PyImport_ImportModule("threading"), *r;

    if (!threading)
        return NULL;
    r = PyObject_GetAttrString(threading, "_profile_hook");
    Py_DECREF(threading);
    return r;
}

static int threading_setprofile(PyObject *fn)
{
    PyObject *threading = PyImport_ImportModule("threading"), *r;

    if (!threading)
        return -1;
    r = PyObject_CallMethod(threading, "setprofile", "O", fn);
    Py_DECREF(threading);
    Py_XDECREF(r);
    return r ? 0 : -1;
}

static PyObject *thread_name(unsigned long ident);

static inline int hook_is_ours(ProfilerObject *p, PyThreadState *t)
{
    return (t->c_profilefunc == profile_func && t->c_profileobj == (PyObject *)p) ||
           (p->bootstrap && t->c_profileobj == p->bootstrap);
}

static int hooks_install(ProfilerObject *p, module_state *st)
{
    PyThreadState *me = PyThreadState_Get();

    /* A thread has one profile hook: taking another profiler's would silently cut
     * its numbers short, so say so instead. */
    for (PyThreadState *t = PyInterpreterState_ThreadHead(me->interp); t; t = PyThreadState_Next(t))
        if (t->c_profilefunc && !hook_is_ours(p, t)) {
            PyObject *name = thread_name(t->thread_id);
            PyErr_Format(st->error,
                         "cprof cannot start: thread %R already has a profile hook (%R, such as "
                         "cProfile's) and Python %d.%d allows one per thread; stop that profiler "
                         "first, or use Python 3.12+ where both can run",
                         name, t->c_profileobj ? t->c_profileobj : Py_None, PY_MAJOR_VERSION,
                         PY_MINOR_VERSION);
            Py_XDECREF(name);
            return -1;
        }
    if (!p->bootstrap) {
        p->bootstrap = PyCFunction_New(&bootstrap_def, (PyObject *)p);
        if (!p->bootstrap)
            return -1;
    }
    Py_XSETREF(p->prev_thread_hook, threading_getprofile());
    if (!p->prev_thread_hook)
        PyErr_Clear();
    if (threading_setprofile(p->bootstrap) < 0)
        return -1;
    for (PyThreadState *t = PyInterpreterState_ThreadHead(me->interp); t; t = PyThreadState_Next(t))
        if (t != me)
            _PyEval_SetProfile(t, profile_func, (PyObject *)p);
    PyEval_SetProfile(profile_func, (PyObject *)p);
    return 0;
}

/* Before the hooks come off: each profiled thread whose hook is no longer cprof's
 * (sys.setprofile(f), sys.setprofile(None), cProfile's enable) is recorded, with
 * what holds the hook now and the stack as it was at cprof's last event there,
 * which is when the hook was taken: the C function that took it on top.  A thread
 * that ended meanwhile is recognised by frames still open on its stack (a thread
 * that ends under cprof's hook has returned from all of them). */
static void note_replaced_hooks(ProfilerObject *p)
{
    PyThreadState *me = PyThreadState_Get();

    if (!p->replaced || !p->keys)
        return;
    SAVE_EXC(saved);

    for (struct tstate *ts = p->threads; ts; ts = ts->next) {
        PyThreadState *t = PyInterpreterState_ThreadHead(me->interp);
        PyObject *holder = Py_None, *entry;
        int alive = 0;

        if (ts->failed || !ts->eng.started)
            continue;
        for (; t; t = PyThreadState_Next(t))
            if (t->id == ts->tstate_id)
                break;
        if (t) {
            if (hook_is_ours(p, t))
                continue;
            alive = 1;
            if (t->c_profilefunc && t->c_profileobj)
                holder = t->c_profileobj;
        } else if (ts->eng.depth == 0)
            continue;
        entry = replaced_entry(p, ts, alive, holder, 0);
        if (!entry || PyList_Append(p->replaced, entry) < 0)
            set_sticky(p, "cprof could not record a replaced profile hook (out of memory?)");
        Py_XDECREF(entry);
    }
    PyErr_Clear();
    RESTORE_EXC(saved);
}

static void hooks_remove(ProfilerObject *p)
{
    PyThreadState *me = PyThreadState_Get();
    SAVE_EXC(saved);

    note_replaced_hooks(p);
    for (PyThreadState *t = PyInterpreterState_ThreadHead(me->interp); t; t = PyThreadState_Next(t))
        if (t->c_profileobj == (PyObject *)p || (p->bootstrap && t->c_profileobj == p->bootstrap))
            _PyEval_SetProfile(t, NULL, NULL);
    /* threading's hook goes back to what it was, unless the program changed it */
    PyObject *now = threading_getprofile();
    if (!now || now == p->bootstrap)
        threading_setprofile(p->prev_thread_hook ? p->prev_thread_hook : Py_None);
    Py_XDECREF(now);
    Py_CLEAR(p->prev_thread_hook);
    PyErr_Clear();
    RESTORE_EXC(saved);
}
#endif

/* ---- Profiler ------------------------------------------------------------------- */

static module_state *state_of(PyObject *self)
{
    return PyType_GetModuleState(Py_TYPE(self));
}

/* Move a parsed spec (a resolved one points into itself). */
static void spec_move(struct cprof_counter_spec *dst, const struct cprof_counter_spec *src)
{
    int self_described = src->def == &src->own, named_by_arg = src->own.name == src->arg;

    memmove(dst, src, sizeof(*dst));
    if (self_described)
        dst->def = &dst->own;
    if (named_by_arg)
        dst->own.name = dst->arg;
}

/* counters: a spec string ("cpu,wall"), or a sequence mixing counter names and
 * Counter/UserCounter objects, in the order given. */
static int parse_counters(ProfilerObject *p, PyObject *counters, module_state *st)
{
    struct cprof_error err = {0};
    PyObject *seq, *names = NULL, *spec = NULL;
    struct cprof_counter_spec parsed[CPROF_MAX_COUNTERS];
    unsigned nparsed = 0, next = 0;
    Py_ssize_t len;
    int rc = -1;

    if (PyUnicode_Check(counters))
        return cprof_spec_resolve(PyUnicode_AsUTF8(counters), cprof_py_counters(),
                                  cprof_counter_resolvers, p->specs, CPROF_MAX_COUNTERS, &p->n,
                                  &err) < 0
                   ? (PyErr_SetString(st->error, err.msg), -1)
                   : 0;
    seq = PySequence_Fast(counters, "counters must be a str or a list of names and counters");
    if (!seq)
        return -1;
    len = PySequence_Fast_GET_SIZE(seq);
    if (len == 0 || len > CPROF_MAX_COUNTERS) {
        PyErr_Format(st->error, "give between 1 and %d counters", CPROF_MAX_COUNTERS);
        goto out;
    }
    if (!(names = PyList_New(0)) || !(p->objects = PyList_New(0)))
        goto out;
    for (Py_ssize_t i = 0; i < len; i++) {
        PyObject *c = PySequence_Fast_GET_ITEM(seq, i);
        if (PyUnicode_Check(c)) {
            if (PyList_Append(names, c) < 0)
                goto out;
        } else if (!cprof_pycounter_is(c, st->counter_type, st->user_counter_type)) {
            PyErr_Format(st->error, "counter %R is neither a counter name nor a cprof.Counter "
                         "or cprof.UserCounter; give names such as 'cpu' or counter objects", c);
            goto out;
        }
    }
    if (PyList_GET_SIZE(names)) {
        PyObject *comma = PyUnicode_FromString(",");
        spec = comma ? PyUnicode_Join(comma, names) : NULL;
        Py_XDECREF(comma);
        if (!spec)
            goto out;
        if (cprof_spec_resolve(PyUnicode_AsUTF8(spec), cprof_py_counters(),
                               cprof_counter_resolvers, parsed, CPROF_MAX_COUNTERS, &nparsed,
                               &err) < 0) {
            PyErr_SetString(st->error, err.msg);
            goto out;
        }
    }
    /* the named ones keep their relative order (perf groups rely on it) */
    for (Py_ssize_t i = 0; i < len; i++) {
        PyObject *c = PySequence_Fast_GET_ITEM(seq, i);
        if (PyUnicode_Check(c)) {
            spec_move(&p->specs[i], &parsed[next++]);
            continue;
        }
        if (PyList_Append(p->objects, c) < 0 || cprof_pycounter_spec(c, &p->specs[i]) < 0)
            goto out;
        p->has_pycall |= p->specs[i].own.read == cprof_pycounter_call.read;
    }
    p->n = (unsigned)len;
    for (unsigned i = 0; i < p->n; i++)
        for (unsigned j = 0; j < i; j++)
            if (strcmp(p->specs[i].def->name, p->specs[j].def->name) == 0) {
                PyErr_Format(st->error, "counter '%s' is given twice; name each counter once",
                             p->specs[i].def->name);
                p->n = 0;
                goto out;
            }
    rc = 0;
out:
    Py_XDECREF(names);
    Py_XDECREF(spec);
    Py_DECREF(seq);
    return rc;
}

static int profiler_init(PyObject *self, PyObject *args, PyObject *kwds)
{
    ProfilerObject *p = (ProfilerObject *)self;
    static char *kwlist[] = {"counters", "all_call_sites", "distributions", "slow_calls",
                             "capture", NULL};
    PyObject *counters = NULL, *capture = Py_None;
    int all_call_sites = 0, dist = 0, slow_k = 0;
    struct cprof_error err = {0};
    module_state *st = state_of(self);

    if (!PyArg_ParseTupleAndKeywords(args, kwds, "|OppiO:Profiler", kwlist, &counters,
                                     &all_call_sites, &dist, &slow_k, &capture))
        return -1;
    if (slow_k < 0 || slow_k > CPROF_MAX_SLOW) {
        PyErr_Format(st->error, "slow_calls must be between 0 and %d", CPROF_MAX_SLOW);
        return -1;
    }
    if (capture != Py_None && !PyCallable_Check(capture)) {
        PyErr_SetString(PyExc_TypeError, "capture must be callable");
        return -1;
    }
    p->all_call_sites = all_call_sites;
    p->dist = dist;
    p->slow_k = (unsigned)slow_k;
    Py_XSETREF(p->capture, capture == Py_None ? NULL : Py_NewRef(capture));
    if (!p->captures && !(p->captures = PyList_New(0)))
        return -1;
    if (p->enabled || p->threads || p->n) {
        PyErr_SetString(st->error, "a Profiler cannot be re-initialised; create a new one");
        return -1;
    }
    if (!counters) {
        if (cprof_spec_resolve("cpu,wall", cprof_py_counters(), cprof_counter_resolvers,
                               p->specs, CPROF_MAX_COUNTERS, &p->n, &err) < 0) {
            PyErr_SetString(st->error, err.msg);
            return -1;
        }
    } else if (parse_counters(p, counters, st) < 0) {
        p->n = 0;
        return -1;
    }
    for (unsigned i = 0; i < p->n; i++)
        if (p->specs[i].def->probe(p->specs[i].arg, p->paths[i], sizeof(p->paths[i]), &err) < 0) {
            PyErr_SetString(st->error, err.msg);
            p->n = 0;
            return -1;
        }
    p->generation = next_generation++;
    p->tool_id = -1;
    if (!p->keys && !(p->keys = PyDict_New()))
        return -1;
    if (!p->failures && !(p->failures = PyList_New(0)))
        return -1;
    if (!p->replaced && !(p->replaced = PyList_New(0)))
        return -1;
    return 0;
}

/* Push the calling thread's Python frames (outermost first), minus `skip`
 * innermost ones, as frames that were running before profiling started. */
static int push_existing(ProfilerObject *p, int skip)
{
    struct tstate *ts = get_ts(p);

    if (ts)
        push_frames(p, ts, PyEval_GetFrame(), skip, 0, 0);
    return 0;
}

static PyObject *profiler_enable(PyObject *self, PyObject *args, PyObject *kwds)
{
    ProfilerObject *p = (ProfilerObject *)self;
    static char *kwlist[] = {"push_existing", "skip", NULL};
    int existing = 1, skip = 0;
    module_state *st = state_of(self);

    if (!PyArg_ParseTupleAndKeywords(args, kwds, "|pi:enable", kwlist, &existing, &skip))
        return NULL;
    if (!p->n) {
        PyErr_SetString(st->error, "the Profiler was not initialised");
        return NULL;
    }
    if (p->enabled) {
        PyErr_SetString(st->error, "this profile is already enabled; call disable() before "
                                   "enabling it again (profiles do not nest)");
        return NULL;
    }
    if (running_generation) {
        PyErr_SetString(st->error, "another cprof profile is already running in this process; "
                                   "disable it first (profiles do not nest)");
        return NULL;
    }
    /* Frames first, hooks after: reading a Counter may run Python code, which must
     * not be seen as an event of the profile it starts. */
    if (existing)
        push_existing(p, skip);
    p->outside_ident = existing ? 0 : PyThread_get_thread_ident();
    p->outside_depth = existing ? 0 : stack_depth(PyEval_GetFrame());
    if (hooks_install(p, st) < 0) {
        if (tls_owner == p->generation && !tls_ts->failed) {
            cprof_thread_flush(&tls_ts->eng);
            cprof_thread_pause(&tls_ts->eng);
        }
        return NULL;
    }
    cprof_pymalloc_profile_start(p->specs, p->n);
    p->enabled = 1;
    running_generation = p->generation;
    Py_RETURN_NONE;
}

/* Stop: close every thread's open frames and pause it.  The calling thread takes a
 * final reading; the others end at their latest one. */
static void stop(ProfilerObject *p)
{
    int tick = 1;

    if (!p->enabled)
        return;
    p->enabled = 0;
    running_generation = 0;
#if !CPROF_MONITORING
    /* a thread whose hook the program took ends at cprof's last event there */
    tick = hook_is_ours(p, PyThreadState_Get());
#endif
    hooks_remove(p);
    cprof_pymalloc_profile_stop(p->specs, p->n);
    if (tick && tls_owner == p->generation && !tls_ts->failed) {
        uint64_t now[CPROF_MAX_COUNTERS];
        read_all(tls_ts, p->n, now);
        cprof_thread_tick(&tls_ts->eng, now);
    }
    for (struct tstate *ts = p->threads; ts; ts = ts->next)
        if (!ts->failed) {
            cprof_thread_flush(&ts->eng);
            cprof_thread_pause(&ts->eng);
        }
}

#if !CPROF_MONITORING
/* The counter's growth `v` in words: "2.31 ms of wall", "12 switches of ctxsw". */
static void amount_text(char *buf, size_t len, uint64_t v, const struct cprof_counter_def *d)
{
    if (strcmp(d->unit, "ns") == 0)
        snprintf(buf, len, "%.2f ms of %s", (double)v / 1e6, d->name);
    else
        snprintf(buf, len, "%llu %s of %s", (unsigned long long)v, d->unit, d->name);
}

/* The name of a registry entry's function (code or callable, module) for a sentence:
 * profile_file.describe()'s, as in the profile, or a plain one without it. */
static PyObject *entry_name(PyObject *entry)
{
    PyObject *obj, *mod, *pf, *d;

    if (!entry || !PyTuple_Check(entry) || PyTuple_GET_SIZE(entry) != 2)
        return PyUnicode_FromString("?");
    if ((pf = PyImport_ImportModule("cprof.profile_file"))) {
        d = PyObject_CallMethod(pf, "describe", "OO", PyTuple_GET_ITEM(entry, 0),
                                PyTuple_GET_ITEM(entry, 1));
        Py_DECREF(pf);
        if (d && PyTuple_Check(d) && PyTuple_GET_SIZE(d) > 0 &&
            PyUnicode_Check(PyTuple_GET_ITEM(d, 0))) {
            PyObject *name = Py_NewRef(PyTuple_GET_ITEM(d, 0));
            Py_DECREF(d);
            return name;
        }
        Py_XDECREF(d);
    }
    PyErr_Clear();
    obj = PyTuple_GET_ITEM(entry, 0);
    mod = PyTuple_GET_ITEM(entry, 1);
    if (PyCode_Check(obj)) {
#if PY_VERSION_HEX >= 0x030B0000
        PyObject *q = ((PyCodeObject *)obj)->co_qualname;
#else
        PyObject *q = ((PyCodeObject *)obj)->co_name;
#endif
        return mod != Py_None ? PyUnicode_FromFormat("%S.%S", mod, q) : Py_NewRef(q);
    }
    if (PyCFunction_Check(obj)) {
        PyCFunctionObject *f = (PyCFunctionObject *)obj;
        PyObject *self = f->m_self;
        if (self && PyModule_Check(self))
            return PyUnicode_FromFormat("%s.%s", PyModule_GetName(self), f->m_ml->ml_name);
        if (self && PyType_Check(self))
            return PyUnicode_FromFormat("%s.%s", ((PyTypeObject *)self)->tp_name, f->m_ml->ml_name);
        if (self)
            return PyUnicode_FromFormat("%s.%s", Py_TYPE(self)->tp_name, f->m_ml->ml_name);
        return PyUnicode_FromString(f->m_ml->ml_name);
    }
    return PyObject_Str(obj);
}

/* threading's name for the thread `ident` (a str), or None once it has ended. */
static PyObject *thread_name(unsigned long ident)
{
    PyObject *threading = PyImport_ImportModule("threading"), *active, *t = NULL, *k, *name = NULL;

    if (threading && (active = PyObject_GetAttrString(threading, "_active"))) {
        if ((k = PyLong_FromUnsignedLong(ident))) {
            t = PyDict_Check(active) ? PyDict_GetItemWithError(active, k) : NULL;
            if (t && (name = PyObject_GetAttrString(t, "name")) && !PyUnicode_Check(name))
                Py_CLEAR(name);
            Py_DECREF(k);
        }
        Py_DECREF(active);
    }
    Py_XDECREF(threading);
    PyErr_Clear();
    return name ? name : Py_NewRef(Py_None);
}

/* One replaced hook (see note_replaced_hooks): {"ident", "alive", "holder": what has
 * the hook now (None: nothing, or unknown once the thread ended), "stack": registry
 * entries, innermost first, at the moment it was taken, "after": each counter's
 * growth in that thread until then, "message": a sentence for stderr}. */
static PyObject *replaced_entry(ProfilerObject *p, struct tstate *ts, int alive, PyObject *holder,
                               int restored)
{
    PyObject *stack = PyList_New(0), *after, *out = NULL, *msg = NULL, *who = NULL, *in = NULL,
             *by = NULL, *did = NULL, *detail = NULL, *name = NULL;
    uint64_t grown[CPROF_MAX_COUNTERS];
    char amount[96];

    if (!stack)
        return NULL;
    for (size_t i = ts->eng.depth; i-- > 0 && PyList_GET_SIZE(stack) < 8;) {
        cprof_key key = ts->eng.fns.recs[ts->eng.frames[i].fn].key;
        PyObject *k = PyLong_FromUnsignedLongLong(key), *e;
        e = k ? PyDict_GetItemWithError(p->keys, k) : NULL;
        Py_XDECREF(k);
        if (PyList_Append(stack, e ? e : Py_None) < 0)
            goto out;
        PyErr_Clear();
        if (e && i + 1 == ts->eng.depth && PyTuple_Check(e) && !PyCode_Check(PyTuple_GET_ITEM(e, 0)))
            by = entry_name(e);         /* the C function that took the hook */
        if (e && !in && PyTuple_Check(e) && PyCode_Check(PyTuple_GET_ITEM(e, 0)))
            in = entry_name(e);         /* the Python function that called it */
    }
    for (unsigned c = 0; c < p->n; c++)
        grown[c] = ts->eng.last[c] - ts->eng.first[c];
    if (!(after = u64_list(grown, p->n)))
        goto out;
    amount_text(amount, sizeof(amount), grown[0], p->specs[0].def);
    name = alive ? thread_name(ts->ident) : Py_NewRef(Py_None); /* an ended one's ident may be reused */
    who = name == Py_None ? PyUnicode_FromFormat("thread %lu", ts->ident)
                          : PyUnicode_FromFormat("thread '%U'", name);
    if (restored)
        did = PyUnicode_FromString("took cprof's profile hook away and put it back");
    else if (!alive)
        did = PyUnicode_FromString("took cprof's profile hook away before the thread ended");
    else if (holder == Py_None)
        did = PyUnicode_FromString("took cprof's profile hook away");
    else
        did = PyUnicode_FromFormat("replaced cprof's profile hook with %R", holder);
    if (!who || !did)
        goto out;
    if (by && in)
        detail = PyUnicode_FromFormat("%U called from %U, ", by, in);
    else if (by || in)
        detail = PyUnicode_FromFormat("%s%U, ", by ? "" : "in ", by ? by : in);
    else
        detail = PyUnicode_FromString("");
    if (!detail)
        goto out;
    msg = PyUnicode_FromFormat("in %U the program %U (%Uafter %s): %s is not in the profile; "
                               "Python %d.%d has one profile hook per thread, so run one profiler "
                               "at a time there, or use Python 3.12+",
                               who, did, detail, amount,
                               restored ? "what that thread ran meanwhile"
                                        : "the rest of that thread's run",
                               PY_MAJOR_VERSION, PY_MINOR_VERSION);
    if (msg)
        out = Py_BuildValue("{s:k,s:O,s:O,s:O,s:O,s:N,s:N,s:O}", "ident", ts->ident, "thread",
                            name, "alive", alive ? Py_True : Py_False, "restored",
                            restored ? Py_True : Py_False, "holder", holder, "stack", stack,
                            "after", after, "message", msg);
    else
        Py_DECREF(after);
    stack = NULL;
out:
    Py_XDECREF(stack);
    Py_XDECREF(msg);
    Py_XDECREF(who);
    Py_XDECREF(did);
    Py_XDECREF(by);
    Py_XDECREF(in);
    Py_XDECREF(detail);
    Py_XDECREF(name);
    return out;
}

#endif

static PyObject *profiler_disable(PyObject *self, PyObject *args, PyObject *kwds)
{
    ProfilerObject *p = (ProfilerObject *)self;
    static char *kwlist[] = {"strict", NULL};
    int strict = 1;
    module_state *st = state_of(self);
    Py_ssize_t nrep;

    if (!PyArg_ParseTupleAndKeywords(args, kwds, "|$p:disable", kwlist, &strict))
        return NULL;
    if (!p->enabled) {
        PyErr_SetString(st->error, "this profile is not enabled; call enable() before disable()");
        return NULL;
    }
    stop(p);
    if (p->error) {
        PyErr_SetObject(st->error, p->error);
        Py_CLEAR(p->error);
        return NULL;
    }
    nrep = p->replaced ? PyList_GET_SIZE(p->replaced) : 0;
    if (p->replaced_said < nrep) {
        PyObject *first = PyList_GET_ITEM(p->replaced, p->replaced_said);
        PyObject *msg = PyDict_GetItemString(first, "message");
        Py_ssize_t more = nrep - p->replaced_said - 1;
        p->replaced_said = nrep;
        if (strict) {
            if (more)
                PyErr_Format(st->error, "%S (and in %zd more threads)", msg, more);
            else
                PyErr_SetObject(st->error, msg);
            return NULL;
        }
    }
    Py_RETURN_NONE;
}

static PyObject *profiler_hook_replaced(PyObject *self, PyObject *unused)
{
    PyObject *r = ((ProfilerObject *)self)->replaced;

    (void)unused;
    return r ? PyList_GetSlice(r, 0, PY_SSIZE_T_MAX) : PyList_New(0);
}

static PyObject *profiler_counter_failures(PyObject *self, PyObject *unused)
{
    ProfilerObject *p = (ProfilerObject *)self;

    (void)unused;
    return PyList_GetSlice(p->failures, 0, PY_SSIZE_T_MAX);
}

static PyObject *profiler_set_compensation(PyObject *self, PyObject *arg)
{
    ProfilerObject *p = (ProfilerObject *)self;
    uint64_t v[CPROF_MAX_COUNTERS];
    PyObject *seq = PySequence_Fast(arg, "set_compensation() takes a list of ints");

    if (!seq)
        return NULL;
    if ((size_t)PySequence_Fast_GET_SIZE(seq) != p->n) {
        Py_DECREF(seq);
        PyErr_Format(PyExc_ValueError, "set_compensation() needs %u values, one per counter", p->n);
        return NULL;
    }
    for (unsigned i = 0; i < p->n; i++) {
        v[i] = PyLong_AsUnsignedLongLong(PySequence_Fast_GET_ITEM(seq, i));
        if (PyErr_Occurred()) {
            Py_DECREF(seq);
            return NULL;
        }
    }
    Py_DECREF(seq);
    for (unsigned i = 0; i < p->n; i++)     /* the program's own events are never compensated */
        if (!(p->specs[i].def->flags & CPROF_COUNTER_TRACER_COST))
            v[i] = 0;
    memcpy(p->comp, v, sizeof(v[0]) * p->n);
    for (struct tstate *ts = p->threads; ts; ts = ts->next)
        if (!ts->failed)
            cprof_thread_set_compensation(&ts->eng, p->comp);
    Py_RETURN_NONE;
}

/* The calling thread's current reading of every counter (for calibration). */
static PyObject *profiler_read(PyObject *self, PyObject *unused)
{
    ProfilerObject *p = (ProfilerObject *)self;
    uint64_t now[CPROF_MAX_COUNTERS];
    struct tstate *ts;

    (void)unused;
    if (!p->n) {
        PyErr_SetString(state_of(self)->error, "the Profiler was not initialised");
        return NULL;
    }
    ts = get_ts(p);
    if (!ts) {
        PyErr_SetObject(state_of(self)->error, p->error ? p->error : Py_None);
        return NULL;
    }
    read_all(ts, p->n, now);
    return u64_list(now, p->n);
}

static PyObject *u64_list(const uint64_t *v, unsigned n)
{
    PyObject *l = PyList_New(n);

    if (!l)
        return NULL;
    for (unsigned i = 0; i < n; i++) {
        PyObject *x = PyLong_FromUnsignedLongLong(v[i]);
        if (!x) {
            Py_DECREF(l);
            return NULL;
        }
        PyList_SET_ITEM(l, i, x);
    }
    return l;
}

/* One histogram: its count, quantiles, max and non-empty buckets (low, high, count). */
static PyObject *hist_dict(const struct cprof_hist *h)
{
    PyObject *buckets = PyList_New(0), *d;

    if (!buckets)
        return NULL;
    for (unsigned b = 0; b < CPROF_HIST_BLOCKS; b++) {
        if (!h->blocks[b])
            continue;
        for (unsigned i = b * CPROF_HIST_SUB; i < (b + 1) * CPROF_HIST_SUB; i++) {
            uint32_t c = cprof_hist_at(h, i);
            PyObject *x;
            if (!c)
                continue;
            x = Py_BuildValue("(KKI)", (unsigned long long)cprof_hist_low(i),
                              (unsigned long long)cprof_hist_high(i), (unsigned)c);
            if (!x || PyList_Append(buckets, x) < 0) {
                Py_XDECREF(x);
                Py_DECREF(buckets);
                return NULL;
            }
            Py_DECREF(x);
        }
    }
    d = Py_BuildValue("{s:K,s:K,s:K,s:K,s:K,s:N}", "count", (unsigned long long)h->count, "p50",
                      (unsigned long long)cprof_hist_quantile(h, 0.50), "p90",
                      (unsigned long long)cprof_hist_quantile(h, 0.90), "p99",
                      (unsigned long long)cprof_hist_quantile(h, 0.99), "max",
                      (unsigned long long)h->max, "buckets", buckets);
    return d;
}

/* Distributions and slow calls of merged function i, or None. */
static PyObject *ext_of_fn(ProfilerObject *p, const struct cprof_merged *m, size_t i)
{
    const struct cprof_fn_ext *x = cprof_merged_ext(m, i);
    PyObject *dist = Py_None, *slow = Py_None, *out;

    if (!x || (!x->hist && !x->slow))
        Py_RETURN_NONE;
    if (x->hist && !(dist = PyList_New(p->n)))
        return NULL;
    for (unsigned c = 0; x->hist && c < p->n; c++) {
        PyObject *h = hist_dict(&x->hist[c]);
        if (!h) {
            Py_DECREF(dist);
            return NULL;
        }
        PyList_SET_ITEM(dist, c, h);
    }
    if (x->slow) {
        slow = PyList_New(0);
        for (unsigned j = x->slow->count; slow && j-- > 0;) {  /* largest first */
            uint64_t tag = x->slow->e[j].tag;
            PyObject *cap = tag && (Py_ssize_t)tag <= PyList_GET_SIZE(p->captures)
                                ? PyList_GET_ITEM(p->captures, (Py_ssize_t)tag - 1)
                                : Py_None;
            if (PyList_Append(slow, cap) < 0)
                Py_CLEAR(slow);
        }
        if (!slow) {
            if (dist != Py_None)
                Py_DECREF(dist);
            return NULL;
        }
    } else
        Py_INCREF(slow);
    if (dist == Py_None)
        Py_INCREF(dist);
    out = Py_BuildValue("{s:N,s:N}", "dist", dist, "slow", slow);
    return out;
}

static PyObject *build_stats(ProfilerObject *p, const struct cprof_merged *m)
{
    PyObject *out = NULL, *fns = NULL, *edges = NULL, *counters = NULL, *tree = NULL, *x;
    unsigned n = p->n;

    if (!(out = PyDict_New()) || !(fns = PyList_New(0)) || !(edges = PyList_New(0)) ||
        !(counters = PyList_New(0)) || !(tree = PyList_New(0)))
        goto err;
    for (unsigned i = 0; i < n; i++) {
        const struct cprof_counter_def *d = p->specs[i].def;
        uint64_t count = 0, amount = 0;
        for (struct tstate *ts = p->threads; ts; ts = ts->next)
            if (d->corrections && ts->opened > i) {
                uint64_t c, a;
                d->corrections(ts->cstate[i], &c, &a);
                count += c;
                amount += a;
            }
        x = Py_BuildValue("{s:s,s:s,s:s,s:s,s:s,s:K,s:K,s:O,s:O,s:O}", "name", d->name, "unit",
                          d->unit, "description", d->description, "read_path", p->paths[i], "arg",
                          p->specs[i].arg, "corrections", (unsigned long long)count,
                          "corrections_total", (unsigned long long)amount, "compensable",
                          d->flags & CPROF_COUNTER_TRACER_COST ? Py_True : Py_False, "time",
                          d->flags & CPROF_COUNTER_TIME ? Py_True : Py_False, "elapsed",
                          d->flags & CPROF_COUNTER_ELAPSED ? Py_True : Py_False);
        if (!x || PyList_Append(counters, x) < 0)
            goto err_x;
        Py_DECREF(x);
    }
    for (size_t i = 1; i < m->fns.len; i++) {
        const struct cprof_rec *r = &m->fns.recs[i];
        PyObject *k = PyLong_FromUnsignedLongLong(r->key), *entry, *self_l, *total_l;
        if (!k)
            goto err;
        entry = PyDict_GetItemWithError(p->keys, k);
        Py_DECREF(k);
        if (!entry && PyErr_Occurred())
            goto err;
        self_l = u64_list(cprof_self(&m->fns, i), n);
        total_l = u64_list(cprof_total(&m->fns, i), n);
        x = Py_BuildValue("(KOKKNNN)", (unsigned long long)r->key, entry ? entry : Py_None,
                          (unsigned long long)r->calls, (unsigned long long)r->primitive_calls,
                          self_l, total_l, ext_of_fn(p, m, i));
        if (!x || PyList_Append(fns, x) < 0)
            goto err_x;
        Py_DECREF(x);
    }
    for (size_t i = 0; i < m->edges.len; i++) {
        const struct cprof_rec *r = &m->edges.recs[i];
        size_t caller = (size_t)(r->key >> 32), callee = (size_t)(r->key & 0xffffffffu);
        x = Py_BuildValue("(KKKKN)", (unsigned long long)m->fns.recs[caller].key,
                          (unsigned long long)m->fns.recs[callee].key, (unsigned long long)r->calls,
                          (unsigned long long)r->primitive_calls,
                          u64_list(cprof_total(&m->edges, i), n));
        if (!x || PyList_Append(edges, x) < 0)
            goto err_x;
        Py_DECREF(x);
    }
    for (size_t i = 0; i < m->nodes.len; i++) {
        const struct cprof_rec *r = &m->nodes.recs[i];
        size_t fn = (size_t)(r->key & 0xffffffffu);
        x = Py_BuildValue("(nKKNN)", i ? (Py_ssize_t)(r->key >> 32) : (Py_ssize_t)-1,
                          (unsigned long long)m->fns.recs[fn].key, (unsigned long long)r->calls,
                          u64_list(cprof_self(&m->nodes, i), n),
                          u64_list(cprof_total(&m->nodes, i), n));
        if (!x || PyList_Append(tree, x) < 0)
            goto err_x;
        Py_DECREF(x);
    }
    if (PyDict_SetItemString(out, "counters", counters) < 0 ||
        PyDict_SetItemString(out, "tree", tree) < 0 ||
        PyDict_SetItemString(out, "functions", fns) < 0 ||
        PyDict_SetItemString(out, "edges", edges) < 0)
        goto err;
    x = Py_BuildValue("{s:N,s:N,s:N,s:N,s:K,s:K,s:K,s:K,s:K,s:K,s:s,s:N}", "region",
                      u64_list(m->region, n), "unattributed", u64_list(m->unattributed, n),
                      "compensated", u64_list(m->compensated, n), "compensation_per_event",
                      u64_list(p->comp, n), "threads",
                      (unsigned long long)m->threads, "events", (unsigned long long)m->events,
                      "unmatched_exits", (unsigned long long)m->unmatched_exits, "backwards",
                      (unsigned long long)m->backwards, "tree_folded",
                      (unsigned long long)m->tree_dropped, "dist_lost",
                      (unsigned long long)m->dist_lost, "hook",
                      CPROF_MONITORING ? "sys.monitoring" : "PyEval_SetProfile", "hook_replaced",
                      p->replaced ? PyList_GetSlice(p->replaced, 0, PY_SSIZE_T_MAX)
                                  : PyList_New(0));
    if (!x || PyDict_SetItemString(out, "meta", x) < 0)
        goto err_x;
    Py_DECREF(x);
    Py_DECREF(fns);
    Py_DECREF(edges);
    Py_DECREF(counters);
    Py_DECREF(tree);
    return out;
err_x:
    Py_XDECREF(x);
err:
    Py_XDECREF(out);
    Py_XDECREF(fns);
    Py_XDECREF(edges);
    Py_XDECREF(counters);
    Py_XDECREF(tree);
    return NULL;
}

static PyObject *profiler_stats(PyObject *self, PyObject *unused)
{
    ProfilerObject *p = (ProfilerObject *)self;
    struct cprof_thread **threads;
    struct cprof_merged m;
    size_t nt = 0;
    PyObject *out;

    (void)unused;
    if (p->enabled) {
        PyErr_SetString(state_of(self)->error, "call disable() before reading the stats");
        return NULL;
    }
    for (struct tstate *ts = p->threads; ts; ts = ts->next)
        nt++;
    threads = PyMem_Calloc(nt ? nt : 1, sizeof(*threads));
    if (!threads)
        return PyErr_NoMemory();
    nt = 0;
    for (struct tstate *ts = p->threads; ts; ts = ts->next)
        if (!ts->failed)
            threads[nt++] = &ts->eng;
    if (cprof_merge(threads, nt, p->n, &m) < 0) {
        PyMem_Free(threads);
        return PyErr_NoMemory();
    }
    PyMem_Free(threads);
    out = build_stats(p, &m);
    cprof_merged_free(&m);
    return out;
}

static int profiler_traverse(PyObject *self, visitproc visit, void *arg)
{
    ProfilerObject *p = (ProfilerObject *)self;

    Py_VISIT(Py_TYPE(self));
    Py_VISIT(p->keys);
    Py_VISIT(p->bootstrap);
    Py_VISIT(p->hooks);
    Py_VISIT(p->disable);
    Py_VISIT(p->objects);
    Py_VISIT(p->failures);
    Py_VISIT(p->capture);
    Py_VISIT(p->captures);
    Py_VISIT(p->prev_thread_hook);
    Py_VISIT(p->replaced);
    return 0;
}

static int profiler_clear(PyObject *self)
{
    ProfilerObject *p = (ProfilerObject *)self;

    Py_CLEAR(p->replaced);      /* first: no Python work to say replaced hooks when dying */
    stop(p);
    Py_CLEAR(p->keys);
    Py_CLEAR(p->bootstrap);
    Py_CLEAR(p->hooks);
    Py_CLEAR(p->error);
    Py_CLEAR(p->disable);
    Py_CLEAR(p->failures);
    Py_CLEAR(p->capture);
    Py_CLEAR(p->captures);
    Py_CLEAR(p->prev_thread_hook);
    return 0;
}

static void profiler_dealloc(PyObject *self)
{
    ProfilerObject *p = (ProfilerObject *)self;
    PyTypeObject *tp = Py_TYPE(self);

    PyObject_GC_UnTrack(self);
    profiler_clear(self);
    while (p->threads) {
        struct tstate *ts = p->threads;
        p->threads = ts->next;
        tstate_free(p, ts);
    }
    Py_CLEAR(p->objects);       /* after the thread states that point into them */
    if (tls_owner == p->generation) {
        tls_owner = 0;
        tls_ts = NULL;
    }
    tp->tp_free(self);
    Py_DECREF(tp);
}

static PyObject *profiler_get_enabled(PyObject *self, void *closure)
{
    (void)closure;
    return PyBool_FromLong(((ProfilerObject *)self)->enabled);
}

static PyObject *profiler_get_counters(PyObject *self, void *closure)
{
    ProfilerObject *p = (ProfilerObject *)self;
    PyObject *t = PyTuple_New(p->n);

    (void)closure;
    if (!t)
        return NULL;
    for (unsigned i = 0; i < p->n; i++)
        PyTuple_SET_ITEM(t, i, PyUnicode_FromString(p->specs[i].def->name));
    return t;
}

static PyMethodDef profiler_methods[] = {
    {"enable", (PyCFunction)(void (*)(void))profiler_enable, METH_VARARGS | METH_KEYWORDS,
     "enable(push_existing=True, skip=0)\n--\n\nStart profiling every thread. With push_existing, "
     "the calling thread's current frames (minus `skip` innermost) are treated as already running."},
    {"disable", (PyCFunction)(void (*)(void))profiler_disable, METH_VARARGS | METH_KEYWORDS,
     "disable(*, strict=True)\n--\n\nStop profiling; raises CprofError if a hook failed meanwhile "
     "or, when strict, if the program replaced the profile hook of a thread (< 3.12; the "
     "profile is complete up to then: see hook_replaced())."},
    {"hook_replaced", profiler_hook_replaced, METH_NOARGS,
     "hook_replaced()\n--\n\nThreads whose profile hook the program replaced (sys.setprofile, "
     "cProfile; Python < 3.12): a list of dicts with ident, alive, holder, stack (registry "
     "entries, innermost first, when it was taken), after (each counter's growth until then), "
     "message."},
    {"set_compensation", profiler_set_compensation, METH_O,
     "set_compensation(values)\n--\n\nThe tracer's cost per event, one int per counter in its "
     "unit, taken out of every interval between two readings (never more than the interval)."},
    {"counter_failures", profiler_counter_failures, METH_NOARGS,
     "counter_failures()\n--\n\nCounters that stopped on a bad reading: a list of (counter, "
     "(code or callable, module) of the function running then, or None, reason)."},
    {"read", profiler_read, METH_NOARGS,
     "read()\n--\n\nThe calling thread's current reading of every counter."},
    {"stats", profiler_stats, METH_NOARGS,
     "stats()\n--\n\nThe merged raw statistics as a dict (see cprof.api)."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef profiler_getset[] = {
    {"enabled", profiler_get_enabled, NULL, "whether profiling is on", NULL},
    {"counters", profiler_get_counters, NULL, "the counter names, in order", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyType_Slot profiler_slots[] = {
#if !CPROF_MONITORING
    {Py_tp_call, (void *)profiler_call},
#endif
    {Py_tp_init, (void *)profiler_init},
    {Py_tp_new, (void *)PyType_GenericNew},
    {Py_tp_dealloc, (void *)profiler_dealloc},
    {Py_tp_traverse, (void *)profiler_traverse},
    {Py_tp_clear, (void *)profiler_clear},
    {Py_tp_methods, profiler_methods},
    {Py_tp_getset, profiler_getset},
    {Py_tp_doc, "Profiler(counters='cpu,wall', all_call_sites=False)\n--\n\nThe C profiler behind "
                "cprof.Profile. On 3.12+, call sites that call a Python function stop reporting CALL "
                "(its PY_START does) unless all_call_sites is true."},
    {0, NULL},
};

static PyType_Spec profiler_spec = {
    .name = "cprof._cprof.Profiler",
    .basicsize = sizeof(ProfilerObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .slots = profiler_slots,
};

/* ---- module ------------------------------------------------------------------------ */

static PyObject *list_counters(PyObject *module, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"pmu", NULL};
    int pmu = 0;

    if (!PyArg_ParseTupleAndKeywords(args, kwds, "|p:list_counters", kwlist, &pmu))
        return NULL;
    return cprof_py_list_counters(((module_state *)PyModule_GetState(module))->error, pmu);
}

static PyObject *build_info(PyObject *module, PyObject *unused)
{
    (void)module;
    (void)unused;
    return Py_BuildValue("{s:O}", "libpfm", cprof_py_have_libpfm() ? Py_True : Py_False);
}

static PyMethodDef module_methods[] = {
    {"list_counters", (PyCFunction)(void (*)(void))list_counters, METH_VARARGS | METH_KEYWORDS,
     "list_counters(pmu=False)\n--\n\nEvery counter cprof knows, whether it works here, and how "
     "it is read; with pmu=True, the events of the PMUs libpfm4 detects."},
    {"malloc_interposer", cprof_py_malloc_interposer, METH_VARARGS,
     "malloc_interposer(name='malloc-bytes')\n--\n\nNone if that malloc counter works in this "
     "process (libcprof_malloc.so preloaded), else (errno, sentence saying how to start it)."},
    {"build_info", build_info, METH_NOARGS,
     "build_info()\n--\n\nWhat this build of cprof includes: {'libpfm': bool}."},
    {NULL, NULL, 0, NULL},
};

static int module_exec(PyObject *m)
{
    module_state *st = PyModule_GetState(m);

    own_methods_begin = profiler_methods;
    own_methods_end = profiler_methods + sizeof(profiler_methods) / sizeof(profiler_methods[0]);
    PyObject *new_fn = PyObject_GetAttrString((PyObject *)&PyBaseObject_Type, "__new__");
    if (!new_fn)
        return -1;
    if (PyCFunction_Check(new_fn))
        tp_new_def = ((PyCFunctionObject *)new_fn)->m_ml;
    Py_DECREF(new_fn);
    st->error = PyErr_NewExceptionWithDoc(
        "cprof._cprof.CprofError",
        "A problem the user can fix: the message is one sentence naming it and the fix.",
        PyExc_Exception, NULL);
    if (!st->error)
        return -1;
    Py_INCREF(st->error);
    if (PyModule_AddObject(m, "CprofError", st->error) < 0) {
        Py_DECREF(st->error);
        return -1;
    }
    st->profiler_type = (PyTypeObject *)PyType_FromModuleAndSpec(m, &profiler_spec, NULL);
    if (!st->profiler_type || PyModule_AddType(m, st->profiler_type) < 0)
        return -1;
#if CPROF_MONITORING
    st->hook_type = (PyTypeObject *)PyType_FromModuleAndSpec(m, &hook_spec, NULL);
    if (!st->hook_type)
        return -1;
#endif
    if (cprof_pycounters_init(m, &st->counter_type, &st->user_counter_type) < 0)
        return -1;
    if (PyModule_AddStringConstant(m, "HOOK", CPROF_MONITORING ? "sys.monitoring"
                                                               : "PyEval_SetProfile") < 0)
        return -1;
    return 0;
}

static int module_traverse(PyObject *m, visitproc visit, void *arg)
{
    module_state *st = PyModule_GetState(m);

    Py_VISIT(st->error);
    Py_VISIT(st->profiler_type);
    Py_VISIT(st->hook_type);
    Py_VISIT(st->counter_type);
    Py_VISIT(st->user_counter_type);
    return 0;
}

static int module_clear(PyObject *m)
{
    module_state *st = PyModule_GetState(m);

    Py_CLEAR(st->error);
    Py_CLEAR(st->profiler_type);
    Py_CLEAR(st->hook_type);
    Py_CLEAR(st->counter_type);
    Py_CLEAR(st->user_counter_type);
    return 0;
}

static void module_free(void *m)
{
    module_clear((PyObject *)m);
}

static PyModuleDef_Slot module_slots[] = {
    {Py_mod_exec, (void *)module_exec},
    {0, NULL},
};

static struct PyModuleDef cprof_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "cprof._cprof",
    .m_doc = "cprof's C extension: the hook and the bridge to the engine.",
    .m_size = sizeof(module_state),
    .m_methods = module_methods,
    .m_slots = module_slots,
    .m_traverse = module_traverse,
    .m_clear = module_clear,
    .m_free = module_free,
};

PyMODINIT_FUNC PyInit__cprof(void)
{
    return PyModuleDef_Init(&cprof_module);
}
