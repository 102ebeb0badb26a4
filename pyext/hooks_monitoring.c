/* The hooks on 3.12+: sys.monitoring (PEP 669) callbacks registered from C as
 * vectorcall objects on a free tool id. */
#include "async.h"
#include "hooks.h"
#include "trace.h"

#if !CPROF_MONITORING
#error "hooks_monitoring.c is for Python 3.12+ (meson picks hooks_setprofile.c before)"
#endif

/* ---- 3.12+: sys.monitoring ------------------------------------------------------- */

typedef struct {
    PyObject_HEAD
    vectorcallfunc vectorcall;  /* one of the hook_* functions below */
    ProfilerObject *prof;       /* borrowed: the profiler unregisters us before it dies, or
                                 * sets this to NULL when it cannot (its tool id was freed);
                                 * atomic (relaxed): other threads' events read it */
} HookObject;

/* A Python function's event: args = (code, offset, ...). */
#define PY_HOOK(name, op, rop)                                                                        \
    static PyObject *name(PyObject *self, PyObject *const *args, size_t nargsf,                  \
                          PyObject *kwnames)                                                     \
    {                                                                                            \
        ProfilerObject *p = CPROF_LOAD(((HookObject *)self)->prof);                              \
        (void)nargsf;                                                                            \
        (void)kwnames;                                                                           \
        if (p && cprof_on(p))                                                                    \
            ev(p, op, rop, (cprof_key)(uintptr_t)args[0], args[0]);                             \
        Py_RETURN_NONE;                                                                          \
    }

/* A call site's event: args = (code, offset, callable, arg0); only C callables count. */
#define C_HOOK(name, op, rop, on_other)                                                               \
    static PyObject *name(PyObject *self, PyObject *const *args, size_t nargsf,                  \
                          PyObject *kwnames)                                                     \
    {                                                                                            \
        ProfilerObject *p = CPROF_LOAD(((HookObject *)self)->prof);                              \
        cprof_key key;                                                                           \
        (void)nargsf;                                                                            \
        (void)kwnames;                                                                           \
        if (!p || !cprof_on(p))                                                                  \
            Py_RETURN_NONE;                                                                      \
        if ((key = c_key(p, args[2], args[3])) != 0)                                                \
            ev(p, op, rop, key, args[2]);                                                     \
        else                                                                                     \
            on_other;                                                                            \
        Py_RETURN_NONE;                                                                          \
    }

/* A site that called a Python function: its PY_START reports the callee, so stop
 * paying for CALL there (sys.monitoring.DISABLE, for this tool and site only).  So
 * too a site that called a class: a class is no C function of the profile (c_key),
 * its Python __init__ or __new__ reports itself, and each call of it cost two events
 * for nothing (CALL and C_RETURN: 149,000 of black's 505,000 call sites' events).  A
 * site that later calls a C function is then not seen: all_call_sites keeps them.
 * Not on free-threaded builds: there DISABLE re-instruments the code object with
 * the world stopped, once per site, for as long as new sites run (a storm of pauses
 * that lands on every thread, switches included); keeping every site costs a
 * callback per Python call instead (the README's figures), and sees every site. */
static inline PyObject *maybe_disable(ProfilerObject *p, PyObject *callable)
{
#ifdef Py_GIL_DISABLED
    (void)p;
    (void)callable;
    return NULL;
#endif
    if (p->all_call_sites || !p->disable)
        return NULL;
    if (PyFunction_Check(callable) || PyType_Check(callable) ||
        (PyMethod_Check(callable) && PyFunction_Check(PyMethod_GET_FUNCTION(callable))))
        return Py_NewRef(p->disable);
    return NULL;
}

PY_HOOK(hook_py_enter, cprof_thread_enter, cprof_thread_enter_read) /* PY_START, PY_RESUME, PY_THROW */
PY_HOOK(hook_py_exit, cprof_thread_exit, cprof_thread_exit_read)   /* PY_RETURN, PY_YIELD, PY_UNWIND */
C_HOOK(hook_call, cprof_thread_enter, cprof_thread_enter_read,     /* CALL */
       { PyObject *d = maybe_disable(p, args[2]); if (d) return d; })
C_HOOK(hook_c_exit, cprof_thread_exit, cprof_thread_exit_read, (void)0) /* C_RETURN, C_RAISE */

/* ---- asyncio mode's hooks (async.h; installed instead of the Python ones above) ---- */

#define ASYNC_HOOK(name, what)                                                                   \
    static PyObject *name(PyObject *self, PyObject *const *args, size_t nargsf,                  \
                          PyObject *kwnames)                                                     \
    {                                                                                            \
        ProfilerObject *p = CPROF_LOAD(((HookObject *)self)->prof);                              \
        (void)kwnames;                                                                           \
        if (p && cprof_on(p))                                                                    \
            cprof_async_event(p, what, args[0], NULL,                                            \
                              PyVectorcall_NARGS(nargsf) > 2 ? args[2] : NULL);                  \
        Py_RETURN_NONE;                                                                          \
    }

ASYNC_HOOK(async_hook_start, CPROF_AS_START)
ASYNC_HOOK(async_hook_resume, CPROF_AS_RESUME)
ASYNC_HOOK(async_hook_throw, CPROF_AS_THROW)
ASYNC_HOOK(async_hook_return, CPROF_AS_RETURN)
ASYNC_HOOK(async_hook_yield, CPROF_AS_YIELD)
ASYNC_HOOK(async_hook_unwind, CPROF_AS_UNWIND)

