/* Per-thread profiling state: a thread's engine and counter states, created at
 * its first event, the engine's callbacks into Python (a key seen for the first
 * time, a call among the slowest), and pushing the frames already running. */
#include "async.h"
#include "profiler.h"
#include "../counters/clock.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <unistd.h>

/* Process-wide, per OS thread (see profiler.h) */
CPROF_TLS struct cprof_tls cprof_tls;

/* ---- errors inside hooks: sticky, raised from disable() ----------------------- */

/* The first error wins: set once, from NULL, by whichever thread gets there. */
void cprof_py_set_sticky(ProfilerObject *p, const char *msg)
{
    PyObject *none = NULL, *s;

    if (__atomic_load_n(&p->error, __ATOMIC_ACQUIRE))
        return;
    s = PyUnicode_FromString(msg);
    if (s && !__atomic_compare_exchange_n(&p->error, &none, s, 0, __ATOMIC_ACQ_REL,
                                          __ATOMIC_ACQUIRE))
        Py_DECREF(s);
}

/* ---- key registry -------------------------------------------------------------- */

/* The engine saw `key` for the first time in this thread: remember its object. */
static void on_new_key(void *arg, cprof_key key)
{
    struct tstate *ts = arg;
    ProfilerObject *p = ts->prof;
    PyObject *k, *mod = NULL, *entry;
    uint64_t before[CPROF_MAX_COUNTERS], after[CPROF_MAX_COUNTERS];
    SAVE_EXC(saved);

    /* the registry's own allocations (its dict growing, the key and entry objects)
     * are cprof's, not the function's being entered: kept out of the numbers */
    read_all(ts, p->n, before);
    k = PyLong_FromUnsignedLongLong(key);
    if (!k)
        goto fail;
    if (PyDict_Contains(p->keys, k) == 0 && ts->pending) {
        /* strong references from here: the dict operations below may run Python
         * code (a collection, a __del__), which could let the borrowed ones go */
        PyObject *globals = Py_XNewRef(ts->pending_globals);
        if (!globals && PyCode_Check(ts->pending))
            globals = cprof_frame_globals(); /* the event's own frame is the current one */
        if (globals) {
            /* a new reference: another thread may set __name__ meanwhile */
            if (cprof_dict_get_str_ref(globals, "__name__", &mod) < 0)
                PyErr_Clear();
            if (mod && !PyUnicode_Check(mod))
                Py_CLEAR(mod);
            Py_DECREF(globals);
        }
        entry = PyTuple_Pack(2, ts->pending, mod ? mod : Py_None);
        Py_XDECREF(mod);
        /* another thread may meet the key at the same time: the first entry stays,
         * so a borrowed entry (cprof_ts_note_failures) is never replaced under it */
        if (!entry || !PyDict_SetDefault(p->keys, k, entry)) {
            Py_XDECREF(entry);
            Py_DECREF(k);
            goto fail;
        }
        Py_DECREF(entry);
    }
    Py_DECREF(k);
    if (PyErr_Occurred())
        goto fail;
    read_all(ts, p->n, after);
    cprof_thread_exclude(&ts->eng, before, after);
    RESTORE_EXC(saved);
    return;
fail:
    PyErr_Clear();
    cprof_py_set_sticky(p, "cprof could not record a function's name (out of memory?)");
    RESTORE_EXC(saved);
}


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
    if (evicting && evicted) {
        Py_BEGIN_CRITICAL_SECTION(p->captures);
        if ((Py_ssize_t)evicted <= PyList_GET_SIZE(p->captures))
            PyList_SetItem(p->captures, (Py_ssize_t)evicted - 1, Py_NewRef(Py_None));
        Py_END_CRITICAL_SECTION();
    }
    if (current && p->capture && ts->pending && PyCode_Check(ts->pending)) {
        uint64_t before[CPROF_MAX_COUNTERS], after[CPROF_MAX_COUNTERS];
        /* a strong reference: reading a Counter runs Python code */
        PyObject *f = Py_XNewRef((PyObject *)PyEval_GetFrame());
        read_all(ts, p->n, before);
        if (f)
            info = PyObject_CallFunctionObjArgs(p->capture, f, NULL);
        read_all(ts, p->n, after);
        cprof_thread_exclude(&ts->eng, before, after);
        Py_XDECREF(f);
        if (!info)
            PyErr_Clear();
    }
    vals = PyTuple_New(p->n);
    for (unsigned c = 0; vals && c < p->n; c++) {
        PyObject *v = PyLong_FromUnsignedLongLong(values[c]);
        if (!v) {
            Py_CLEAR(vals);
            break;
        }
        PyTuple_SET_ITEM(vals, c, v);
    }
    entry = vals ? PyTuple_Pack(2, info ? info : Py_None, vals) : NULL;
    if (entry) {
        /* the tag is the index of this entry: append and size with no other thread's
         * append in between */
        Py_BEGIN_CRITICAL_SECTION(p->captures);
        if (PyList_Append(p->captures, entry) == 0)
            tag = (uint64_t)PyList_GET_SIZE(p->captures);
        Py_END_CRITICAL_SECTION();
    }
    if (!tag)
        cprof_py_set_sticky(p, "cprof could not record a slow call (out of memory?)");
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

