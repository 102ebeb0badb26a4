/* The CPython side of cprof, shared by its files: the profiler object, the
 * per-thread state, and the inline event path both hook mechanisms call.
 *
 * The extension turns the interpreter's call events into the engine's
 * enter(key)/exit(key) stream, one engine state per thread:
 *
 *   3.12+   sys.monitoring (PEP 669), callbacks registered from C as vectorcall
 *           objects on a free tool id.
 *   3.10-11 PyEval_SetProfile-style hook, installed on every existing thread and,
 *           through threading.setprofile, on threads started later.
 *
 * Keys: a Python function is its code object's address (the code object is kept
 * alive by the Profiler's key registry, so the address is never reused while the
 * profile exists); a C function is its PyMethodDef's address.  Names are
 * resolved at report time, in Python, from the objects in the registry.
 *
 * The hooks never raise: a failure sets a sticky error, raised from disable().
 *
 * Error convention in pyext/: a function that deals in Python objects returns 0
 * or -1 with a Python exception set, or a new reference or NULL with an exception
 * set (CPython's own convention); a function that deals only in C returns 0 or a
 * negative errno value (the project's, with the sentence in a struct cprof_error).
 * There is no third kind: no -2, no -1 that may or may not come with an exception.
 * The hooks and the engine's callbacks into Python (on_new_key, on_slow) return
 * nothing to raise: a failure becomes the profiler's sticky error, and the
 * exception pending when they were called is saved and restored around their
 * Python work.
 *
 * Where state lives:
 *   module_state      per module object (so per interpreter): the types and the
 *                     exception class, and what is looked up once at import.
 *   ProfilerObject    one profile: its counters, hooks, registries, results.
 *   struct tstate     one thread of one profile: its engine and counter states.
 *   process globals   only what the process has one of, each said where it is
 *                     defined: the thread-local pair below (per OS thread, so
 *                     shared by every interpreter and module object), with the
 *                     generation counter and the running profile that make it
 *                     safe (profiler.c); the pymalloc hooks, because
 *                     PyMem_SetAllocator is per process (pymalloc.c); the list of
 *                     counter names, immutable once filled (counter_list.c);
 *                     pycounters.c has its own (said there).
 * Sub-interpreters: on 3.12+ the module declares Py_mod_multiple_interpreters
 * NOT_SUPPORTED (module.c): importing it in a sub-interpreter that checks its
 * extensions (every isolated one, shared GIL or own) fails with ImportError
 * instead of sharing these globals between interpreters.  A legacy
 * sub-interpreter (Py_NewInterpreter, which checks nothing) can still load it, as
 * every Python before 3.12 can: untested there. */
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
#define CPROF_STATS_NTYPES 4
    PyTypeObject *stats_types[CPROF_STATS_NTYPES]; /* stats()'s named records (stats.c) */
    const PyMethodDef *tp_new_def;  /* the one PyMethodDef behind every type's __new__ */
} module_state;

typedef struct ProfilerObject ProfilerObject;

/* A thread's scheduler figures (threads.c), as the kernel keeps them. */
struct sched_reading {
    uint64_t run;               /* ns run on a CPU (schedstat) */
    uint64_t wait;              /* ns waited on a run queue (schedstat) */
    uint64_t vol, invol;        /* voluntary and involuntary context switches (getrusage) */
    pid_t pid;                  /* the process they were read in (a fork starts anew) */
};

