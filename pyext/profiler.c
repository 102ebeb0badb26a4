/* The Profiler type: set-up, enable/disable, calibration support, lifetime. */
#include "profiler.h"

#include "../core/registry.h"
#include "async.h"
#include "counter_list.h"
#include "hooks.h"
#include "pymalloc.h"

#include <errno.h>
#include <sched.h>
#include <stdatomic.h>

/* Process globals, one per process because the thread-local pair they guard is
 * (profiler.h): generations are handed out once in the process, whichever
 * interpreter or module object creates the Profiler, and one profile at a time
 * may run in it.  Atomic, so that this holds without relying on one GIL. */
static atomic_uint_least64_t next_generation = 1; /* the next Profiler's generation */
static atomic_uint_least64_t running_generation;  /* the enabled Profiler's, or 0 */

/* Claim the process's one running profile for p: 0, or -EBUSY if another one runs. */
static int claim_running(const ProfilerObject *p)
{
    uint_least64_t none = 0;

    return atomic_compare_exchange_strong(&running_generation, &none, p->generation) ? 0 : -EBUSY;
}

static void release_running(const ProfilerObject *p)
{
    uint_least64_t mine = p->generation;

    atomic_compare_exchange_strong(&running_generation, &mine, 0);
}

static int profiler_init(PyObject *self, PyObject *args, PyObject *kwds)
{
    ProfilerObject *p = (ProfilerObject *)self;
    static char *kwlist[] = {"counters", "all_call_sites", "distributions", "slow_calls",
                             "capture", "async_mode", NULL};
    PyObject *counters = NULL, *capture = Py_None;
    int all_call_sites = 0, dist = 0, slow_k = 0, async_mode = 0;
    struct cprof_error err = {0};
    module_state *st = state_of(self);

    if (!PyArg_ParseTupleAndKeywords(args, kwds, "|OppiOp:Profiler", kwlist, &counters,
                                     &all_call_sites, &dist, &slow_k, &capture, &async_mode))
        return -1;
    if (slow_k < 0 || slow_k > CPROF_MAX_SLOW) {
        PyErr_Format(st->error, "slow_calls must be between 0 and %d", CPROF_MAX_SLOW);
        return -1;
    }
    if (capture != Py_None && !PyCallable_Check(capture)) {
        PyErr_SetString(PyExc_TypeError, "capture must be callable");
        return -1;
    }
    /* before any field changes: other threads' events read them while it runs */
    if (CPROF_LOAD(p->enabled) != CPROF_OFF || CPROF_LOAD(p->threads) || p->n) {
        PyErr_SetString(st->error, "a Profiler cannot be re-initialised; create a new one");
        return -1;
    }
    p->all_call_sites = all_call_sites;
    p->dist = dist;
    p->slow_k = (unsigned)slow_k;
    Py_XSETREF(p->capture, capture == Py_None ? NULL : Py_NewRef(capture));
    if (!p->captures && !(p->captures = PyList_New(0)))
        return -1;
    if (!counters) {
        if (cprof_spec_resolve("cpu,wall", cprof_py_counters(), cprof_counter_resolvers,
                               p->specs, CPROF_MAX_COUNTERS, &p->n, &err) < 0) {
            PyErr_SetString(st->error, err.msg);
            return -1;
        }
    } else if (cprof_py_parse_counters(p, counters, st) < 0) {
        p->n = 0;
        return -1;
    }
    for (unsigned i = 0; i < p->n; i++)
        if (p->specs[i].def->probe(p->specs[i].arg, p->specs[i].ctx, p->paths[i],
                                   sizeof(p->paths[i]), &err) < 0) {
            PyErr_SetString(st->error, err.msg);
            p->n = 0;
            return -1;
        }
    p->generation = atomic_fetch_add(&next_generation, 1);
    p->tp_new_def = st->tp_new_def;
    p->tool_id = -1;
    if (!p->keys && !(p->keys = PyDict_New()))
        return -1;
    if (!p->failures && !(p->failures = PyList_New(0)))
        return -1;
    if (!p->replaced && !(p->replaced = PyList_New(0)))
        return -1;
    p->async_mode = async_mode;
    if (async_mode && cprof_async_init(p) < 0)
        return -1;
    return 0;
}

/* Push the calling thread's Python frames (outermost first), minus `skip`
 * innermost ones, as frames that were running before profiling started; the
 * skipped ones' returns are expected (they are the caller's own: Profile.enable). */
