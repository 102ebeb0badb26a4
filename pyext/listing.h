/* --list-counters (listing.c): rows of dicts for the CLI. */
#ifndef CPROF_LISTING_H
#define CPROF_LISTING_H

#include <Python.h>

/* The counters cprof knows, probed here; with pmu, libpfm4's PMU events.  A
 * problem the user can fix is raised as `error` with one sentence. */
PyObject *cprof_py_list_counters(PyObject *error, int pmu);

/* builtin_counters() -> a tuple of dicts, one per counter known by name (the
 * registry's, then pymalloc's), in --list-counters order, without probing: name,
 * unit, description, compensable, time, elapsed, takes_argument, needs_preload. */
PyObject *cprof_py_builtin_counters(PyObject *module, PyObject *unused);

/* 1 if this cprof was built with libpfm4. */
int cprof_py_have_libpfm(void);

#endif
