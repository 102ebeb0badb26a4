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

/* Free-threading helpers (3.13+), no-ops or their GIL-held equivalents before. */
#if PY_VERSION_HEX < 0x030D0000
#define Py_BEGIN_CRITICAL_SECTION(op) {
#define Py_END_CRITICAL_SECTION() }
#endif

/* dict[key] as a new reference in *out (NULL if missing): 0, or -1 with an exception. */
static inline int cprof_dict_get_str_ref(PyObject *d, const char *key, PyObject **out)
{
#if PY_VERSION_HEX >= 0x030D0000
    return PyDict_GetItemStringRef(d, key, out) < 0 ? -1 : 0;
#else
    *out = Py_XNewRef(PyDict_GetItemString(d, key));   /* under the GIL */
    return 0;
#endif
}

/* The current frame's globals, a new reference (or NULL, no exception). */
static inline PyObject *cprof_frame_globals(void)
{
#if PY_VERSION_HEX >= 0x030D0000
    PyObject *g = PyEval_GetFrameGlobals();
    if (!g)
        PyErr_Clear();
    return g;
#else
    return Py_XNewRef(PyEval_GetGlobals());
#endif
}

#endif
