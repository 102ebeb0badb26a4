/* Counters defined from Python.
 *
 *   UserCounter("bytes_sent", unit="B")   a per-thread total that Python code
 *       raises with add(n); the engine reads it with a thread-local load, no
 *       Python call: the cheap way to count application events.
 *   Counter("queries", read=fn, unit=...) calls fn() at every event; it must
 *       return a non-decreasing int.  A reading that goes down, raises, or is not
 *       an int stops that counter (its value is held) and is reported, with the
 *       function that was running, by Profiler.counter_failures(); the profiled
 *       program never sees the error.
 *
 * Each object holds its own counter descriptor (core/counter.h), named by it, and
 * is the spec's context pointer; the Profiler keeps it alive.  A UserCounter's
 * totals are cells it owns, one per thread that used it, found through a thread-
 * specific key of its own: nothing is per process, and what a dropped counter
 * held is freed with it. */
#define PY_SSIZE_T_CLEAN
#include "pycounters.h"
#include "compat.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <structmember.h>

/* Set by a Counter's read when it stopped; the hook reports it (cheap to test). */
_Thread_local int cprof_pycounter_failed;

/* One thread's total of a UserCounter. */
struct user_cell {
    uint64_t value;             /* raised by add() in its thread, read by cprof there */
    struct user_cell *next;     /* the counter's other cells */
};

typedef struct {
    PyObject_HEAD
    PyObject *name;             /* str */
    PyObject *unit;             /* str */
    PyObject *description;      /* str */
    PyObject *read;             /* Counter: the callable; UserCounter: NULL */
    struct cprof_counter_def def; /* its descriptor: strings are name's, unit's... */
    pthread_key_t key;          /* UserCounter: this thread's struct user_cell */
    int has_key;                /* key was created (deleted with the object) */
    struct user_cell *cells;    /* UserCounter: every thread's cell, freed with it */
} PyCounterObject;

/* ---- the two descriptors ------------------------------------------------------- */

/* This thread's cell of UserCounter o, created at first use (a lock-free push);
 * NULL when out of memory. */
static struct user_cell *user_cell(PyCounterObject *o)
{
    struct user_cell *c = pthread_getspecific(o->key);

    if (c)
        return c;
    if (!(c = PyMem_RawCalloc(1, sizeof(*c))))
        return NULL;
    if (pthread_setspecific(o->key, c) != 0) {
        PyMem_RawFree(c);
        return NULL;
    }
    /* other threads push theirs at the same time on free-threaded builds */
    c->next = __atomic_load_n(&o->cells, __ATOMIC_ACQUIRE);
    while (!__atomic_compare_exchange_n(&o->cells, &c->next, c, 1, __ATOMIC_RELEASE,
                                        __ATOMIC_ACQUIRE))
        ;
    return c;
}

static int pc_probe(const char *arg, void *ctx, char *path, size_t pathlen,
                    struct cprof_error *err)
{
    PyCounterObject *o = ctx;

    (void)arg;
    if (!o)
        return cprof_error_set(err, EINVAL, "internal: a Python counter without its object");
    if (o->read)
        snprintf(path, pathlen, "a Python call at every event");
    else
        snprintf(path, pathlen, "a thread-local total raised by add(), a load per read");
    return 0;
}

struct pycall_state {
    PyObject *fn;               /* the callable (borrowed: the Counter keeps it) */
    uint64_t last;              /* last good reading */
    int has_last;               /* a reading was taken */
    int stopped;                /* a bad reading stopped this counter in this thread */
    int pending;                /* stopped, not yet reported */
    char reason[200];           /* why it stopped */
};

static int pc_open(void **state, const char *arg, void *ctx, void *shared,
                   struct cprof_error *err)
{
    PyCounterObject *o = ctx;
    struct pycall_state *s;

    (void)arg;
    (void)shared;
    if (!o->read) {
        struct user_cell *c = user_cell(o);
        if (!c)
            return cprof_error_set(err, ENOMEM, "out of memory opening UserCounter '%s'",
                                   o->def.name);
        *state = &c->value;
        return 0;
    }
    if (!(s = PyMem_RawCalloc(1, sizeof(*s))))
        return cprof_error_set(err, ENOMEM, "out of memory opening Counter '%s'", o->def.name);
    s->fn = o->read;
    *state = s;
    return 0;
}

/* A load: the cell is this thread's, written by add() in this thread only. */
static uint64_t user_read(void *state)
{
    return *(const uint64_t *)state;
}

