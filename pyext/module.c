/* The module cprof._cprof: its state, types and functions.  The rest of the
 * extension: profiler.c (the Profiler type), threads.c (per-thread state),
 * hooks_monitoring.c / hooks_setprofile.c (the event hooks, one per Python
 * version range, behind hooks.h), spec.c, stats.c, pycounters.c (Counter,
 * UserCounter), pymalloc.c (the pymalloc counters), counter_list.c (the counter
 * names offered), interposer.c (is the malloc interposer loaded?), listing.c
 * (list_counters). */
#include "profiler.h"
#include "trace.h"
#include "wintimer.h"

#include "../counters/clock.h"
#include "hooks.h"
#include "interposer.h"
#include "listing.h"

/* ---- module ------------------------------------------------------------------------ */

static PyObject *list_counters(PyObject *module, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"pmu", NULL};
    int pmu = 0;

    if (!PyArg_ParseTupleAndKeywords(args, kwds, "|p:list_counters", kwlist, &pmu))
        return NULL;
    return cprof_py_list_counters(((module_state *)PyModule_GetState(module))->error, pmu);
}

static PyObject *build_info(PyObject *module, PyObject *unused)
{
    (void)module;
    (void)unused;
    return Py_BuildValue("{s:O,s:z}", "libpfm", cprof_py_have_libpfm() ? Py_True : Py_False,
                         "libpfm_why", cprof_py_libpfm_why());
}

/* The cheap clock's TSC ratio across processes (cprof.calibration keeps it per machine
 * and boot): clock_seed() before the first Profiler, clock_ratio() after. */
static PyObject *clock_seed(PyObject *module, PyObject *arg)
{
    unsigned long long mult = PyLong_AsUnsignedLongLong(arg);

    (void)module;
    if (PyErr_Occurred())
        return NULL;
    cprof_clock_seed(mult);
    Py_RETURN_NONE;
}

static PyObject *clock_ratio(PyObject *module, PyObject *unused)
{
    int seeded = 0;
    uint64_t mult;

    (void)module;
    (void)unused;
    mult = cprof_clock_mult(&seeded);
    return Py_BuildValue("(KO)", (unsigned long long)mult, seeded ? Py_True : Py_False);
}

