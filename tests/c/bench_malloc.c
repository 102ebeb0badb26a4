/* What the malloc interposer adds to one allocation: malloc(64) + free pairs in a
 * loop, ns per pair, best of 7 rounds, configurations interleaved:
 *
 *   glibc           __libc_malloc/__libc_free: the C library without the interposer
 *   interposed      malloc/free through libcprof_malloc.so, counting not started
 *                   (what a program that never starts profiling pays)
 *   counting        the same once counting is active (what a profile pays; free
 *                   asks malloc_usable_size for free-bytes)
 *
 * Run preloaded: `meson test -C build --benchmark --suite malloc` sets LD_PRELOAD
 * (tests/meson.build).  Without the preload it says so and exits 77 (skip). */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "cprof_malloc.h"

extern void *__libc_malloc(size_t size);
extern void __libc_free(void *ptr);

#define PAIRS 5000000
#define ROUNDS 7

static void *volatile sink;     /* keeps the compiler from pairing malloc with free away */

static double now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static double libc_round(void)
{
    double t0 = now_ns();

    for (int i = 0; i < PAIRS; i++) {
        sink = __libc_malloc(64);
        __libc_free(sink);
    }
    return (now_ns() - t0) / PAIRS;
}

static double hooked_round(void)
{
    double t0 = now_ns();

    for (int i = 0; i < PAIRS; i++) {
        sink = malloc(64);
        free(sink);
    }
    return (now_ns() - t0) / PAIRS;
}

int main(void)
{
    cprof_malloc_api_fn fn;
    const struct cprof_malloc_api *api;
    double best[3] = {1e9, 1e9, 1e9};
    uint64_t total[CPROF_MALLOC_NCOUNTS];

    *(void **)&fn = dlsym(RTLD_DEFAULT, CPROF_MALLOC_API_SYMBOL);
    if (!fn) {
        fprintf(stderr, "bench_malloc: run me with LD_PRELOAD=.../%s\n", CPROF_MALLOC_LIBRARY);
        return 77;
    }
    api = fn();
    for (int r = 0; r < ROUNDS; r++) {  /* glibc and idle interleaved; counting is for good */
        double a = libc_round(), b = hooked_round();
        best[0] = a < best[0] ? a : best[0];
        best[1] = b < best[1] ? b : best[1];
    }
    api->activate();
    for (int r = 0; r < ROUNDS; r++) {
        double a = libc_round(), c = hooked_round();
        best[0] = a < best[0] ? a : best[0];
        best[2] = c < best[2] ? c : best[2];
    }
    api->process_total(total);
    printf("malloc(64) + free, ns per pair, best of %d x %d:\n", ROUNDS, PAIRS);
    printf("  glibc (no interposer in the path) %6.2f\n", best[0]);
    printf("  interposed, counting not started  %6.2f  (+%.2f)\n", best[1], best[1] - best[0]);
    printf("  interposed, counting              %6.2f  (+%.2f)\n", best[2], best[2] - best[0]);
    printf("  counted: %llu allocations, %llu bytes\n",
           (unsigned long long)total[CPROF_MALLOC_CALLS],
           (unsigned long long)total[CPROF_MALLOC_BYTES]);
    return 0;
}