/* One thread's profiling state: its engine and its counters' per-thread state.
 *
 * Who touches what:
 *   ident, tstate_id, prof, next: written once, by the owning thread at its first
 *     event (cprof_ts_new), before the state is published on the owner's list (an
 *     atomic push), then read-only.
 *   eng, read, cstate, opened, failed, pending, pending_globals, stretch,
 *     sched_windows, sched_checked, sched_at: the owning thread, at its events.  Other threads read
 *     or change them only with the profile stopped: stop() flushes and pauses every
 *     thread's engine from the thread that calls disable(), stats() merges them,
 *     note_replaced_hooks() reads the stack, set_compensation() sets the engine's
 *     costs (reading stretch), dealloc frees them.
 *   busy: events of the owning thread in progress (nested: a Counter's read and
 *     the engine's callbacks run Python code, which may have events of its own).
 *     Free-threaded builds only: raised before and dropped after each event by
 *     the owner, with stop() waiting for it to be 0 in every other thread after
 *     turning `enabled` off (each side stores, then loads the other's: sequentially
 *     consistent, so at least one sees the other).  With a GIL it stays 0: an event
 *     holds the GIL, except where it runs Python code, and there a disable() from
 *     another thread is the documented "Beware" of this paragraph's GIL days (the
 *     engine tolerates it: the owner's next event finds the engine paused). */
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
    struct cprof_async *async;  /* asyncio mode's coroutines and tasks (async.c), or NULL */
    int busy;                   /* events in progress (free-threaded builds; atomic) */
    /* scheduling delay (threads.c): the wall clocks' compensation under load */
    uint32_t stretch;           /* (run + preempted wait) / run, times 2^16; 0: not tracked */
    unsigned sched_windows;     /* windows measured so far */
    uint64_t sched_checked;     /* CLOCK_MONOTONIC ns of the last look */
    struct sched_reading sched_at; /* at the window's start */
};

/* One profile.  Who touches what (free-threaded builds have no GIL to lean on, so
 * each line says what makes it safe without one):
 *   Set by __init__ (the calling thread) and read-only after, read by every
 *   profiled thread's events: n, specs, paths, generation, tp_new_def,
 *   all_call_sites, dist, slow_k, capture, objects, has_pycall.
 *   comp: set by set_compensation() (any thread, with the profile OFF on
 *   free-threaded builds), which copies it into each thread's engine; read by
 *   cprof_ts_new.  Element by element with relaxed atomics: a thread whose first
 *   event straddles a disable() and a set_compensation() may copy a mix, into an
 *   engine that set_compensation() then sets again once the state is pushed.
 *   enabled: the profile's state (CPROF_OFF, CPROF_ON, CPROF_BUSY), atomic.  A
 *   method that changes or reads the threads' engines (enable, disable, stats,
 *   set_compensation) first moves it OFF->BUSY or ON->BUSY with a compare-and-swap
 *   and puts it back when done: one such method at a time, without a lock that
 *   Python code run inside them (Counters, identify) could deadlock on.  The
 *   hooks count events only when it is ON (a relaxed load: a plain load).
 *   tool_id, disable, hooks, bootstrap, prev_thread_hook, outside_ident,
 *   outside_depth, replaced_said: enable(), disable() and dealloc, so under BUSY;
 *   the 3.10-3.11 hooks read `bootstrap` and the outside_* pair (GIL builds only).
 *   threads: pushed by each profiled thread at its first event (cprof_ts_new: an
 *   atomic push of a state already set up); walked by stop(), set_compensation(),
 *   stats(), dealloc in the calling thread, under BUSY.  A state pushed while one
 *   of them walks is fresh (its owner's event finds the profile not ON and leaves
 *   its engine alone), so seeing it or not changes nothing.
 *   keys, captures, failures, replaced: appended by any profiled thread inside its
 *   hooks (on_new_key, on_slow, cprof_ts_note_failures, the 3.10-3.11 replaced-hook
 *   notes); read by stats(), disable(), counter_failures(), hook_replaced().
 *   Python containers, each change one call (keys: PyDict_SetDefault, so an entry
 *   is never replaced; captures: append and size under the list's critical
 *   section).
 *   error: the sticky error, set once by a compare-and-swap from NULL (any thread),
 *   taken by disable() after stop(). */
