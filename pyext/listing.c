/* --list-counters: every counter cprof knows, probed on this machine.
 *
 *   list_counters()          the built-in counters, then the names each resolver
 *                            lists (perf's software and generic hardware events)
 *   list_counters(pmu=True)  the events of the PMUs libpfm4 detects here
 *
 * Each row is a dict: name, unit, description, kind, available, read_path (how it
 * is read when available), reason (the one-sentence why when not).
 *
 *   builtin_counters()       what the registry says of the counters known by name
 *                            (no probing): Python asks this instead of keeping lists */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <errno.h>

#include "../core/registry.h"
#include "../counters/counters.h"
#include "../counters/perf.h"
#include "counter_list.h"
#include "listing.h"

static int append_row(PyObject *out, const char *name, const char *unit, const char *description,
                      const char *kind, const char *pmu, int ok, const char *path,
                      const char *reason, unsigned flags)
{
    PyObject *x = Py_BuildValue("{s:s,s:s,s:s,s:s,s:s,s:O,s:s,s:s,s:O}", "name", name, "unit", unit,
                                "description", description, "kind", kind, "pmu", pmu,
                                "available", ok ? Py_True : Py_False, "read_path",
                                ok ? path : "", "reason", ok ? "" : reason, "compensable",
                                flags & CPROF_COUNTER_TRACER_COST ? Py_True : Py_False);
    int r;

    if (!x)
        return -1;
    r = PyList_Append(out, x);
    Py_DECREF(x);
    return r;
}

/* What this build of Python changes in a built-in counter's meaning ("" if nothing). */
static const char *build_note(const struct cprof_counter_def *d)
{
#ifdef Py_GIL_DISABLED
    /* the malloc family (the interposer's counters) */
    if (d->flags & CPROF_COUNTER_NEEDS_PRELOAD)
        return "; on this free-threaded Python, objects and PyMem_Malloc blocks come from "
               "mimalloc, which takes its memory from the system directly: these see only "
               "PyMem_RawMalloc and native code, not Python's objects";
#else
    (void)d;
#endif
    return "";
}

/* Resolve `name` and probe it: one row. */
static int resolved_row(PyObject *out, const char *name, const char *kind, const char *pmu,
                        const char *fallback_desc)
{
    struct cprof_counter_spec spec;
    struct cprof_error err = {0, ""};
    char path[CPROF_READ_PATH_LEN] = "";
    int ok;

    if (cprof_resolve_one(name, cprof_counter_resolvers, &spec, &err) < 0)
        return append_row(out, name, "events", fallback_desc, kind, pmu, 0, "", err.msg, 0);
    if (!kind) /* a resolver's own name: perf's hardware events are the grouped ones */
        kind = spec.def->group ? "perf hardware" : "perf software";
    ok = spec.def->probe(spec.arg, spec.ctx, path, sizeof(path), &err) == 0;
    return append_row(out, name, spec.def->unit,
                      fallback_desc[0] ? fallback_desc : spec.def->description, kind, pmu, ok,
                      path, err.msg, spec.def->flags);
}

struct pmu_walk {
    PyObject *out;              /* the list being built */
    int raised;                 /* a Python exception stopped the walk */
};

static int pmu_event(void *ctx, const char *name, const char *pmu, const char *pmu_desc,
                     const char *desc)
{
    struct pmu_walk *w = ctx;

    (void)pmu_desc;
    if (resolved_row(w->out, name, "pmu", pmu, desc) == 0)
        return 0;
    w->raised = 1;
    return -ECANCELED;
}

PyObject *cprof_py_list_counters(PyObject *error, int pmu)
{
    PyObject *out = PyList_New(0);

    if (!out)
        return NULL;
    if (pmu) {
        struct pmu_walk w = {out, 0};
        struct cprof_error err = {0, ""};
        int r = cprof_perf_pmu_events(pmu_event, &w, &err);
        if (w.raised)
            goto fail;
        if (r < 0) {
            PyErr_SetString(error, err.msg);
            goto fail;
        }
        return out;
    }
    for (const struct cprof_counter_def *const *d = cprof_py_counters(); *d; d++) {
        struct cprof_error err = {0, ""};
        char path[CPROF_READ_PATH_LEN] = "";
        char desc[1024];
        int ok = (*d)->probe("", NULL, path, sizeof(path), &err) == 0;
        snprintf(desc, sizeof(desc), "%s%s", (*d)->description, build_note(*d));
        if (append_row(out, (*d)->name, (*d)->unit, desc, "built-in", "", ok, path, err.msg,
                       (*d)->flags) < 0)
            goto fail;
    }
    for (const struct cprof_resolver *const *r = cprof_counter_resolvers; *r; r++)
        for (const char *const *l = (*r)->listed; l && *l; l++)
            if (resolved_row(out, *l, NULL, "", "") < 0)
                goto fail;
    return out;
fail:
    Py_DECREF(out);
    return NULL;
}

static PyObject *flag(unsigned flags, unsigned bit)
{
    return flags & bit ? Py_True : Py_False;
}

PyObject *cprof_py_builtin_counters(PyObject *module, PyObject *unused)
{
    const struct cprof_counter_def *const *all = cprof_py_counters();
    Py_ssize_t n = 0;
    PyObject *out;

    (void)module;
    (void)unused;
    while (all[n])
        n++;
    if (!(out = PyTuple_New(n)))
        return NULL;
    for (Py_ssize_t i = 0; i < n; i++) {
        unsigned f = all[i]->flags;
        PyObject *x = Py_BuildValue(
            "{s:s,s:s,s:s,s:O,s:O,s:O,s:O,s:O}", "name", all[i]->name, "unit", all[i]->unit,
            "description", all[i]->description, "compensable", flag(f, CPROF_COUNTER_TRACER_COST),
            "time", flag(f, CPROF_COUNTER_TIME), "elapsed", flag(f, CPROF_COUNTER_ELAPSED),
            "takes_argument", flag(f, CPROF_COUNTER_TAKES_ARG), "needs_preload",
            flag(f, CPROF_COUNTER_NEEDS_PRELOAD));
        if (!x) {
            Py_DECREF(out);
            return NULL;
        }
        PyTuple_SET_ITEM(out, i, x);
    }
    return out;
}

int cprof_py_have_libpfm(void)
{
    return cprof_perf_libpfm(NULL);
}

const char *cprof_py_libpfm_why(void)
{
    const char *why = NULL;

    if (cprof_perf_libpfm(&why))
        return NULL;
    return why ? why : "this cprof was built without libpfm4";
}
