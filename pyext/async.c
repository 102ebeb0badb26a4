/* asyncio mode (Profiler(async_mode=True), cprof --async): a coroutine's calls count
 * calls, not resumes; the time it spends suspended is in its total, as an [await]
 * child; and each asyncio task's life (created, started, done, running time) is
 * kept for the per-task view.
 *
 * Installed instead of the default hooks for the Python function events (hooks_*.c
 * pick async_hooks / profile_func_async when p->async_mode): the default event path
 * is not touched.  A function that is not a coroutine (co_flags without
 * CO_COROUTINE) takes the default path, ev(), after one test of its flags.
 *
 * A coroutine's frame (its address: the frame object lives as long as the
 * coroutine) keys an entry in its thread's table: at a suspension the frame is
 * popped as at any exit and the reading kept; at the resume it is pushed again,
 * begun at that reading (cprof_thread_resume): its total holds the suspended time,
 * as an [await] child when it is the innermost coroutine of the chain that
 * suspended, and its caller's total does not.  Counters that do not grow while a
 * coroutine waits (the thread's cpu and work counters: the thread runs other tasks
 * then) get none of the interval: only an elapsed counter (wall) and ctxsw do.
 *
 * All of it runs in the owning thread, at its events (no lock); the tables are
 * malloc'd (allocation is allowed here: asyncio mode only), and read by
 * Profiler.async_stats() with the profile stopped. */
#include "async.h"

#include <time.h>

enum { ST_NONE, ST_CREATED, ST_RUNNING, ST_SUSPENDED, ST_DONE };

struct co_entry {               /* one coroutine frame of this thread */
    uint64_t since[CPROF_MAX_COUNTERS]; /* engine reading at its suspension (UINT64_MAX: a
                                 * counter that does not grow while it waits) */
    uint64_t events;            /* the engine's event count just after it */
    size_t depth;               /* the engine's stack depth just after it */
    uint64_t slice_ns;          /* monotonic ns at its last start or resume */
    int64_t task;               /* index in the thread's tasks, or -1 */
    cprof_key key;              /* its code's key (a frame address is used again) */
    int state;                  /* ST_* */
    int innermost;              /* it suspended first in its chain: [await] is its child */
};

struct co_task {                /* one asyncio task, from its loop's create_task */
    PyObject *name;             /* Task.get_name() (str, strong), read again at its end:
                                 * asyncio.create_task names it after create_task */
    PyObject *task;             /* the Task (strong) until its end, or NULL */
    PyObject *code;             /* its coroutine's code object (strong), or NULL */
    PyObject *exc;              /* the exception's type name when it raised (3.12+), or NULL */
    uint64_t created, started, done, running; /* monotonic ns (0: not yet) */
    int outcome;                /* ST_RUNNING (not done), or OUT_* */
};

enum { OUT_RETURNED = 100, OUT_RAISED, OUT_CANCELLED };

struct cprof_async {
    struct cprof_table frames;  /* frame address -> index in entries (record order) */
    struct co_entry *entries;   /* frames.len of them */
    size_t cap;                 /* entries allocated */
    struct cprof_table resumes; /* code key -> resumes (calls) */
    struct co_task *tasks;
    size_t ntasks, taskcap;
    uint64_t last_events;       /* the engine's event count after the last suspension */
    size_t last_depth;          /* its stack depth then */
};

