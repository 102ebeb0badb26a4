/* Profiler(counters=...): names and Counter/UserCounter objects resolved into
 * the profiler's counter specs. */
#include "profiler.h"

#include "../core/registry.h"
#include "allocators.h"

/* counters: a spec string ("cpu,wall"), or a sequence mixing counter names and
 * Counter/UserCounter objects, in the order given. */
int cprof_py_parse_counters(ProfilerObject *p, PyObject *counters, module_state *st)
{
    struct cprof_error err = {0};
    PyObject *seq, *names = NULL, *spec = NULL;
    struct cprof_counter_spec parsed[CPROF_MAX_COUNTERS];
    unsigned nparsed = 0, next = 0;
    Py_ssize_t len;
    int rc = -1;

    if (PyUnicode_Check(counters))
        return cprof_spec_resolve(PyUnicode_AsUTF8(counters), cprof_py_counters(),
                                  cprof_counter_resolvers, p->specs, CPROF_MAX_COUNTERS, &p->n,
                                  &err) < 0
                   ? (PyErr_SetString(st->error, err.msg), -1)
                   : 0;
    seq = PySequence_Fast(counters, "counters must be a str or a list of names and counters");
    if (!seq)
        return -1;
    len = PySequence_Fast_GET_SIZE(seq);
    if (len == 0 || len > CPROF_MAX_COUNTERS) {
        PyErr_Format(st->error, "give between 1 and %d counters", CPROF_MAX_COUNTERS);
        goto out;
    }
    if (!(names = PyList_New(0)) || !(p->objects = PyList_New(0)))
        goto out;
    for (Py_ssize_t i = 0; i < len; i++) {
        PyObject *c = PySequence_Fast_GET_ITEM(seq, i);
        if (PyUnicode_Check(c)) {
            if (PyList_Append(names, c) < 0)
                goto out;
        } else if (!cprof_pycounter_is(c, st->counter_type, st->user_counter_type)) {
            PyErr_Format(st->error, "counter %R is neither a counter name nor a cprof.Counter "
                         "or cprof.UserCounter; give names such as 'cpu' or counter objects", c);
            goto out;
        }
    }
    if (PyList_GET_SIZE(names)) {
        PyObject *comma = PyUnicode_FromString(",");
        spec = comma ? PyUnicode_Join(comma, names) : NULL;
        Py_XDECREF(comma);
        if (!spec)
            goto out;
        if (cprof_spec_resolve(PyUnicode_AsUTF8(spec), cprof_py_counters(),
                               cprof_counter_resolvers, parsed, CPROF_MAX_COUNTERS, &nparsed,
                               &err) < 0) {
            PyErr_SetString(st->error, err.msg);
            goto out;
        }
    }
    /* the named ones keep their relative order (perf groups rely on it) */
    for (Py_ssize_t i = 0; i < len; i++) {
        PyObject *c = PySequence_Fast_GET_ITEM(seq, i);
        if (PyUnicode_Check(c)) {
            p->specs[i] = parsed[next++];
            continue;
        }
        if (PyList_Append(p->objects, c) < 0)
            goto out;
        cprof_pycounter_spec(c, &p->specs[i]);
        p->has_pycall |= p->specs[i].def->take_failure != NULL;
    }
    p->n = (unsigned)len;
    for (unsigned i = 0; i < p->n; i++)
        for (unsigned j = 0; j < i; j++)
            if (strcmp(p->specs[i].def->name, p->specs[j].def->name) == 0) {
                PyErr_Format(st->error, "counter '%s' is given twice; name each counter once",
                             p->specs[i].def->name);
                p->n = 0;
                goto out;
            }
    rc = 0;
out:
    Py_XDECREF(names);
    Py_XDECREF(spec);
    Py_DECREF(seq);
    return rc;
}

