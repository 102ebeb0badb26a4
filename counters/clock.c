#include "clock.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CALIBRATE_NS 2000000u   /* spin 2 ms: ~3e-5 relative error at 30 ns jitter */
#define CHECK_NS 200000u        /* with a seed: spin 200 us (~3e-4), then agree within... */
#define CHECK_TOLERANCE 1000u   /* ...1/1000 of it, or go on to CALIBRATE_NS */

struct cprof_clock cprof_clock;
static pthread_once_t clock_once = PTHREAD_ONCE_INIT;
static char clock_why[160];
static uint64_t seed_mult;      /* cprof_clock_seed(): an earlier process's ratio, or 0 */
static int seed_taken;          /* calibrate() confirmed and used it */

#if defined(__x86_64__)
static int cpu_has_flags(const char *const *flags)
{
    FILE *f = fopen("/proc/cpuinfo", "r");
    char line[4096];
    int ok = 0;

    if (!f)
        return 0;
    while (fgets(line, sizeof(line), f)) {
        if (strncmp(line, "flags", 5) != 0)
            continue;
        ok = 1;
        for (const char *const *fl = flags; *fl; fl++) {
            char word[64];
            snprintf(word, sizeof(word), " %s", *fl);
            size_t n = strlen(word);
            const char *p = line;
            int found = 0;
            while ((p = strstr(p, word)) != NULL) {
                if (p[n] == ' ' || p[n] == '\n' || p[n] == '\0') {
                    found = 1;
                    break;
                }
                p += n;
            }
            ok &= found;
        }
        break;
    }
    fclose(f);
    return ok;
}

/* A (tsc, ns) pair taken as close together as we can: the ns read bracketed by
 * two TSC reads, keeping the tightest of a few tries. */
static void pair(uint64_t *tsc, uint64_t *ns)
{
    uint64_t best = UINT64_MAX;

    for (int i = 0; i < 5; i++) {
        uint64_t t0 = cprof_clock_tsc(), n = cprof_clock_monotonic_ns(), t1 = cprof_clock_tsc();
        if (t1 - t0 < best) {
            best = t1 - t0;
            *tsc = t0 + (t1 - t0) / 2;
            *ns = n;
        }
    }
}
#endif

static void calibrate(void)
{
#if defined(__x86_64__)
    static const char *const needed[] = {"constant_tsc", "nonstop_tsc", NULL};
    const char *env = getenv("CPROF_NO_TSC");
    uint64_t t0 = 0, n0 = 0, t1 = 0, n1 = 0, seed;

    if (env && env[0] && strcmp(env, "0") != 0) {
        snprintf(clock_why, sizeof(clock_why), "CPROF_NO_TSC is set");
        return;
    }
    if (!cpu_has_flags(needed)) {
        snprintf(clock_why, sizeof(clock_why), "the TSC is not invariant here");
        return;
    }
    seed = __atomic_load_n(&seed_mult, __ATOMIC_RELAXED);
    pair(&t0, &n0);
    if (seed) {         /* a short spin that confirms the seed saves the long one */
        do
            pair(&t1, &n1);
        while (n1 - n0 < CHECK_NS);
        if (t1 > t0) {
            uint64_t m = (uint64_t)((((unsigned __int128)(n1 - n0)) << 32) / (t1 - t0));
            uint64_t off = m > seed ? m - seed : seed - m;
            seed_taken = off <= seed / CHECK_TOLERANCE;
        }
    }
    if (!seed_taken)
        do
            pair(&t1, &n1);
        while (n1 - n0 < CALIBRATE_NS);
    if (t1 <= t0) {
        snprintf(clock_why, sizeof(clock_why), "the TSC did not advance");
        return;
    }
    cprof_clock.mult = seed_taken ? seed
                                  : (uint64_t)((((unsigned __int128)(n1 - n0)) << 32) / (t1 - t0));
    cprof_clock.base_tsc = t1;
    cprof_clock.base_ns = n1;
    __atomic_store_n(&cprof_clock.use_tsc, 1, __ATOMIC_RELEASE); /* after the fields it guards */
#else
    snprintf(clock_why, sizeof(clock_why), "rdtsc is x86-64 only");
#endif
}

void cprof_clock_init(void)
{
    pthread_once(&clock_once, calibrate);
}

void cprof_clock_seed(uint64_t mult)
{
    __atomic_store_n(&seed_mult, mult, __ATOMIC_RELAXED); /* read once, by calibrate() */
}

uint64_t cprof_clock_mult(int *seeded)
{
    if (!__atomic_load_n(&cprof_clock.use_tsc, __ATOMIC_ACQUIRE))
        return 0;
    *seeded = seed_taken;
    return cprof_clock.mult;
}

void cprof_clock_describe(char *buf, size_t len)
{
    cprof_clock_init();
    if (cprof_clock.use_tsc)
        snprintf(buf, len, "rdtsc (invariant TSC, %.3f GHz) calibrated against CLOCK_MONOTONIC",
                 4294967296.0 / (double)cprof_clock.mult);
    else
        snprintf(buf, len, "CLOCK_MONOTONIC (vDSO; no rdtsc: %s)", clock_why);
}