static PyMethodDef module_methods[] = {
    {"list_counters", (PyCFunction)(void (*)(void))list_counters, METH_VARARGS | METH_KEYWORDS,
     "list_counters(pmu=False)\n--\n\nEvery counter cprof knows, whether it works here, and how "
     "it is read; with pmu=True, the events of the PMUs libpfm4 detects."},
    {"builtin_counters", cprof_py_builtin_counters, METH_NOARGS,
     "builtin_counters()\n--\n\nThe counters known by name, as the registry describes them (no "
     "probing): dicts of name, unit, description, compensable, time, elapsed, takes_argument, "
     "needs_preload."},
    {"malloc_interposer", cprof_py_malloc_interposer, METH_VARARGS,
     "malloc_interposer(name='malloc-bytes')\n--\n\nNone if that malloc counter works in this "
     "process (libcprof_malloc.so preloaded), else (errno, sentence saying how to start it)."},
    {"group_totals", cprof_py_group_totals, METH_VARARGS,
     "group_totals(parent, function, calls, groups, ngroups, totals)\n--\n\nThe report's "
     "folded rows' calls and totals from the call tree (stats.c; cprof.focus)."},
    {"pprof_samples", cprof_py_pprof_samples, METH_VARARGS,
     "pprof_samples(parent, function, selfs)\n--\n\nThe call tree's pprof Sample messages "
     "(stats.c; cprof.exporters.pprof)."},
    {"first_bad_int", cprof_py_first_bad_int, METH_VARARGS,
     "first_bad_int(list, lo, hi, below_index=False)\n--\n\nThe profile file's column check "
     "(stats.c; cprof.schema): the first bad entry's index, or -1."},
    {"column_pack", cprof_py_column_pack, METH_VARARGS,
     "column_pack(column, kind)\n--\n\nA call-tree column as the profile file's version 3 "
     "holds it: base64 of LEB128 varints (stats.c; cprof.profile_file)."},
    {"column_unpack", cprof_py_column_unpack, METH_VARARGS,
     "column_unpack(text, n, kind, hi)\n--\n\nA packed column's n int64 values as bytes, "
     "checked; a ValueError of one sentence if damaged (stats.c; cprof.schema)."},
    {"function_sums", cprof_py_function_sums, METH_VARARGS,
     "function_sums(function, column, nfn)\n--\n\nPer function, the sum of a tree column over "
     "its nodes (stats.c; cprof.focus, cprof.exporters)."},
    {"tree_stacks", cprof_py_tree_stacks, METH_VARARGS,
     "tree_stacks(parent, function, selfs, mode)\n--\n\nThe tree's call paths as JSON text: "
     "speedscope's samples and weights (mode 0), gprof2dot's events (1) (stats.c)."},
    {"collapsed_paths", cprof_py_collapsed_paths, METH_VARARGS,
     "collapsed_paths(parent, function, self, name_of)\n--\n\nFolded stacks' distinct printed "
     "paths, interned: (up, leaf, total) as int64 bytes (stats.c; cprof.exporters.collapsed)."},
    {"collapsed_lines", cprof_py_collapsed_lines, METH_VARARGS,
     "collapsed_lines(up, leaf, total, names, start, size)\n--\n\nFolded stacks' lines from "
     "path `start`, about `size` bytes: (bytes, next start or -1) (stats.c)."},
    {"build_info", build_info, METH_NOARGS,
     "build_info()\n--\n\nWhat this cprof can use here: {'libpfm': bool (libpfm4 found and "
     "started, at run time), 'libpfm_why': None or why not}."},
    {"clock_seed", clock_seed, METH_O,
     "clock_seed(mult)\n--\n\nBefore the first Profiler: the TSC ratio (ns per tick, 32.32 fixed "
     "point) an earlier process measured on this machine since its boot; the clock then "
     "confirms it in 0.2 ms instead of measuring for 2 ms.  0: none."},
    {"clock_ratio", clock_ratio, METH_NOARGS,
     "clock_ratio()\n--\n\n(mult, seeded): the cheap clock's TSC ratio (0 without rdtsc, or "
     "before a counter started the clock), and whether it is the confirmed seed."},
    {"trace_set", cprof_py_trace_set, METH_VARARGS,
     "trace_set(profiler, classify)\n--\n\nBefore enable(): profile only the code objects "
     "classify(module, file) takes (--trace; trace.c); trace_set(None, None) after disable()."},
    {"window_timer", cprof_py_window_timer, METH_VARARGS,
     "window_timer(signo)\n--\n\nA POSIX timer that sends signo to the calling thread when armed "
     "and due (wintimer.c; cprof.windows)."},
    {"window_timer_arm", cprof_py_window_timer_arm, METH_VARARGS,
     "window_timer_arm(timer, seconds)\n--\n\nArm the timer once, due in `seconds` (0: disarm)."},
    {"window_timer_delete", cprof_py_window_timer_delete, METH_O,
     "window_timer_delete(timer)\n--\n\nDelete a window_timer."},
    {"run_steps", (PyCFunction)(void (*)(void))cprof_py_run_steps, METH_FASTCALL,
     "run_steps(steps, results, avoid, retry, *handler_args)\n--\n\nCall each of `steps` from C, "
     "appending its result or Exception to `results`: a signal handler that switches profiling "
     "windows with no frame of its own (wintimer.c)."},
    {"trace_stats", cprof_py_trace_stats, METH_NOARGS,
     "trace_stats()\n--\n\nThe tracing profile's boundaries not pushed and restarts (trace.c)."},
    {NULL, NULL, 0, NULL},
};