uint64_t cprof_async_now_ns(void)
{
    struct timespec t;

    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

void cprof_async_free(struct tstate *ts)
{
    struct cprof_async *a = ts->async;

    if (!a)
        return;
    cprof_table_free(&a->frames);
    cprof_table_free(&a->resumes);
    free(a->entries);
    for (size_t i = 0; i < a->ntasks; i++) {
        Py_XDECREF(a->tasks[i].name);
        Py_XDECREF(a->tasks[i].code);
        Py_XDECREF(a->tasks[i].exc);
        Py_XDECREF(a->tasks[i].task);
    }
    free(a->tasks);
    free(a);
    ts->async = NULL;
}

static struct cprof_async *async_of(struct tstate *ts)
{
    struct cprof_async *a = ts->async;

    if (a)
        return a;
    a = calloc(1, sizeof(*a));
    if (!a)
        return NULL;
    if (cprof_table_init(&a->frames, 1, 64) < 0 || cprof_table_init(&a->resumes, 1, 64) < 0) {
        cprof_table_free(&a->frames);
        free(a);
        return NULL;
    }
    a->last_events = UINT64_MAX;
    return ts->async = a;
}

/* The entry of `frame`, made (ST_NONE) if absent; NULL when memory runs out. */
static struct co_entry *entry_of(struct cprof_async *a, const void *frame, int make)
{
    size_t ix;
    int r = make ? cprof_table_get(&a->frames, (uint64_t)(uintptr_t)frame, &ix)
                 : cprof_table_find(&a->frames, (uint64_t)(uintptr_t)frame, &ix);

    if (r < 0)
        return NULL;
    if (ix >= a->cap) {
        size_t cap = a->cap ? 2 * a->cap : 64;
        struct co_entry *e = realloc(a->entries, cap * sizeof(*e));
        if (!e)
            return NULL;
        a->entries = e;
        a->cap = cap;
    }
    if (r > 0) {
        memset(&a->entries[ix], 0, sizeof(a->entries[ix]));
        a->entries[ix].task = -1;
    }
    return &a->entries[ix];
}

static void nomem(ProfilerObject *p)
{
    cprof_py_set_sticky(p, "cprof ran out of memory keeping asyncio coroutines apart "
                           "(--async)");
}

/* An engine event with the counters read as ev() reads them. */
static void engine_ev(ProfilerObject *p, struct tstate *ts, int enter, cprof_key key,
                      PyObject *obj)
{
    ts->pending = obj;
    if (p->has_pycall)
        ev_pycall(p, ts, enter ? cprof_thread_enter : cprof_thread_exit, key);
    else if (enter)
        cprof_thread_enter_read(&ts->eng, key);
    else
        cprof_thread_exit_read(&ts->eng, key);
}

static void task_slice_end(struct cprof_async *a, struct co_entry *e, uint64_t now)
{
    if (e->task >= 0 && e->slice_ns && now > e->slice_ns)
        a->tasks[e->task].running += now - e->slice_ns;
}

static void coro_start(struct cprof_async *a, struct co_entry *e, cprof_key key, uint64_t now)
{
    /* a frame address used again (a task that never ran was freed): another coroutine */
    if (e->state != ST_CREATED || e->task < 0 || !a->tasks[e->task].code ||
        (cprof_key)(uintptr_t)a->tasks[e->task].code != key)
        e->task = -1;
    e->key = key;
    e->state = ST_RUNNING;
    e->slice_ns = now;
    if (e->task >= 0 && !a->tasks[e->task].started)
        a->tasks[e->task].started = now;
}

/* Its name now (the program may have named it since create_task); the task let go. */
static void task_ended(struct co_task *t)
{
    PyObject *name;

    if (!t->task)
        return;
    SAVE_EXC(saved);
    name = PyObject_CallMethod(t->task, "get_name", NULL);
    if (name && PyUnicode_Check(name))
        Py_SETREF(t->name, name);
    else
        Py_XDECREF(name);
    Py_CLEAR(t->task);
    PyErr_Clear();
    RESTORE_EXC(saved);
}

/* A coroutine's event (code has CO_COROUTINE), in the thread's state ts. */
static void coro_event(ProfilerObject *p, struct tstate *ts, int what, PyObject *code,
                       const void *frame, PyObject *arg)
{
    struct cprof_async *a = async_of(ts);
    cprof_key key = (cprof_key)(uintptr_t)code;
    struct cprof_thread *eng = &ts->eng;
    struct co_entry *e;
    uint64_t now_ns = cprof_async_now_ns();

    if (!a || !frame) {
        if (!a)
            nomem(p);
        engine_ev(p, ts, what <= CPROF_AS_THROW, key, code);
        return;
    }
    switch (what) {
    case CPROF_AS_START:
    case CPROF_AS_RESUME:
    case CPROF_AS_THROW:
        e = entry_of(a, frame, 1);
        if (e && e->state == ST_SUSPENDED && e->key == key && what != CPROF_AS_START) {
            uint64_t now[CPROF_MAX_COUNTERS];
            size_t ix;
            ts->pending = code;
            read_all(ts, p->n, now);
            if (p->has_pycall && cprof_pycounter_failed)
                cprof_ts_note_failures(p, ts);
            cprof_thread_resume(eng, key, e->innermost ? p->await_key : 0, e->since, now);
            if (cprof_table_get(&a->resumes, key, &ix) >= 0)
                a->resumes.recs[ix].calls++;
            e = entry_of(a, frame, 0);  /* as of now: nothing above inserts, but be plain */
            if (e) {
                e->state = ST_RUNNING;
                e->slice_ns = now_ns;
            }
            return;
        }
        engine_ev(p, ts, 1, key, code);
        if (!e) {
            nomem(p);
            return;
        }
        coro_start(a, e, key, now_ns);
        return;
    case CPROF_AS_YIELD: {
        size_t d = cprof_thread_depth(eng);
        int top = d && cprof_thread_frame_key(eng, d - 1) == key;
        engine_ev(p, ts, 0, key, code);
        e = entry_of(a, frame, 1);
        if (!e) {
            nomem(p);
            return;
        }
        task_slice_end(a, e, now_ns);
        if (!top || cprof_thread_depth(eng) != d - 1) {
            e->state = ST_NONE; /* not on the stack as expected: its resume is a call */
            return;
        }
        for (unsigned c = 0; c < p->n; c++)
            e->since[c] = (p->async_waits >> c) & 1 ? eng->rd.last[c] : UINT64_MAX;
        e->events = eng->rd.events;
        e->depth = d - 1;
        /* the coroutine above it suspended just before, at the depth above: it waits
         * through that one, whose [await] holds the interval */
        e->innermost = !(a->last_events + 1 == e->events && a->last_depth == d);
        a->last_events = e->events;
        a->last_depth = e->depth;
        e->key = key;
        e->state = ST_SUSPENDED;
        return;
    }
    default:                    /* RETURN, UNWIND */
        engine_ev(p, ts, 0, key, code);
        e = entry_of(a, frame, 0);
        if (!e)
            return;
        if (e->state == ST_RUNNING && e->task >= 0) {
            struct co_task *t = &a->tasks[e->task];
            task_slice_end(a, e, now_ns);
            t->done = now_ns;
            task_ended(t);
            t->outcome = what == CPROF_AS_RETURN ? OUT_RETURNED : OUT_RAISED;
            if (what == CPROF_AS_UNWIND && arg && arg != Py_None) {
                if (p->async_cancelled && PyObject_TypeCheck(arg, (PyTypeObject *)p->async_cancelled))
                    t->outcome = OUT_CANCELLED;
                Py_XSETREF(t->exc, PyUnicode_FromString(Py_TYPE(arg)->tp_name));
                if (!t->exc)
                    PyErr_Clear();
            }
        }
        e->state = ST_DONE;
        e->task = -1;
        return;
    }
}

/* create_task returned `task` in this thread: a new task to follow. */
static void note_task(ProfilerObject *p, struct tstate *ts, PyObject *task)
{
    struct cprof_async *a = async_of(ts);
    PyObject *coro = NULL, *name = NULL, *frame = NULL, *code = NULL;
    uint64_t before[CPROF_MAX_COUNTERS], after[CPROF_MAX_COUNTERS];
    struct co_task *t;
    SAVE_EXC(saved);

    if (!a) {
        nomem(p);
        goto out;
    }
    read_all(ts, p->n, before);
    if (a->ntasks == a->taskcap) {
        size_t cap = a->taskcap ? 2 * a->taskcap : 64;
        struct co_task *nt = realloc(a->tasks, cap * sizeof(*nt));
        if (!nt) {
            nomem(p);
            goto out;
        }
        a->tasks = nt;
        a->taskcap = cap;
    }
    name = PyObject_CallMethod(task, "get_name", NULL);
    if (!name || !PyUnicode_Check(name)) {
        Py_XDECREF(name);
        PyErr_Clear();
        name = PyObject_Repr(task);
        if (!name)
            goto out;
    }
    coro = PyObject_CallMethod(task, "get_coro", NULL);
    if (coro && PyCoro_CheckExact(coro)) {
        frame = PyObject_GetAttrString(coro, "cr_frame");
        code = PyObject_GetAttrString(coro, "cr_code");
    }
    PyErr_Clear();
    t = &a->tasks[a->ntasks];
    memset(t, 0, sizeof(*t));
    t->name = name;
    name = NULL;
    t->code = code && PyCode_Check(code) ? Py_NewRef(code) : NULL;
    t->task = Py_NewRef(task);
    t->created = cprof_async_now_ns();
    t->outcome = ST_RUNNING;
    if (frame && PyFrame_Check(frame)) {
        struct co_entry *e = entry_of(a, frame, 1);
        if (e) {
            if (e->state == ST_NONE || e->state == ST_DONE || e->state == ST_CREATED) {
                e->state = ST_CREATED;
                e->task = (int64_t)a->ntasks;
            } else if (e->task < 0) {   /* started eagerly, inside create_task */
                e->task = (int64_t)a->ntasks;
                t->started = t->created;
            }
        }
    }
    a->ntasks++;
    read_all(ts, p->n, after);
    cprof_thread_exclude(&ts->eng, before, after); /* cprof's own work */
out:
    Py_XDECREF(coro);
    Py_XDECREF(name);
    Py_XDECREF(frame);
    Py_XDECREF(code);
    PyErr_Clear();
    RESTORE_EXC(saved);
}

void cprof_async_coro_event(ProfilerObject *p, int what, PyObject *code, const void *frame,
                            PyObject *arg)
{
    struct tstate *ts = get_ts(p);

    if (!ts || !ev_enter(p, ts))
        return;
    if (((PyCodeObject *)code)->co_flags & CO_COROUTINE) {
        if (!frame)             /* 3.12+: the running one (made once per coroutine) */
            frame = PyEval_GetFrame();
        coro_event(p, ts, what, code, frame, arg);
    }
    else if (what == CPROF_AS_RETURN && code == p->async_create_task && arg) {
        engine_ev(p, ts, 0, (cprof_key)(uintptr_t)code, code);
        note_task(p, ts, arg);
    }
    ev_leave(ts);
}

/* ---- Profiler.async_stats() ------------------------------------------------------ */

static PyObject *entry_or_none(ProfilerObject *p, uint64_t key)
{
    PyObject *k = PyLong_FromUnsignedLongLong(key), *e;

    if (!k)
        return NULL;
    e = PyDict_GetItemWithError(p->keys, k);
    Py_DECREF(k);
    if (!e && PyErr_Occurred())
        return NULL;
    return Py_NewRef(e ? e : Py_None);
}

static PyObject *opt_ns(uint64_t v, uint64_t t0)
{
    return v ? PyLong_FromUnsignedLongLong(v > t0 ? v - t0 : 0) : Py_NewRef(Py_None);
}

PyObject *cprof_async_stats(PyObject *self, PyObject *unused)
{
    ProfilerObject *p = (ProfilerObject *)self;
    static const char *const outcomes[] = {"returned", "raised", "cancelled"};
    PyObject *tasks = NULL, *resumes = NULL, *out = NULL;
    module_state *st = state_of(self);

    (void)unused;
    if (cprof_claim(p, CPROF_OFF) < 0) {
        if (CPROF_LOAD(p->enabled) == CPROF_ON)
            PyErr_SetString(st->error, "async_stats() of a running profile; disable() first");
        else
            cprof_py_busy_error(p, st);
        return NULL;
    }
    if (!(tasks = PyList_New(0)) || !(resumes = PyList_New(0)))
        goto out;
    for (struct tstate *ts = cprof_threads(p); ts; ts = ts->next) {
        struct cprof_async *a = ts->async;
        if (!a)
            continue;
        for (size_t i = 0; i < a->resumes.len; i++) {
            PyObject *e = entry_or_none(p, a->resumes.recs[i].key), *r;
            if (!e)
                goto out;
            r = Py_BuildValue("(NK)", e, (unsigned long long)a->resumes.recs[i].calls);
            if (!r || PyList_Append(resumes, r) < 0) {
                Py_XDECREF(r);
                goto out;
            }
            Py_DECREF(r);
        }
        for (size_t i = 0; i < a->ntasks; i++) {
            struct co_task *t = &a->tasks[i];
            task_ended(t);      /* not done: its name now */
            PyObject *coro = t->code ? entry_or_none(p, (uint64_t)(uintptr_t)t->code) : NULL, *r;
            if (t->code && !coro)
                goto out;
            if (coro == Py_None)        /* never ran: named from its code, without module */
                Py_SETREF(coro, Py_BuildValue("(OO)", t->code, Py_None));
            if (t->code && !coro)
                goto out;
            r = Py_BuildValue("{s:O,s:N,s:k,s:N,s:N,s:N,s:K,s:s,s:O}", "name", t->name,
                              "coroutine", coro ? coro : Py_NewRef(Py_None), "thread", ts->ident,
                              "created", opt_ns(t->created, p->async_t0),
                              "started", opt_ns(t->started, p->async_t0),
                              "done", opt_ns(t->done, p->async_t0),
                              "running", (unsigned long long)t->running,
                              "outcome", t->outcome == ST_RUNNING ? "pending"
                                                                 : outcomes[t->outcome - OUT_RETURNED],
                              "exception", t->exc ? t->exc : Py_None);
            if (!r || PyList_Append(tasks, r) < 0) {
                Py_XDECREF(r);
                goto out;
            }
            Py_DECREF(r);
        }
    }
    out = Py_BuildValue("{s:O,s:O,s:K,s:K}", "tasks", tasks, "resumes", resumes, "start", 0ull,
                        "end", (unsigned long long)(p->async_t1 > p->async_t0
                                                        ? p->async_t1 - p->async_t0 : 0));
out:
    Py_XDECREF(tasks);
    Py_XDECREF(resumes);
    cprof_release(p, CPROF_OFF);
    return out;
}

/* Profiler.__init__(async_mode=True): which counters grow while a coroutine waits,
 * and the [await] key's registry entry. */
int cprof_async_init(ProfilerObject *p)
{
    PyObject *k, *entry;

    p->async_waits = 0;
    for (unsigned c = 0; c < p->n; c++)
        if ((p->specs[c].def->flags & CPROF_COUNTER_ELAPSED) ||
            strcmp(p->specs[c].def->name, "ctxsw") == 0)
            p->async_waits |= 1u << c;
    if (!p->await_obj && !(p->await_obj = PyUnicode_FromString("[await]")))
        return -1;
    p->await_key = (cprof_key)(uintptr_t)p->await_obj;
    k = PyLong_FromUnsignedLongLong(p->await_key);
    entry = PyTuple_Pack(2, p->await_obj, Py_None);
    if (!k || !entry || PyDict_SetItem(p->keys, k, entry) < 0) {
        Py_XDECREF(k);
        Py_XDECREF(entry);
        return -1;
    }
    Py_DECREF(k);
    Py_DECREF(entry);
    return 0;
}

/* enable(): asyncio's create_task and CancelledError, to follow tasks. */
int cprof_async_enable(ProfilerObject *p)
{
    PyObject *be = PyImport_ImportModule("asyncio.base_events"), *ex, *fn, *code = NULL;

    p->async_t0 = cprof_async_now_ns();
    if (!be)
        return -1;
    fn = PyObject_GetAttrString(be, "BaseEventLoop");
    if (fn) {
        Py_SETREF(fn, PyObject_GetAttrString(fn, "create_task"));
        if (fn)
            code = PyObject_GetAttrString(fn, "__code__");
        Py_XDECREF(fn);
    }
    Py_DECREF(be);
    if (!code)
        return -1;
    Py_XSETREF(p->async_create_task, code);
    ex = PyImport_ImportModule("asyncio.exceptions");
    if (!ex)
        return -1;
    Py_XSETREF(p->async_cancelled, PyObject_GetAttrString(ex, "CancelledError"));
    Py_DECREF(ex);
    return p->async_cancelled ? 0 : -1;
}

void cprof_async_stop(ProfilerObject *p)
{
    p->async_t1 = cprof_async_now_ns();
}