static void stop(struct pycall_state *s, const char *fmt, PyObject *arg)
{
    PyObject *msg = PyUnicode_FromFormat(fmt, arg);
    const char *m = msg ? PyUnicode_AsUTF8(msg) : NULL;

    snprintf(s->reason, sizeof(s->reason), "%s", m ? m : "its read() failed");
    Py_XDECREF(msg);
    PyErr_Clear();
    s->stopped = s->pending = 1;
    cprof_pycounter_failed = 1;
}

static uint64_t pycall_read(void *state)
{
    struct pycall_state *s = state;
    PyObject *r;
    uint64_t v;

    if (s->stopped)
        return s->last;
    SAVE_EXC(saved);
    r = PyObject_CallObject(s->fn, NULL);
    if (!r) {
        PyObject *exc_type = PyErr_Occurred(); /* borrowed: an exception class */
        PyObject *exc_name = exc_type ? PyObject_GetAttrString(exc_type, "__name__") : NULL;
        PyErr_Clear();
        stop(s, "its read() raised %S", exc_name ? exc_name : Py_None);
        Py_XDECREF(exc_name);
    } else if (!PyLong_Check(r) || PyBool_Check(r)) {
        stop(s, "its read() returned %R, not an int", r);
    } else {
        v = PyLong_AsUnsignedLongLong(r);
        if (PyErr_Occurred())
            stop(s, "its read() returned %R, not a count (an int >= 0)", r);
        else if (s->has_last && v < s->last) {
            PyObject *m = PyUnicode_FromFormat("its read() went down from %llu to %llu "
                                               "(counters never go down)",
                                               (unsigned long long)s->last, (unsigned long long)v);
            stop(s, "%S", m ? m : Py_None);
            Py_XDECREF(m);
        } else {
            s->last = v;
            s->has_last = 1;
        }
    }
    Py_XDECREF(r);
    RESTORE_EXC(saved);
    return s->last;
}

static void pc_close(void *state)
{
    (void)state;
}

static void pycall_close(void *state)
{
    PyMem_RawFree(state);
}

/* 1 and why, once, after this thread's Counter stopped on a bad reading. */
static int pycall_take_failure(void *state, char *reason, size_t len)
{
    struct pycall_state *s = state;

    if (!s->pending)
        return 0;
    s->pending = 0;
    snprintf(reason, len, "%s", s->reason);
    return 1;
}

static const struct cprof_counter_def user_def = {
    .name = "user",
    .unit = "events",
    .description = "a UserCounter",
    .probe = pc_probe,
    .thread_open = pc_open,
    .read = user_read,
    .thread_close = pc_close,
};

static const struct cprof_counter_def call_def = {
    .name = "python",
    .unit = "events",
    .description = "a Counter read by a Python callable",
    .probe = pc_probe,
    .thread_open = pc_open,
    .read = pycall_read,
    .thread_close = pycall_close,
    .take_failure = pycall_take_failure,
};

int cprof_pycounter_is(PyObject *o, PyTypeObject *counter_type, PyTypeObject *user_type)
{
    return Py_IS_TYPE(o, counter_type) || Py_IS_TYPE(o, user_type) ||
           PyObject_TypeCheck(o, counter_type) || PyObject_TypeCheck(o, user_type);
}

void cprof_pycounter_spec(PyObject *obj, struct cprof_counter_spec *spec)
{
    PyCounterObject *o = (PyCounterObject *)obj;

    spec->def = &o->def;        /* the object's: the Profiler keeps it alive */
    spec->arg[0] = '\0';
    spec->ctx = o;
}

/* ---- the Python types -------------------------------------------------------------- */

static int valid_name(PyObject *name)
{
    Py_ssize_t len;
    const char *s;

    if (!PyUnicode_Check(name)) {
        PyErr_SetString(PyExc_TypeError, "a counter's name must be a str");
        return 0;
    }
    s = PyUnicode_AsUTF8AndSize(name, &len);
    if (!s)
        return 0;
    if (len == 0 || strpbrk(s, ",: \t\n")) {
        PyErr_Format(PyExc_ValueError,
                     "counter name %R must be non-empty, without ',', ':' or spaces", name);
        return 0;
    }
    return 1;
}

