/* Profiler.stats(): the threads' engines merged in one pass (threads, and the
 * function keys that share an identity), converted to named records (struct
 * sequences registered in the module state).  cprof.build names and lays them out;
 * nothing is merged again in Python. */
#include "profiler.h"

#include <errno.h>
#include <limits.h>
#include <string.h>

#include "../core/hist.h"

/* The named records, in module_state.stats_types[]. */
enum { T_FUNCTION, T_EDGE, T_HIST, T_HEALTH };

static PyStructSequence_Field function_fields[] = {
    {"identity", "what the function merged under: identify(key, entry)'s result, or the key"},
    {"calls", "entries observed"},
    {"primitive_calls", "entries while not already active"},
    {"self", "per counter: growth while it was on top"},
    {"total", "per counter: growth between entry and exit of its outermost frames"},
    {"dist", "per counter: a Histogram of its calls' inclusive values, or None"},
    {"slow_calls", "its slowest calls, largest first: ((args, thread) or None, values), "
                   "or None"},
    {NULL, NULL},
};
static PyStructSequence_Field edge_fields[] = {
    {"caller", "the calling function's index in functions"},
    {"callee", "the called function's index in functions"},
    {"calls", "calls"},
    {"primitive_calls", "calls while the pair was not already active"},
    {"total", "per counter: inclusive growth of the callee under this caller"},
    {NULL, NULL},
};
static PyStructSequence_Field hist_fields[] = {
    {"count", "values recorded"},
    {"p50", "median (a bucket midpoint, never above max)"},
    {"p90", "90th percentile"},
    {"p99", "99th percentile"},
    {"max", "the largest value, exactly"},
    {"buckets", "non-empty buckets: (low, high, count), ascending"},
    {NULL, NULL},
};
static PyStructSequence_Field health_fields[] = {
    {"out_of_memory", "events or records dropped for want of memory"},
    {"backwards_readings", "readings with a counter lower than before (clamped)"},
    {"backwards_counter", "the counter of the first one (its name), or None"},
    {"backwards_function", "the function on top then (index in functions), or None"},
    {"tree_folded", "call paths folded into their parent: the tree was full"},
    {"distribution_values_lost", "per-call values not recorded: memory ran out"},
    {"unmatched_exits", "exits of functions not on the stack, ignored"},
    {"counter_failures", "counters that stopped: (counter, function entry or None, reason)"},
    {NULL, NULL},
};

static PyStructSequence_Desc stats_descs[] = {
    [T_FUNCTION] = {"cprof._cprof.FunctionStats", "One function of Profiler.stats().",
                    function_fields, 7},
    [T_EDGE] = {"cprof._cprof.EdgeStats", "One caller->callee pair of Profiler.stats().",
                edge_fields, 5},
    [T_HIST] = {"cprof._cprof.Histogram", "One function's distribution of one counter.",
                hist_fields, 6},
    [T_HEALTH] = {"cprof._cprof.Health", "What went wrong while profiling (all 0: clean).",
                  health_fields, 8},
};

int cprof_stats_module_init(module_state *st)
{
    for (int i = 0; i < CPROF_STATS_NTYPES; i++)
        if (!(st->stats_types[i] = PyStructSequence_NewType(&stats_descs[i])))
            return -1;
    return 0;
}

/* A new record of type t with values items[0..n) (stolen; NULL if one is NULL). */
static PyObject *record(ProfilerObject *p, int t, PyObject **items, int n)
{
    PyObject *r = NULL;
    int i;

    for (i = 0; i < n; i++)
        if (!items[i])
            goto out;
    r = PyStructSequence_New(state_of((PyObject *)p)->stats_types[t]);
    if (!r)
        goto out;
    for (i = 0; i < n; i++) {
        PyStructSequence_SetItem(r, i, items[i]);
        items[i] = NULL;
    }
out:
    for (i = 0; i < n; i++)
        Py_XDECREF(items[i]);
    return r;
}

static PyObject *u64(uint64_t v)
{
    return PyLong_FromUnsignedLongLong(v);
}

/* An index in the merged function table as an index in functions (the root: -1). */
static PyObject *fn_id(size_t i)
{
    return PyLong_FromSsize_t((Py_ssize_t)i - 1);
}

static PyObject *hist_record(ProfilerObject *p, const struct cprof_hist *h)
{
    PyObject *buckets = PyList_New(0);

    for (unsigned b = 0; buckets && b < CPROF_HIST_BLOCKS; b++) {
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
                Py_CLEAR(buckets);
                break;
            }
            Py_DECREF(x);
        }
    }
    PyObject *items[] = {u64(h->count), u64(cprof_hist_quantile(h, 0.50)),
                         u64(cprof_hist_quantile(h, 0.90)), u64(cprof_hist_quantile(h, 0.99)),
                         u64(h->max), buckets};
    return record(p, T_HIST, items, 6);
}

/* Function i's distributions (a tuple of Histogram, one per counter), or None. */
static PyObject *dist_of(ProfilerObject *p, const struct cprof_fn_ext *x)
{
    PyObject *dist;

    if (!x || !x->hist)
        Py_RETURN_NONE;
    if (!(dist = PyTuple_New(p->n)))
        return NULL;
    for (unsigned c = 0; c < p->n; c++) {
        PyObject *h = hist_record(p, &x->hist[c]);
        if (!h) {
            Py_DECREF(dist);
            return NULL;
        }
        PyTuple_SET_ITEM(dist, c, h);
    }
    return dist;
}

/* Function i's slowest calls, largest first (their captures), or None. */
static PyObject *slow_of(ProfilerObject *p, const struct cprof_fn_ext *x)
{
    PyObject *slow;

    if (!x || !x->slow)
        Py_RETURN_NONE;
    if (!(slow = PyList_New(0)))
        return NULL;
    for (unsigned j = x->slow->count; j-- > 0;) {  /* the set is ascending */
        uint64_t tag = x->slow->e[j].tag;
        PyObject *cap = tag && (Py_ssize_t)tag <= PyList_GET_SIZE(p->captures)
                            ? PyList_GET_ITEM(p->captures, (Py_ssize_t)tag - 1)
                            : Py_None;
        if (PyList_Append(slow, cap) < 0) {
            Py_DECREF(slow);
            return NULL;
        }
    }
    return slow;
}

/* Merging by identity: the engine asks for each key's identity (cprof_ident_fn);
 * identify(key, entry) answers in Python, once per distinct key. */
struct ident_ctx {
    ProfilerObject *p;
    PyObject *identify;         /* the callable */
    PyObject *by_key;           /* dict: key -> identity number */
    PyObject *numbers;          /* dict: identity -> its number (1, 2, ...: 0 is the root) */
    PyObject *identities;       /* list: number - 1 -> identity */
};

static int ident_of(void *arg, cprof_key key, uint64_t *out)
{
    struct ident_ctx *x = arg;
    PyObject *k = PyLong_FromUnsignedLongLong(key), *num, *entry, *id = NULL;
    int r = -EINVAL;            /* with the Python exception set */

    if (!k)
        return r;
    num = PyDict_GetItemWithError(x->by_key, k);
    if (!num) {
        if (PyErr_Occurred())
            goto out;
        entry = PyDict_GetItemWithError(x->p->keys, k);
        if (!entry && PyErr_Occurred())
            goto out;
        id = PyObject_CallFunctionObjArgs(x->identify, k, entry ? entry : Py_None, NULL);
        if (!id)
            goto out;
        num = PyDict_GetItemWithError(x->numbers, id);
        if (!num) {
            if (PyErr_Occurred() || PyList_Append(x->identities, id) < 0)
                goto out;
            num = PyLong_FromSsize_t(PyList_GET_SIZE(x->identities));
            if (!num || PyDict_SetItem(x->numbers, id, num) < 0) {
                Py_XDECREF(num);
                goto out;
            }
            Py_DECREF(num);     /* the dict holds it */
        }
        if (PyDict_SetItem(x->by_key, k, num) < 0)
            goto out;
    }
    *out = PyLong_AsUnsignedLongLong(num);
    r = 0;
out:
    Py_XDECREF(id);
    Py_DECREF(k);
    return r;
}

static PyObject *counters_list(ProfilerObject *p)
{
    PyObject *counters = PyList_New(0), *x;

    for (unsigned i = 0; counters && i < p->n; i++) {
        const struct cprof_counter_def *d = p->specs[i].def;
        uint64_t count = 0, amount = 0;
        for (struct tstate *ts = cprof_threads(p); ts; ts = ts->next)
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
            Py_CLEAR(counters);
        Py_XDECREF(x);
    }
    return counters;
}

/* Functions: record i is merged function i + 1 (0 is the root); identities[] names
 * them when merged by identity (NULL: the identity is the key). */