struct ProfilerObject {
    PyObject_HEAD
    unsigned n;                 /* counters */
    struct cprof_counter_spec specs[CPROF_MAX_COUNTERS];
    char paths[CPROF_MAX_COUNTERS][CPROF_READ_PATH_LEN]; /* read path of each counter, from probe() */
    uint64_t generation;        /* unique per Profiler in the process, to recognise its
                                 * thread states in cprof_tls_owner */
    const PyMethodDef *tp_new_def; /* the module's tp_new_def, for c_key */
    struct tstate *threads;     /* every thread state it created */
    PyObject *keys;             /* dict: int key -> (code or callable, module name or None) */
    PyObject *error;            /* sticky error message (str) from a hook, or NULL (atomic) */
    int enabled;                /* CPROF_OFF, CPROF_ON or CPROF_BUSY (atomic, see above) */
    int tool_id;                /* sys.monitoring tool id in use, or -1 */
    int all_call_sites;         /* keep CALL events at sites that call Python functions */
    unsigned long outside_ident; /* enable(push_existing=False)'s thread, or 0 */
    int outside_depth;          /* its frames then (the enabling one and its callers): never
                                 * pushed when that thread's stack is rebuilt (3.10-3.11) */
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
    struct cprof_health health_said; /* the health disable() last warned about */
    /* asyncio mode (async.c): set by __init__ and enable(), read by the threads' events */
    int async_mode;             /* Profiler(async_mode=True) */
    unsigned async_waits;       /* bit c: counter c grows while a coroutine waits */
    PyObject *await_obj;        /* the str "[await]": its address is the [await] key */
    cprof_key await_key;
    PyObject *async_create_task; /* BaseEventLoop.create_task's code object, or NULL */
    PyObject *async_cancelled;  /* asyncio.CancelledError, or NULL */
    uint64_t async_t0, async_t1; /* monotonic ns at enable() and at the last stop */
    int consumed;               /* stats(consume=True) took the engines' call trees: no more
                                 * enable() or stats() */
};

enum { CPROF_OFF, CPROF_ON, CPROF_BUSY };

/* Atomic access to the fields shared between threads (GCC/Clang builtins on plain
 * fields).  A relaxed load or store is a plain move on x86-64 and arm64: the GIL
 * builds' hot path pays nothing for them. */
#define CPROF_LOAD(x) __atomic_load_n(&(x), __ATOMIC_RELAXED)
#define CPROF_STORE(x, v) __atomic_store_n(&(x), (v), __ATOMIC_RELAXED)

/* Does p count events now? */
static inline int cprof_on(const ProfilerObject *p)
{
    return CPROF_LOAD(p->enabled) == CPROF_ON;
}

/* Move p from state `from` to BUSY; 0, or -1 if it was not in `from`. */
static inline int cprof_claim(ProfilerObject *p, int from)
{
    return __atomic_compare_exchange_n(&p->enabled, &from, CPROF_BUSY, 0, __ATOMIC_SEQ_CST,
                                       __ATOMIC_SEQ_CST) ? 0 : -1;
}

static inline void cprof_release(ProfilerObject *p, int to)
{
    __atomic_store_n(&p->enabled, to, __ATOMIC_SEQ_CST);
}

/* The first of p's thread states (the list may grow at its head meanwhile). */
static inline struct tstate *cprof_threads(ProfilerObject *p)
{
    return __atomic_load_n(&p->threads, __ATOMIC_ACQUIRE);
}

/* The calling thread's state for the profile it last had an event in: the hot
 * path's one lookup.  Process-wide by nature: it belongs to the OS thread, which
 * may run code of several interpreters and module objects in turn.  Safe because
 * a generation is never reused in the process (a Profiler that dies leaves other
 * threads' pairs pointing at freed memory, under a generation no Profiler will
 * have again), and one profile at a time runs in the process (profiler.c), so a
 * thread's pair never goes back and forth between two profiles.
 * initial-exec TLS: a direct load on the hot path, no __tls_get_addr call. */
#define CPROF_TLS _Thread_local __attribute__((tls_model("initial-exec")))
struct cprof_tls {
    uint64_t owner;             /* generation owning ts */
    struct tstate *ts;          /* this thread's state for that profiler */
};
/* one variable: one address to find at each event, not two */
extern CPROF_TLS struct cprof_tls cprof_tls;
#define cprof_tls_owner (cprof_tls.owner)
#define cprof_tls_ts (cprof_tls.ts)

