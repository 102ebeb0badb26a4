/* The hooks on 3.10-3.11: a PyEval_SetProfile hook on every existing thread and,
 * through threading.setprofile, on threads started later; and what cprof says
 * when the program takes a thread's hook away (one hook per thread there). */
#include "async.h"
#include "hooks.h"
#include "trace.h"

#if CPROF_MONITORING
#error "hooks_setprofile.c is for Python before 3.12 (meson picks hooks_monitoring.c)"
#endif

/* ---- what cprof says when the program takes a thread's hook ----------------------- */

/* The counter's growth `v` in words: "2.31 ms of wall", "12 switches of ctxsw". */
static void amount_text(char *buf, size_t len, uint64_t v, const struct cprof_counter_def *d)
{
    if (strcmp(d->unit, "ns") == 0)
        snprintf(buf, len, "%.2f ms of %s", (double)v / 1e6, d->name);
    else
        snprintf(buf, len, "%llu %s of %s", (unsigned long long)v, d->unit, d->name);
}

/* The name of a registry entry's function (code or callable, module) for a sentence:
 * build.describe()'s, as in the profile, or a plain one without it. */
static PyObject *entry_name(PyObject *entry)
{
    PyObject *obj, *mod, *pf, *d;

    if (!entry || !PyTuple_Check(entry) || PyTuple_GET_SIZE(entry) != 2)
        return PyUnicode_FromString("?");
    if ((pf = PyImport_ImportModule("cprof.build"))) {
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
            /* a strong reference: getting the name runs Python code, and the thread
             * may end and leave _active meanwhile */
            t = PyDict_Check(active) ? Py_XNewRef(PyDict_GetItemWithError(active, k)) : NULL;
            if (t && (name = PyObject_GetAttrString(t, "name")) && !PyUnicode_Check(name))
                Py_CLEAR(name);
            Py_XDECREF(t);
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
    for (size_t i = cprof_thread_depth(&ts->eng); i-- > 0 && PyList_GET_SIZE(stack) < 8;) {
        cprof_key key = cprof_thread_frame_key(&ts->eng, i);
        PyObject *k = PyLong_FromUnsignedLongLong(key), *e;
        /* a strong reference: entry_name() runs Python code */
        e = k ? Py_XNewRef(PyDict_GetItemWithError(p->keys, k)) : NULL;
        Py_XDECREF(k);
        if (PyList_Append(stack, e ? e : Py_None) < 0) {
            Py_XDECREF(e);
            goto out;
        }
        PyErr_Clear();
        if (e && i + 1 == cprof_thread_depth(&ts->eng) && PyTuple_Check(e) && !PyCode_Check(PyTuple_GET_ITEM(e, 0)))
            by = entry_name(e);         /* the C function that took the hook */
        if (e && !in && PyTuple_Check(e) && PyCode_Check(PyTuple_GET_ITEM(e, 0)))
            in = entry_name(e);         /* the Python function that called it */
        Py_XDECREF(e);
    }
    for (unsigned c = 0; c < p->n; c++)
        grown[c] = cprof_thread_region(&ts->eng, c);
    if (!(after = cprof_py_u64_list(grown, p->n)))
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

/* ---- the hook ---------------------------------------------------------------------- */

static int profile_func(PyObject *obj, PyFrameObject *frame, int what, PyObject *arg)
{
    ProfilerObject *p = (ProfilerObject *)obj;
    PyCodeObject *co;
    cprof_key key;

    if (!cprof_on(p))
        return 0;
    if (__builtin_expect(cprof_trace_on(p), 0)) { /* --trace=PATTERN: trace.c */
        cprof_trace_setprofile(p, frame, what, arg);
        return 0;
    }
    switch (what) {
    case PyTrace_CALL:
    case PyTrace_RETURN:
        co = PyFrame_GetCode(frame);
        if (what == PyTrace_CALL)
            ev(p, cprof_thread_enter, cprof_thread_enter_read, (cprof_key)(uintptr_t)co,
               (PyObject *)co);
        else
            ev(p, cprof_thread_exit, cprof_thread_exit_read, (cprof_key)(uintptr_t)co,
               (PyObject *)co);
        Py_DECREF(co);
        break;
    case PyTrace_C_CALL:
        if ((key = c_key(p, arg, NULL)) != 0)
            ev(p, cprof_thread_enter, cprof_thread_enter_read, key, arg);
        break;
    case PyTrace_C_RETURN:
    case PyTrace_C_EXCEPTION:
        if ((key = c_key(p, arg, NULL)) != 0)
            ev(p, cprof_thread_exit, cprof_thread_exit_read, key, arg);
        break;
    default:
        break;
    }
    return 0;
}

/* asyncio mode's hook (async.h): a coroutine's resume is a call event, its
 * suspension a return event (told from its return by the frame's state then, at a
 * yield: suspended), an exception's return has no value. */
#define FRAME_SUSPENDED_STATE (-1) /* FRAME_SUSPENDED of 3.10's and 3.11's frame states */

static int suspended(PyFrameObject *frame)
{
#if PY_VERSION_HEX >= 0x030B0000
    PyObject *gen = PyFrame_GetGenerator(frame);
    int r = gen && ((PyGenObject *)gen)->gi_frame_state == FRAME_SUSPENDED_STATE;
    Py_XDECREF(gen);
    return r;
#else
    return frame->f_state == FRAME_SUSPENDED_STATE;
#endif
}

static int profile_func_async(PyObject *obj, PyFrameObject *frame, int what, PyObject *arg)
{
    ProfilerObject *p = (ProfilerObject *)obj;
    PyCodeObject *co;
    int kind;

    if (!cprof_on(p))
        return 0;
    if (what != PyTrace_CALL && what != PyTrace_RETURN)
        return profile_func(obj, frame, what, arg);
    co = PyFrame_GetCode(frame);
    if (what == PyTrace_CALL)
        kind = CPROF_AS_RESUME;         /* a coroutine's first: its entry says (async.c) */
    else if (!arg)
        kind = CPROF_AS_UNWIND;
    else if ((co->co_flags & CO_COROUTINE) && suspended(frame))
        kind = CPROF_AS_YIELD;
    else
        kind = CPROF_AS_RETURN;
    cprof_async_event(p, kind, (PyObject *)co, frame, arg);
    Py_DECREF(co);
    return 0;
}

/* The hook function for p. */
static inline Py_tracefunc hook_of(const ProfilerObject *p)
{
    return p->async_mode ? profile_func_async : profile_func;
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

    PyEval_SetProfile(hook_of(p), (PyObject *)p);
    if (!PyArg_ParseTuple(args, "OUO", &frame, &event, &arg) || !PyFrame_Check(frame)) {
        PyErr_Clear();
        return;
    }
    for (int i = 0; i < (int)(sizeof(events) / sizeof(events[0])); i++)
        if (events[i] && PyUnicode_CompareWithASCIIString(event, events[i]) == 0)
            what = i;
    fresh = fresh_counts && cprof_tls_owner != p->generation;
    ts = get_ts(p);
    if (!ts || what < 0)
        return;
    if (cprof_thread_depth(&ts->eng) == 0) {
        /* a call event's frame is the callee; any other event's is already running */
        PyFrameObject *f = (PyFrameObject *)frame;
        PyFrameObject *back = what == PyTrace_CALL ? PyFrame_GetBack(f) : NULL;
        /* the frames under the one that enabled profiling are not in the region */
        int outside = PyThread_get_thread_ident() == p->outside_ident ? p->outside_depth : 0;
        if (what != PyTrace_CALL || back)
            cprof_ts_push_frames(p, ts, what == PyTrace_CALL ? back : f, 0, outside, fresh);
        Py_XDECREF(back);
    }
    hook_of(p)((PyObject *)p, (PyFrameObject *)frame, what, arg);
}

/* threading.setprofile() target, called through the trampoline with the first event
 * of each new threading.Thread (the call of its run(), made inside _bootstrap_inner):
 * the frames already there (_bootstrap, _bootstrap_inner) are calls made while
 * profiling in a thread that starts here, as sys.monitoring sees them on 3.12+. */
static PyObject *thread_bootstrap(PyObject *self, PyObject *args)
{
    ProfilerObject *p = (ProfilerObject *)self;

    if (!cprof_on(p))
        PyEval_SetProfile(NULL, NULL);
    else
        trampolined_event(p, args, 1);
    Py_RETURN_NONE;
}

/* sys.setprofile(old) with old = sys.getprofile() taken while cprof's hook was in
 * place (which gives the Profiler): the trampoline calls it with each event.  The
 * thread's numbers stop where the hook was taken (its stack is closed there and the
 * gap is left out of its region, and said), then go on from this event with cprof's
 * C hook back in place. */
PyObject *cprof_hooks_profiler_call(PyObject *self, PyObject *args, PyObject *kwds)
{
    ProfilerObject *p = (ProfilerObject *)self;

    (void)kwds;
    if (!cprof_on(p)) {
        PyEval_SetProfile(NULL, NULL);
        Py_RETURN_NONE;
    }
    if (cprof_tls_owner == p->generation && !cprof_tls_ts->failed) {
        PyObject *entry = replaced_entry(p, cprof_tls_ts, 1, Py_None, 1);
        if (!entry || !p->replaced || PyList_Append(p->replaced, entry) < 0)
            cprof_py_set_sticky(p, "cprof could not record a replaced profile hook (out of memory?)");
        Py_XDECREF(entry);
        PyErr_Clear();
        cprof_thread_flush(&cprof_tls_ts->eng);
        cprof_thread_pause(&cprof_tls_ts->eng);
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

static inline int hook_is_ours(ProfilerObject *p, PyThreadState *t)
{
    return (t->c_profilefunc == hook_of(p) && t->c_profileobj == (PyObject *)p) ||
           (p->bootstrap && t->c_profileobj == p->bootstrap);
}

int cprof_hooks_install(ProfilerObject *p, module_state *st)
{
    PyThreadState *me = PyThreadState_Get();

    /* A thread has one profile hook: taking another profiler's would silently cut
     * its numbers short, so say so instead. */
    for (PyThreadState *t = PyInterpreterState_ThreadHead(me->interp); t; t = PyThreadState_Next(t))
        if (t->c_profilefunc && !hook_is_ours(p, t)) {
            /* what t holds, before thread_name() runs Python code, during which the
             * thread may end (t freed) or change its hook */
            PyObject *holder = Py_NewRef(t->c_profileobj ? t->c_profileobj : Py_None);
            PyObject *name = thread_name(t->thread_id);
            PyErr_Format(st->error,
                         "cprof cannot start: thread %R already has a profile hook (%R, such as "
                         "cProfile's) and Python %d.%d allows one per thread; stop that profiler "
                         "first, or use Python 3.12+ where both can run",
                         name, holder, PY_MAJOR_VERSION, PY_MINOR_VERSION);
            Py_XDECREF(name);
            Py_DECREF(holder);
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
            _PyEval_SetProfile(t, hook_of(p), (PyObject *)p);
    PyEval_SetProfile(hook_of(p), (PyObject *)p);
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

    for (struct tstate *ts = cprof_threads(p); ts; ts = ts->next) {
        PyThreadState *t = PyInterpreterState_ThreadHead(me->interp);
        PyObject *holder = NULL, *entry;
        int alive = 0;

        if (ts->failed || !cprof_thread_started(&ts->eng))
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
        } else if (cprof_thread_depth(&ts->eng) == 0)
            continue;
        /* a strong reference: replaced_entry() runs Python code, during which the
         * thread may drop the hook it holds */
        holder = Py_NewRef(holder ? holder : Py_None);
        entry = replaced_entry(p, ts, alive, holder, 0);
        Py_DECREF(holder);
        if (!entry || PyList_Append(p->replaced, entry) < 0)
            cprof_py_set_sticky(p, "cprof could not record a replaced profile hook (out of memory?)");
        Py_XDECREF(entry);
    }
    PyErr_Clear();
    RESTORE_EXC(saved);
}

void cprof_hooks_remove(ProfilerObject *p)
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

int cprof_hooks_held(ProfilerObject *p)
{
    return hook_is_ours(p, PyThreadState_Get());
}

int cprof_hooks_module_init(PyObject *m, module_state *st)
{
    (void)m;
    (void)st;
    return 0;
}