static PyObject *functions_list(ProfilerObject *p, const struct cprof_merged *m,
                                PyObject *identities)
{
    PyObject *fns = PyList_New(0);
    unsigned n = p->n;

    for (size_t i = 1; fns && i < m->tab.fns.len; i++) {
        const struct cprof_rec *r = &m->tab.fns.recs[i];
        const struct cprof_fn_ext *x = cprof_extras_at(&m->extras, i);
        PyObject *id = identities ? Py_NewRef(PyList_GET_ITEM(identities, (Py_ssize_t)r->key - 1))
                                  : u64(r->key);
        PyObject *items[] = {id, u64(r->calls), u64(r->primitive_calls),
                             cprof_py_u64_list(cprof_self(&m->tab.fns, i), n),
                             cprof_py_u64_list(cprof_total(&m->tab.fns, i), n), dist_of(p, x),
                             slow_of(p, x)};
        PyObject *rec = record(p, T_FUNCTION, items, 7);
        if (!rec || PyList_Append(fns, rec) < 0)
            Py_CLEAR(fns);
        Py_XDECREF(rec);
    }
    return fns;
}

/* Edges between functions (an entry at a thread's root has no caller: left out). */
static PyObject *edges_list(ProfilerObject *p, const struct cprof_merged *m)
{
    PyObject *edges = PyList_New(0);

    for (size_t i = 0; edges && i < m->tab.edges.len; i++) {
        const struct cprof_rec *r = &m->tab.edges.recs[i];
        size_t caller = (size_t)(r->key >> 32), callee = (size_t)(r->key & 0xffffffffu);
        if (caller == CPROF_ROOT)
            continue;
        PyObject *items[] = {fn_id(caller), fn_id(callee), u64(r->calls), u64(r->primitive_calls),
                             cprof_py_u64_list(cprof_total(&m->tab.edges, i), p->n)};
        PyObject *rec = record(p, T_EDGE, items, 5);
        if (!rec || PyList_Append(edges, rec) < 0)
            Py_CLEAR(edges);
        Py_XDECREF(rec);
    }
    return edges;
}

/* The call tree's columns, one at a time: nodes 0..nb-1 from `b` (the base thread's table, or
 * the merged one), then the records of `x` (the other threads' nodes, when there is a base)
 * at node_ix.  Column `col` (TREE_*; counter c for self and total) into out[0..m->nodes). */
enum { TREE_PARENT, TREE_FUNCTION, TREE_CALLS, TREE_SELF, TREE_TOTAL };

/* Column col (counter c) of record i of a merged tree table, as the profile gives it. */
static inline int64_t tree_value(const struct cprof_table *b, size_t i, int col, unsigned c)
{
    const struct cprof_rec *r = &b->recs[i];

    switch (col) {
    case TREE_PARENT: return i ? (int64_t)(r->key >> 32) : -1;
    case TREE_FUNCTION: return i ? (int64_t)(r->key & 0xffffffffu) - 1 : -1;
    case TREE_CALLS: return (int64_t)r->calls;
    case TREE_SELF: return (int64_t)cprof_self(b, i)[c];
    default: return (int64_t)cprof_total(b, i)[c];
    }
}

static void tree_column(const struct cprof_merged *m, int col, unsigned c, int64_t *out)
{
    const struct cprof_table *b = m->base ? m->base : &m->tab.nodes, *x = &m->tab.nodes;
    size_t nb = b->len, nx = m->base ? x->len : 0;

    for (size_t i = 0; i < nb; i++)
        out[i] = tree_value(b, i, col, c);
    for (size_t k = 0; k < nx; k++) {
        const struct cprof_rec *r = &x->recs[k];
        size_t j = m->node_ix[k];
        int64_t was = j < nb ? out[j] : 0;
        switch (col) {          /* a base node's parent and function stay the base's */
        case TREE_PARENT: out[j] = j < nb ? was : (int64_t)(r->key >> 32); break;
        case TREE_FUNCTION: out[j] = j < nb ? was : (int64_t)(r->key & 0xffffffffu) - 1; break;
        case TREE_CALLS: out[j] = was + (int64_t)r->calls; break;
        case TREE_SELF: out[j] = was + (int64_t)cprof_self(x, k)[c]; break;
        default: out[j] = was + (int64_t)cprof_total(x, k)[c]; break;
        }
    }
}

/* `len` native 64-bit integers in a new bytes object *out, at *data; NULL if it failed. */
static PyObject *column(size_t len, PyObject **out, int64_t **data)
{
    *out = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)(len * sizeof(int64_t)));
    *data = *out ? (int64_t *)PyBytes_AS_STRING(*out) : NULL;
    return *out;
}

/* A column of the call tree: native 64-bit integers in a bytes object (8 bytes a node,
 * where one record per node in Python objects took about 450: 150 MB on black). */
static PyObject *bytes_column(const struct cprof_merged *m, int col, unsigned c)
{
    PyObject *out;
    int64_t *data;

    if (column(m->nodes, &out, &data))
        tree_column(m, col, c, data);
    return out;
}

static PyObject *packed_column(const struct cprof_merged *m, int col, unsigned c);

/* The call tree, column-wise (a parent always comes before its children): a dict of
 * parent and function (-1 for the root, node 0), calls, and self and total (one
 * column per counter), each a bytes object of native int64 (values are below 2^63)
 * that cprof.build reads through memoryview.cast("q").  packed: each column as the
 * profile file's text instead (column_pack's), made from the engine's table through one
 * column of int64 at a time, and "nodes" their length. */
static PyObject *tree_columns(ProfilerObject *p, struct cprof_merged *m, int packed, int consume)
{
    unsigned n = p->n;
    PyObject *(*make)(const struct cprof_merged *, int, unsigned) = packed ? packed_column : bytes_column;
    PyObject *parent = NULL, *function = NULL, *calls = NULL, *self = PyTuple_New(n),
             *total = PyTuple_New(n), *out = NULL;
    /* Consuming a tree packed in place: each part of its table goes as soon as every column
     * made from it is made, so the columns' text takes the table's room instead of adding to
     * it (the index first, the values after self and total, the records last). */
    struct cprof_table *t = consume && packed && !m->base ? &m->tab.nodes : NULL;

    if (!self || !total)
        goto out;
    if (t) {
        free(t->slots);         /* nothing is looked up in the merged tree any more */
        t->slots = NULL;
        t->nslots = 0;
    }
    for (unsigned c = 0; c < n; c++) {
        PyObject *col;
        if (!(col = make(m, TREE_SELF, c)))
            goto out;
        PyTuple_SET_ITEM(self, c, col);
        if (!(col = make(m, TREE_TOTAL, c)))
            goto out;
        PyTuple_SET_ITEM(total, c, col);
    }
    if (t) {
        free(t->vals);
        t->vals = NULL;
    }
    if (!(parent = make(m, TREE_PARENT, 0)) || !(function = make(m, TREE_FUNCTION, 0)) ||
        !(calls = make(m, TREE_CALLS, 0)))
        goto out;
    if (t) {
        free(t->recs);
        t->recs = NULL;
        t->len = t->cap = 0;
    }
    out = Py_BuildValue("{s:O,s:O,s:O,s:O,s:O,s:n}", "parent", parent, "function", function,
                        "calls", calls, "self", self, "total", total, "nodes",
                        (Py_ssize_t)m->nodes);
out:
    Py_XDECREF(parent);
    Py_XDECREF(function);
    Py_XDECREF(calls);
    Py_XDECREF(self);
    Py_XDECREF(total);
    return out;
}

static PyObject *health_record(ProfilerObject *p, const struct cprof_merged *m)
{
    const struct cprof_health *h = &m->health;
    PyObject *counter = Py_NewRef(Py_None), *fn = Py_NewRef(Py_None);
    size_t i;

    if (h->backwards_readings) {
        Py_DECREF(counter);
        counter = PyUnicode_FromString(p->specs[h->backwards_counter].def->name);
        if (h->backwards_key && cprof_table_find(&m->tab.fns, h->backwards_key, &i) == 0) {
            Py_DECREF(fn);
            fn = fn_id(i);
        }
    }
    PyObject *items[] = {u64(h->out_of_memory), u64(h->backwards_readings), counter, fn,
                         u64(h->tree_folded), u64(h->distribution_values_lost),
                         u64(h->unmatched_exits), PyList_GetSlice(p->failures, 0, PY_SSIZE_T_MAX)};
    return record(p, T_HEALTH, items, 8);
}