/* Set the object's strings and its descriptor (a copy of `tmpl` named by them). */
static int fill(PyCounterObject *o, PyObject *name, PyObject *unit, PyObject *description,
                const struct cprof_counter_def *tmpl)
{
    const char *n, *u, *d;

    if (!valid_name(name))
        return -1;
    if (!PyUnicode_Check(unit) || !PyUnicode_Check(description)) {
        PyErr_SetString(PyExc_TypeError, "a counter's unit and description must be str");
        return -1;
    }
    if (!(n = PyUnicode_AsUTF8(name)) || !(u = PyUnicode_AsUTF8(unit)) ||
        !(d = PyUnicode_AsUTF8(description)))
        return -1;
    Py_INCREF(name);
    Py_INCREF(unit);
    Py_INCREF(description);
    Py_XSETREF(o->name, name);
    Py_XSETREF(o->unit, unit);
    Py_XSETREF(o->description, description);
    o->def = *tmpl;
    o->def.name = n;            /* the UTF-8 of the str objects it holds */
    o->def.unit = u;
    if (d[0])
        o->def.description = d;
    return 0;
}

static PyObject *default_unit, *empty_str;

static int user_init(PyObject *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"name", "unit", "description", NULL};
    PyCounterObject *o = (PyCounterObject *)self;
    PyObject *name, *unit = default_unit, *desc = empty_str;

    if (!PyArg_ParseTupleAndKeywords(args, kwds, "U|UU:UserCounter", kwlist, &name, &unit, &desc))
        return -1;
    if (!o->has_key) {
        int e = pthread_key_create(&o->key, NULL);
        if (e) {
            PyErr_Format(PyExc_RuntimeError,
                         "cannot create UserCounter %R: the process has no thread-specific key "
                         "left (%s); drop UserCounters that are no longer used",
                         name, strerror(e));
            return -1;
        }
        o->has_key = 1;
    }
    return fill(o, name, unit, desc, &user_def);
}

static PyObject *user_add(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    PyCounterObject *o = (PyCounterObject *)self;
    unsigned long long n = 1;

    if (nargs > 1) {
        PyErr_SetString(PyExc_TypeError, "add() takes at most one argument, n");
        return NULL;
    }
    if (nargs == 1) {
        if (!PyLong_Check(args[0]) || PyBool_Check(args[0])) {
            PyErr_Format(PyExc_TypeError, "add() takes an int, not %.80s", Py_TYPE(args[0])->tp_name);
            return NULL;
        }
        n = PyLong_AsUnsignedLongLong(args[0]);
        if (PyErr_Occurred()) {
            PyErr_Clear();
            PyErr_Format(PyExc_ValueError, "add(%R): a counter only goes up; give n >= 0", args[0]);
            return NULL;
        }
    }
    if (!o->has_key) {
        PyErr_SetString(PyExc_RuntimeError, "UserCounter.__init__() was not called");
        return NULL;
    }
    struct user_cell *c = user_cell(o);
    if (!c)
        return PyErr_NoMemory();
    c->value += n;
    Py_RETURN_NONE;
}

static PyObject *user_value(PyObject *self, void *closure)
{
    PyCounterObject *o = (PyCounterObject *)self;
    const struct user_cell *c = o->has_key ? pthread_getspecific(o->key) : NULL;

    (void)closure;
    return PyLong_FromUnsignedLongLong(c ? c->value : 0);
}

static int call_init(PyObject *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"name", "read", "unit", "description", NULL};
    PyCounterObject *o = (PyCounterObject *)self;
    PyObject *name, *read, *unit = default_unit, *desc = empty_str;

    if (!PyArg_ParseTupleAndKeywords(args, kwds, "UO|UU:Counter", kwlist, &name, &read, &unit,
                                     &desc))
        return -1;
    if (!PyCallable_Check(read)) {
        PyErr_Format(PyExc_TypeError, "Counter(read=...) needs a callable, not %.80s",
                     Py_TYPE(read)->tp_name);
        return -1;
    }
    if (fill(o, name, unit, desc, &call_def) < 0)
        return -1;
    Py_INCREF(read);
    Py_XSETREF(o->read, read);
    return 0;
}

static PyObject *pc_repr(PyObject *self)
{
    PyCounterObject *o = (PyCounterObject *)self;
    return PyUnicode_FromFormat("%s(%R, unit=%R)", Py_TYPE(self)->tp_name, o->name, o->unit);
}

static int pc_traverse(PyObject *self, visitproc visit, void *arg)
{
    PyCounterObject *o = (PyCounterObject *)self;
    Py_VISIT(Py_TYPE(self));
    Py_VISIT(o->read);
    return 0;
}

