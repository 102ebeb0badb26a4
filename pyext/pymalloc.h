/* pymalloc-bytes and pymalloc-calls: counters of Python's own allocator
 * (pymalloc.c), raised by PyMem_SetAllocator hooks on the OBJ and MEM domains
 * while a profile using them runs. */
#ifndef CPROF_PYMALLOC_H
#define CPROF_PYMALLOC_H

#include "../core/registry.h"

extern const struct cprof_counter_def cprof_counter_pymalloc_bytes;
extern const struct cprof_counter_def cprof_counter_pymalloc_calls;

/* A profile using `specs` starts or stops: the first one using a pymalloc counter
 * installs the allocator hooks, the last one restores the allocators that were
 * there before.  Called with the GIL held; safe to call from any thread. */
void cprof_pymalloc_profile_start(const struct cprof_counter_spec *specs, unsigned n);
void cprof_pymalloc_profile_stop(const struct cprof_counter_spec *specs, unsigned n);

#endif
