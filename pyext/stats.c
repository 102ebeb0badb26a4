/* Profiler.stats(): the threads' engines merged, and the result converted to
 * Python objects (see cprof.build for what becomes of them). */
#include "profiler.h"

#include "../core/hist.h"

/* One histogram: its count, quantiles, max and non-empty buckets (low, high, count). */
static PyObject *hist_dict(const struct cprof_hist *h)
{
    PyObject *buckets = PyList_New(0), *d;

    if (!buckets)
        return NULL;
    for (unsigned b = 0; b < CPROF_HIST_BLOCKS; b++) {
        if (!h->blocks[b])
            continue;
        for (unsigned i = b * CPROF_HIST_SUB; i < (b + 1) * CPROF_HIST_SUB; i++) {
            uint32_t c = cprof_hist_at(h, i);
            PyObject *x;
            if (!c)
                continue;
            x = Py_BuildValue("(KKI)", (unsigned long long)cprof_hist_low(i),
                              (unsigned long long)cprof_hist_high(i), (unsigned)c);
            if (!x || PyList_Append(buckets, x) < 0) {
                Py_XDECREF(x);
                Py_DECREF(buckets);
                return NULL;
            }
            Py_DECREF(x);
        }
    }
    d = Py_BuildValue("{s:K,s:K,s:K,s:K,s:K,s:N}", "count", (unsigned long long)h->count, "p50",
                      (unsigned long long)cprof_hist_quantile(h, 0.50), "p90",
                      (unsigned long long)cprof_hist_quantile(h, 0.90), "p99",
                      (unsigned long long)cprof_hist_quantile(h, 0.99), "max",
                      (unsigned long long)h->max, "buckets", buckets);
    return d;
}

/* Distributions and slow calls of merged function i, or None. */
static PyObject *ext_of_fn(ProfilerObject *p, const struct cprof_merged *m, size_t i)
{
    const struct cprof_fn_ext *x = cprof_merged_ext(m, i);
    PyObject *dist = Py_None, *slow = Py_None, *out;

    if (!x || (!x->hist && !x->slow))
        Py_RETURN_NONE;
    if (x->hist && !(dist = PyList_New(p->n)))
        return NULL;
    for (unsigned c = 0; x->hist && c < p->n; c++) {
        PyObject *h = hist_dict(&x->hist[c]);
        if (!h) {
            Py_DECREF(dist);
            return NULL;
        }
        PyList_SET_ITEM(dist, c, h);
    }
    if (x->slow) {
        slow = PyList_New(0);
        for (unsigned j = x->slow->count; slow && j-- > 0;) {  /* largest first */
            uint64_t tag = x->slow->e[j].tag;
            PyObject *cap = tag && (Py_ssize_t)tag <= PyList_GET_SIZE(p->captures)
                                ? PyList_GET_ITEM(p->captures, (Py_ssize_t)tag - 1)
                                : Py_None;
            if (PyList_Append(slow, cap) < 0)
                Py_CLEAR(slow);
        }
        if (!slow) {
            if (dist != Py_None)
                Py_DECREF(dist);
            return NULL;
        }
    } else
        Py_INCREF(slow);
    if (dist == Py_None)
        Py_INCREF(dist);
    out = Py_BuildValue("{s:N,s:N}", "dist", dist, "slow", slow);
    return out;
}