static PyObject *build_stats(ProfilerObject *p, struct cprof_merged *m, PyObject *identities,
                             int packed, int consume)
{
    unsigned n = p->n;
    PyObject *share = Py_BuildValue("{s:N,s:N}", "per_event", cprof_py_u64_list(p->comp, n),
                                    "compensated", cprof_py_u64_list(m->compensated, n));
    PyObject *meta = share ? Py_BuildValue(
        "{s:N,s:N,s:N,s:K,s:K,s:s,s:N}", "region", cprof_py_u64_list(m->region, n),
        "unattributed", cprof_py_u64_list(m->unattributed, n), "tracer_share", share, "threads",
        (unsigned long long)m->threads, "events", (unsigned long long)m->events, "hook",
        CPROF_MONITORING ? "sys.monitoring" : "PyEval_SetProfile", "hook_replaced",
        p->replaced ? PyList_GetSlice(p->replaced, 0, PY_SSIZE_T_MAX) : PyList_New(0)) : NULL;

    if (!meta)
        return NULL;
    return Py_BuildValue("{s:N,s:N,s:N,s:N,s:N,s:N}", "counters", counters_list(p), "functions",
                         functions_list(p, m, identities), "edges", edges_list(p, m), "tree",
                         tree_columns(p, m, packed, consume), "meta", meta, "health", health_record(p, m));
}

static PyObject *stats_claimed(PyObject *self, PyObject *args, PyObject *kwds)
{
    ProfilerObject *p = (ProfilerObject *)self;
    static char *kwlist[] = {"identify", "consume", "packed", NULL};
    struct ident_ctx ctx = {.p = p};
    struct cprof_thread **threads;
    struct cprof_merged m;
    PyObject *identify = Py_None, *out = NULL;
    size_t nt = 0;
    int r, consume = 0, packed = 0;

    if (!PyArg_ParseTupleAndKeywords(args, kwds, "|Opp:stats", kwlist, &identify, &consume,
                                     &packed))
        return NULL;
    if (p->consumed) {
        PyErr_SetString(state_of(self)->error, "this profile's call tree was handed over to an "
                        "earlier stats(consume=True); it has no stats left to give");
        return NULL;
    }
    if (identify != Py_None) {
        if (!PyCallable_Check(identify)) {
            PyErr_SetString(PyExc_TypeError, "stats(identify): identify must be callable");
            return NULL;
        }
        ctx.identify = identify;
        if (!(ctx.by_key = PyDict_New()) || !(ctx.numbers = PyDict_New()) ||
            !(ctx.identities = PyList_New(0)))
            goto out;
    }
    for (struct tstate *ts = cprof_threads(p); ts; ts = ts->next)
        nt++;
    threads = PyMem_Calloc(nt ? nt : 1, sizeof(*threads));
    if (!threads) {
        PyErr_NoMemory();
        goto out;
    }
    nt = 0;
    for (struct tstate *ts = cprof_threads(p); ts; ts = ts->next)
        if (!ts->failed)
            threads[nt++] = &ts->eng;
    r = (consume ? cprof_merge_consume : cprof_merge)(threads, nt, p->n,
                                                       ctx.identify ? ident_of : NULL, &ctx, &m);
    if (consume) {
        /* the engines' trees are merged (one of them moved into m): theirs go now, before
         * the columns are made, and the profile takes no more events (enable() says so) */
        p->consumed = 1;
        for (size_t i = 0; i < nt; i++)
            cprof_table_free(&threads[i]->tab.nodes);
    }
    PyMem_Free(threads);
    if (r < 0) {
        if (!PyErr_Occurred())  /* identify's own exception stands */
            PyErr_NoMemory();
        goto out;
    }
    out = build_stats(p, &m, ctx.identities, packed, consume);
    cprof_merged_free(&m);
out:
    Py_XDECREF(ctx.by_key);
    Py_XDECREF(ctx.numbers);
    Py_XDECREF(ctx.identities);
    return out;
}

/* With the profile claimed (OFF -> BUSY): no thread's engine changes meanwhile. */
PyObject *cprof_py_profiler_stats(PyObject *self, PyObject *args, PyObject *kwds)
{
    ProfilerObject *p = (ProfilerObject *)self;
    PyObject *r;

    if (cprof_claim(p, CPROF_OFF) < 0) {
        if (CPROF_LOAD(p->enabled) == CPROF_ON)
            PyErr_SetString(state_of(self)->error, "call disable() before reading the stats");
        else
            cprof_py_busy_error(p, state_of(self));
        return NULL;
    }
    r = stats_claimed(self, args, kwds);
    cprof_release(p, CPROF_OFF);
    return r;
}

/* The name of function key `key` (cprof.build.describe's), or NULL. */
static PyObject *key_name(ProfilerObject *p, cprof_key key)
{
    PyObject *k = PyLong_FromUnsignedLongLong(key), *entry, *mod, *d = NULL, *name = NULL;

    entry = k ? PyDict_GetItemWithError(p->keys, k) : NULL;
    Py_XDECREF(k);
    if (entry && PyTuple_Check(entry) && PyTuple_GET_SIZE(entry) == 2 &&
        (mod = PyImport_ImportModule("cprof.build"))) {
        d = PyObject_CallMethod(mod, "describe", "OO", PyTuple_GET_ITEM(entry, 0),
                                PyTuple_GET_ITEM(entry, 1));
        Py_DECREF(mod);
        if (d && PyTuple_Check(d) && PyTuple_GET_SIZE(d) > 0)
            name = PyObject_Str(PyTuple_GET_ITEM(d, 0));
        Py_XDECREF(d);
    }
    PyErr_Clear();
    return name;
}

/* At disable(): warn once (a RuntimeWarning) when the engine's health got worse
 * since the last warning: events dropped for want of memory, readings that went
 * backwards (naming the first), paths folded, per-call values lost.  Exits of
 * functions not on the stack are not warned about: a profile started inside a
 * function sees its callers return (they are counted in meta.health).  A failing
 * Counter is warned about by cprof.Profile with its reason.  -1: the warning was
 * turned into an exception. */
int cprof_py_warn_health(ProfilerObject *p)
{
    struct cprof_health h = {0}, *said = &p->health_said;
    char parts[4][200];
    int np = 0, r = 0;

    for (struct tstate *ts = cprof_threads(p); ts; ts = ts->next)
        if (!ts->failed)
            cprof_health_add(&h, &ts->eng.health);
    if (h.out_of_memory > said->out_of_memory)
        snprintf(parts[np++], sizeof(parts[0]), "%llu events dropped for want of memory",
                 (unsigned long long)h.out_of_memory);
    if (h.backwards_readings > said->backwards_readings) {
        PyObject *name = h.backwards_key ? key_name(p, h.backwards_key) : NULL;
        const char *fn = name ? PyUnicode_AsUTF8(name) : NULL;
        PyErr_Clear();
        snprintf(parts[np++], sizeof(parts[0]),
                 "%llu readings went backwards and were clamped (the first: counter '%s' in %s)",
                 (unsigned long long)h.backwards_readings, p->specs[h.backwards_counter].def->name,
                 fn ? fn : h.backwards_key ? "an unknown function" : "the top level");
        Py_XDECREF(name);
    }
    if (h.tree_folded > said->tree_folded)
        snprintf(parts[np++], sizeof(parts[0]),
                 "%llu call paths folded into their parent (the call tree was full)",
                 (unsigned long long)h.tree_folded);
    if (h.distribution_values_lost > said->distribution_values_lost)
        snprintf(parts[np++], sizeof(parts[0]),
                 "%llu per-call values not kept in distributions (out of memory)",
                 (unsigned long long)h.distribution_values_lost);
    *said = h;
    if (np)
        r = PyErr_WarnFormat(PyExc_RuntimeWarning, 1, "cprof: the profile is incomplete: %s%s%s%s%s%s%s",
                             parts[0], np > 1 ? "; " : "", np > 1 ? parts[1] : "",
                             np > 2 ? "; " : "", np > 2 ? parts[2] : "", np > 3 ? "; " : "",
                             np > 3 ? parts[3] : "");
    return r;
}

/* ---------------------------------------------------------------- pprof samples */

/* `len` integers of a tree column: a buffer of int64 (the run's memoryviews) or a
 * sequence of ints (a loaded profile's lists).  0, or -1 with an exception set. */
static int column_i64(PyObject *col, int64_t *out, Py_ssize_t len)
{
    Py_buffer view;

    if (PyObject_CheckBuffer(col) && PyObject_GetBuffer(col, &view, PyBUF_FORMAT | PyBUF_C_CONTIGUOUS) == 0) {
        int ok = view.itemsize == 8 && view.format && (!strcmp(view.format, "q") ||
                 !strcmp(view.format, "@q") || !strcmp(view.format, "l") || !strcmp(view.format, "@l")) &&
                 view.len == len * 8;
        if (ok)
            memcpy(out, view.buf, (size_t)len * 8);
        PyBuffer_Release(&view);
        if (ok)
            return 0;
    }
    PyErr_Clear();
    PyObject *seq = PySequence_Fast(col, "pprof_samples: a tree column must be a sequence");
    if (!seq)
        return -1;
    if (PySequence_Fast_GET_SIZE(seq) != len) {
        Py_DECREF(seq);
        PyErr_SetString(PyExc_ValueError, "pprof_samples: the tree's columns differ in length");
        return -1;
    }
    PyObject **items = PySequence_Fast_ITEMS(seq);
    for (Py_ssize_t i = 0; i < len; i++) {
        out[i] = PyLong_AsLongLong(items[i]);
        if (out[i] == -1 && PyErr_Occurred()) {
            Py_DECREF(seq);
            return -1;
        }
    }
    Py_DECREF(seq);
    return 0;
}

