/* Allocation counters on the Python side (allocators.c):
 *
 *   pymalloc-bytes, pymalloc-calls   Python's own allocator (PyMem_SetAllocator
 *                                    hooks on the OBJ and MEM domains)
 *   malloc_interposer(name)          whether libcprof_malloc.so is preloaded, for
 *                                    the CLI's restart
 */
#ifndef CPROF_ALLOCATORS_H
#define CPROF_ALLOCATORS_H

#include <Python.h>

#include "../core/registry.h"

/* The counters this extension knows by name: counters/'s built-in ones, then
 * pymalloc-bytes and pymalloc-calls.  NULL-terminated, in --list-counters order. */
const struct cprof_counter_def *const *cprof_py_counters(void);

/* A profile using `specs` starts or stops (under the GIL): the first one using a
 * pymalloc counter installs the allocator hooks, the last one restores the
 * allocators that were there before. */
void cprof_pymalloc_profile_start(const struct cprof_counter_spec *specs, unsigned n);
void cprof_pymalloc_profile_stop(const struct cprof_counter_spec *specs, unsigned n);

/* malloc_interposer(name='malloc-bytes') -> None if that malloc counter works in
 * this process, else (errno, sentence): ENOPKG when the interposer is not loaded
 * (the sentence says how to start the program), another code when it is loaded
 * but unusable. */
PyObject *cprof_py_malloc_interposer(PyObject *module, PyObject *args);

#endif