/* The Profiler's methods, never profiled (immutable: a static table). */
extern const PyMethodDef *const cprof_own_methods_begin, *const cprof_own_methods_end;

/* threads.c: per-thread state and the engine's callbacks */
struct tstate *cprof_ts_new(ProfilerObject *p);
void cprof_ts_free(ProfilerObject *p, struct tstate *ts);
/* Hand the thread's engine the profile's cost per event (p->comp), with the
 * wall-clock counters' share scaled by the thread's scheduling delay. */
void cprof_ts_compensate(ProfilerObject *p, struct tstate *ts);
void cprof_ts_note_failures(ProfilerObject *p, struct tstate *ts);
int cprof_ts_stack_depth(PyFrameObject *frame);
void cprof_ts_push_frames(ProfilerObject *p, struct tstate *ts, PyFrameObject *frame, int skip,
                          int outside, int counted);
void cprof_py_set_sticky(ProfilerObject *p, const char *msg);
PyObject *cprof_py_u64_list(const uint64_t *v, unsigned n);

/* profiler.c */
extern PyType_Spec cprof_profiler_spec;
/* The CprofError of a method that found p BUSY (another thread is in one). */
void cprof_py_busy_error(ProfilerObject *p, module_state *st);
/* spec.c: counters= of Profiler(), resolved into p->specs */
int cprof_py_parse_counters(ProfilerObject *p, PyObject *counters, module_state *st);
/* stats.c: Profiler.stats(identify=None) and its record types */
PyObject *cprof_py_profiler_stats(PyObject *self, PyObject *args, PyObject *kwds);
PyObject *cprof_py_pprof_samples(PyObject *module, PyObject *args);
PyObject *cprof_py_group_totals(PyObject *module, PyObject *args);
PyObject *cprof_py_first_bad_int(PyObject *module, PyObject *args);
PyObject *cprof_py_column_pack(PyObject *module, PyObject *args);
PyObject *cprof_py_column_unpack(PyObject *module, PyObject *args);
PyObject *cprof_py_function_sums(PyObject *module, PyObject *args);
PyObject *cprof_py_tree_stacks(PyObject *module, PyObject *args);
PyObject *cprof_py_collapsed_paths(PyObject *module, PyObject *args);
PyObject *cprof_py_collapsed_lines(PyObject *module, PyObject *args);
int cprof_stats_module_init(module_state *st);
int cprof_py_warn_health(ProfilerObject *p);

/* ---- the event path (inline: it runs at every call and return) ------------------- */

/* This thread's state for p, created at its first event. */
static inline struct tstate *get_ts(ProfilerObject *p)
{
    struct tstate *ts;

    if (cprof_tls_owner == p->generation) {
        ts = cprof_tls_ts;  /* this thread's own: only it writes `failed` at events */
        return ts->failed ? NULL : ts;
    }
    return cprof_ts_new(p);
}

/* An event's hand-over with stop() on a free-threaded build (see struct tstate):
 * raise busy, then look again; 0 if the profile stopped meanwhile (busy as it was).
 * ev_leave() ends what an ev_enter() returning 1 began.  Nothing without
 * Py_GIL_DISABLED: stop() runs with the GIL held there. */
static inline int ev_enter(ProfilerObject *p, struct tstate *ts)
{
#ifdef Py_GIL_DISABLED
    __atomic_store_n(&ts->busy, ts->busy + 1, __ATOMIC_SEQ_CST);
    if (__atomic_load_n(&p->enabled, __ATOMIC_SEQ_CST) != CPROF_ON) {
        __atomic_store_n(&ts->busy, ts->busy - 1, __ATOMIC_RELEASE);
        return 0;
    }
#else
    (void)p;
    (void)ts;
#endif
    return 1;
}

static inline void ev_leave(struct tstate *ts)
{
#ifdef Py_GIL_DISABLED
    __atomic_store_n(&ts->busy, ts->busy - 1, __ATOMIC_RELEASE);
#else
    (void)ts;
#endif
}

static inline void read_all(const struct tstate *ts, unsigned n, uint64_t *now)
{
    for (unsigned i = 0; i < n; i++)
        now[i] = ts->read[i](ts->cstate[i]);
}