static void push_existing(ProfilerObject *p, int skip)
{
    struct tstate *ts = get_ts(p);
    cprof_key skipped[CPROF_MAX_OUTSIDE];
    PyFrameObject *f = PyEval_GetFrame();
    unsigned n = 0;

    if (!ts)
        return;
    cprof_ts_push_frames(p, ts, f, skip, 0, 0);
    Py_XINCREF(f);
    while (f && n < (unsigned)skip && n < CPROF_MAX_OUTSIDE) {
        PyCodeObject *co = PyFrame_GetCode(f);
        PyFrameObject *back = PyFrame_GetBack(f);
        skipped[n++] = (cprof_key)(uintptr_t)co;
        Py_DECREF(co);
        Py_DECREF(f);
        f = back;
    }
    Py_XDECREF(f);
    cprof_thread_expect_exits(&ts->eng, skipped, n);
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
    if (p->consumed) {
        PyErr_SetString(st->error, "this profile's call tree was handed over to "
                                   "stats(consume=True); make a new Profiler to profile again");
        return NULL;
    }
    if (cprof_claim(p, CPROF_OFF) < 0) {
        if (CPROF_LOAD(p->enabled) == CPROF_ON)
            PyErr_SetString(st->error, "this profile is already enabled; call disable() before "
                                       "enabling it again (profiles do not nest)");
        else
            cprof_py_busy_error(p, st);
        return NULL;
    }
    if (claim_running(p) < 0) {
        cprof_release(p, CPROF_OFF);
        PyErr_SetString(st->error, "another cprof profile is already running in this process; "
                                   "disable it first (profiles do not nest)");
        return NULL;
    }
    if (p->async_mode && cprof_async_enable(p) < 0) {
        release_running(p);
        cprof_release(p, CPROF_OFF);
        return NULL;
    }
    /* Frames first, hooks after: reading a Counter may run Python code, which must
     * not be seen as an event of the profile it starts. */
    uint64_t before[CPROF_MAX_COUNTERS], after[CPROF_MAX_COUNTERS];
    struct tstate *own = NULL;
    if (existing) {
        push_existing(p, skip);
        if (cprof_tls_owner == p->generation && !cprof_tls_ts->failed) {
            own = cprof_tls_ts;
            read_all(own, p->n, before);
        }
    }
    p->outside_ident = existing ? 0 : PyThread_get_thread_ident();
    p->outside_depth = existing ? 0 : cprof_ts_stack_depth(PyEval_GetFrame());
    if (cprof_hooks_install(p, st) < 0) {
        if (cprof_tls_owner == p->generation && !cprof_tls_ts->failed) {
            cprof_thread_flush(&cprof_tls_ts->eng);
            cprof_thread_pause(&cprof_tls_ts->eng);
        }
        release_running(p);
        cprof_release(p, CPROF_OFF);
        return NULL;
    }
    cprof_pymalloc_profile_start(p->specs, p->n);
    /* installing the hooks (tens of us) is cprof's own work, not the enabling frame's:
     * measured and kept out, as a slow call's capture is */
    if (own) {
        read_all(own, p->n, after);
        cprof_thread_exclude(&own->eng, before, after);
    }
    cprof_release(p, CPROF_ON);
    Py_RETURN_NONE;
}

/* Free-threaded builds: wait until no other thread is inside an event of p (its
 * `busy` is 0).  The profile is no longer ON, so the events that start now leave
 * the engines alone (ev looks again after raising busy); the wait is detached from
 * the interpreter, so a thread it waits for can stop the world or take a lock this
 * one holds.  The calling thread's own events are not waited for: disable() may be
 * called from Python code that one of them runs (a Counter). */
static void wait_for_events(ProfilerObject *p)
{
#ifdef Py_GIL_DISABLED
    struct tstate *own = cprof_tls_owner == p->generation ? cprof_tls_ts : NULL;

    for (struct tstate *ts = cprof_threads(p); ts; ts = ts->next) {
        if (ts == own || !__atomic_load_n(&ts->busy, __ATOMIC_SEQ_CST))
            continue;
        Py_BEGIN_ALLOW_THREADS
        while (__atomic_load_n(&ts->busy, __ATOMIC_ACQUIRE))
            sched_yield();
        Py_END_ALLOW_THREADS
    }
#else
    (void)p;
#endif
}

/* Stop, with p claimed from ON: close every thread's open frames and pause it.  The
 * calling thread takes a final reading; the others end at their latest one. */
