/* Per-thread detector of "this thread may have left the CPU since I last looked",
 * without a system call: glibc registers an rseq area for every thread; we store a
 * pointer to an rseq critical-section descriptor whose range is empty, and the
 * kernel clears it on the way back to user space after the thread was switched
 * out, migrated or sent a signal.  It can over-report (a signal, a migration),
 * never miss a switch.  Where rseq is not registered every poll reports a switch,
 * so counters built on it fall back to a real read per event. */
#ifndef CPROF_SWITCHDET_H
#define CPROF_SWITCHDET_H

#include <stddef.h>
#include <stdint.h>
#include <sys/rseq.h>

/* The descriptor we arm rseq_cs with (switchdet.c). */
extern const struct rseq_cs cprof_rseq_armed __attribute__((visibility("hidden")));

struct cprof_switchdet {
    uint64_t epoch;                 /* bumped at every poll that saw a possible switch */
    volatile uint64_t *rseq_cs;     /* this thread's rseq->rseq_cs, or NULL: no rseq */
};

/* The calling thread's detector (thread-local storage, never NULL). */
struct cprof_switchdet *cprof_switchdet_self(void);

/* 1 if rseq is registered for the calling thread, else 0 and a reason in why. */
int cprof_switchdet_available(char *why, size_t len);

/* The current epoch.  Re-arms before returning, so a real read made right after
 * a changed epoch is covered by the next poll. */
static inline uint64_t cprof_switchdet_poll(struct cprof_switchdet *d)
{
    if (d->rseq_cs && *d->rseq_cs == (uint64_t)(uintptr_t)&cprof_rseq_armed)
        return d->epoch;
    if (d->rseq_cs) {
        *d->rseq_cs = (uint64_t)(uintptr_t)&cprof_rseq_armed;
        __atomic_signal_fence(__ATOMIC_SEQ_CST);
    }
    return ++d->epoch;
}

#endif
