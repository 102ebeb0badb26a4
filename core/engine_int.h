/* Internal to the engine's files (engine.c, extras.c, merge.c): not for callers. */
#ifndef CPROF_ENGINE_INT_H
#define CPROF_ENGINE_INT_H

#include "engine.h"

/* Function fn's extras entry, allocated on first use (the array doubles): NULL
 * when memory runs out. */
struct cprof_fn_ext *cprof_extras_slot(struct cprof_extras *x, size_t fn);
/* Insert (value, tag) into an ascending slow set of capacity k (full or not). */
void cprof_slow_insert(struct cprof_slow_set *s, unsigned k, uint64_t value, uint64_t tag);
/* One call of function fn ended (its frame read `start` at entry, `now` at exit;
 * `current`: it is the call the exit event is about): its inclusive values go into
 * its histograms and, if among the K largest, its slow set. */
void cprof_record_call(struct cprof_thread *t, size_t fn, const uint64_t *start,
                       const uint64_t *now, int current);

/* Set the *_read events for the thread's state (engine.c): after a change of
 * rd.quick or extras.any. */
void cprof_pick_read_events(struct cprof_thread *t);

#endif