/* ---- scheduling delay: the wall clocks' compensation under load ------------------ */

/* A thread that is preempted waits for a CPU while its wall clock runs on, and it is
 * preempted for the CPU time it used, the tracer's included: on a loaded machine
 * the tracer's wall-clock cost per event is its CPU cost (what calibration
 * measures, in thread CPU time) times (run + preempted wait) / run.  So the
 * counters that count elapsed time (CPROF_COUNTER_ELAPSED) have their cost per
 * event scaled by that factor (at most STRETCH_MAX), measured for this thread over
 * windows of at least STRETCH_WINDOW_NS and STRETCH_MIN_RUN_NS of running: time
 * run and time waited on a run queue from the kernel's scheduler statistics
 * (/proc/thread-self/schedstat), the wait counted in the share of the window's
 * switches that were preemptions (getrusage's involuntary ones; a wait after
 * waking from a sleep, I/O or a lock is not the tracer's doing).  The first window
 * sets the factor, each later one is averaged with it (half and half).  1 on an
 * idle machine, and back to 1 where the accounts cannot be read (a kernel that
 * keeps none: zeros); a window whose reading failed for want of file descriptors
 * or memory is skipped, and the next one tries again.  Looked at after every
 * CPROF_PERIOD_EVENTS-th event (the engine's periodic callback): a clock read, and
 * per window a file read and a getrusage, whose cost is kept out of the numbers
 * like the registry's. */
#define STRETCH_ONE (1u << 16)
#define STRETCH_MAX (16u << 16)
#define STRETCH_WINDOW_NS 50000000ull
#define STRETCH_MIN_RUN_NS 5000000ull

/* The calling thread's scheduler figures: 0, or a negative errno (-ENODATA: a kernel
 * that keeps no scheduler statistics reads 0 ns run).  errno is left as it was. */
static int read_sched(struct sched_reading *r)
{
    char buf[96], *end, *second;
    int saved = errno, fd = open("/proc/thread-self/schedstat", O_RDONLY | O_CLOEXEC), err = 0;
    ssize_t got = fd < 0 ? -1 : read(fd, buf, sizeof(buf) - 1);
    struct rusage ru;

    if (got <= 0 || getrusage(RUSAGE_THREAD, &ru) < 0)
        err = got == 0 ? -ENODATA : -errno;
    if (fd >= 0)
        close(fd);
    errno = saved;
    if (err)
        return err;
    buf[got] = '\0';
    r->run = strtoull(buf, &second, 10);
    r->wait = strtoull(second, &end, 10);
    r->vol = (uint64_t)ru.ru_nvcsw;
    r->invol = (uint64_t)ru.ru_nivcsw;
    r->pid = getpid();
    return second == buf || end == second ? -EINVAL : r->run == 0 ? -ENODATA : 0;
}