static size_t varint_len(uint64_t v)
{
    size_t n = 1;
    while (v >= 0x80) {
        v >>= 7;
        n++;
    }
    return n;
}

static char *put_varint(char *p, uint64_t v)
{
    while (v >= 0x80) {
        *p++ = (char)((v & 0x7f) | 0x80);
        v >>= 7;
    }
    *p++ = (char)v;
    return p;
}

/* The length of node i's packed values (counter c's at vals[c * n + i]), or 0 when they are
 * all 0: such a node makes no sample. */
static size_t values_len(const int64_t *vals, Py_ssize_t k, Py_ssize_t n, Py_ssize_t i)
{
    size_t vlen = 0;
    int any = 0;
    for (Py_ssize_t c = 0; c < k; c++) {
        int64_t v = vals[c * n + i];
        any |= v != 0;
        vlen += varint_len((uint64_t)v);
    }
    return any ? vlen : 0;
}

/* pprof_samples(parent, function, selfs): profile.proto's Sample messages (field 2 of
 * Profile, each with its tag and length), one per non-root node whose self is not 0 in
 * some counter, in node order: location ids (function id + 1) leaf first, then every
 * counter's self.  The tree's 17 million frames on black took 5 s in Python. */
PyObject *cprof_py_pprof_samples(PyObject *module, PyObject *args)
{
    PyObject *parent_col, *function_col, *selfs_col, *selfs = NULL, *out = NULL;
    int64_t *parent = NULL, *function = NULL, *vals = NULL;
    size_t *ids_len = NULL, total = 0;
    Py_ssize_t n, k;
    (void)module;

    if (!PyArg_ParseTuple(args, "OOO:pprof_samples", &parent_col, &function_col, &selfs_col))
        return NULL;
    if ((n = PyObject_Length(parent_col)) < 0)
        return NULL;
    if (!(selfs = PySequence_Fast(selfs_col, "pprof_samples: selfs must be a sequence")))
        return NULL;
    k = PySequence_Fast_GET_SIZE(selfs);
    parent = PyMem_Malloc((size_t)(n ? n : 1) * sizeof(*parent));
    function = PyMem_Malloc((size_t)(n ? n : 1) * sizeof(*function));
    vals = PyMem_Malloc((size_t)(n ? n : 1) * (size_t)(k ? k : 1) * sizeof(*vals));
    ids_len = PyMem_Malloc((size_t)(n ? n : 1) * sizeof(*ids_len));
    if (!parent || !function || !vals || !ids_len) {
        PyErr_NoMemory();
        goto out;
    }
    if (column_i64(parent_col, parent, n) < 0 || column_i64(function_col, function, n) < 0)
        goto out;
    for (Py_ssize_t c = 0; c < k; c++)
        if (column_i64(PySequence_Fast_GET_ITEM(selfs, c), vals + c * n, n) < 0)
            goto out;
    /* sizes first: a node's ids are its own and then its parent's (parents come first) */
    for (Py_ssize_t i = 0; i < n; i++) {
        if (i == 0) {
            ids_len[0] = 0;
            continue;
        }
        if (parent[i] < 0 || parent[i] >= i || function[i] < 0) {
            PyErr_Format(PyExc_ValueError, "pprof_samples: node %zd has parent %lld and function "
                         "%lld", i, (long long)parent[i], (long long)function[i]);
            goto out;
        }
        ids_len[i] = varint_len((uint64_t)function[i] + 1) + ids_len[parent[i]];
        size_t vlen = values_len(vals, k, n, i);
        if (!vlen)
            continue;
        size_t body = 1 + varint_len(ids_len[i]) + ids_len[i] + 1 + varint_len(vlen) + vlen;
        total += 1 + varint_len(body) + body;
    }
    if (!(out = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)total)))
        goto out;
    char *p = PyBytes_AS_STRING(out);
    for (Py_ssize_t i = 1; i < n; i++) {
        size_t vlen = values_len(vals, k, n, i);
        if (!vlen)
            continue;
        size_t body = 1 + varint_len(ids_len[i]) + ids_len[i] + 1 + varint_len(vlen) + vlen;
        *p++ = 0x12;            /* Profile.sample, length-delimited */
        p = put_varint(p, body);
        *p++ = 0x0a;            /* Sample.location_id, packed */
        p = put_varint(p, ids_len[i]);
        for (Py_ssize_t j = i; j > 0; j = parent[j])
            p = put_varint(p, (uint64_t)function[j] + 1);
        *p++ = 0x12;            /* Sample.value, packed */
        p = put_varint(p, vlen);
        for (Py_ssize_t c = 0; c < k; c++)
            p = put_varint(p, (uint64_t)vals[c * n + i]);
    }
out:
    PyMem_Free(parent);
    PyMem_Free(function);
    PyMem_Free(vals);
    PyMem_Free(ids_len);
    Py_XDECREF(selfs);
    return out;
}

/* ---------------------------------------------------------------- report groups */

/* group_totals(parent, function, calls, groups, ngroups, totals): for a report's folded
 * rows (cprof.focus), per group g (groups[f] is function f's group, -1 none): the calls
 * of its nodes whose parent is not in g, the calls of its nodes with no ancestor in g,
 * and per column of `totals` the sum over those outermost nodes.  Returns (calls,
 * primitive_calls, [[total per group] per column]).  On black's 333,000 nodes the
 * same walk in Python took most of the report's time. */
PyObject *cprof_py_group_totals(PyObject *module, PyObject *args)
{
    PyObject *parent_col, *function_col, *calls_col, *groups_col, *totals_col, *totals = NULL;
    PyObject *out = NULL, *calls_out = NULL, *prim_out = NULL, *cols_out = NULL;
    int64_t *parent = NULL, *function = NULL, *calls = NULL, *fgroup = NULL, *vals = NULL;
    int64_t *node_group = NULL;
    uint64_t *acc = NULL;        /* per group: calls, primitive calls, then k totals */
    Py_ssize_t n, nf, ng, k;
    (void)module;

    if (!PyArg_ParseTuple(args, "OOOOnO:group_totals", &parent_col, &function_col, &calls_col,
                          &groups_col, &ng, &totals_col))
        return NULL;
    if ((n = PyObject_Length(parent_col)) < 0 || (nf = PyObject_Length(groups_col)) < 0)
        return NULL;
    if (!(totals = PySequence_Fast(totals_col, "group_totals: totals must be a sequence")))
        return NULL;
    k = PySequence_Fast_GET_SIZE(totals);
    size_t nn = (size_t)(n ? n : 1);
    parent = PyMem_Malloc(nn * sizeof(*parent));
    function = PyMem_Malloc(nn * sizeof(*function));
    calls = PyMem_Malloc(nn * sizeof(*calls));
    node_group = PyMem_Malloc(nn * sizeof(*node_group));
    fgroup = PyMem_Malloc((size_t)(nf ? nf : 1) * sizeof(*fgroup));
    vals = PyMem_Malloc(nn * (size_t)(k ? k : 1) * sizeof(*vals));
    acc = PyMem_Calloc((size_t)(ng > 0 ? ng : 1) * (size_t)(2 + k), sizeof(*acc));
    if (!parent || !function || !calls || !node_group || !fgroup || !vals || !acc) {
        PyErr_NoMemory();
        goto out;
    }
    if (ng < 0 || column_i64(parent_col, parent, n) < 0 || column_i64(function_col, function, n) < 0 ||
        column_i64(calls_col, calls, n) < 0 || column_i64(groups_col, fgroup, nf) < 0)
        goto out;
    for (Py_ssize_t c = 0; c < k; c++)
        if (column_i64(PySequence_Fast_GET_ITEM(totals, c), vals + c * n, n) < 0)
            goto out;
    for (Py_ssize_t i = 0; i < n; i++) {
        int64_t f = function[i], g;
        if (i == 0) {
            node_group[0] = -1;
            continue;
        }
        if (parent[i] < 0 || parent[i] >= i || f < 0 || f >= nf || fgroup[f] >= ng) {
            PyErr_Format(PyExc_ValueError, "group_totals: node %zd has parent %lld and function "
                         "%lld", i, (long long)parent[i], (long long)f);
            goto out;
        }
        g = node_group[i] = fgroup[f];
        if (g < 0)
            continue;
        uint64_t *a = acc + (size_t)g * (size_t)(2 + k);
        if (node_group[parent[i]] != g)
            a[0] += (uint64_t)calls[i];
        int64_t j = parent[i];
        while (j > 0 && node_group[j] != g)
            j = parent[j];
        if (j > 0)
            continue;           /* an ancestor is in g: counted there */
        a[1] += (uint64_t)calls[i];
        for (Py_ssize_t c = 0; c < k; c++)
            a[2 + c] += (uint64_t)vals[c * n + i];
    }
    if (!(calls_out = PyList_New(ng)) || !(prim_out = PyList_New(ng)) || !(cols_out = PyList_New(k)))
        goto out;
    for (Py_ssize_t g = 0; g < ng; g++) {
        PyObject *x = PyLong_FromUnsignedLongLong(acc[(size_t)g * (size_t)(2 + k)]);
        PyObject *y = PyLong_FromUnsignedLongLong(acc[(size_t)g * (size_t)(2 + k) + 1]);
        if (!x || !y) {
            Py_XDECREF(x);
            Py_XDECREF(y);
            goto out;
        }
        PyList_SET_ITEM(calls_out, g, x);
        PyList_SET_ITEM(prim_out, g, y);
    }
    for (Py_ssize_t c = 0; c < k; c++) {
        PyObject *col = PyList_New(ng);
        if (!col)
            goto out;
        PyList_SET_ITEM(cols_out, c, col);
        for (Py_ssize_t g = 0; g < ng; g++) {
            PyObject *x = PyLong_FromUnsignedLongLong(acc[(size_t)g * (size_t)(2 + k) + 2 + (size_t)c]);
            if (!x)
                goto out;
            PyList_SET_ITEM(col, g, x);
        }
    }
    out = PyTuple_Pack(3, calls_out, prim_out, cols_out);
out:
    Py_XDECREF(calls_out);
    Py_XDECREF(prim_out);
    Py_XDECREF(cols_out);
    PyMem_Free(parent);
    PyMem_Free(function);
    PyMem_Free(calls);
    PyMem_Free(node_group);
    PyMem_Free(fgroup);
    PyMem_Free(vals);
    PyMem_Free(acc);
    Py_XDECREF(totals);
    return out;
}

