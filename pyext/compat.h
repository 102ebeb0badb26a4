/* What pyext/ needs across CPython 3.10-3.15, in one place. */
#ifndef CPROF_COMPAT_H
#define CPROF_COMPAT_H

#include <Python.h>

/* Save and restore the pending exception around Python work inside a hook. */
#if PY_VERSION_HEX >= 0x030C0000
#define SAVE_EXC(s) PyObject *s = PyErr_GetRaisedException()
#define RESTORE_EXC(s) PyErr_SetRaisedException(s)
#else
#define SAVE_EXC(s)                                                                              \
    PyObject *s##_t, *s##_v, *s##_tb;                                                            \
    PyErr_Fetch(&s##_t, &s##_v, &s##_tb)
#define RESTORE_EXC(s) PyErr_Restore(s##_t, s##_v, s##_tb)
#endif

#endif
