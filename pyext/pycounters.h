/* Counters defined from Python: Counter (a callable read at every event) and
 * UserCounter (a thread-local total raised by add()).  See pycounters.c. */
#ifndef CPROF_PYCOUNTERS_H
#define CPROF_PYCOUNTERS_H

#include <Python.h>

#include "../core/registry.h"

/* Set in a thread when one of its Counters stopped on a bad reading. */
extern _Thread_local int cprof_pycounter_failed;

/* Create the Counter and UserCounter types and add them to the module. */
int cprof_pycounters_init(PyObject *m, PyTypeObject **counter_type, PyTypeObject **user_type);

/* Is ml one of these types' methods (UserCounter.add)?  The hook does not make
 * them entries of their own: what add() counts belongs to its caller.  Inline: c_key
 * asks at every C call event (a call of its own cost 6M instructions of black's). */
extern const PyMethodDef *const cprof_pycounters_methods_begin, *const cprof_pycounters_methods_end;
static inline int cprof_pycounters_own_method(const PyMethodDef *ml)
{
    return ml >= cprof_pycounters_methods_begin && ml < cprof_pycounters_methods_end;
}

/* Is `o` a Counter or a UserCounter? */
int cprof_pycounter_is(PyObject *o, PyTypeObject *counter_type, PyTypeObject *user_type);

/* Describe the counter object as a spec: its own descriptor, named and unitised
 * by it, the object as the context pointer.  The caller keeps it alive.  A Counter's
 * descriptor has take_failure: it may stop on a bad reading. */
void cprof_pycounter_spec(PyObject *obj, struct cprof_counter_spec *spec);

#endif