static void stop(ProfilerObject *p)
{
    int tick = 1;

    release_running(p);
    wait_for_events(p);
    /* a thread whose hook the program took ends at cprof's last event there */
    tick = cprof_hooks_held(p);
    cprof_hooks_remove(p);
    cprof_pymalloc_profile_stop(p->specs, p->n);
    if (p->async_mode)
        cprof_async_stop(p);
    if (tick && cprof_tls_owner == p->generation && !cprof_tls_ts->failed) {
        uint64_t now[CPROF_MAX_COUNTERS];
        read_all(cprof_tls_ts, p->n, now);
        cprof_thread_tick(&cprof_tls_ts->eng, now);
    }
    for (struct tstate *ts = cprof_threads(p); ts; ts = ts->next)
        if (!ts->failed) {
            cprof_thread_flush(&ts->eng);
            cprof_thread_pause(&ts->eng);
        }
}


/* disable()'s work once p is stopped (still BUSY: what it reads stays put). */
static PyObject *disable_stopped(ProfilerObject *p, module_state *st, int strict)
{
    Py_ssize_t nrep;

    /* every event that could set it is over (stop() waited for them) */
    PyObject *err = __atomic_exchange_n(&p->error, NULL, __ATOMIC_ACQ_REL);
    if (err) {
        PyErr_SetObject(st->error, err);
        Py_DECREF(err);
        return NULL;
    }
    nrep = p->replaced ? PyList_GET_SIZE(p->replaced) : 0;
    if (p->replaced_said < nrep) {
        /* a new reference: the list is the profile's, and making the exception may
         * run Python code */
        PyObject *msg = PyMapping_GetItemString(PyList_GET_ITEM(p->replaced, p->replaced_said),
                                                "message");
        Py_ssize_t more = nrep - p->replaced_said - 1;
        p->replaced_said = nrep;
        if (!msg)
            return NULL;
        if (strict) {
            if (more)
                PyErr_Format(st->error, "%S (and in %zd more threads)", msg, more);
            else
                PyErr_SetObject(st->error, msg);
            Py_DECREF(msg);
            return NULL;
        }
        Py_DECREF(msg);
    }
    if (cprof_py_warn_health(p) < 0)
        return NULL;
    Py_RETURN_NONE;
}

static PyObject *profiler_disable(PyObject *self, PyObject *args, PyObject *kwds)
{
    ProfilerObject *p = (ProfilerObject *)self;
    static char *kwlist[] = {"strict", NULL};
    int strict = 1;
    module_state *st = state_of(self);
    PyObject *r;

    if (!PyArg_ParseTupleAndKeywords(args, kwds, "|$p:disable", kwlist, &strict))
        return NULL;
    if (cprof_claim(p, CPROF_ON) < 0) {
        if (CPROF_LOAD(p->enabled) == CPROF_OFF)
            PyErr_SetString(st->error,
                            "this profile is not enabled; call enable() before disable()");
        else
            cprof_py_busy_error(p, st);
        return NULL;
    }
    stop(p);
    r = disable_stopped(p, st, strict);
    cprof_release(p, CPROF_OFF);
    return r;
}

void cprof_py_busy_error(ProfilerObject *p, module_state *st)
{
    (void)p;
    PyErr_SetString(st->error, "another thread is enabling, disabling or reading this profile "
                               "right now; call enable(), disable(), stats() and "
                               "set_compensation() from one thread at a time");
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
#ifdef Py_GIL_DISABLED
    /* the engines it writes into are their threads' own while the profile runs */
    if (cprof_claim(p, CPROF_OFF) < 0) {
        if (CPROF_LOAD(p->enabled) == CPROF_ON)
            PyErr_SetString(state_of(self)->error,
                            "set_compensation() needs the profile disabled on the free-threaded "
                            "build (other threads' events read the values); call it before "
                            "enable()");
        else
            cprof_py_busy_error(p, state_of(self));
        return NULL;
    }
#endif
    for (unsigned i = 0; i < p->n; i++)
        CPROF_STORE(p->comp[i], v[i]);
    for (struct tstate *ts = cprof_threads(p); ts; ts = ts->next)
        if (!ts->failed)
            cprof_ts_compensate(p, ts);
#ifdef Py_GIL_DISABLED
    cprof_release(p, CPROF_OFF);
#endif
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
        PyObject *err = Py_XNewRef(__atomic_load_n(&p->error, __ATOMIC_ACQUIRE));
        PyErr_SetObject(state_of(self)->error, err ? err : Py_None);
        Py_XDECREF(err);
        return NULL;
    }
    read_all(ts, p->n, now);
    return cprof_py_u64_list(now, p->n);
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
    Py_VISIT(p->await_obj);
    Py_VISIT(p->async_create_task);
    Py_VISIT(p->async_cancelled);
    return 0;
}

