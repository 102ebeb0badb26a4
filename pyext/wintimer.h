/* Profiling windows' switching in the main thread (wintimer.c; cprof.windows). */
#ifndef CPROF_WINTIMER_H
#define CPROF_WINTIMER_H

#include <Python.h>

PyObject *cprof_py_window_timer(PyObject *module, PyObject *args);
PyObject *cprof_py_window_timer_arm(PyObject *module, PyObject *args);
PyObject *cprof_py_window_timer_delete(PyObject *module, PyObject *arg);
PyObject *cprof_py_run_steps(PyObject *module, PyObject *const *args, Py_ssize_t nargs);

#endif