void cprof_ts_compensate(ProfilerObject *p, struct tstate *ts)
{
    uint64_t comp[CPROF_MAX_COUNTERS];

    for (unsigned i = 0; i < p->n; i++) {
        comp[i] = CPROF_LOAD(p->comp[i]);
        if (ts->stretch > STRETCH_ONE && (p->specs[i].def->flags & CPROF_COUNTER_ELAPSED))
            comp[i] = comp[i] > (UINT64_MAX >> 16) / ts->stretch ? UINT64_MAX   /* saturated */
                      : (comp[i] * ts->stretch) >> 16;
    }
    cprof_thread_set_compensation(&ts->eng, comp);
}

/* A failure to read the accounts that a later window may not meet: the program has
 * used up its file descriptors, or memory, for now. */
static int sched_err_passes(int err)
{
    return err == -EMFILE || err == -ENFILE || err == -ENOMEM || err == -EINTR || err == -EAGAIN;
}

/* The factor of the window from `at` to `now`, times 2^16 (at most STRETCH_MAX). */
static uint32_t window_stretch(const struct sched_reading *at, const struct sched_reading *now)
{
    double run = (double)(now->run - at->run), wait = (double)(now->wait - at->wait);
    double invol = (double)(now->invol - at->invol), vol = (double)(now->vol - at->vol);
    double f = (run + (invol > 0 ? wait * invol / (invol + vol) : 0)) / run;

    return f * STRETCH_ONE >= STRETCH_MAX ? STRETCH_MAX : (uint32_t)(f * STRETCH_ONE);
}

static void on_period(struct cprof_thread *eng, void *arg)
{
    struct tstate *ts = arg;
    ProfilerObject *p = ts->prof;
    struct sched_reading now, *at = &ts->sched_at;
    uint64_t t = cprof_clock_monotonic_ns(), before[CPROF_MAX_COUNTERS], after[CPROF_MAX_COUNTERS];
    int err;

    if (t - ts->sched_checked < STRETCH_WINDOW_NS)
        return;
    ts->sched_checked = t;
    read_all(ts, p->n, before);
    if ((err = read_sched(&now)) < 0) {
        if (!sched_err_passes(err)) {   /* no accounts: no scaling */
            cprof_thread_set_periodic(eng, NULL, NULL);
            ts->stretch = STRETCH_ONE;
            cprof_ts_compensate(p, ts);
        }                               /* else the next window tries again */
    } else if (now.pid != at->pid || now.run < at->run || now.wait < at->wait ||
               now.vol < at->vol || now.invol < at->invol) {
        *at = now;              /* another thread's: the first look in a forked child */
    } else if (now.run - at->run >= STRETCH_MIN_RUN_NS) {  /* else mostly blocked: go on */
        uint32_t f = window_stretch(at, &now);
        ts->stretch = ts->sched_windows++ ? (uint32_t)(((uint64_t)ts->stretch + f) / 2) : f;
        *at = now;
        cprof_ts_compensate(p, ts);
    }
    read_all(ts, p->n, after);
    cprof_thread_exclude(eng, before, after);   /* the accounts' reading is cprof's work */
}

/* Track the thread's scheduling delay if a counter counts elapsed time and no CPU
 * clock is held to it (after set_time_bounds: there, a wall cost above the CPU cost
 * would hold the CPU clock back in every interval that had no wait, and move its
 * time to the next one that had). */
static void track_stretch(ProfilerObject *p, struct tstate *ts)
{
    int elapsed = 0, err;

    for (unsigned i = 0; i < p->n; i++)
        elapsed |= (p->specs[i].def->flags & CPROF_COUNTER_ELAPSED) != 0;
    if (!elapsed || ts->eng.rd.nbound)
        return;
    err = read_sched(&ts->sched_at);
    if (err < 0 && !sched_err_passes(err))
        return;
    if (err < 0)
        memset(&ts->sched_at, 0, sizeof(ts->sched_at));  /* pid 0: the next look starts */
    ts->stretch = STRETCH_ONE;
    ts->sched_checked = cprof_clock_monotonic_ns();
    cprof_thread_set_periodic(&ts->eng, on_period, ts);
}

struct tstate *cprof_ts_new(ProfilerObject *p)
{
    struct tstate *ts = PyMem_RawCalloc(1, sizeof(*ts));
    struct cprof_error err = {0};