static int profiler_clear(PyObject *self)
{
    ProfilerObject *p = (ProfilerObject *)self;

    Py_CLEAR(p->replaced);      /* first: no Python work to say replaced hooks when dying */
    if (cprof_claim(p, CPROF_ON) == 0) {
        stop(p);
        cprof_release(p, CPROF_OFF);
    }
    Py_CLEAR(p->keys);
    Py_CLEAR(p->bootstrap);
    Py_CLEAR(p->hooks);
    Py_CLEAR(p->error);
    Py_CLEAR(p->disable);
    Py_CLEAR(p->failures);
    Py_CLEAR(p->capture);
    Py_CLEAR(p->captures);
    Py_CLEAR(p->prev_thread_hook);
    Py_CLEAR(p->async_create_task);
    Py_CLEAR(p->async_cancelled);
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
        cprof_ts_free(p, ts);
    }
    Py_CLEAR(p->objects);       /* after the thread states that point into them */
    Py_CLEAR(p->await_obj);     /* after them too: its address keys their [await] nodes */
    if (cprof_tls_owner == p->generation) {
        cprof_tls_owner = 0;
        cprof_tls_ts = NULL;
    }
    tp->tp_free(self);
    Py_DECREF(tp);
}

static PyObject *profiler_get_async_mode(PyObject *self, void *closure)
{
    (void)closure;
    return PyBool_FromLong(((ProfilerObject *)self)->async_mode);
}

static PyObject *profiler_get_enabled(PyObject *self, void *closure)
{
    (void)closure;
    return PyBool_FromLong(cprof_on((ProfilerObject *)self));
}

static PyObject *profiler_get_counters(PyObject *self, void *closure)
{
    ProfilerObject *p = (ProfilerObject *)self;
    PyObject *t = PyTuple_New(p->n);

    (void)closure;
    if (!t)
        return NULL;
    for (unsigned i = 0; i < p->n; i++) {
        PyObject *name = PyUnicode_FromString(p->specs[i].def->name);
        if (!name) {
            Py_DECREF(t);
            return NULL;
        }
        PyTuple_SET_ITEM(t, i, name);
    }
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
    {"async_stats", cprof_async_stats, METH_NOARGS,
     "async_stats()\n--\n\nasyncio mode's tasks and coroutine resumes (the profile stopped)."},
    {"stats", (PyCFunction)(void (*)(void))cprof_py_profiler_stats, METH_VARARGS | METH_KEYWORDS,
     "stats(identify=None)\n--\n\nThe statistics of every thread, merged in one pass: a dict of "
     "counters, functions (FunctionStats), edges (EdgeStats), tree (columns of int64 bytes), meta "
     "and health "
     "(Health).  identify(key, entry) gives the identity functions merge under (cprof.build "
     "passes (name, file, line)); None merges by key."},
    {NULL, NULL, 0, NULL},
};

/* cprof's own methods are never profiled (see c_key) */
const PyMethodDef *const cprof_own_methods_begin = profiler_methods;
const PyMethodDef *const cprof_own_methods_end =
    profiler_methods + sizeof(profiler_methods) / sizeof(profiler_methods[0]);

static PyGetSetDef profiler_getset[] = {
    {"enabled", profiler_get_enabled, NULL, "whether profiling is on", NULL},
    {"counters", profiler_get_counters, NULL, "the counter names, in order", NULL},
    {"async_mode", profiler_get_async_mode, NULL, "asyncio mode (Profiler(async_mode=True))", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyType_Slot profiler_slots[] = {
#if !CPROF_MONITORING
    {Py_tp_call, (void *)cprof_hooks_profiler_call},
#endif
    {Py_tp_init, (void *)profiler_init},
    {Py_tp_new, (void *)PyType_GenericNew},
    {Py_tp_dealloc, (void *)profiler_dealloc},
    {Py_tp_traverse, (void *)profiler_traverse},
    {Py_tp_clear, (void *)profiler_clear},
    {Py_tp_methods, profiler_methods},
    {Py_tp_getset, profiler_getset},
    {Py_tp_doc, "Profiler(counters='cpu,wall', all_call_sites=False)\n--\n\nThe C profiler behind "
                "cprof.Profile. On 3.12+, call sites that call a Python function or a class stop "
                "reporting CALL (a Python function's PY_START does) unless all_call_sites is true."},
    {0, NULL},
};

PyType_Spec cprof_profiler_spec = {
    .name = "cprof._cprof.Profiler",
    .basicsize = sizeof(ProfilerObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .slots = profiler_slots,
};