static int module_exec(PyObject *m)
{
    module_state *st = PyModule_GetState(m);

    PyObject *new_fn = PyObject_GetAttrString((PyObject *)&PyBaseObject_Type, "__new__");
    if (!new_fn)
        return -1;
    if (PyCFunction_Check(new_fn))
        st->tp_new_def = ((PyCFunctionObject *)new_fn)->m_ml;
    Py_DECREF(new_fn);
    st->error = PyErr_NewExceptionWithDoc(
        "cprof._cprof.CprofError",
        "A problem the user can fix: the message is one sentence naming it and the fix.",
        PyExc_Exception, NULL);
    if (!st->error)
        return -1;
    Py_INCREF(st->error);
    if (PyModule_AddObject(m, "CprofError", st->error) < 0) {
        Py_DECREF(st->error);
        return -1;
    }
    st->profiler_type = (PyTypeObject *)PyType_FromModuleAndSpec(m, &cprof_profiler_spec, NULL);
    if (!st->profiler_type || PyModule_AddType(m, st->profiler_type) < 0)
        return -1;
    if (cprof_hooks_module_init(m, st) < 0)
        return -1;
    if (cprof_pycounters_init(m, &st->counter_type, &st->user_counter_type) < 0)
        return -1;
    if (cprof_stats_module_init(st) < 0)
        return -1;
    if (PyModule_AddIntConstant(m, "MAX_COUNTERS", CPROF_MAX_COUNTERS) < 0 ||
        PyModule_AddIntConstant(m, "MAX_SLOW_CALLS", CPROF_MAX_SLOW) < 0)
        return -1;
    if (PyModule_AddStringConstant(m, "HOOK", CPROF_MONITORING ? "sys.monitoring"
                                                               : "PyEval_SetProfile") < 0)
        return -1;
    return 0;
}

static int module_traverse(PyObject *m, visitproc visit, void *arg)
{
    module_state *st = PyModule_GetState(m);

    Py_VISIT(st->error);
    Py_VISIT(st->profiler_type);
    Py_VISIT(st->hook_type);
    Py_VISIT(st->counter_type);
    Py_VISIT(st->user_counter_type);
    for (int i = 0; i < CPROF_STATS_NTYPES; i++)
        Py_VISIT(st->stats_types[i]);
    return 0;
}

static int module_clear(PyObject *m)
{
    module_state *st = PyModule_GetState(m);

    Py_CLEAR(st->error);
    Py_CLEAR(st->profiler_type);
    Py_CLEAR(st->hook_type);
    Py_CLEAR(st->counter_type);
    Py_CLEAR(st->user_counter_type);
    for (int i = 0; i < CPROF_STATS_NTYPES; i++)
        Py_CLEAR(st->stats_types[i]);
    return 0;
}

static void module_free(void *m)
{
    module_clear((PyObject *)m);
}

static PyModuleDef_Slot module_slots[] = {
    {Py_mod_exec, (void *)module_exec},
#if PY_VERSION_HEX >= 0x030C0000
    /* Not in sub-interpreters: the profile hooks, the pymalloc hooks and the
     * thread-local state are one per process (profiler.h, "Where state lives"), so
     * a second interpreter, with its own GIL or not, would share them unguarded.
     * Importing fails there with ImportError (in every sub-interpreter that checks
     * its extensions, as isolated ones do). */
    {Py_mod_multiple_interpreters, Py_MOD_MULTIPLE_INTERPRETERS_NOT_SUPPORTED},
#endif
#ifdef Py_GIL_DISABLED
    /* Safe without the GIL: profiler.h says what each shared field relies on
     * instead (atomics, the profile's claimed state, critical sections, waiting
     * for other threads' events only at disable()). */
    {Py_mod_gil, Py_MOD_GIL_NOT_USED},
#endif
    {0, NULL},
};

static struct PyModuleDef cprof_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "cprof._cprof",
    .m_doc = "cprof's C extension: the hook and the bridge to the engine.",
    .m_size = sizeof(module_state),
    .m_methods = module_methods,
    .m_slots = module_slots,
    .m_traverse = module_traverse,
    .m_clear = module_clear,
    .m_free = module_free,
};

PyMODINIT_FUNC PyInit__cprof(void)
{
    return PyModuleDef_Init(&cprof_module);
}

