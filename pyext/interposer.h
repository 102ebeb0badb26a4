/* Is the malloc interposer (libcprof_malloc.so) loaded?  The CLI asks before it
 * runs a program with a malloc-* counter (interposer.c). */
#ifndef CPROF_INTERPOSER_H
#define CPROF_INTERPOSER_H

#include <Python.h>

/* malloc_interposer(name='malloc-bytes') -> None if that malloc counter works in
 * this process, else (errno, sentence): ENOPKG when the interposer is not loaded
 * (the sentence says how to start the program), another code when it is loaded
 * but unusable.  NULL with an exception for a name that is not a malloc counter. */
PyObject *cprof_py_malloc_interposer(PyObject *module, PyObject *args);

#endif
