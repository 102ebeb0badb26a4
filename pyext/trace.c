/* --trace=PATTERN (README "Trace only your own code"): the events of code outside
 * the pattern cost (almost) nothing, and what that code costs is charged to the
 * traced function that called it, as a call of an "untraced" function.
 *
 * Each code object is classified once per profile (classify(module, file), Python,
 * cprof.trace), the answer kept in the code object's extra slot:
 *
 *   TRACED    inside the pattern: every event goes to the engine as usual.
 *   BOUNDARY  outside it, and called directly from traced code (or from nothing
 *             profiled, such as a thread's bootstrap): such a call is pushed as one
 *             frame of its own key, and everything it runs below it is its self,
 *             except traced code it calls back (json's object_hook, sorted's key),
 *             which is pushed above it as usual.
 *   SILENT    outside it, first seen running inside untraced code: never pushed.
 *             On 3.12+ its events return sys.monitoring.DISABLE at their first
 *             sight (PY_START, PY_RESUME, PY_RETURN, PY_YIELD, CALL), so it costs
 *             nothing after that; PY_THROW and PY_UNWIND cannot be disabled and
 *             are ignored.  When traced code later calls a SILENT function (CALL
 *             sees it), it becomes BOUNDARY and sys.monitoring.restart_events()
 *             turns its events back on (every disabled location reports once more
 *             and is disabled again).  On 3.10-3.11 nothing can be disabled: each
 *             event costs the hook, a look at the code object's slot and a return.
 *
 * Per thread, a stack of the boundary frames open (each a key, the number of
 * traced frames above it, and the number of BOUNDARY-class activations running
 * nested inside it, whose exits must not close it): "inside untraced code" is a
 * boundary on top with no traced frame above it. */
#include "trace.h"

uint64_t cprof_trace_generation;

enum { CLS_UNKNOWN = 0, CLS_TRACED = 1, CLS_SILENT = 2, CLS_BOUNDARY = 3 };

#define TRACE_DEPTH 512 /* boundary frames open at once in a thread (deeper: not pushed) */

struct trace_frame {
    cprof_key key;              /* the boundary's code object */
    uint32_t above_below;       /* `above` of the boundary below it (restored when it closes) */
    uint32_t nested;            /* BOUNDARY-class activations running inside it */
};

/* A thread's stack of open boundaries, allocated at its first one; every block is
 * on one list, freed by trace_set() when no profile traces. */
struct trace_block {
    struct trace_block *next;
    struct trace_frame frames[TRACE_DEPTH];
};

struct trace_tls {
    uint64_t epoch;             /* the trace_set() this state belongs to */
    uint32_t n;                 /* boundaries open */
    uint32_t above;             /* traced frames above the top boundary */
    struct trace_block *block;  /* the frames (NULL until the first) */
};

static CPROF_TLS struct trace_tls tr;
static struct trace_block *blocks;      /* every thread's block (atomic push) */
static PyObject *classify;              /* classify(module, file) -> bool (the tracing profile's) */
static PyObject *restart;               /* sys.monitoring.restart_events (3.12+) */
static Py_ssize_t extra_index = -1;     /* the code objects' extra slot, per process */
static uint64_t not_pushed;             /* boundaries past TRACE_DEPTH (relaxed atomic) */
static uint64_t restarts;               /* restart_events() calls (relaxed atomic) */
/* Each trace_set() of a profile starts an epoch: a thread's state from an earlier one
 * (the same profile enabled again included) is reset at its next event, since its
 * block was freed when that epoch ended (relaxed atomic). */
static uint64_t epoch;

#if PY_VERSION_HEX >= 0x030C0000
#define GET_EXTRA PyUnstable_Code_GetExtra
#define SET_EXTRA PyUnstable_Code_SetExtra
#define REQUEST_EXTRA PyUnstable_Eval_RequestCodeExtraIndex
#else
#define GET_EXTRA _PyCode_GetExtra
#define SET_EXTRA _PyCode_SetExtra
#define REQUEST_EXTRA _PyEval_RequestCodeExtraIndex
#endif

/* ---- classes ----------------------------------------------------------------------- */

static inline int get_class(uint64_t gen, PyObject *code)
{
    void *v = NULL;

    if (GET_EXTRA(code, extra_index, &v) < 0) {
        PyErr_Clear();
        return CLS_UNKNOWN;
    }
    /* a slot written for another profile is unknown to this one */
    return ((uintptr_t)v >> 2) == gen ? (int)((uintptr_t)v & 3) : CLS_UNKNOWN;
}

static inline void set_class(uint64_t gen, PyObject *code, int cls)
{
    if (SET_EXTRA(code, extra_index, (void *)(uintptr_t)((gen << 2) | (uint64_t)cls)) < 0)
        PyErr_Clear();
}

