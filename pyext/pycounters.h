/* Counters defined from Python: Counter (a callable read at every event) and
 * UserCounter (a thread-local total raised by add()).  See pycounters.c. */
#ifndef CPROF_PYCOUNTERS_H
#define CPROF_PYCOUNTERS_H

#include <Python.h>

#include "../core/registry.h"

/* Set in a thread when one of its Counters stopped on a bad reading. */
extern _Thread_local int cprof_pycounter_failed;

/* The descriptors behind them (copied into each spec, named by the object). */
extern const struct cprof_counter_def cprof_pycounter_call, cprof_pycounter_user;

/* Create the Counter and UserCounter types and add them to the module. */
int cprof_pycounters_init(PyObject *m, PyTypeObject **counter_type, PyTypeObject **user_type);

/* Is ml one of these types' methods (UserCounter.add)?  The hook does not make
 * them entries of their own: what add() counts belongs to its caller. */
int cprof_pycounters_own_method(const PyMethodDef *ml);

/* Is `o` a Counter or a UserCounter? */
int cprof_pycounter_is(PyObject *o, PyTypeObject *counter_type, PyTypeObject *user_type);

/* Describe the counter object as a spec (its own descriptor, named and unitised
 * by the object, which the caller must keep alive).  0, or -1 with an exception. */
int cprof_pycounter_spec(PyObject *obj, struct cprof_counter_spec *spec);

/* If `state` (of descriptor `def`) is a Counter that stopped since the last call,
 * copy why into reason and return 1; else 0. */
int cprof_pycounter_take_failure(const struct cprof_counter_def *def, void *state, char *reason,
                                 size_t len);

#endif