static int pc_clear(PyObject *self)
{
    PyCounterObject *o = (PyCounterObject *)self;
    Py_CLEAR(o->name);
    Py_CLEAR(o->unit);
    Py_CLEAR(o->description);
    Py_CLEAR(o->read);
    return 0;
}

static void pc_dealloc(PyObject *self)
{
    PyTypeObject *tp = Py_TYPE(self);
    PyCounterObject *o = (PyCounterObject *)self;

    PyObject_GC_UnTrack(self);
    if (o->has_key)             /* the key is free for another counter */
        pthread_key_delete(o->key);
    while (o->cells) {          /* every thread's total, the live threads' included */
        struct user_cell *c = o->cells;
        o->cells = c->next;
        PyMem_RawFree(c);
    }
    pc_clear(self);
    tp->tp_free(self);
    Py_DECREF(tp);
}

static PyMemberDef pc_members[] = {
    {"name", T_OBJECT, offsetof(PyCounterObject, name), READONLY, "the counter's name"},
    {"unit", T_OBJECT, offsetof(PyCounterObject, unit), READONLY, "its unit"},
    {"description", T_OBJECT, offsetof(PyCounterObject, description), READONLY, "what it counts"},
    {NULL, 0, 0, 0, NULL},
};

static PyMethodDef user_methods[] = {
    {"add", (PyCFunction)(void (*)(void))user_add, METH_FASTCALL,
     "add(n=1)\n--\n\nRaise this thread's total by n (an int >= 0)."},
    {NULL, NULL, 0, NULL},
};

const PyMethodDef *const cprof_pycounters_methods_begin = user_methods;
const PyMethodDef *const cprof_pycounters_methods_end =
    user_methods + sizeof(user_methods) / sizeof(user_methods[0]);

static PyGetSetDef user_getset[] = {
    {"value", user_value, NULL, "this thread's total so far", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyType_Slot user_slots[] = {
    {Py_tp_init, (void *)user_init},
    {Py_tp_new, (void *)PyType_GenericNew},
    {Py_tp_dealloc, (void *)pc_dealloc},
    {Py_tp_traverse, (void *)pc_traverse},
    {Py_tp_clear, (void *)pc_clear},
    {Py_tp_repr, (void *)pc_repr},
    {Py_tp_members, pc_members},
    {Py_tp_methods, user_methods},
    {Py_tp_getset, user_getset},
    {Py_tp_doc, "UserCounter(name, unit='events', description='')\n--\n\n"
                "A per-thread counter raised from Python with add(n), read by cprof with no "
                "Python call."},
    {0, NULL},
};

static PyType_Spec user_spec = {
    .name = "cprof._cprof.UserCounter",
    .basicsize = sizeof(PyCounterObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .slots = user_slots,
};

static PyType_Slot call_slots[] = {
    {Py_tp_init, (void *)call_init},
    {Py_tp_new, (void *)PyType_GenericNew},
    {Py_tp_dealloc, (void *)pc_dealloc},
    {Py_tp_traverse, (void *)pc_traverse},
    {Py_tp_clear, (void *)pc_clear},
    {Py_tp_repr, (void *)pc_repr},
    {Py_tp_members, pc_members},
    {Py_tp_doc, "Counter(name, read, unit='events', description='')\n--\n\n"
                "A counter whose value is read() (a callable returning a non-decreasing int), "
                "called at every event."},
    {0, NULL},
};

static PyType_Spec call_spec = {
    .name = "cprof._cprof.Counter",
    .basicsize = sizeof(PyCounterObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .slots = call_slots,
};

int cprof_pycounters_init(PyObject *m, PyTypeObject **counter_type, PyTypeObject **user_type)
{
    if (!default_unit && !(default_unit = PyUnicode_InternFromString("events")))
        return -1;
    if (!empty_str && !(empty_str = PyUnicode_InternFromString("")))
        return -1;
    *counter_type = (PyTypeObject *)PyType_FromModuleAndSpec(m, &call_spec, NULL);
    if (!*counter_type || PyModule_AddType(m, *counter_type) < 0)
        return -1;
    *user_type = (PyTypeObject *)PyType_FromModuleAndSpec(m, &user_spec, NULL);
    if (!*user_type || PyModule_AddType(m, *user_type) < 0)
        return -1;
    return 0;
}
