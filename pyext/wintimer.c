/* Profiling windows (cprof.windows) open and close in the main thread, inside a signal
 * handler: a thread of cprof's own would have to win the GIL from the program's main
 * thread at every switch, and a main thread that releases it often (many short system
 * calls: an event loop, a polling loop) wins nearly every race for it, so such a thread
 * could wait seconds, and in CI's runs 30 s, for each step.  Python runs signal
 * handlers in the main thread between two bytecodes, and a signal interrupts a
 * blocking system call there, so a handler runs promptly whatever the program does.
 *
 * - window_timer(signo): a POSIX timer on CLOCK_MONOTONIC that sends signo to the
 *   calling thread (the main thread: SIGEV_THREAD_ID) when armed and due;
 *   window_timer_arm(t, seconds) arms it once (0: disarms; [seconds], a list of one
 *   number, is read at the call: a step of run_steps can set it for a later one);
 *   window_timer_delete(t).
 * - run_steps(steps, results, avoid, retry, *handler_args): the handler.  Calls each
 *   callable of the list `steps` (a copy taken at the start: a step may set the list
 *   for the next signal) with no arguments, from C, and appends each result, or the
 *   Exception a step raised, to `results`.  Calls from C are no events, so enabling or
 *   disabling a profile this way leaves no frame of cprof's in it; a Python step placed
 *   between a disable and the next enable runs while no window is open.  If `avoid` is
 *   a code object found among the interrupted frames (cprof's slow-call capture, which
 *   runs inside a hook), nothing runs and `retry()` is called instead (it re-arms the
 *   timer: the switch comes 10 ms later, out of the hook). */
#include <Python.h>
#include <frameobject.h>

#include <errno.h>
#include <signal.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "wintimer.h"

#ifndef sigev_notify_thread_id
#define sigev_notify_thread_id _sigev_un._tid
#endif

static int timer_of(PyObject *obj, timer_t *t)
{
    void *p = PyLong_AsVoidPtr(obj);

    if (!p && PyErr_Occurred())
        return -1;
    *t = (timer_t)p;
    return 0;
}

PyObject *cprof_py_window_timer(PyObject *module, PyObject *args)
{
    struct sigevent ev;
    timer_t t;
    int signo;

    (void)module;
    if (!PyArg_ParseTuple(args, "i", &signo))
        return NULL;
    memset(&ev, 0, sizeof(ev));
    ev.sigev_notify = SIGEV_THREAD_ID;
    ev.sigev_signo = signo;
    ev.sigev_notify_thread_id = (pid_t)syscall(SYS_gettid);
    if (timer_create(CLOCK_MONOTONIC, &ev, &t) != 0)
        return PyErr_SetFromErrno(PyExc_OSError);
    return PyLong_FromVoidPtr((void *)t);
}

PyObject *cprof_py_window_timer_arm(PyObject *module, PyObject *args)
{
    struct itimerspec when;
    PyObject *obj, *due;
    double seconds;
    timer_t t;

    (void)module;
    if (!PyArg_ParseTuple(args, "OO", &obj, &due) || timer_of(obj, &t) < 0)
        return NULL;
    if (PyList_Check(due)) {    /* [seconds]: read now (set by an earlier step) */
        if (PyList_GET_SIZE(due) != 1) {
            PyErr_SetString(PyExc_ValueError, "window_timer_arm: a list of one number");
            return NULL;
        }
        due = PyList_GET_ITEM(due, 0);
    }
    seconds = PyFloat_AsDouble(due);
    if (seconds == -1.0 && PyErr_Occurred())
        return NULL;
    memset(&when, 0, sizeof(when));
    if (seconds > 0) {
        if (seconds > 1e9)
            seconds = 1e9;
        when.it_value.tv_sec = (time_t)seconds;
        when.it_value.tv_nsec = (long)((seconds - (double)when.it_value.tv_sec) * 1e9);
        if (when.it_value.tv_sec == 0 && when.it_value.tv_nsec == 0)
            when.it_value.tv_nsec = 1;      /* due now, not disarmed */
    }
    if (timer_settime(t, 0, &when, NULL) != 0)
        return PyErr_SetFromErrno(PyExc_OSError);
    Py_RETURN_NONE;
}

PyObject *cprof_py_window_timer_delete(PyObject *module, PyObject *arg)
{
    timer_t t;

    (void)module;
    if (timer_of(arg, &t) < 0)
        return NULL;
    if (timer_delete(t) != 0)
        return PyErr_SetFromErrno(PyExc_OSError);
    Py_RETURN_NONE;
}

/* Whether `code` runs in the frame or one of its callers. */
static int runs_in(PyObject *frame, PyObject *code)
{
    PyFrameObject *f = (PyFrameObject *)Py_NewRef(frame);

    while (f) {
        PyCodeObject *co = PyFrame_GetCode(f);
        PyFrameObject *back = PyFrame_GetBack(f);
        int hit = (PyObject *)co == code;

        Py_DECREF(co);
        Py_DECREF(f);
        f = back;
        if (hit) {
            Py_XDECREF(f);
            return 1;
        }
    }
    return 0;
}

/* The exception being raised, taken (the error indicator cleared), or NULL when it is
 * no Exception (KeyboardInterrupt, SystemExit: left raised, to pass through). */
static PyObject *take_exception(void)
{
    PyObject *type, *value, *tb;

    if (!PyErr_ExceptionMatches(PyExc_Exception))
        return NULL;
    PyErr_Fetch(&type, &value, &tb);
    PyErr_NormalizeException(&type, &value, &tb);
    if (tb && value)
        PyException_SetTraceback(value, tb);
    Py_XDECREF(type);
    Py_XDECREF(tb);
    return value ? value : Py_NewRef(Py_None);
}

PyObject *cprof_py_run_steps(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    PyObject *steps, *results, *avoid, *retry;

    (void)module;
    if (nargs < 4 || !PyList_Check(args[0]) || !PyList_Check(args[1])) {
        PyErr_SetString(PyExc_TypeError, "run_steps(steps, results, avoid, retry, *handler_args): "
                                         "steps and results are lists");
        return NULL;
    }
    results = args[1];
    avoid = args[2];
    retry = args[3];
    if (avoid != Py_None && nargs >= 6 && PyFrame_Check(args[5]) && runs_in(args[5], avoid)) {
        PyObject *r = PyObject_CallNoArgs(retry);
        if (!r)
            return NULL;
        Py_DECREF(r);
        Py_RETURN_NONE;
    }
    steps = PyList_AsTuple(args[0]);
    if (!steps)
        return NULL;
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(steps); i++) {
        PyObject *r = PyObject_CallNoArgs(PyTuple_GET_ITEM(steps, i));

        if (!r && !(r = take_exception())) {
            Py_DECREF(steps);
            return NULL;
        }
        int failed = PyList_Append(results, r);
        Py_DECREF(r);
        if (failed) {
            Py_DECREF(steps);
            return NULL;
        }
    }
    Py_DECREF(steps);
    Py_RETURN_NONE;
}