    if (!ts) {
        cprof_py_set_sticky(p, "cprof ran out of memory starting to profile a thread");
        return NULL;
    }
    ts->prof = p;
    ts->ident = PyThread_get_thread_ident();
    ts->tstate_id = PyThreadState_Get()->id;
    cprof_tls_ts = ts;
    cprof_tls_owner = p->generation;
    if (cprof_thread_init(&ts->eng, p->n, on_new_key, ts) < 0) {
        ts->failed = 1;
        cprof_py_set_sticky(p, "cprof ran out of memory starting to profile a thread");
        goto out;
    }
    if (cprof_counters_open(p->specs, p->n, ts->cstate, ts->shared, &err) < 0) {
        char msg[CPROF_ERROR_LEN + 64];
        snprintf(msg, sizeof(msg), "a thread could not be profiled: %s", err.msg);
        ts->failed = 1;
        cprof_thread_mute(&ts->eng);    /* ev() passes its events without looking */
        cprof_py_set_sticky(p, msg);
        goto out;
    }
    ts->opened = p->n;
    for (unsigned i = 0; i < p->n; i++)
        ts->read[i] = p->specs[i].def->read;
    cprof_thread_set_readers(&ts->eng, ts->read, ts->cstate);
    set_time_bounds(p, &ts->eng);
    track_stretch(p, ts);
    cprof_ts_compensate(p, ts);
    cprof_thread_set_distributions(&ts->eng, p->dist);
    if (p->slow_k)
        cprof_thread_set_slow_calls(&ts->eng, p->slow_k, on_slow, ts);
out:
    /* published set up: other threads walk the list without waiting for its owner */
    ts->next = cprof_threads(p);
    while (!__atomic_compare_exchange_n(&p->threads, &ts->next, ts, 1, __ATOMIC_RELEASE,
                                        __ATOMIC_ACQUIRE))
        ;
    return ts->failed ? NULL : ts;
}

void cprof_ts_free(ProfilerObject *p, struct tstate *ts)
{
    cprof_counters_close(p->specs, ts->opened, ts->cstate, ts->shared);
    cprof_thread_free(&ts->eng);
    cprof_async_free(ts);
    PyMem_RawFree(ts);
}

/* A Counter of this thread stopped on a bad reading: record which, why, and the
 * function that was running (its registry entry), for counter_failures(). */
void cprof_ts_note_failures(ProfilerObject *p, struct tstate *ts)
{
    SAVE_EXC(saved);
    cprof_pycounter_failed = 0;
    for (unsigned i = 0; i < ts->opened; i++) {
        const struct cprof_counter_def *def = p->specs[i].def;
        char reason[200];
        if (!def->take_failure || !def->take_failure(ts->cstate[i], reason, sizeof(reason)))
            continue;
        PyObject *where = Py_None, *k = NULL, *x;
        if (cprof_thread_depth(&ts->eng)) {
            cprof_key key = cprof_thread_frame_key(&ts->eng, cprof_thread_depth(&ts->eng) - 1);
            k = PyLong_FromUnsignedLongLong(key);
            where = k ? PyDict_GetItemWithError(p->keys, k) : NULL;
            if (!where)
                where = Py_None;
        }
        x = Py_BuildValue("(sOs)", p->specs[i].def->name, where, reason);
        if (!x || !p->failures || PyList_Append(p->failures, x) < 0)
            cprof_py_set_sticky(p, "cprof could not record a counter's failure (out of memory?)");
        Py_XDECREF(x);
        Py_XDECREF(k);
    }
    PyErr_Clear();
    RESTORE_EXC(saved);
}

/* Frames from `frame` outwards. */
int cprof_ts_stack_depth(PyFrameObject *frame)
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
void cprof_ts_push_frames(ProfilerObject *p, struct tstate *ts, PyFrameObject *frame, int skip,
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
    top = outside ? depth + cprof_ts_stack_depth(f) - 1 - outside : depth - 1;
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

PyObject *cprof_py_u64_list(const uint64_t *v, unsigned n)
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