/* hook_table's events, in its order (NULL: the default hook) */
static const vectorcallfunc async_hooks[] = {
    async_hook_start, async_hook_resume, async_hook_throw, async_hook_return, async_hook_yield,
    async_hook_unwind, NULL, NULL, NULL,
};

/* ---- --trace=PATTERN's hooks (trace.c decides; installed instead of the above) ---- */

#define TRACE_PY_HOOK(name, fn, can_disable)                                                   \
    static PyObject *name(PyObject *self, PyObject *const *args, size_t nargsf,                  \
                          PyObject *kwnames)                                                     \
    {                                                                                            \
        ProfilerObject *p = CPROF_LOAD(((HookObject *)self)->prof);                              \
        PyObject *r;                                                                             \
        (void)nargsf;                                                                            \
        (void)kwnames;                                                                           \
        if (p && cprof_on(p) && (r = fn(p, args[0], can_disable)))                               \
            return r;                                                                            \
        Py_RETURN_NONE;                                                                          \
    }

TRACE_PY_HOOK(trace_hook_start, cprof_trace_enter, 1)   /* PY_START, PY_RESUME */
TRACE_PY_HOOK(trace_hook_throw, cprof_trace_enter, 0)   /* PY_THROW */
TRACE_PY_HOOK(trace_hook_return, cprof_trace_exit, 1)   /* PY_RETURN, PY_YIELD */
TRACE_PY_HOOK(trace_hook_unwind, cprof_trace_exit, 0)   /* PY_UNWIND */

static PyObject *trace_hook_call(PyObject *self, PyObject *const *args, size_t nargsf,
                                 PyObject *kwnames)
{
    ProfilerObject *p = CPROF_LOAD(((HookObject *)self)->prof);
    PyObject *r;
    (void)nargsf;
    (void)kwnames;
    if (p && cprof_on(p) && (r = cprof_trace_call(p, args[0], args[2], args[3])))
        return r;
    Py_RETURN_NONE;
}

static PyObject *trace_hook_c_exit(PyObject *self, PyObject *const *args, size_t nargsf,
                                   PyObject *kwnames)
{
    ProfilerObject *p = CPROF_LOAD(((HookObject *)self)->prof);
    (void)nargsf;
    (void)kwnames;
    if (p && cprof_on(p))
        cprof_trace_c_exit(p, args[0], args[2], args[3]);
    Py_RETURN_NONE;
}

/* hook_table's events, in its order */
static const vectorcallfunc trace_hooks[] = {
    trace_hook_start, trace_hook_start,  trace_hook_throw, trace_hook_return, trace_hook_return,
    trace_hook_unwind, trace_hook_call, trace_hook_c_exit, trace_hook_c_exit,
};

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

/* sys.monitoring, a new reference (the calls made on it may run Python code, which
 * could replace sys.monitoring and drop a borrowed one). */
static PyObject *monitoring(void)
{
    PyObject *m = Py_XNewRef(PySys_GetObject("monitoring"));
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
    PyObject *sep = PyUnicode_FromString(", ");
    PyObject *joined = sep ? PyUnicode_Join(sep, users) : NULL;
    Py_XDECREF(sep);
    Py_DECREF(users);
    if (!joined)
        return -1;
    PyErr_Format(st->error,
                 "cprof cannot start: all 6 sys.monitoring tool ids are in use (by %S); "
                 "stop one of those tools first",
                 joined);
    Py_DECREF(joined);
    return -1;
}

int cprof_hooks_install(ProfilerObject *p, module_state *st)
{
    PyObject *mon = monitoring();
    long mask = 0;

    if (!mon)
        return -1;
    if (claim_tool_id(p, mon, st) < 0) {
        Py_DECREF(mon);
        return -1;
    }
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
        h->vectorcall = cprof_trace_on(p) ? trace_hooks[i]
                        : p->async_mode && async_hooks[i] ? async_hooks[i] : hook_table[i].fn;
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
    Py_DECREF(mon);
    return 0;
err:;
    SAVE_EXC(saved);
    PyObject *x = PyObject_CallMethod(mon, "free_tool_id", "i", p->tool_id);
    Py_XDECREF(x);
    PyErr_Clear();
    RESTORE_EXC(saved);
    Py_DECREF(mon);
    p->tool_id = -1;
    for (Py_ssize_t i = 0; p->hooks && i < PyList_GET_SIZE(p->hooks); i++)
        CPROF_STORE(((HookObject *)PyList_GET_ITEM(p->hooks, i))->prof, NULL);
    Py_CLEAR(p->hooks);
    return -1;
}

void cprof_hooks_remove(ProfilerObject *p)
{
    PyObject *mon = NULL;
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
            cprof_py_set_sticky(p, "the program freed cprof's sys.monitoring tool id while it ran "
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
    Py_XDECREF(mon);
    for (Py_ssize_t i = 0; p->hooks && i < PyList_GET_SIZE(p->hooks); i++)
        /* any left registered */
        CPROF_STORE(((HookObject *)PyList_GET_ITEM(p->hooks, i))->prof, NULL);
    p->tool_id = -1;
    Py_CLEAR(p->hooks);
out:
    PyErr_Clear();
    RESTORE_EXC(saved);
}

int cprof_hooks_held(ProfilerObject *p)
{
    (void)p;
    return 1;
}

int cprof_hooks_module_init(PyObject *m, module_state *st)
{
    st->hook_type = (PyTypeObject *)PyType_FromModuleAndSpec(m, &hook_spec, NULL);
    return st->hook_type ? 0 : -1;
}