/* Whether the pattern takes `code` (its module from `globals`, a borrowed reference
 * or NULL): classify() in Python, once per code object.  Never raises: a failure
 * becomes the profile's sticky error and the code counts as traced. */
static int is_traced(ProfilerObject *p, PyObject *code, PyObject *globals)
{
    PyObject *fn = classify, *mod = NULL, *r;
    int traced = 1;

    if (!fn)
        return 1;
    SAVE_EXC(saved);
    /* the running frame's: the event's own frame is the current one (PY_START, a
     * PyTrace_CALL), or the calling frame for a call site */
    PyObject *own = globals ? NULL : (globals = cprof_frame_globals());
    if (globals && PyDict_Check(globals) && cprof_dict_get_str_ref(globals, "__name__", &mod) < 0)
        PyErr_Clear();
    Py_XDECREF(own);
    Py_INCREF(fn);
    r = PyObject_CallFunctionObjArgs(fn, mod ? mod : Py_None, ((PyCodeObject *)code)->co_filename,
                                     NULL);
    Py_DECREF(fn);
    Py_XDECREF(mod);
    if (r) {
        traced = PyObject_IsTrue(r);
        Py_DECREF(r);
    }
    if (!r || traced < 0) {
        traced = 1;
        PyErr_Clear();
        cprof_py_set_sticky(p, "cprof could not tell whether a function is inside --trace's "
                               "pattern (its classifier failed)");
    }
    RESTORE_EXC(saved);
    return traced;
}

/* ---- the thread's boundaries -------------------------------------------------------- */

/* This thread's state for the tracing profile p (reset at its first event here in
 * this epoch). */
static inline struct trace_tls *tls(ProfilerObject *p)
{
    uint64_t now = CPROF_LOAD(epoch);

    (void)p;
    if (__builtin_expect(tr.epoch != now, 0)) {
        tr.epoch = now;
        tr.n = tr.above = 0;
        tr.block = NULL;        /* a block of an earlier profile is freed or not ours */
    }
    return &tr;
}

static inline int inside_untraced(const struct trace_tls *t)
{
    return t->n && !t->above;
}

static inline void traced_enter(struct trace_tls *t)
{
    if (t->n)
        t->above++;
}

/* A traced frame (or a C function called from one) ends: a boundary still on top
 * then lost its end (an event that could not be seen): close it, as the engine
 * does when this exit pops it. */
static inline void traced_exit(struct trace_tls *t)
{
    while (t->n && !t->above) {
        t->above = t->block->frames[t->n - 1].above_below;
        t->n--;
    }
    if (t->n)
        t->above--;
}

/* Open a boundary for `code` (called from traced code): 0, or -1 if too deep. */
static int push_boundary(struct trace_tls *t, cprof_key key)
{
    if (!t->block) {
        struct trace_block *b = PyMem_RawMalloc(sizeof(*b));
        if (!b)
            return -1;
        b->next = __atomic_load_n(&blocks, __ATOMIC_RELAXED);
        while (!__atomic_compare_exchange_n(&blocks, &b->next, b, 1, __ATOMIC_RELEASE,
                                            __ATOMIC_RELAXED))
            ;
        t->block = b;
    }
    if (t->n == TRACE_DEPTH) {
        __atomic_fetch_add(&not_pushed, 1, __ATOMIC_RELAXED);
        return -1;
    }
    t->block->frames[t->n] = (struct trace_frame){key, t->above, 0};
    t->n++;
    t->above = 0;
    return 0;
}

/* The common enter: 1 to pass it to the engine, 0 to drop it, -1 to drop and
 * disable it there (3.12+). */
static inline int on_arrive(ProfilerObject *p, PyObject *code, PyObject *globals)
{
    struct trace_tls *t = tls(p);
    int cls = get_class(p->generation, code);

    if (cls == CLS_UNKNOWN) {
        cls = is_traced(p, code, globals) ? CLS_TRACED
              : inside_untraced(t)        ? CLS_SILENT
                                          : CLS_BOUNDARY;
        set_class(p->generation, code, cls);
    }
    if (cls == CLS_TRACED) {
        traced_enter(t);
        return 1;
    }
    if (inside_untraced(t)) {
        if (cls == CLS_BOUNDARY) {
            t->block->frames[t->n - 1].nested++;
            return 0;
        }
        return -1;
    }
#if CPROF_MONITORING
    if (cls == CLS_SILENT)      /* its start went unseen before: its end may go unseen too
                                 * (promote() turns it into a boundary with every event) */
        return -1;
#else
    if (cls == CLS_SILENT)      /* every event is seen here: called from traced code now */
        set_class(p->generation, code, CLS_BOUNDARY);
#endif
    return push_boundary(t, (cprof_key)(uintptr_t)code) < 0 ? 0 : 1;
}

