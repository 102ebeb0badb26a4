/* --trace=PATTERN: profile only the code the pattern names (trace.c).
 *
 * The hooks of a tracing profile call these instead of ev() directly; a profile
 * without a pattern never reaches this file (its hooks are the plain ones, picked
 * at install: hooks_monitoring.c's hook table, or one test at the top of
 * hooks_setprofile.c's profile_func). */
#ifndef CPROF_TRACE_H
#define CPROF_TRACE_H

#include "profiler.h"

/* The generation of the profile that traces with a pattern, or 0 (relaxed atomic:
 * set by _cprof.trace_set() with the profile off). */
extern uint64_t cprof_trace_generation;

static inline int cprof_trace_on(const ProfilerObject *p)
{
    return CPROF_LOAD(cprof_trace_generation) == p->generation;
}

#if CPROF_MONITORING
/* PY_START/PY_RESUME (can_disable) and PY_THROW: NULL, or a new reference to
 * sys.monitoring.DISABLE for the caller to return. */
PyObject *cprof_trace_enter(ProfilerObject *p, PyObject *code, int can_disable);
/* PY_RETURN/PY_YIELD (can_disable) and PY_UNWIND. */
PyObject *cprof_trace_exit(ProfilerObject *p, PyObject *code, int can_disable);
/* CALL at a site of `code`: callable and its first argument. */
PyObject *cprof_trace_call(ProfilerObject *p, PyObject *code, PyObject *callable, PyObject *arg0);
/* C_RETURN/C_RAISE. */
void cprof_trace_c_exit(ProfilerObject *p, PyObject *code, PyObject *callable, PyObject *arg0);
#else
/* The whole PyEval_SetProfile event. */
void cprof_trace_setprofile(ProfilerObject *p, PyFrameObject *frame, int what, PyObject *arg);
#endif

/* _cprof.trace_set(profiler, classify) / trace_set(None): see trace.c. */
PyObject *cprof_py_trace_set(PyObject *module, PyObject *args);
/* _cprof.trace_stats(): the boundaries not pushed, for the profile's meta. */
PyObject *cprof_py_trace_stats(PyObject *module, PyObject *args);

#endif