/* first_bad_int(list, lo, hi, below_index=False): the index of the first entry of `list`
 * that is not an int (bool is not) in [lo, hi) (hi may be 2**63), nor (below_index) in
 * [0, its own index) past entry 0; -1 if none.  The profile file's check of the tree's
 * columns: 1.4 s of black's report as Python's set(map(type)), min, max and a comparison
 * per node. */
PyObject *cprof_py_first_bad_int(PyObject *module, PyObject *args)
{
    PyObject *list, *hi_obj;
    long long lo, hi;
    int below = 0, ovf, unbounded;
    (void)module;

    if (!PyArg_ParseTuple(args, "O!LO|p:first_bad_int", &PyList_Type, &list, &lo, &hi_obj, &below))
        return NULL;
    hi = PyLong_AsLongLongAndOverflow(hi_obj, &ovf);
    if (hi == -1 && PyErr_Occurred())
        return NULL;
    unbounded = ovf > 0;        /* every int64 is below it */
    if (ovf < 0)
        hi = LLONG_MIN;         /* none is */
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(list); i++) {
        PyObject *x = PyList_GET_ITEM(list, i);
        long long v;
        if (!PyLong_CheckExact(x))
            return PyLong_FromSsize_t(i);
        v = PyLong_AsLongLongAndOverflow(x, &ovf);
        if (ovf || v < lo || (!unbounded && v >= hi) || (below && i > 0 && (v < 0 || v >= i)))
            return PyLong_FromSsize_t(i);
    }
    return PyLong_FromLong(-1);
}

/* ---------------------------------------------------------------- packed tree columns */

/* The profile file's version 3 stores each call-tree column as base64 (RFC 4648, with
 * padding) of unsigned LEB128 varints, one per node (README, "The profile file"): a value
 * column as is, the parent column as each node's distance back to its parent (i - parent,
 * 1 for the root), the function column as the function id + 1 (0 for the root).  About 12
 * bytes of text a node where JSON's decimal lists took 36 and json.loads a Python int per
 * value; packed and unpacked here in one pass, with no Python object per value. */
enum { PACK_VALUES, PACK_PARENT, PACK_FUNCTION };

static const char b64_alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/* The packed value of entry i (see below), or (uint64_t)-1 with an exception set. */
static uint64_t pack_value(int64_t v, Py_ssize_t i, int kind)
{
    if (kind == PACK_PARENT) {
        if (v < (i ? 0 : -1) || v >= i) {
            PyErr_Format(PyExc_ValueError, "column_pack: node %zd has parent %lld, not a node "
                         "before it", i, (long long)v);
            return UINT64_MAX;
        }
        return (uint64_t)(i - v);
    }
    if (v < (kind == PACK_FUNCTION ? -1 : 0)) {
        PyErr_Format(PyExc_ValueError, "column_pack: entry %zd is %lld", i, (long long)v);
        return UINT64_MAX;
    }
    return kind == PACK_FUNCTION ? (uint64_t)v + 1 : (uint64_t)v;
}

/* Where a column's entries come from: an int64 buffer, a list's ints, or a merged call-tree
 * table read in place (tree_value: column col, counter c). */
struct column_src {
    const int64_t *buf;
    PyObject **items;
    const struct cprof_table *tab;
    int col;
    unsigned c;
};

/* Entry i of a column. */
static int column_at(const struct column_src *src, Py_ssize_t i, int64_t *out)
{
    if (src->buf) {
        *out = src->buf[i];
        return 0;
    }
    if (src->tab) {
        *out = tree_value(src->tab, (size_t)i, src->col, src->c);
        return 0;
    }
    *out = PyLong_AsLongLong(src->items[i]);
    return *out == -1 && PyErr_Occurred() ? -1 : 0;
}

/* column_pack(column, kind): the column (int64 buffer or sequence of ints) as the text
 * the file holds.  kind 0: values >= 0; 1: parents (-1 for node 0, else before the node);
 * 2: function ids >= -1.  Two passes (the varints' length, then the varints), read in
 * place: writing holds the column's text and its varints, never a copy of the column. */
static PyObject *pack(const struct column_src *src, Py_ssize_t n, int kind);

PyObject *cprof_py_column_pack(PyObject *module, PyObject *args)
{
    PyObject *col, *seq = NULL, *out = NULL;
    Py_buffer view = {0};
    const int64_t *buf = NULL;
    PyObject **items = NULL;
    Py_ssize_t n;
    int kind;
    (void)module;

    if (!PyArg_ParseTuple(args, "Oi:column_pack", &col, &kind))
        return NULL;
    if (kind < PACK_VALUES || kind > PACK_FUNCTION) {
        PyErr_SetString(PyExc_ValueError, "column_pack: kind is 0, 1 or 2");
        return NULL;
    }
    if (PyObject_CheckBuffer(col) && PyObject_GetBuffer(col, &view, PyBUF_FORMAT | PyBUF_C_CONTIGUOUS) == 0) {
        if (view.itemsize == 8 && view.format && strchr("ql", view.format[view.format[0] == '@'])
            && view.format[(view.format[0] == '@') + 1] == 0) {
            buf = view.buf;
            n = view.len / 8;
        } else {
            PyBuffer_Release(&view);
            view.obj = NULL;
        }
    }
    PyErr_Clear();
    if (!buf) {
        if (!(seq = PySequence_Fast(col, "column_pack: a column is a sequence of ints")))
            goto out;
        items = PySequence_Fast_ITEMS(seq);
        n = PySequence_Fast_GET_SIZE(seq);
    }
    out = pack(&(struct column_src){.buf = buf, .items = items}, n, kind);
out:
    if (view.obj)
        PyBuffer_Release(&view);
    Py_XDECREF(seq);
    return out;
}