/* The key on top of this thread's engine stack, or 0. */
static inline cprof_key engine_top(ProfilerObject *p)
{
    size_t d;

    if (cprof_tls_owner != p->generation || !(d = cprof_thread_depth(&cprof_tls_ts->eng)))
        return 0;
    return cprof_thread_frame_key(&cprof_tls_ts->eng, d - 1);
}

/* The common exit, same answers. */
static inline int on_leave(ProfilerObject *p, PyObject *code, PyObject *globals)
{
    struct trace_tls *t = tls(p);
    int cls = get_class(p->generation, code);

    if (cls == CLS_UNKNOWN) {   /* a frame running since before profiling */
        cls = is_traced(p, code, globals) ? CLS_TRACED : CLS_SILENT;
        set_class(p->generation, code, cls);
    }
    if (cls == CLS_TRACED) {
        traced_exit(t);
        return 1;
    }
    if (inside_untraced(t)) {
        struct trace_frame *top = &t->block->frames[t->n - 1];
        if (cls == CLS_BOUNDARY && top->nested) {
            top->nested--;
            return 0;
        }
        if (top->key == (cprof_key)(uintptr_t)code) {
            t->above = top->above_below;
            t->n--;
            return 1;
        }
    } else if (engine_top(p) == (cprof_key)(uintptr_t)code) {
        return 1;               /* a frame running since before profiling (enable() pushed it) */
    }
    return cls == CLS_SILENT ? -1 : 0;
}

/* Whether a call site in `code` is traced code's (C calls elsewhere are not seen). */
static inline int site_traced(ProfilerObject *p, PyObject *code, PyObject *globals)
{
    int cls = get_class(p->generation, code);

    if (cls == CLS_UNKNOWN) {
        cls = is_traced(p, code, globals) ? CLS_TRACED : CLS_SILENT;
        set_class(p->generation, code, cls);
    }
    return cls == CLS_TRACED;
}

/* ---- 3.12+: sys.monitoring ---------------------------------------------------------- */
#if CPROF_MONITORING

static inline PyObject *disable_or_none(ProfilerObject *p, int r, int can_disable)
{
    return r < 0 && can_disable && p->disable ? Py_NewRef(p->disable) : NULL;
}

PyObject *cprof_trace_enter(ProfilerObject *p, PyObject *code, int can_disable)
{
    int r = on_arrive(p, code, NULL);

    if (r > 0)
        ev(p, cprof_thread_enter, cprof_thread_enter_read, (cprof_key)(uintptr_t)code, code);
    return disable_or_none(p, r, can_disable);
}

PyObject *cprof_trace_exit(ProfilerObject *p, PyObject *code, int can_disable)
{
    int r = on_leave(p, code, NULL);

    if (r > 0)
        ev(p, cprof_thread_exit, cprof_thread_exit_read, (cprof_key)(uintptr_t)code, code);
    return disable_or_none(p, r, can_disable);
}

/* Traced code calls a SILENT Python function: it becomes BOUNDARY, and its
 * disabled events are turned back on (for every tool: restart_events has no
 * narrower form). */
static void promote(ProfilerObject *p, PyObject *callable)
{
    PyObject *fn = callable, *r;

    if (PyMethod_Check(fn))
        fn = PyMethod_GET_FUNCTION(fn);
    if (!PyFunction_Check(fn))
        return;
    PyObject *code = PyFunction_GET_CODE(fn);
    if (get_class(p->generation, code) != CLS_SILENT || !restart)
        return;
    set_class(p->generation, code, CLS_BOUNDARY);
    SAVE_EXC(saved);
    r = PyObject_CallNoArgs(restart);
    if (r)
        Py_DECREF(r);
    else
        PyErr_Clear();
    __atomic_fetch_add(&restarts, 1, __ATOMIC_RELAXED);
    RESTORE_EXC(saved);
}

PyObject *cprof_trace_call(ProfilerObject *p, PyObject *code, PyObject *callable, PyObject *arg0)
{
    cprof_key key;

    if (!site_traced(p, code, NULL))
        return p->disable ? Py_NewRef(p->disable) : NULL; /* untraced code's calls are its own */
    if ((key = c_key(p, callable, arg0)) != 0) {
        traced_enter(tls(p));
        ev(p, cprof_thread_enter, cprof_thread_enter_read, key, callable);
        return NULL;
    }
    promote(p, callable);
    /* its PY_START reports the call from here on (as maybe_disable, hooks_monitoring.c) */
    if (p->all_call_sites || !p->disable)
        return NULL;
    if (PyFunction_Check(callable) ||
        (PyMethod_Check(callable) && PyFunction_Check(PyMethod_GET_FUNCTION(callable))))
        return Py_NewRef(p->disable);
    return NULL;
}

