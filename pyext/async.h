/* asyncio mode (async.c): the hooks' entry for the Python function events when
 * p->async_mode, and the Profiler's support for it. */
#ifndef CPROF_ASYNC_H
#define CPROF_ASYNC_H

#include "profiler.h"

enum { CPROF_AS_START, CPROF_AS_RESUME, CPROF_AS_THROW, /* entries: <= CPROF_AS_THROW */
       CPROF_AS_YIELD, CPROF_AS_RETURN, CPROF_AS_UNWIND };

/* A coroutine's event, or create_task's return (async.c); frame NULL: the running one. */
void cprof_async_coro_event(ProfilerObject *p, int what, PyObject *code, const void *frame,
                            PyObject *arg);

/* A Python function's event in asyncio mode: a function that is no coroutine (and not
 * create_task returning) takes the default path.  `what`: CPROF_AS_*; `arg`: the
 * return value (RETURN) or the exception (UNWIND), or NULL. */
static inline void cprof_async_event(ProfilerObject *p, int what, PyObject *code,
                                     const void *frame, PyObject *arg)
{
    cprof_key key = (cprof_key)(uintptr_t)code;

    if (__builtin_expect(((PyCodeObject *)code)->co_flags & CO_COROUTINE, 0) ||
        (what == CPROF_AS_RETURN && code == p->async_create_task))
        cprof_async_coro_event(p, what, code, frame, arg);
    else if (what <= CPROF_AS_THROW)
        ev(p, cprof_thread_enter, cprof_thread_enter_read, key, code);
    else
        ev(p, cprof_thread_exit, cprof_thread_exit_read, key, code);
}

void cprof_async_free(struct tstate *ts);
int cprof_async_init(ProfilerObject *p);
int cprof_async_enable(ProfilerObject *p);
void cprof_async_stop(ProfilerObject *p);
PyObject *cprof_async_stats(PyObject *self, PyObject *unused);
uint64_t cprof_async_now_ns(void);

#endif