/* The packed text of n entries of src, or NULL with an exception. */
static PyObject *pack(const struct column_src *src, Py_ssize_t n, int kind)
{
    PyObject *out = NULL;
    unsigned char *raw = NULL;
    size_t len = 0;

    for (Py_ssize_t i = 0; i < n; i++) {
        int64_t v;
        uint64_t u;
        if (column_at(src, i, &v) < 0 || (u = pack_value(v, i, kind)) == UINT64_MAX)
            goto out;
        len += varint_len(u);
    }
    if (!(raw = PyMem_Malloc(len ? len : 1))) {
        PyErr_NoMemory();
        goto out;
    }
    char *p = (char *)raw;
    for (Py_ssize_t i = 0; i < n; i++) {
        int64_t v;
        if (column_at(src, i, &v) < 0)     /* a list's items are ints: checked above */
            goto out;
        p = put_varint(p, pack_value(v, i, kind));
    }
    size_t text = (len + 2) / 3 * 4;
    if (!(out = PyUnicode_New((Py_ssize_t)text, 127)))
        goto out;
    Py_UCS1 *t = PyUnicode_1BYTE_DATA(out);
    size_t i = 0;
    for (; i + 3 <= len; i += 3) {
        uint32_t w = (uint32_t)raw[i] << 16 | (uint32_t)raw[i + 1] << 8 | raw[i + 2];
        *t++ = (Py_UCS1)b64_alphabet[w >> 18];
        *t++ = (Py_UCS1)b64_alphabet[w >> 12 & 63];
        *t++ = (Py_UCS1)b64_alphabet[w >> 6 & 63];
        *t++ = (Py_UCS1)b64_alphabet[w & 63];
    }
    if (i < len) {
        uint32_t w = (uint32_t)raw[i] << 16 | (i + 1 < len ? (uint32_t)raw[i + 1] << 8 : 0);
        *t++ = (Py_UCS1)b64_alphabet[w >> 18];
        *t++ = (Py_UCS1)b64_alphabet[w >> 12 & 63];
        *t++ = (Py_UCS1)(i + 1 < len ? b64_alphabet[w >> 6 & 63] : '=');
        *t++ = '=';
    }
out:
    PyMem_Free(raw);
    return out;
}

static int pack_kind(int col)
{
    return col == TREE_PARENT ? PACK_PARENT : col == TREE_FUNCTION ? PACK_FUNCTION : PACK_VALUES;
}

/* A call-tree column of m packed as the file holds it (tree_columns' packed), or NULL with
 * an exception: read from the merged table in place when it is the whole tree, else through
 * one int64 column, freed before the next is made. */
static PyObject *packed_column(const struct cprof_merged *m, int col, unsigned c)
{
    int64_t *buf;
    PyObject *out;

    if (!m->base)
        return pack(&(struct column_src){.tab = &m->tab.nodes, .col = col, .c = c},
                    (Py_ssize_t)m->nodes, pack_kind(col));
    if (!(buf = PyMem_Malloc(m->nodes ? m->nodes * sizeof(int64_t) : 1)))
        return PyErr_NoMemory();
    tree_column(m, col, c, buf);
    out = pack(&(struct column_src){.buf = buf}, (Py_ssize_t)m->nodes, pack_kind(col));
    PyMem_Free(buf);
    return out;
}

static inline int b64_value(unsigned char c)
{
    if (c >= 'A' && c <= 'Z')
        return (int)(c - 'A');
    if (c >= 'a' && c <= 'z')
        return (int)(c - 'a') + 26;
    if (c >= '0' && c <= '9')
        return (int)(c - '0') + 52;
    if (c == '+')
        return 62;
    if (c == '/')
        return 63;
    return -1;
}

/* column_unpack(text, n, kind, hi): the n int64 values (native order, for
 * memoryview.cast('q')) that column_pack wrote as `text`, as bytes.  Values (kind 0)
 * and function ids (kind 2) must be below hi (2**63 or more: any int64); node 0's
 * function is -1 and no other node's is; a parent lies before its node.  Anything else
 * (not base64, a varint cut short or past 64 bits, fewer or more than n values, a value
 * out of range) is a ValueError of one sentence, saying which entry. */
PyObject *cprof_py_column_unpack(PyObject *module, PyObject *args)
{
    PyObject *text, *hi_obj, *out = NULL;
    Py_ssize_t n, got = 0;
    int kind, ovf, shift = 0;
    long long hi;
    uint64_t acc = 0;
    (void)module;

    if (!PyArg_ParseTuple(args, "UniO:column_unpack", &text, &n, &kind, &hi_obj))
        return NULL;
    if (n < 0 || kind < PACK_VALUES || kind > PACK_FUNCTION) {
        PyErr_SetString(PyExc_ValueError, "column_unpack: n >= 0 and kind 0, 1 or 2");
        return NULL;
    }
    hi = PyLong_AsLongLongAndOverflow(hi_obj, &ovf);
    if (hi == -1 && PyErr_Occurred())
        return NULL;
    /* the largest value (kind 0) or function id + 1 (kind 2) allowed */
    uint64_t top = ovf > 0 || hi == LLONG_MAX ? (uint64_t)LLONG_MAX : ovf < 0 || hi <= 0 ? 0 : (uint64_t)hi;
    if (kind == PACK_VALUES && top && !(ovf > 0 || hi == LLONG_MAX))
        top--;
    Py_ssize_t len = PyUnicode_GET_LENGTH(text);
    if (!PyUnicode_IS_ASCII(text)) {
        PyErr_SetString(PyExc_ValueError, "holds a character that is not base64");
        return NULL;
    }
    const unsigned char *data = PyUnicode_1BYTE_DATA(text);
    if (len % 4) {
        PyErr_Format(PyExc_ValueError, "is %zd characters of base64, not a multiple of 4 (cut short?)", len);
        return NULL;
    }
    if (!(out = PyBytes_FromStringAndSize(NULL, n * 8)))
        return NULL;
    int64_t *vals = (int64_t *)PyBytes_AS_STRING(out);
    for (Py_ssize_t i = 0; i < len; i += 4) {
        int q[4], pad = 0;
        if (i + 4 == len) {     /* '=' pads the last group only: "xx==" or "xxx=" */
            pad = data[i + 3] == '=';
            pad += pad && data[i + 2] == '=';
        }
        for (int j = 0; j < 4; j++) {
            q[j] = j >= 4 - pad ? 0 : b64_value(data[i + j]);
            if (q[j] < 0) {
                PyErr_Format(PyExc_ValueError, "holds a character that is not base64 at offset %zd",
                             i + j);
                goto fail;
            }
        }
        uint32_t w = (uint32_t)q[0] << 18 | (uint32_t)q[1] << 12 | (uint32_t)q[2] << 6 | (uint32_t)q[3];
        unsigned char b[3] = {(unsigned char)(w >> 16), (unsigned char)(w >> 8), (unsigned char)w};
        for (int j = 0; j < 3 - pad; j++) {
            uint64_t part = b[j] & 0x7f;
            if (shift > 63 || (shift == 63 && part > 1)) {
                PyErr_Format(PyExc_ValueError, "entry %zd does not fit in 64 bits", got);
                goto fail;
            }
            acc |= part << shift;
            if (b[j] & 0x80) {
                shift += 7;
                continue;
            }
            if (got >= n) {
                PyErr_Format(PyExc_ValueError, "holds more than its %zd entries", n);
                goto fail;
            }
            int64_t v;
            if (kind == PACK_PARENT) {
                if (got ? acc < 1 || acc > (uint64_t)got : acc != 1) {   /* 0 <= parent < node */
                    PyErr_Format(PyExc_ValueError, got ? "entry %zd is not a node before %zd" :
                                 "entry 0 (the root) has a parent, not -1", got, got);
                    goto fail;
                }
                v = (int64_t)got - (int64_t)acc;
            } else if (kind == PACK_FUNCTION) {
                if (got == 0 && acc != 0) {
                    PyErr_SetString(PyExc_ValueError, "entry 0 (the root) has a function, not -1");
                    goto fail;
                }
                if (got > 0 && acc == 0) {
                    PyErr_Format(PyExc_ValueError, "entry %zd is -1, but only the root (node 0) has no "
                                 "function", got);
                    goto fail;
                }
                if (acc > top) {
                    PyErr_Format(PyExc_ValueError, "entry %zd is the id of no function", got);
                    goto fail;
                }
                v = (int64_t)acc - 1;
            } else {
                if (acc > top) {
                    PyErr_Format(PyExc_ValueError, "entry %zd is out of range", got);
                    goto fail;
                }
                v = (int64_t)acc;
            }
            vals[got++] = v;
            acc = 0;
            shift = 0;
        }
    }
    if (shift) {
        PyErr_Format(PyExc_ValueError, "ends inside entry %zd (cut short?)", got);
        goto fail;
    }
    if (got != n) {
        PyErr_Format(PyExc_ValueError, "has %zd entries, not %zd (cut short?)", got, n);
        goto fail;
    }
    return out;
fail:
    Py_DECREF(out);
    return NULL;
}

/* function_sums(function, column, nfn): per function id, the sum of `column` over the
 * tree's nodes of that function (the root, function -1, left out), as a list of nfn ints:
 * the functions' self on the tree (cprof.focus, exporters.folded_note), one pass in C
 * where Python's loop over black's 333,000 nodes took a third of the report. */