static PyObject *build_stats(ProfilerObject *p, const struct cprof_merged *m)
{
    PyObject *out = NULL, *fns = NULL, *edges = NULL, *counters = NULL, *tree = NULL, *x;
    unsigned n = p->n;

    if (!(out = PyDict_New()) || !(fns = PyList_New(0)) || !(edges = PyList_New(0)) ||
        !(counters = PyList_New(0)) || !(tree = PyList_New(0)))
        goto err;
    for (unsigned i = 0; i < n; i++) {
        const struct cprof_counter_def *d = p->specs[i].def;
        uint64_t count = 0, amount = 0;
        for (struct tstate *ts = p->threads; ts; ts = ts->next)
            if (d->corrections && ts->opened > i) {
                uint64_t c, a;
                d->corrections(ts->cstate[i], &c, &a);
                count += c;
                amount += a;
            }
        x = Py_BuildValue("{s:s,s:s,s:s,s:s,s:s,s:K,s:K,s:O,s:O,s:O}", "name", d->name, "unit",
                          d->unit, "description", d->description, "read_path", p->paths[i], "arg",
                          p->specs[i].arg, "corrections", (unsigned long long)count,
                          "corrections_total", (unsigned long long)amount, "compensable",
                          d->flags & CPROF_COUNTER_TRACER_COST ? Py_True : Py_False, "time",
                          d->flags & CPROF_COUNTER_TIME ? Py_True : Py_False, "elapsed",
                          d->flags & CPROF_COUNTER_ELAPSED ? Py_True : Py_False);
        if (!x || PyList_Append(counters, x) < 0)
            goto err_x;
        Py_DECREF(x);
    }
    for (size_t i = 1; i < m->fns.len; i++) {
        const struct cprof_rec *r = &m->fns.recs[i];
        PyObject *k = PyLong_FromUnsignedLongLong(r->key), *entry, *self_l, *total_l;
        if (!k)
            goto err;
        entry = PyDict_GetItemWithError(p->keys, k);
        Py_DECREF(k);
        if (!entry && PyErr_Occurred())
            goto err;
        self_l = cprof_py_u64_list(cprof_self(&m->fns, i), n);
        total_l = cprof_py_u64_list(cprof_total(&m->fns, i), n);
        x = Py_BuildValue("(KOKKNNN)", (unsigned long long)r->key, entry ? entry : Py_None,
                          (unsigned long long)r->calls, (unsigned long long)r->primitive_calls,
                          self_l, total_l, ext_of_fn(p, m, i));
        if (!x || PyList_Append(fns, x) < 0)
            goto err_x;
        Py_DECREF(x);
    }
    for (size_t i = 0; i < m->edges.len; i++) {
        const struct cprof_rec *r = &m->edges.recs[i];
        size_t caller = (size_t)(r->key >> 32), callee = (size_t)(r->key & 0xffffffffu);
        x = Py_BuildValue("(KKKKN)", (unsigned long long)m->fns.recs[caller].key,
                          (unsigned long long)m->fns.recs[callee].key, (unsigned long long)r->calls,
                          (unsigned long long)r->primitive_calls,
                          cprof_py_u64_list(cprof_total(&m->edges, i), n));
        if (!x || PyList_Append(edges, x) < 0)
            goto err_x;
        Py_DECREF(x);
    }
    for (size_t i = 0; i < m->nodes.len; i++) {
        const struct cprof_rec *r = &m->nodes.recs[i];
        size_t fn = (size_t)(r->key & 0xffffffffu);
        x = Py_BuildValue("(nKKNN)", i ? (Py_ssize_t)(r->key >> 32) : (Py_ssize_t)-1,
                          (unsigned long long)m->fns.recs[fn].key, (unsigned long long)r->calls,
                          cprof_py_u64_list(cprof_self(&m->nodes, i), n),
                          cprof_py_u64_list(cprof_total(&m->nodes, i), n));
        if (!x || PyList_Append(tree, x) < 0)
            goto err_x;
        Py_DECREF(x);
    }
    if (PyDict_SetItemString(out, "counters", counters) < 0 ||
        PyDict_SetItemString(out, "tree", tree) < 0 ||
        PyDict_SetItemString(out, "functions", fns) < 0 ||
        PyDict_SetItemString(out, "edges", edges) < 0)
        goto err;
    x = Py_BuildValue("{s:N,s:N,s:N,s:N,s:K,s:K,s:K,s:K,s:K,s:K,s:s,s:N}", "region",
                      cprof_py_u64_list(m->region, n), "unattributed", cprof_py_u64_list(m->unattributed, n),
                      "compensated", cprof_py_u64_list(m->compensated, n), "compensation_per_event",
                      cprof_py_u64_list(p->comp, n), "threads",
                      (unsigned long long)m->threads, "events", (unsigned long long)m->events,
                      "unmatched_exits", (unsigned long long)m->unmatched_exits, "backwards",
                      (unsigned long long)m->backwards, "tree_folded",
                      (unsigned long long)m->tree_dropped, "dist_lost",
                      (unsigned long long)m->dist_lost, "hook",
                      CPROF_MONITORING ? "sys.monitoring" : "PyEval_SetProfile", "hook_replaced",
                      p->replaced ? PyList_GetSlice(p->replaced, 0, PY_SSIZE_T_MAX)
                                  : PyList_New(0));
    if (!x || PyDict_SetItemString(out, "meta", x) < 0)
        goto err_x;
    Py_DECREF(x);
    Py_DECREF(fns);
    Py_DECREF(edges);
    Py_DECREF(counters);
    Py_DECREF(tree);
    return out;
err_x:
    Py_XDECREF(x);
err:
    Py_XDECREF(out);
    Py_XDECREF(fns);
    Py_XDECREF(edges);
    Py_XDECREF(counters);
    Py_XDECREF(tree);
    return NULL;
}

PyObject *cprof_py_profiler_stats(PyObject *self, PyObject *unused)
{
    ProfilerObject *p = (ProfilerObject *)self;
    struct cprof_thread **threads;
    struct cprof_merged m;
    size_t nt = 0;
    PyObject *out;

    (void)unused;
    if (p->enabled) {
        PyErr_SetString(state_of(self)->error, "call disable() before reading the stats");
        return NULL;
    }
    for (struct tstate *ts = p->threads; ts; ts = ts->next)
        nt++;
    threads = PyMem_Calloc(nt ? nt : 1, sizeof(*threads));
    if (!threads)
        return PyErr_NoMemory();
    nt = 0;
    for (struct tstate *ts = p->threads; ts; ts = ts->next)
        if (!ts->failed)
            threads[nt++] = &ts->eng;
    if (cprof_merge(threads, nt, p->n, &m) < 0) {
        PyMem_Free(threads);
        return PyErr_NoMemory();
    }
    PyMem_Free(threads);
    out = build_stats(p, &m);
    cprof_merged_free(&m);
    return out;
}
