/* The cheap monotonic clock shared by the time counters (wall, and cpu between
 * context switches), in ns.
 *
 * On x86-64 with an invariant TSC (constant_tsc and nonstop_tsc in /proc/cpuinfo),
 * rdtsc scaled by a ratio calibrated once against CLOCK_MONOTONIC (7 ns a read
 * instead of 16-26 ns for the vDSO); elsewhere CLOCK_MONOTONIC.  Chosen at the
 * first cprof_clock_init() and reported by cprof_clock_describe(). */
#ifndef CPROF_CLOCK_H
#define CPROF_CLOCK_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

struct cprof_clock {
    int use_tsc;                /* 1: rdtsc path; 0: CLOCK_MONOTONIC */
    uint64_t base_tsc;          /* TSC at calibration */
    uint64_t base_ns;           /* CLOCK_MONOTONIC at calibration, ns */
    uint64_t mult;              /* ns per tick, as a 32.32 fixed-point number */
};

extern struct cprof_clock cprof_clock __attribute__((visibility("hidden")));

/* Calibrate (once per process; later calls return at once).  Thread-safe. */
void cprof_clock_init(void);
/* "rdtsc (invariant TSC, 2.9 GHz) calibrated against CLOCK_MONOTONIC" or the like. */
void cprof_clock_describe(char *buf, size_t len);
/* Before the first cprof_clock_init(): the ratio an earlier process measured on this
 * machine since its boot (cprof.calibration keeps it).  Calibration then spins 200 us
 * instead of 2 ms when that short measurement agrees with it within 1/1000, and uses
 * it; otherwise it measures as without.  0: no seed. */
void cprof_clock_seed(uint64_t mult);
/* The ratio in use (0 without rdtsc, or before cprof_clock_init()); *seeded: whether
 * it is the confirmed seed. */
uint64_t cprof_clock_mult(int *seeded);

static inline uint64_t cprof_clock_monotonic_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

#if defined(__x86_64__)
static inline uint64_t cprof_clock_tsc(void)
{
    uint32_t lo, hi;
    __asm__ __volatile__("rdtsc" : "=a"(lo), "=d"(hi));
    return (uint64_t)hi << 32 | lo;
}
#endif

/* Monotonic ns (never earlier than the calibration point). */
static inline uint64_t cprof_clock_ns(void)
{
#if defined(__x86_64__)
    if (cprof_clock.use_tsc) {
        uint64_t d = cprof_clock_tsc() - cprof_clock.base_tsc;
        return cprof_clock.base_ns + (uint64_t)(((unsigned __int128)d * cprof_clock.mult) >> 32);
    }
#endif
    return cprof_clock_monotonic_ns();
}

#endif