PyObject *cprof_py_function_sums(PyObject *module, PyObject *args)
{
    PyObject *function_col, *values_col, *out = NULL;
    int64_t *function = NULL, *vals = NULL;
    uint64_t *sums = NULL;
    Py_ssize_t n, nf;
    (void)module;

    if (!PyArg_ParseTuple(args, "OOn:function_sums", &function_col, &values_col, &nf))
        return NULL;
    if ((n = PyObject_Length(function_col)) < 0 || nf < 0)
        return NULL;
    function = PyMem_Malloc((size_t)(n ? n : 1) * sizeof(*function));
    vals = PyMem_Malloc((size_t)(n ? n : 1) * sizeof(*vals));
    sums = PyMem_Calloc((size_t)(nf ? nf : 1), sizeof(*sums));
    if (!function || !vals || !sums) {
        PyErr_NoMemory();
        goto out;
    }
    if (column_i64(function_col, function, n) < 0 || column_i64(values_col, vals, n) < 0)
        goto out;
    for (Py_ssize_t i = 0; i < n; i++) {
        if (function[i] == -1)
            continue;
        if (function[i] < 0 || function[i] >= nf) {
            PyErr_Format(PyExc_ValueError, "function_sums: node %zd has function %lld", i,
                         (long long)function[i]);
            goto out;
        }
        sums[function[i]] += (uint64_t)vals[i];
    }
    if (!(out = PyList_New(nf)))
        goto out;
    for (Py_ssize_t f = 0; f < nf; f++) {
        PyObject *x = PyLong_FromUnsignedLongLong(sums[f]);
        if (!x) {
            Py_CLEAR(out);
            goto out;
        }
        PyList_SET_ITEM(out, f, x);
    }
out:
    PyMem_Free(function);
    PyMem_Free(vals);
    PyMem_Free(sums);
    return out;
}

/* ---------------------------------------------------------------- call paths as JSON */

struct textbuf {
    char *p;
    size_t len, cap;
};

static int tb_reserve(struct textbuf *b, size_t more)
{
    if (b->len + more <= b->cap)
        return 0;
    size_t cap = b->cap ? b->cap : 1 << 16;
    while (cap < b->len + more)
        cap *= 2;
    char *p = PyMem_Realloc(b->p, cap);
    if (!p) {
        PyErr_NoMemory();
        return -1;
    }
    b->p = p;
    b->cap = cap;
    return 0;
}

