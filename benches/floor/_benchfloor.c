/* The floor of sys.monitoring: a C callback that does nothing.
 *
 * noop() is a METH_FASTCALL builtin, so sys.monitoring calls it through vectorcall with
 * no tuple built, exactly as it calls cprof's hooks; it ignores its arguments and returns
 * None.  Whatever a profiler costs above a run with noop registered for the same events
 * is the profiler's own work. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

static PyObject *noop(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    (void)self;
    (void)args;
    (void)nargs;
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"noop", (PyCFunction)(void (*)(void))noop, METH_FASTCALL, "Accept any positional arguments, do nothing."},
    {NULL, NULL, 0, NULL},
};

static PyModuleDef_Slot slots[] = {
#ifdef Py_GIL_DISABLED
    {Py_mod_gil, Py_MOD_GIL_NOT_USED}, /* no state at all: importing it must not turn the GIL back on */
#endif
    {0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_benchfloor", "An empty sys.monitoring callback (benches/).", 0, methods,
    slots, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__benchfloor(void)
{
    return PyModuleDef_Init(&module);
}
