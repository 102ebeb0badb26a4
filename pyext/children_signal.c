/* cprof._children: a signal that Python would miss is sent again.
 *
 * A followed child (cprof --follow-children) writes its profile from a Python-level
 * SIGTERM/SIGHUP handler, then ends by that signal.  Python runs such a handler only
 * when the main thread next checks for signals: a signal that arrives after that
 * check and before a blocking call (a multiprocessing Pool worker going back to its
 * queue's lock while Pool.terminate() sends SIGTERM) trips Python's flag but does not
 * interrupt the call, and the process waits forever; its parent waits for it.  Plain
 * Python with a SIGTERM handler in a pool's workers hangs so in a few percent of
 * terminations; with SIG_DFL it never does.
 *
 * guard(signum) puts this handler in front of Python's for `signum`: it calls
 * Python's (which trips the flag), then arms a one-shot timer that sends the same
 * signal to the main thread 20 ms later; handled(signum), called first thing by the
 * Python-level handler, disarms it.  So a signal whose Python handler has not run
 * 20 ms later comes again, interrupting whatever the main thread waits in, until it
 * runs.  Timers are not inherited by fork: guard() makes them for the calling
 * process, and the handler arms only timers made by its own process.
 *
 * Linux only (SIGEV_THREAD_ID); elsewhere guard() is a no-op returning False. */
#define PY_SSIZE_T_CLEAN
#include <Python.h> /* first, as CPython asks; its pyconfig.h defines _GNU_SOURCE (SIGEV_THREAD_ID) */

#include <errno.h>
#include <signal.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#if defined(__linux__)
#include <sys/syscall.h>

#define RESEND_NS 20000000L     /* how long Python gets to run its handler */
#define GUARDED_MAX 4           /* signals guarded at once: SIGTERM, SIGHUP */

struct guard {
    int signum;                 /* 0: a free slot */
    struct sigaction python;    /* the handler it replaced (Python's) */
    timer_t timer;              /* sends signum to the main thread again */
    pid_t owner;                /* the process that made the timer */
    volatile sig_atomic_t armed;
};

static struct guard guards[GUARDED_MAX];

static struct guard *find(int signum)
{
    for (int i = 0; i < GUARDED_MAX; i++)
        if (guards[i].signum == signum)
            return &guards[i];
    return NULL;
}

static void on_signal(int signum, siginfo_t *info, void *context)
{
    int saved = errno;
    struct guard *g = find((int)signum);

    if (!g) {
        errno = saved;
        return;
    }
    if (g->python.sa_flags & SA_SIGINFO) {
        if (g->python.sa_sigaction)
            g->python.sa_sigaction(signum, info, context);
    } else if (g->python.sa_handler != SIG_DFL && g->python.sa_handler != SIG_IGN) {
        g->python.sa_handler(signum);
    }
    if (g->owner == getpid()) {  /* not a fork's copy: its timer is not this process's */
        struct itimerspec when = {.it_value = {.tv_sec = 0, .tv_nsec = RESEND_NS}};
        g->armed = 1;
        timer_settime(g->timer, 0, &when, NULL);  /* async-signal-safe */
    }
    errno = saved;
}

static PyObject *guard(PyObject *self, PyObject *arg)
{
    (void)self;
    long signum = PyLong_AsLong(arg);
    if (signum == -1 && PyErr_Occurred())
        return NULL;
    if (signum <= 0 || signum >= NSIG) {
        PyErr_Format(PyExc_ValueError, "signal number %ld out of range", signum);
        return NULL;
    }
    int sig = (int)signum;
    struct guard *g = find(sig);
    if (!g)
        g = find(0);
    if (!g)
        Py_RETURN_FALSE;
    struct sigaction current, ours;
    if (sigaction(sig, NULL, &current) < 0)
        return PyErr_SetFromErrno(PyExc_OSError);
    if (current.sa_flags & SA_SIGINFO && current.sa_sigaction == on_signal) {
        /* ours already (a fork of a guarded process): keep Python's, new timer */
    } else {
        g->python = current;
    }
    if (g->signum != sig || g->owner != getpid()) {  /* a timer of this process's own */
        struct sigevent ev;
        timer_t timer;
        memset(&ev, 0, sizeof ev);
        ev.sigev_notify = SIGEV_THREAD_ID;
        ev.sigev_signo = sig;
        ev._sigev_un._tid = (pid_t)syscall(SYS_gettid);  /* the main thread: Python's handlers run there */
        if (timer_create(CLOCK_MONOTONIC, &ev, &timer) < 0)
            return PyErr_SetFromErrno(PyExc_OSError);
        g->timer = timer;
        g->owner = getpid();
        g->armed = 0;
        g->signum = sig;
    }
    memset(&ours, 0, sizeof ours);
    ours.sa_sigaction = on_signal;
    ours.sa_flags = SA_SIGINFO | SA_ONSTACK;
    sigemptyset(&ours.sa_mask);
    if (sigaction(sig, &ours, NULL) < 0)
        return PyErr_SetFromErrno(PyExc_OSError);
    Py_RETURN_TRUE;
}

static PyObject *handled(PyObject *self, PyObject *arg)
{
    (void)self;
    long signum = PyLong_AsLong(arg);
    if (signum == -1 && PyErr_Occurred())
        return NULL;
    struct guard *g = find((int)signum);
    if (g && g->owner == getpid() && g->armed) {
        struct itimerspec off = {{0, 0}, {0, 0}};
        g->armed = 0;
        timer_settime(g->timer, 0, &off, NULL);
    }
    Py_RETURN_NONE;
}

#else

static PyObject *guard(PyObject *self, PyObject *arg)
{
    (void)self;
    (void)arg;
    Py_RETURN_FALSE;
}

static PyObject *handled(PyObject *self, PyObject *arg)
{
    (void)self;
    (void)arg;
    Py_RETURN_NONE;
}

#endif

static PyMethodDef methods[] = {
    {"guard", guard, METH_O, "guard(signum): send signum again while its Python handler has not run"},
    {"handled", handled, METH_O, "handled(signum): its Python handler runs: no more sending"},
    {NULL, NULL, 0, NULL},
};

static PyModuleDef_Slot slots[] = {
#ifdef Py_mod_multiple_interpreters
    {Py_mod_multiple_interpreters, Py_MOD_MULTIPLE_INTERPRETERS_NOT_SUPPORTED},
#endif
#ifdef Py_GIL_DISABLED
    {Py_mod_gil, Py_MOD_GIL_NOT_USED},
#endif
    {0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_children", "cprof --follow-children: signals Python would miss, sent again",
    0, methods, slots, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__children(void)
{
    return PyModuleDef_Init(&module);
}