static void tb_int(struct textbuf *b, int64_t v)   /* room reserved: at most 20 bytes */
{
    char tmp[24];
    int n = 0;
    uint64_t u = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
    do {
        tmp[n++] = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    if (v < 0)
        b->p[b->len++] = '-';
    while (n)
        b->p[b->len++] = tmp[--n];
}

/* tree_stacks(parent, function, selfs, mode): the call paths of the tree's nodes, in
 * depth-first order from the root (children in index order), as JSON text made as
 * json.dumps(..., separators=(",", ":")) makes it, without the enclosing brackets:
 * mode 0 (speedscope, one counter: selfs[0]): the nodes whose self is not 0, returns
 * (samples "[f,..],[f,..]" outermost frame first, weights "w,w", their sum); mode 1
 * (gprof2dot): the nodes whose self is not 0 in some counter, returns the events
 * '{"callchain":[leaf,..,outermost],"cost":[v,..]},...'.  Black's 17 million frames
 * took 13-19 s as Python lists and json.dumps. */
PyObject *cprof_py_tree_stacks(PyObject *module, PyObject *args)
{
    PyObject *parent_col, *function_col, *selfs_col, *selfs = NULL, *out = NULL;
    int64_t *parent = NULL, *function = NULL, *vals = NULL;
    Py_ssize_t *first = NULL, *next = NULL, *stack = NULL, *depth = NULL, *path = NULL;
    struct textbuf a = {0}, w = {0};
    Py_ssize_t n, k;
    int mode;
    uint64_t sum = 0;
    (void)module;

    if (!PyArg_ParseTuple(args, "OOOi:tree_stacks", &parent_col, &function_col, &selfs_col, &mode))
        return NULL;
    if ((n = PyObject_Length(parent_col)) < 0)
        return NULL;
    if (!(selfs = PySequence_Fast(selfs_col, "tree_stacks: selfs must be a sequence")))
        return NULL;
    k = PySequence_Fast_GET_SIZE(selfs);
    size_t nn = (size_t)(n ? n : 1);
    parent = PyMem_Malloc(nn * sizeof(*parent));
    function = PyMem_Malloc(nn * sizeof(*function));
    vals = PyMem_Malloc(nn * (size_t)(k ? k : 1) * sizeof(*vals));
    first = PyMem_Malloc(nn * sizeof(*first));      /* a node's first child, or -1 */
    next = PyMem_Malloc(nn * sizeof(*next));        /* its next sibling, or -1 */
    stack = PyMem_Malloc(nn * sizeof(*stack));
    depth = PyMem_Malloc(nn * sizeof(*depth));
    path = PyMem_Malloc(nn * sizeof(*path));
    if (!parent || !function || !vals || !first || !next || !stack || !depth || !path) {
        PyErr_NoMemory();
        goto out;
    }
    if (mode < 0 || mode > 1 || k < 1) {
        PyErr_SetString(PyExc_ValueError, "tree_stacks: mode 0 or 1, and a counter");
        goto out;
    }
    if (column_i64(parent_col, parent, n) < 0 || column_i64(function_col, function, n) < 0)
        goto out;
    for (Py_ssize_t c = 0; c < k; c++)
        if (column_i64(PySequence_Fast_GET_ITEM(selfs, c), vals + c * n, n) < 0)
            goto out;
    /* children in index order: linked backwards, each pushed in front */
    for (Py_ssize_t i = 0; i < n; i++)
        first[i] = -1;
    for (Py_ssize_t i = n - 1; i > 0; i--) {
        if (parent[i] < 0 || parent[i] >= i || function[i] < 0) {
            PyErr_Format(PyExc_ValueError, "tree_stacks: node %zd has parent %lld and function "
                         "%lld", i, (long long)parent[i], (long long)function[i]);
            goto out;
        }
        next[i] = first[parent[i]];
        first[parent[i]] = i;
    }
    Py_ssize_t top = 0;
    if (n)
        stack[top++] = 0, depth[0] = 0;
    int any = 0;
    while (top) {
        Py_ssize_t node = stack[--top], d = depth[node];
        /* push the children so that the first comes out first */
        Py_ssize_t from = top;
        for (Py_ssize_t c = first[node]; c >= 0; c = next[c]) {
            stack[top++] = c;
            depth[c] = d + 1;
        }
        for (Py_ssize_t x = from, y = top - 1; x < y; x++, y--) {
            Py_ssize_t t = stack[x];
            stack[x] = stack[y];
            stack[y] = t;
        }
        if (!d)
            continue;
        path[d - 1] = (Py_ssize_t)function[node];
        int keep = 0;
        for (Py_ssize_t c = 0; c < (mode ? k : 1); c++)
            keep |= vals[c * n + node] != 0;
        if (!keep)
            continue;
        if (tb_reserve(&a, (size_t)d * 21 + (size_t)k * 21 + 32) < 0)
            goto out;
        if (any)
            a.p[a.len++] = ',';
        if (mode == 0) {
            a.p[a.len++] = '[';
            for (Py_ssize_t j = 0; j < d; j++) {
                if (j)
                    a.p[a.len++] = ',';
                tb_int(&a, path[j]);
            }
            a.p[a.len++] = ']';
            if (tb_reserve(&w, 22) < 0)
                goto out;
            if (any)
                w.p[w.len++] = ',';
            tb_int(&w, vals[node]);
            sum += (uint64_t)vals[node];
        } else {
            memcpy(a.p + a.len, "{\"callchain\":[", 14);
            a.len += 14;
            for (Py_ssize_t j = d - 1; j >= 0; j--) {
                tb_int(&a, path[j]);
                if (j)
                    a.p[a.len++] = ',';
            }
            memcpy(a.p + a.len, "],\"cost\":[", 10);
            a.len += 10;
            for (Py_ssize_t c = 0; c < k; c++) {
                if (c)
                    a.p[a.len++] = ',';
                tb_int(&a, vals[c * n + node]);
            }
            a.p[a.len++] = ']';
            a.p[a.len++] = '}';
        }
        any = 1;
    }
    if (mode == 0)
        out = Py_BuildValue("(y#y#K)", a.p ? a.p : "", (Py_ssize_t)a.len, w.p ? w.p : "",
                            (Py_ssize_t)w.len, (unsigned long long)sum);
    else
        out = PyBytes_FromStringAndSize(a.p ? a.p : "", (Py_ssize_t)a.len);
out:
    PyMem_Free(parent);
    PyMem_Free(function);
    PyMem_Free(vals);
    PyMem_Free(first);
    PyMem_Free(next);
    PyMem_Free(stack);
    PyMem_Free(depth);
    PyMem_Free(path);
    PyMem_Free(a.p);
    PyMem_Free(w.p);
    Py_XDECREF(selfs);
    return out;
}

/* ---------------------------------------------------------------- folded stacks */

/* collapsed_paths(parent, function, self, name_of): the distinct printed call paths of
 * folded stacks (cprof.exporters.collapsed), interned in depth-first order from the root
 * (children in index order) as (path id of the parent path or -1, name id of the last
 * frame): function f prints as name_of[f], two functions may print alike.  Returns bytes
 * of int64 (up, leaf, total): per path its parent path, its last name, and the self of
 * every node that prints as it.  Memory grows with the nodes, not with the text. */
PyObject *cprof_py_collapsed_paths(PyObject *module, PyObject *args)
{
    PyObject *parent_col, *function_col, *self_col, *name_col, *out = NULL;
    PyObject *up_b = NULL, *leaf_b = NULL, *total_b = NULL;
    int64_t *parent = NULL, *function = NULL, *vals = NULL, *name_of = NULL;
    Py_ssize_t *first = NULL, *next = NULL, *stack = NULL, *pid_of = NULL;
    uint64_t *keys = NULL;
    int64_t *slot = NULL, *up, *leaf, *total;
    Py_ssize_t n, nf;
    size_t cap = 1, npaths = 0;
    (void)module;

    if (!PyArg_ParseTuple(args, "OOOO:collapsed_paths", &parent_col, &function_col, &self_col, &name_col))
        return NULL;
    if ((n = PyObject_Length(parent_col)) < 0 || (nf = PyObject_Length(name_col)) < 0)
        return NULL;
    size_t nn = (size_t)(n ? n : 1);
    while (cap < 2 * nn)
        cap *= 2;
    parent = PyMem_Malloc(nn * sizeof(*parent));
    function = PyMem_Malloc(nn * sizeof(*function));
    vals = PyMem_Malloc(nn * sizeof(*vals));
    name_of = PyMem_Malloc((size_t)(nf ? nf : 1) * sizeof(*name_of));
    first = PyMem_Malloc(nn * sizeof(*first));
    next = PyMem_Malloc(nn * sizeof(*next));
    stack = PyMem_Malloc(nn * sizeof(*stack));
    pid_of = PyMem_Malloc(nn * sizeof(*pid_of));         /* a node's path id */
    keys = PyMem_Malloc(cap * sizeof(*keys));
    slot = PyMem_Malloc(cap * sizeof(*slot));            /* the path id at keys[i], -1 free */
    if (!parent || !function || !vals || !name_of || !first || !next || !stack || !pid_of || !keys || !slot) {
        PyErr_NoMemory();
        goto out;
    }
    if (column_i64(parent_col, parent, n) < 0 || column_i64(function_col, function, n) < 0 ||
        column_i64(self_col, vals, n) < 0 || column_i64(name_col, name_of, nf) < 0)
        goto out;
    if (!column(nn, &up_b, &up) || !column(nn, &leaf_b, &leaf) || !column(nn, &total_b, &total))
        goto out;
    for (size_t i = 0; i < cap; i++)
        slot[i] = -1;
    for (Py_ssize_t i = 0; i < n; i++)
        first[i] = -1;
    for (Py_ssize_t i = n - 1; i > 0; i--) {
        if (parent[i] < 0 || parent[i] >= i || function[i] < 0 || function[i] >= nf ||
            name_of[function[i]] < 0) {
            PyErr_Format(PyExc_ValueError, "collapsed_paths: node %zd has parent %lld and function "
                         "%lld", i, (long long)parent[i], (long long)function[i]);
            goto out;
        }
        next[i] = first[parent[i]];
        first[parent[i]] = i;
    }
    Py_ssize_t top = 0;
    if (n)
        stack[top++] = 0;
    while (top) {
        Py_ssize_t node = stack[--top], from = top;
        for (Py_ssize_t c = first[node]; c >= 0; c = next[c])
            stack[top++] = c;
        for (Py_ssize_t x = from, y = top - 1; x < y; x++, y--) {
            Py_ssize_t t = stack[x];
            stack[x] = stack[y];
            stack[y] = t;
        }
        if (node == 0) {
            pid_of[0] = -1;
            continue;
        }
        int64_t above = parent[node] ? pid_of[parent[node]] : -1, name = name_of[function[node]];
        uint64_t key = (uint64_t)(above + 1) << 32 | (uint64_t)name;
        size_t h = (size_t)((key * 0x9E3779B97F4A7C15ull) >> 20) & (cap - 1);
        while (slot[h] >= 0 && keys[h] != key)
            h = (h + 1) & (cap - 1);
        if (slot[h] < 0) {
            keys[h] = key;
            slot[h] = (int64_t)npaths;
            up[npaths] = above;
            leaf[npaths] = name;
            total[npaths] = 0;
            npaths++;
        }
        pid_of[node] = (Py_ssize_t)slot[h];
        total[slot[h]] += vals[node];
    }
    if (_PyBytes_Resize(&up_b, (Py_ssize_t)(npaths * 8)) < 0 ||
        _PyBytes_Resize(&leaf_b, (Py_ssize_t)(npaths * 8)) < 0 ||
        _PyBytes_Resize(&total_b, (Py_ssize_t)(npaths * 8)) < 0)
        goto out;
    out = PyTuple_Pack(3, up_b, leaf_b, total_b);
out:
    Py_XDECREF(up_b);
    Py_XDECREF(leaf_b);
    Py_XDECREF(total_b);
    PyMem_Free(parent);
    PyMem_Free(function);
    PyMem_Free(vals);
    PyMem_Free(name_of);
    PyMem_Free(first);
    PyMem_Free(next);
    PyMem_Free(stack);
    PyMem_Free(pid_of);
    PyMem_Free(keys);
    PyMem_Free(slot);
    return out;
}

/* collapsed_lines(up, leaf, total, names, start, size): folded stacks' lines
 * "outer;...;leaf N\n" for the paths from `start` whose total is not 0, about `size`
 * bytes of them: (bytes, the path to start from next, or -1 at the end).  names: the
 * frames' text as bytes, by name id. */
PyObject *cprof_py_collapsed_lines(PyObject *module, PyObject *args)
{
    PyObject *up_o, *leaf_o, *total_o, *names, *out = NULL;
    Py_buffer ub = {0}, lb = {0}, tb = {0};
    Py_ssize_t start, size, *chain = NULL;
    struct textbuf b = {0};
    (void)module;

    if (!PyArg_ParseTuple(args, "OOOO!nn:collapsed_lines", &up_o, &leaf_o, &total_o, &PyList_Type, &names,
                          &start, &size))
        return NULL;
    if (PyObject_GetBuffer(up_o, &ub, PyBUF_SIMPLE) < 0 || PyObject_GetBuffer(leaf_o, &lb, PyBUF_SIMPLE) < 0 ||
        PyObject_GetBuffer(total_o, &tb, PyBUF_SIMPLE) < 0)
        goto out;
    Py_ssize_t np = ub.len / 8, nn = PyList_GET_SIZE(names);
    const int64_t *up = ub.buf, *leaf = lb.buf, *total = tb.buf;
    if (lb.len / 8 != np || tb.len / 8 != np || start < 0) {
        PyErr_SetString(PyExc_ValueError, "collapsed_lines: the path columns differ in length");
        goto out;
    }
    if (!(chain = PyMem_Malloc((size_t)(np ? np : 1) * sizeof(*chain)))) {
        PyErr_NoMemory();
        goto out;
    }
    Py_ssize_t p = start;
    for (; p < np && (Py_ssize_t)b.len < size; p++) {
        if (!total[p])
            continue;
        Py_ssize_t depth = 0;
        for (int64_t q = p; q >= 0; q = up[q]) {
            if (q >= np || leaf[q] < 0 || leaf[q] >= nn || !PyBytes_Check(PyList_GET_ITEM(names, leaf[q]))) {
                PyErr_SetString(PyExc_ValueError, "collapsed_lines: a path of no name");
                goto out;
            }
            chain[depth++] = (Py_ssize_t)q;
        }
        for (Py_ssize_t d = depth - 1; d >= 0; d--) {
            PyObject *name = PyList_GET_ITEM(names, leaf[chain[d]]);
            size_t len = (size_t)PyBytes_GET_SIZE(name);
            if (tb_reserve(&b, len + 24) < 0)
                goto out;
            memcpy(b.p + b.len, PyBytes_AS_STRING(name), len);
            b.len += len;
            b.p[b.len++] = d ? ';' : ' ';
        }
        tb_int(&b, total[p]);
        b.p[b.len++] = '\n';
    }
    out = Py_BuildValue("(y#n)", b.p ? b.p : "", (Py_ssize_t)b.len, p < np ? p : (Py_ssize_t)-1);
out:
    if (ub.obj)
        PyBuffer_Release(&ub);
    if (lb.obj)
        PyBuffer_Release(&lb);
    if (tb.obj)
        PyBuffer_Release(&tb);
    PyMem_Free(chain);
    PyMem_Free(b.p);
    return out;
}
