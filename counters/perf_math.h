/* The arithmetic of reading perf events, as pure functions of what the kernel
 * gives: the mmap'd page's seqlock and rdpmc (with the pmc_width sign
 * extension), scaling for multiplexing, the PERF_FORMAT_GROUP read layout, and
 * keeping a scaled estimate monotonic.  No system call happens here, so the
 * Criterion tests (tests/c/test_perf.c) feed them injected readings: the hardware
 * path is exercised without a PMU. */
#ifndef CPROF_PERF_MATH_H
#define CPROF_PERF_MATH_H

#include <errno.h>
#include <stddef.h>
#include <stdint.h>

#include <linux/perf_event.h>

/* A raw rdpmc value is pmc_width bits wide and, relative to the page's offset,
 * signed: sign-extend it from bit pmc_width - 1 (the kernel's own recipe in
 * include/uapi/linux/perf_event.h).  A width of 0 or above 64 means 64. */
static inline int64_t cprof_perf_pmc_extend(uint64_t raw, unsigned width)
{
    unsigned shift = (width == 0 || width >= 64) ? 0 : 64 - width;

    return (int64_t)(raw << shift) >> shift;
}

/* One consistent look at a perf event's mmap'd page. */
struct cprof_perf_snap {
    uint64_t count;             /* offset, plus the sign-extended hardware counter when index != 0 */
    uint64_t enabled;           /* time_enabled at the kernel's last update, ns */
    uint64_t running;           /* time_running at the kernel's last update, ns */
    uint32_t index;             /* hardware counter + 1, or 0: not on a counter now */
    unsigned tries;             /* seqlock passes it took (1: no retry) */
};

/* Reads hardware counter `counter` (rdpmc on x86-64); ctx is for tests. */
typedef uint64_t (*cprof_rdpmc_fn)(uint32_t counter, void *ctx);

/* The seqlock read of the page: retry while the kernel updated it meanwhile
 * (pc->lock changed).  With rdpmc non-NULL and cap_user_rdpmc set, a running
 * event's hardware counter is added.  The page is only written by the kernel on
 * this thread's CPU (the event is per thread), so compiler barriers suffice. */
static inline void cprof_perf_page_snap(const volatile struct perf_event_mmap_page *pc,
                                        cprof_rdpmc_fn rdpmc, void *ctx,
                                        struct cprof_perf_snap *out)
{
    uint32_t seq;
    unsigned tries = 0;

    do {
        tries++;
        seq = pc->lock;
        __atomic_signal_fence(__ATOMIC_SEQ_CST);
        out->index = pc->index;
        out->enabled = pc->time_enabled;
        out->running = pc->time_running;
        out->count = pc->offset;
        if (rdpmc && out->index && pc->cap_user_rdpmc)
            out->count += (uint64_t)cprof_perf_pmc_extend(rdpmc(out->index - 1, ctx),
                                                          pc->pmc_width);
        __atomic_signal_fence(__ATOMIC_SEQ_CST);
    } while (pc->lock != seq);
    out->tries = tries;
}

/* A snapshot is the exact count only if the event is on a hardware counter now
 * and was never multiplexed (time_running == time_enabled); otherwise read(). */
static inline int cprof_perf_snap_exact(const struct cprof_perf_snap *s)
{
    return s->index != 0 && s->running == s->enabled;
}

/* Scale a multiplexed count to the whole enabled time: count * enabled / running,
 * in 128 bits, saturating.  An event that never ran counted nothing: 0. */
static inline uint64_t cprof_perf_scale(uint64_t count, uint64_t enabled, uint64_t running)
{
    unsigned __int128 v;

    if (running == 0)
        return 0;
    if (running >= enabled)
        return count;
    v = (unsigned __int128)count * enabled / running;
    return v > UINT64_MAX ? UINT64_MAX : (uint64_t)v;
}

/* The read() layout of a group leader opened with read_format:
 *   u64 nr; [u64 time_enabled]; [u64 time_running];
 *   { u64 value; [u64 id]; [u64 lost]; } x nr
 * Parses `nbytes` of buf into values[0..want), *enabled and *running (set to 0
 * when not requested).  0, or -ERANGE when the group has fewer than `want`
 * members, -EIO when nbytes is shorter than the layout it announces. */
static inline int cprof_perf_group_parse(const uint64_t *buf, size_t nbytes, uint64_t read_format,
                                         unsigned want, uint64_t *values, uint64_t *enabled,
                                         uint64_t *running)
{
    size_t words = nbytes / sizeof(uint64_t), i = 1, stride = 1;
    uint64_t nr;

    if (!(read_format & PERF_FORMAT_GROUP) || words < 1)
        return -EIO;
    nr = buf[0];
    *enabled = *running = 0;
    if (read_format & PERF_FORMAT_TOTAL_TIME_ENABLED) {
        if (i >= words)
            return -EIO;
        *enabled = buf[i++];
    }
    if (read_format & PERF_FORMAT_TOTAL_TIME_RUNNING) {
        if (i >= words)
            return -EIO;
        *running = buf[i++];
    }
    if (read_format & PERF_FORMAT_ID)
        stride++;
#ifdef PERF_FORMAT_LOST
    if (read_format & PERF_FORMAT_LOST)
        stride++;
#endif
    if (nr < want)
        return -ERANGE;
    if (nr > words || i + (size_t)nr * stride > words)
        return -EIO;
    for (unsigned k = 0; k < want; k++)
        values[k] = buf[i + (size_t)k * stride];
    return 0;
}

/* Counters only go up: a scaled estimate can dip when the ratio of the times
 * moves, so hold the last value returned.  Returns what to report. */
static inline uint64_t cprof_perf_hold(uint64_t v, uint64_t *last)
{
    if (v < *last)
        return *last;
    *last = v;
    return v;
}

#endif
