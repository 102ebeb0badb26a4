/* The event hooks, one implementation per Python version range:
 * hooks_monitoring.c (3.12+, sys.monitoring) or hooks_setprofile.c (3.10-3.11,
 * PyEval_SetProfile); meson compiles the one that matches the Python. */
#ifndef CPROF_HOOKS_H
#define CPROF_HOOKS_H

#include "profiler.h"

/* Put cprof's hooks in place for p (every thread); -1 with an exception set. */
int cprof_hooks_install(ProfilerObject *p, module_state *st);
/* Take them off; never raises (problems become p's sticky error). */
void cprof_hooks_remove(ProfilerObject *p);
/* Whether the calling thread's events still reach p (the program may have
 * replaced its hook before 3.12; always true on 3.12+). */
int cprof_hooks_held(ProfilerObject *p);
/* The module's hook types, in st (3.12+; nothing before). */
int cprof_hooks_module_init(PyObject *m, module_state *st);
#if !CPROF_MONITORING
/* Profiler.__call__: the program put cprof's hook back with sys.setprofile. */
PyObject *cprof_hooks_profiler_call(PyObject *self, PyObject *args, PyObject *kwds);
#endif

#endif
