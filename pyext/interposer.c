/* The CLI's question before it runs a program with a malloc-* counter: is the
 * interposer (libcprof_malloc.so, preload/) loaded in this process?  If not, the
 * CLI restarts the program with it preloaded.  The malloc counters' own probe
 * (counters/malloc.c) knows the answer; this asks it. */
#define PY_SSIZE_T_CLEAN
#include "interposer.h"

#include <string.h>

#include "../counters/counters.h"

PyObject *cprof_py_malloc_interposer(PyObject *module, PyObject *args)
{
    const char *name = "malloc-bytes";
    const struct cprof_counter_def *def;
    struct cprof_error err = {0, ""};
    char path[CPROF_READ_PATH_LEN];

    (void)module;
    if (!PyArg_ParseTuple(args, "|s:malloc_interposer", &name))
        return NULL;
    def = cprof_registry_find(cprof_builtin_counters, name, strlen(name));
    if (!def || !(def->flags & CPROF_COUNTER_NEEDS_PRELOAD)) {
        PyErr_Format(PyExc_ValueError, "'%s' is not one of the malloc counters", name);
        return NULL;
    }
    if (def->probe("", NULL, path, sizeof(path), &err) == 0)
        Py_RETURN_NONE;
    return Py_BuildValue("(is)", err.code, err.msg);
}