void cprof_trace_c_exit(ProfilerObject *p, PyObject *code, PyObject *callable, PyObject *arg0)
{
    cprof_key key;

    if (!site_traced(p, code, NULL) || !(key = c_key(p, callable, arg0)))
        return;
    traced_exit(tls(p));
    ev(p, cprof_thread_exit, cprof_thread_exit_read, key, callable);
}

#else
/* ---- 3.10-3.11: PyEval_SetProfile --------------------------------------------------- */

void cprof_trace_setprofile(ProfilerObject *p, PyFrameObject *frame, int what, PyObject *arg)
{
    PyCodeObject *co = PyFrame_GetCode(frame);
    cprof_key key;

    switch (what) {
    case PyTrace_CALL:
        if (on_arrive(p, (PyObject *)co, NULL) > 0)
            ev(p, cprof_thread_enter, cprof_thread_enter_read, (cprof_key)(uintptr_t)co,
               (PyObject *)co);
        break;
    case PyTrace_RETURN:
        if (on_leave(p, (PyObject *)co, NULL) > 0)
            ev(p, cprof_thread_exit, cprof_thread_exit_read, (cprof_key)(uintptr_t)co,
               (PyObject *)co);
        break;
    case PyTrace_C_CALL:
        if (site_traced(p, (PyObject *)co, NULL) && (key = c_key(p, arg, NULL))) {
            traced_enter(tls(p));
            ev(p, cprof_thread_enter, cprof_thread_enter_read, key, arg);
        }
        break;
    case PyTrace_C_RETURN:
    case PyTrace_C_EXCEPTION:
        if (site_traced(p, (PyObject *)co, NULL) && (key = c_key(p, arg, NULL))) {
            traced_exit(tls(p));
            ev(p, cprof_thread_exit, cprof_thread_exit_read, key, arg);
        }
        break;
    default:
        break;
    }
    Py_DECREF(co);
}
#endif

/* ---- the module's functions ------------------------------------------------------- */

/* trace_set(profiler, classify): the profile (not enabled) traces only the code
 * classify(module, file) takes; trace_set(None, None): no profile traces (the
 * threads' stacks are freed: call it with profiling off). */
PyObject *cprof_py_trace_set(PyObject *module, PyObject *args)
{
    PyObject *prof, *fn;
    module_state *st = PyModule_GetState(module);

    if (!PyArg_ParseTuple(args, "OO:trace_set", &prof, &fn))
        return NULL;
    if (prof == Py_None) {
        CPROF_STORE(cprof_trace_generation, 0);
        Py_CLEAR(classify);
        Py_CLEAR(restart);
        struct trace_block *b = __atomic_exchange_n(&blocks, NULL, __ATOMIC_ACQ_REL);
        while (b) {
            struct trace_block *next = b->next;
            PyMem_RawFree(b);
            b = next;
        }
        Py_RETURN_NONE;
    }
    if (!PyObject_TypeCheck(prof, st->profiler_type) || !PyCallable_Check(fn)) {
        PyErr_SetString(PyExc_TypeError, "trace_set(profiler, classify): a Profiler and a callable");
        return NULL;
    }
    ProfilerObject *p = (ProfilerObject *)prof;
    if (CPROF_LOAD(p->enabled) != CPROF_OFF) {
        PyErr_SetString(st->error, "trace_set: the profile is running; set its pattern before "
                                   "enable()");
        return NULL;
    }
    if (extra_index < 0 && (extra_index = REQUEST_EXTRA(NULL)) < 0) {
        PyErr_SetString(st->error, "cprof cannot trace: no code object extra slot left");
        return NULL;
    }
#if CPROF_MONITORING
    PyObject *mon = PyImport_ImportModule("sys");
    PyObject *r = NULL;
    if (mon) {
        PyObject *m = PyObject_GetAttrString(mon, "monitoring");
        Py_DECREF(mon);
        if (m) {
            r = PyObject_GetAttrString(m, "restart_events");
            Py_DECREF(m);
        }
    }
    if (!r)
        return NULL;
    Py_XSETREF(restart, r);
#endif
    Py_XSETREF(classify, Py_NewRef(fn));
    CPROF_STORE(not_pushed, 0);
    CPROF_STORE(restarts, 0);
    CPROF_STORE(epoch, CPROF_LOAD(epoch) + 1);
    CPROF_STORE(cprof_trace_generation, p->generation);
    Py_RETURN_NONE;
}

PyObject *cprof_py_trace_stats(PyObject *module, PyObject *args)
{
    (void)module;
    (void)args;
    return Py_BuildValue("{s:K,s:K}", "not_pushed", (unsigned long long)CPROF_LOAD(not_pushed),
                         "restarts", (unsigned long long)CPROF_LOAD(restarts));
}