typedef void (*engine_op)(struct cprof_thread *, cprof_key, const uint64_t *);
typedef void (*engine_read_op)(struct cprof_thread *, cprof_key);

/* ev() with a Python Counter among the counters: off the fast path, so that path
 * needs no stack frame of its own. */
static __attribute__((noinline, unused)) void ev_pycall(ProfilerObject *p, struct tstate *ts,
                                                engine_op op, cprof_key key)
{
    uint64_t now[CPROF_MAX_COUNTERS];
    PyObject *obj = ts->pending, *globals = ts->pending_globals;

    if (ts->failed)             /* ev() lets it through: its counters are not open */
        return;
    read_all(ts, p->n, now);
    if (cprof_pycounter_failed)
        cprof_ts_note_failures(p, ts);
    ts->pending = obj;          /* as it was: noting the failure may have run events */
    ts->pending_globals = globals;
    op(&ts->eng, key, now);
}

/* The event entry point shared by both hook mechanisms; `op` is cprof_thread_enter
 * or cprof_thread_exit, `rop` the same taking the reading in the engine
 * (cprof_thread_enter_read, _exit_read: constants at every call site, so this
 * inlines into two specialised copies).  The engine reads the counters itself
 * unless one is a Python Counter, whose failure is noted between reading and
 * attributing. */
static inline void ev(ProfilerObject *p, engine_op op, engine_read_op rop, cprof_key key,
                      PyObject *obj)
{
    struct tstate *ts;

    /* get_ts's, less its `failed` test: a failed thread's engine is muted (its *_read
     * events do nothing: cprof_ts_new), and ev_pycall looks itself; not get_ts with a
     * NULL test after it: 2 instructions more an event */
    if (__builtin_expect(cprof_tls_owner == p->generation, 1))
        ts = cprof_tls_ts;
    else if (!(ts = cprof_ts_new(p)))
        return;
    if (!ev_enter(p, ts))
        return;
    ts->pending = obj;
    /* No globals: the key's are its frame's, the current one's (on_new_key).
     * pending_globals stays NULL between events: cprof_ts_push_frames, its only
     * writer, puts NULL back, and no event runs inside it (it runs in enable()
     * before the profile is ON, or inside a 3.10-3.11 profile callback, where the
     * interpreter sends none).  A caller with other globals sets and resets the
     * field around its event itself. */
    if (__builtin_expect(p->has_pycall, 0))
        ev_pycall(p, ts, op, key);
    else
        rop(&ts->eng, key);
    ev_leave(ts);
}

/* The key of a C callable, or 0 if it is not one we report (a class, a Python
 * function, or one of cprof's own methods).  A method descriptor called with its
 * instance as first argument (list.sort) counts as that C function. */
static inline cprof_key c_key(const ProfilerObject *p, PyObject *callable, PyObject *self_arg)
{
    PyMethodDef *ml;
    PyTypeObject *tp = Py_TYPE(callable);

    /* The common kinds by their exact types first: PyCFunction_Check's subtype walk is a
     * call, which a method descriptor or a class (a third of black's C-call events) would
     * pay for nothing.  A class is never a C function (their layouts conflict). */
    if (tp == &PyMethodDescr_Type) {
        if (!self_arg || !PyObject_TypeCheck(self_arg, PyDescr_TYPE(callable)))
            return 0;
        ml = ((PyMethodDescrObject *)callable)->d_method;
    } else if (tp == &PyCFunction_Type || tp == &PyCMethod_Type ||
               (!PyType_FastSubclass(tp, Py_TPFLAGS_TYPE_SUBCLASS) && PyCFunction_Check(callable))) {
        ml = ((PyCFunctionObject *)callable)->m_ml;
        /* every type's __new__ shares one PyMethodDef: its type tells them apart (kept
         * alive, with the callable, by the key registry) */
        if (ml == p->tp_new_def && ((PyCFunctionObject *)callable)->m_self)
            return (cprof_key)(uintptr_t)((PyCFunctionObject *)callable)->m_self;
    } else
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
