/* Tests of the perf counters (counters/perf*.c).
 *
 * This machine has no hardware PMU, so the hardware read path is tested in
 * pieces: its arithmetic (perf_math.h: rdpmc sign extension, the page's seqlock,
 * multiplexing scale, the group read layout) with injected readings; libpfm4's
 * encoding of names for real (libpfm4 encodes without a usable PMU, and
 * LIBPFM_FORCE_PMU picks a known one); and the group plumbing (leader reads,
 * members return its values) for real with software events in a group, which the
 * kernel accepts.  Software events are checked against ground truth: fresh pages
 * touched = page faults counted.
 *
 * Built twice: test_perf with the libpfm4 the build found, test_perf_nopfm with
 * CPROF_HAVE_LIBPFM=0 (and CPROF_TEST_NOPFM: perf.c and perf_names.c alone), for
 * the sentences a build without libpfm4 gives. */
#define _GNU_SOURCE
#include <criterion/criterion.h>
#include <criterion/parameterized.h>

#include <errno.h>
#include <grp.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <unistd.h>

#include "registry.h"
#include "../../counters/counters.h"
#include "../../counters/perf.h"
#include "../../counters/perf_math.h"

#define HAS(msg, sub) cr_assert(strstr((msg), (sub)) != NULL, "'%s' not in: %s", (sub), (msg))
/* `call` fails by the convention: a negative errno, the same code in err. */
#define FAILS(call, err)                                                                       \
    do {                                                                                       \
        int r_ = (call);                                                                       \
        cr_assert_lt(r_, 0, "%s succeeded", #call);                                            \
        cr_assert_eq(r_, -(err).code, "%s gave %d, err.code %d", #call, r_, (err).code);       \
    } while (0)

static const struct cprof_resolver *const perf_only[] = {&cprof_perf_resolver, NULL};
#ifdef CPROF_TEST_NOPFM
/* builtin.c is not linked into this variant */
const struct cprof_counter_def *const cprof_builtin_counters[] = {NULL};
const struct cprof_resolver *const cprof_counter_resolvers[] = {&cprof_perf_resolver, NULL};
#endif
static const struct cprof_counter_def *const no_builtins[] = {NULL};

/* One sentence: non-empty, one line, no trailing period-and-more. */
static void assert_sentence(const char *msg, const char *names)
{
    cr_assert(msg[0], "empty message");
    cr_assert(strchr(msg, '\n') == NULL, "more than one line: %s", msg);
    cr_assert(strlen(msg) < CPROF_ERROR_LEN - 1, "message truncated: %s", msg);
    if (names)
        HAS(msg, names);
}

/* ================================================================ perf_math.h */

Test(perf_math, pmc_sign_extension)
{
    /* 48-bit counters (Intel, AMD): bit 47 is the sign */
    cr_assert_eq(cprof_perf_pmc_extend(0xffffffffffffULL, 48), -1);
    cr_assert_eq(cprof_perf_pmc_extend(0x7fffffffffffULL, 48), 0x7fffffffffffLL);
    cr_assert_eq(cprof_perf_pmc_extend(0x800000000000ULL, 48), -0x800000000000LL);
    cr_assert_eq(cprof_perf_pmc_extend(0xffffffffff00ULL, 48), -256);
    /* bits above the width are not part of the counter */
    cr_assert_eq(cprof_perf_pmc_extend(0xdead000000000005ULL, 48), 5);
    cr_assert_eq(cprof_perf_pmc_extend(0xdeadffffffffffffULL, 48), -1);
    /* 40 and 32 bits */
    cr_assert_eq(cprof_perf_pmc_extend(0xffffffffffULL, 40), -1);
    cr_assert_eq(cprof_perf_pmc_extend(0x7fffffffffULL, 40), 0x7fffffffffLL);
    cr_assert_eq(cprof_perf_pmc_extend(0x80000000ULL, 32), -0x80000000LL);
    /* 64 bits, or a width of 0 (not reported): the value as is */
    cr_assert_eq(cprof_perf_pmc_extend(0xffffffffffffffffULL, 64), -1);
    cr_assert_eq(cprof_perf_pmc_extend(0x123456789abcULL, 0), 0x123456789abcLL);
    cr_assert_eq(cprof_perf_pmc_extend(0x8000000000000000ULL, 0), INT64_MIN);
}

/* A page the "kernel" (the tests) writes, and an rdpmc that can interfere. */
struct fake_pmu {
    struct perf_event_mmap_page *pc;
    uint64_t pmc[8];            /* what rdpmc(i) returns */
    unsigned calls;             /* rdpmc calls */
    uint32_t last_counter;      /* its last argument */
    unsigned interrupt;         /* rdpmc calls during which the kernel updates the page */
    uint64_t new_offset;        /* what that update writes */
    uint64_t new_pmc;
};

static uint64_t fake_rdpmc(uint32_t counter, void *ctx)
{
    struct fake_pmu *f = ctx;
    uint64_t v = f->pmc[counter];

    f->calls++;
    f->last_counter = counter;
    if (f->interrupt) {
        /* the kernel rescheduled the event meanwhile: a new offset and counter
         * value, and the lock bumped, so this pass must be thrown away */
        f->interrupt--;
        f->pc->lock++;
        f->pc->offset = f->new_offset;
        f->pmc[counter] = f->new_pmc;
    }
    return v;
}

static struct perf_event_mmap_page *new_page(void)
{
    struct perf_event_mmap_page *pc = calloc(1, sizeof(*pc));

    cr_assert_not_null(pc);
    pc->lock = 4;
    pc->pmc_width = 48;
    pc->cap_user_rdpmc = 1;
    pc->time_enabled = pc->time_running = 1000;
    return pc;
}

Test(perf_math, page_without_a_hardware_counter_is_its_offset)
{
    struct fake_pmu f = {.pc = new_page()};
    struct cprof_perf_snap s;

    f.pc->index = 0;            /* software event, or hardware event off the PMU */
    f.pc->offset = 12345;
    cprof_perf_page_snap(f.pc, fake_rdpmc, &f, &s);
    cr_assert_eq(s.count, 12345);
    cr_assert_eq(s.index, 0);
    cr_assert_eq(s.tries, 1);
    cr_assert_eq(f.calls, 0, "rdpmc must not run for index 0");
    cr_assert_not(cprof_perf_snap_exact(&s));
    /* the same without an rdpmc (the software read path) */
    cprof_perf_page_snap(f.pc, NULL, NULL, &s);
    cr_assert_eq(s.count, 12345);
    free(f.pc);
}

Test(perf_math, page_adds_the_sign_extended_counter)
{
    struct fake_pmu f = {.pc = new_page()};
    struct cprof_perf_snap s;

    /* The kernel stores offset = count - prev_count, often "negative": */
    f.pc->index = 3;            /* hardware counter 2 */
    f.pc->offset = (uint64_t)-(int64_t)(1 << 20);
    f.pmc[2] = (1 << 20) + 123;
    cprof_perf_page_snap(f.pc, fake_rdpmc, &f, &s);
    cr_assert_eq(s.count, 123);
    cr_assert_eq(f.last_counter, 2, "rdpmc takes index - 1");
    cr_assert_eq(f.calls, 1);
    cr_assert(cprof_perf_snap_exact(&s));

    /* a raw counter with bit 47 set is negative: offset 1000, pmc -256 */
    f.pc->offset = 1000;
    f.pmc[2] = 0xffffffffff00ULL | 0xabcd000000000000ULL; /* junk above bit 47 too */
    cprof_perf_page_snap(f.pc, fake_rdpmc, &f, &s);
    cr_assert_eq(s.count, 744);

    /* a 40-bit counter */
    f.pc->pmc_width = 40;
    f.pc->offset = 10;
    f.pmc[2] = 0xfffffffffeULL;
    cprof_perf_page_snap(f.pc, fake_rdpmc, &f, &s);
    cr_assert_eq(s.count, 8);
    free(f.pc);
}

Test(perf_math, page_without_cap_user_rdpmc_does_not_rdpmc)
{
    struct fake_pmu f = {.pc = new_page()};
    struct cprof_perf_snap s;

    f.pc->index = 1;
    f.pc->cap_user_rdpmc = 0;
    f.pc->offset = 77;
    f.pmc[0] = 1000;
    cprof_perf_page_snap(f.pc, fake_rdpmc, &f, &s);
    cr_assert_eq(f.calls, 0);
    cr_assert_eq(s.count, 77);
    free(f.pc);
}

Test(perf_math, seqlock_retries_until_the_page_is_stable)
{
    struct fake_pmu f = {.pc = new_page()};
    struct cprof_perf_snap s;

    f.pc->index = 1;
    f.pc->offset = 100;
    f.pmc[0] = 5;               /* a torn read would give 105 */
    f.interrupt = 1;
    f.new_offset = 2000;
    f.new_pmc = 7;
    cprof_perf_page_snap(f.pc, fake_rdpmc, &f, &s);
    cr_assert_eq(s.tries, 2);
    cr_assert_eq(s.count, 2007, "the second, consistent pass counts: got %" PRIu64, s.count);

    f.interrupt = 3;            /* three updates in a row */
    f.new_offset = 5000;
    f.new_pmc = 1;
    cprof_perf_page_snap(f.pc, fake_rdpmc, &f, &s);
    cr_assert_eq(s.tries, 4);
    cr_assert_eq(s.count, 5001);
    free(f.pc);
}

Test(perf_math, multiplexed_or_off_pmu_is_not_exact)
{
    struct cprof_perf_snap s = {.count = 1, .enabled = 1000, .running = 1000, .index = 2};

    cr_assert(cprof_perf_snap_exact(&s));
    s.running = 600;            /* was multiplexed: needs scaling, so read() */
    cr_assert_not(cprof_perf_snap_exact(&s));
    s.running = 1000;
    s.index = 0;                /* off the PMU right now */
    cr_assert_not(cprof_perf_snap_exact(&s));
}

Test(perf_math, scale)
{
    cr_assert_eq(cprof_perf_scale(1000, 500, 500), 1000, "not multiplexed: as counted");
    cr_assert_eq(cprof_perf_scale(1000, 1000, 500), 2000, "ran half the time: doubled");
    cr_assert_eq(cprof_perf_scale(999, 3000, 1000), 2997);
    cr_assert_eq(cprof_perf_scale(10, 3, 2), 15);
    cr_assert_eq(cprof_perf_scale(7, 10, 3), 23, "rounds down: 7 * 10 / 3 = 23.3");
    cr_assert_eq(cprof_perf_scale(0, 1000, 10), 0);
    cr_assert_eq(cprof_perf_scale(0, 1000, 0), 0, "never ran: counted nothing");
    cr_assert_eq(cprof_perf_scale(5, 0, 0), 0);
    cr_assert_eq(cprof_perf_scale(1000, 500, 600), 1000, "running > enabled is not scaled down");
    /* 128-bit intermediate: count * enabled overflows 64 bits, the result does not */
    cr_assert_eq(cprof_perf_scale(1ULL << 40, 3000000000ULL, 1000000000ULL), 3ULL << 40);
    cr_assert_eq(cprof_perf_scale(UINT64_MAX / 2, 2000000000000ULL, 1000000000000ULL),
                 UINT64_MAX - 1);
    /* a result that does not fit saturates */
    cr_assert_eq(cprof_perf_scale(1ULL << 63, 4, 1), UINT64_MAX);
}

Test(perf_math, group_layout_with_times)
{
    const uint64_t fmt = PERF_FORMAT_GROUP | PERF_FORMAT_TOTAL_TIME_ENABLED |
                         PERF_FORMAT_TOTAL_TIME_RUNNING;
    uint64_t buf[] = {3, 9000, 4500, 111, 222, 333};
    uint64_t v[3] = {0}, en = 1, run = 1;

    cr_assert_eq(cprof_perf_group_parse(buf, sizeof(buf), fmt, 3, v, &en, &run), 0);
    cr_assert_eq(en, 9000);
    cr_assert_eq(run, 4500);
    cr_assert_eq(v[0], 111);
    cr_assert_eq(v[1], 222);
    cr_assert_eq(v[2], 333);
    /* fewer wanted than the group has: the first ones */
    memset(v, 0, sizeof(v));
    cr_assert_eq(cprof_perf_group_parse(buf, sizeof(buf), fmt, 2, v, &en, &run), 0);
    cr_assert_eq(v[1], 222);
    cr_assert_eq(v[2], 0);
}

Test(perf_math, group_layout_with_ids_and_without_times)
{
    uint64_t ids[] = {2, 9000, 9000, 10, 0xa1, 20, 0xa2};
    uint64_t plain[] = {2, 10, 20};
    uint64_t v[2], en, run;

    cr_assert_eq(cprof_perf_group_parse(ids, sizeof(ids),
                                        PERF_FORMAT_GROUP | PERF_FORMAT_ID |
                                            PERF_FORMAT_TOTAL_TIME_ENABLED |
                                            PERF_FORMAT_TOTAL_TIME_RUNNING,
                                        2, v, &en, &run),
                 0);
    cr_assert_eq(v[0], 10, "ids are skipped");
    cr_assert_eq(v[1], 20);
    cr_assert_eq(cprof_perf_group_parse(plain, sizeof(plain), PERF_FORMAT_GROUP, 2, v, &en, &run),
                 0);
    cr_assert_eq(v[0], 10);
    cr_assert_eq(v[1], 20);
    cr_assert_eq(en, 0, "times not requested read as 0");
    cr_assert_eq(run, 0);
}

Test(perf_math, group_layout_errors)
{
    const uint64_t fmt = PERF_FORMAT_GROUP | PERF_FORMAT_TOTAL_TIME_ENABLED |
                         PERF_FORMAT_TOTAL_TIME_RUNNING;
    uint64_t buf[] = {3, 9000, 4500, 111, 222, 333};
    uint64_t huge[] = {UINT64_MAX / 2, 1, 1, 5};
    uint64_t v[4], en, run;

    /* a short read: the values it announces are not all there */
    cr_assert_eq(cprof_perf_group_parse(buf, 5 * sizeof(uint64_t), fmt, 3, v, &en, &run), -EIO);
    cr_assert_eq(cprof_perf_group_parse(buf, 2 * sizeof(uint64_t), fmt, 1, v, &en, &run), -EIO);
    cr_assert_eq(cprof_perf_group_parse(buf, 4, fmt, 1, v, &en, &run), -EIO);
    cr_assert_eq(cprof_perf_group_parse(buf, 0, fmt, 1, v, &en, &run), -EIO);
    /* the group has fewer members than we opened */
    cr_assert_eq(cprof_perf_group_parse(buf, sizeof(buf), fmt, 4, v, &en, &run), -ERANGE);
    /* a nonsense count does not overflow the bound check */
    cr_assert_eq(cprof_perf_group_parse(huge, sizeof(huge), fmt, 1, v, &en, &run), -EIO);
    /* not a group layout */
    cr_assert_eq(cprof_perf_group_parse(buf, sizeof(buf), PERF_FORMAT_TOTAL_TIME_ENABLED, 1, v,
                                        &en, &run),
                 -EIO);
}

Test(perf_math, multiplexed_group_end_to_end)
{
    /* cycles and instructions ran 40% of the enabled time: both scaled by 2.5,
     * so their ratio (the IPC) is unchanged */
    const uint64_t fmt = PERF_FORMAT_GROUP | PERF_FORMAT_TOTAL_TIME_ENABLED |
                         PERF_FORMAT_TOTAL_TIME_RUNNING;
    uint64_t buf[] = {2, 10000, 4000, 4000000, 6000000};
    uint64_t v[2], en, run, last[2] = {0, 0};

    cr_assert_eq(cprof_perf_group_parse(buf, sizeof(buf), fmt, 2, v, &en, &run), 0);
    cr_assert_eq(cprof_perf_hold(cprof_perf_scale(v[0], en, run), &last[0]), 10000000);
    cr_assert_eq(cprof_perf_hold(cprof_perf_scale(v[1], en, run), &last[1]), 15000000);
    /* later the ratio of times moves and the estimate dips: held, never backwards */
    uint64_t later[] = {2, 11000, 4600, 4100000, 6200000};
    cr_assert_eq(cprof_perf_group_parse(later, sizeof(later), fmt, 2, v, &en, &run), 0);
    cr_assert_lt(cprof_perf_scale(v[0], en, run), 10000000);
    cr_assert_eq(cprof_perf_hold(cprof_perf_scale(v[0], en, run), &last[0]), 10000000);
    cr_assert_eq(last[0], 10000000);
}

Test(perf_math, hold)
{
    uint64_t last = 0;

    cr_assert_eq(cprof_perf_hold(5, &last), 5);
    cr_assert_eq(cprof_perf_hold(9, &last), 9);
    cr_assert_eq(cprof_perf_hold(7, &last), 9);
    cr_assert_eq(last, 9);
    cr_assert_eq(cprof_perf_hold(10, &last), 10);
}

/* ================================================================ names and encoding */

static struct cprof_perf_event enc_ok(const char *name)
{
    struct cprof_perf_event ev;
    struct cprof_error err = {0, ""};

    cr_assert_eq(cprof_perf_encode(name, &ev, &err), 0, "encode(%s): %s", name, err.msg);
    return ev;
}

Test(perf_names, generic_names_without_libpfm4)
{
    struct cprof_perf_event ev = enc_ok("page-faults");

    cr_assert_eq(ev.attr.type, PERF_TYPE_SOFTWARE);
    cr_assert_eq(ev.attr.config, PERF_COUNT_SW_PAGE_FAULTS);
    cr_assert_eq(ev.kind, CPROF_PERF_SW_READ);
    cr_assert_str_eq(ev.unit, "faults");
    ev = enc_ok("context-switches");
    cr_assert_eq(ev.attr.config, PERF_COUNT_SW_CONTEXT_SWITCHES);
    cr_assert_eq(ev.kind, CPROF_PERF_SW_PAGE);
    cr_assert(ev.kernel_counted);
    ev = enc_ok("cs");
    cr_assert_eq(ev.attr.config, PERF_COUNT_SW_CONTEXT_SWITCHES);
    ev = enc_ok("task-clock");
    cr_assert_str_eq(ev.unit, "ns");
    ev = enc_ok("cycles");
    cr_assert_eq(ev.attr.type, PERF_TYPE_HARDWARE);
    cr_assert_eq(ev.attr.config, PERF_COUNT_HW_CPU_CYCLES);
    cr_assert_eq(ev.kind, CPROF_PERF_HW);
    cr_assert_not(ev.levels_chosen);
    cr_assert_not(ev.attr.exclude_kernel);
    ev = enc_ok("cpu-cycles");
    cr_assert_eq(ev.attr.config, PERF_COUNT_HW_CPU_CYCLES);
    ev = enc_ok("branch-misses");
    cr_assert_eq(ev.attr.config, PERF_COUNT_HW_BRANCH_MISSES);
    ev = enc_ok("cache-misses");
    cr_assert_eq(ev.attr.config, PERF_COUNT_HW_CACHE_MISSES);
    ev = enc_ok("instructions");
    cr_assert_eq(ev.attr.config, PERF_COUNT_HW_INSTRUCTIONS);
}

Test(perf_names, generic_modifiers)
{
    struct cprof_perf_event ev = enc_ok("cycles:u");
    struct cprof_error err = {0, ""};

    cr_assert(ev.levels_chosen);
    cr_assert(ev.attr.exclude_kernel);
    cr_assert_not(ev.attr.exclude_user);
    ev = enc_ok("instructions:k");
    cr_assert(ev.attr.exclude_user);
    cr_assert_not(ev.attr.exclude_kernel);
    ev = enc_ok("cycles:uk");
    cr_assert_not(ev.attr.exclude_user);
    cr_assert_not(ev.attr.exclude_kernel);
    cr_assert(ev.attr.exclude_hv);
    cr_assert_eq(cprof_perf_encode("cycles:q", &ev, &err), -EINVAL);
    cr_assert_eq(err.code, EINVAL);
    assert_sentence(err.msg, "'cycles:q'");
    HAS(err.msg, ":u");
    cr_assert_eq(cprof_perf_encode("cycles:", &ev, &err), -EINVAL);
    cr_assert_eq(err.code, EINVAL);
}

Test(perf_names, generic_names_are_listed_and_encode)
{
    size_t n = 0;

    for (const char *const *p = cprof_perf_generic_names; *p; p++, n++)
        enc_ok(*p);
    cr_assert_geq(n, 10);
}

#if CPROF_HAVE_LIBPFM

Test(perf_names, libpfm4_generic_pmu_names)
{
    /* libpfm4's own "perf" PMU is always there, PMU or not */
    struct cprof_perf_event ev = enc_ok("perf::PERF_COUNT_HW_INSTRUCTIONS");

    cr_assert_eq(ev.attr.type, PERF_TYPE_HARDWARE);
    cr_assert_eq(ev.attr.config, PERF_COUNT_HW_INSTRUCTIONS);
    cr_assert_eq(ev.kind, CPROF_PERF_HW);
    ev = enc_ok("perf::PERF_COUNT_HW_CPU_CYCLES:u");
    cr_assert(ev.attr.exclude_kernel);
    cr_assert(ev.levels_chosen);
    ev = enc_ok("perf::PERF_COUNT_SW_CONTEXT_SWITCHES");
    cr_assert_eq(ev.attr.type, PERF_TYPE_SOFTWARE);
    cr_assert_eq(ev.kind, CPROF_PERF_SW_PAGE);
    cr_assert(ev.kernel_counted);
    ev = enc_ok("perf::PERF_COUNT_SW_PAGE_FAULTS");
    cr_assert_eq(ev.kind, CPROF_PERF_SW_READ);
}

/* LIBPFM_FORCE_PMU makes libpfm4 use the Icelake tables whatever the CPU: the
 * real encoding of real Intel names, with no PMU needed.  Criterion runs each
 * test in its own process, and libpfm4 starts at the first encoding. */
static void force_icelake(void)
{
    setenv("LIBPFM_FORCE_PMU", "icl", 1);
}

Test(perf_names, libpfm4_encodes_intel_names_with_modifiers, .init = force_icelake)
{
    struct cprof_perf_event ev = enc_ok("INST_RETIRED.ANY_P:u");

    cr_assert_eq(ev.attr.type, PERF_TYPE_RAW);
    cr_assert_eq(ev.attr.config & 0xffff, 0x00c0, "event 0xc0, umask 0x00: %#llx",
                 (unsigned long long)ev.attr.config);
    cr_assert(ev.attr.exclude_kernel, ":u counts user mode only");
    cr_assert_not(ev.attr.exclude_user);
    cr_assert(ev.levels_chosen);
    cr_assert_eq(ev.kind, CPROF_PERF_HW);
    cr_assert_str_eq(ev.unit, "events");
    cr_assert(ev.description && ev.description[0]);

    /* libpfm4's own spelling, with the PMU named, and no modifier */
    ev = enc_ok("icl::INST_RETIRED:ANY_P");
    cr_assert_eq(ev.attr.config & 0xffff, 0x00c0);
    cr_assert_not(ev.attr.exclude_kernel);
    cr_assert_not(ev.levels_chosen);

    ev = enc_ok("UNHALTED_CORE_CYCLES:k");
    cr_assert_eq(ev.attr.config & 0xffff, 0x003c);
    cr_assert(ev.attr.exclude_user);

    ev = enc_ok("MEM_LOAD_RETIRED.L3_MISS");
    cr_assert_eq(ev.attr.config & 0xffff, 0x20d1, "event 0xd1, umask 0x20: %#llx",
                 (unsigned long long)ev.attr.config);

    /* the generic names still come from perf's table */
    ev = enc_ok("cycles");
    cr_assert_eq(ev.attr.type, PERF_TYPE_HARDWARE);
}

Test(perf_names, libpfm4_suggests_close_names, .init = force_icelake)
{
    struct cprof_counter_spec out[4];
    struct cprof_error err = {0, ""};
    unsigned n;
    char buf[160];

    cprof_perf_suggest("INST_RETRED.ANY_P:u", buf, sizeof(buf));
    HAS(buf, "INST_RETIRED.ANY_P:u");
    FAILS(cprof_spec_resolve("INST_RETRED.ANY_P", no_builtins, perf_only, out, 4, &n, &err), err);
    cr_assert_eq(err.code, ENOENT);
    assert_sentence(err.msg, "'INST_RETRED.ANY_P'");
    HAS(err.msg, "did you mean");
    HAS(err.msg, "INST_RETIRED.ANY_P");
}

Test(perf_names, libpfm4_bad_unit_mask_is_a_sentence, .init = force_icelake)
{
    struct cprof_perf_event ev;
    struct cprof_error err = {0, ""};

    cr_assert_lt(cprof_perf_encode("INST_RETIRED:NO_SUCH_UMASK", &ev, &err), 0);
    cr_assert_neq(err.code, ENOENT, "a known event with a bad unit mask is a definite error");
    assert_sentence(err.msg, "'INST_RETIRED:NO_SUCH_UMASK'");
    HAS(err.msg, "--pmu");
}

static int count_event(void *ctx, const char *name, const char *pmu, const char *pmu_desc,
                       const char *desc)
{
    unsigned *n = ctx;

    (void)pmu_desc;
    (void)desc;
    cr_assert(strstr(name, "::") != NULL, "%s", name);
    cr_assert_eq(strncmp(name, pmu, strlen(pmu)), 0, "%s not in PMU %s", name, pmu);
    if (strcmp(name, "perf::PERF_COUNT_HW_CPU_CYCLES") == 0)
        n[1]++;
    if (strcmp(name, "icl::INST_RETIRED") == 0)
        n[2]++;
    n[0]++;
    return 0;
}

Test(perf_names, libpfm4_lists_the_detected_pmus_events)
{
    unsigned n[3] = {0, 0, 0};
    struct cprof_error err = {0, ""};

    cr_assert_eq(cprof_perf_pmu_events(count_event, n, &err), 0, "%s", err.msg);
    cr_assert_gt(n[0], 20);
    cr_assert_eq(n[1], 1, "perf's generic PMU is always listed");
}

Test(perf_names, libpfm4_lists_a_forced_pmu, .init = force_icelake)
{
    unsigned n[3] = {0, 0, 0};
    struct cprof_error err = {0, ""};

    cr_assert_eq(cprof_perf_pmu_events(count_event, n, &err), 0, "%s", err.msg);
    cr_assert_eq(n[2], 1, "icl::INST_RETIRED listed");
}

Test(perf_names, libpfm4_unknown_name)
{
    struct cprof_perf_event ev;
    struct cprof_error err = {0, ""};

    cr_assert_lt(cprof_perf_encode("NO_SUCH_EVENT_ANYWHERE.X", &ev, &err), 0);
    cr_assert_eq(err.code, ENOENT);
    cr_assert_str_eq(err.msg, "", "a name libpfm4 knows for no PMU is simply unknown");
    cr_assert_lt(cprof_perf_encode("nosuchevent", &ev, &err), 0);
    cr_assert_eq(err.code, ENOENT);
    cr_assert_str_eq(err.msg, "", "a lowercase unknown name is left to the registry's sentence");
}

#else /* built without libpfm4 */

Test(perf_names, without_libpfm4_a_pmu_name_says_how_to_get_it)
{
    struct cprof_perf_host h;
    struct cprof_perf_event ev;
    struct cprof_error err = {0, ""};
    struct cprof_counter_spec out[4];
    unsigned n;

    cr_assert_not(cprof_perf_have_libpfm);
    cr_assert_lt(cprof_perf_encode("INST_RETIRED.ANY_P:u", &ev, &err), 0);
    cr_assert_eq(err.code, ENOTSUP);
    assert_sentence(err.msg, "'INST_RETIRED.ANY_P:u'");
    HAS(err.msg, "without libpfm4");
    cprof_perf_host_detect(&h);
    /* how to get libpfm4, unless no PMU event could be counted here anyway */
    HAS(err.msg, cprof_perf_host_no_pmu(&h) ? "no hardware PMU is visible" : "libpfm4-dev");
    /* through the registry, the same sentence reaches the user */
    FAILS(cprof_spec_resolve("cycles,INST_RETIRED.ANY_P:u", no_builtins, perf_only, out, 4,
                                    &n, &err), err);
    HAS(err.msg, "without libpfm4");
    cr_assert_lt(cprof_perf_encode("icl::INST_RETIRED:ANY_P", &ev, &err), 0);
    HAS(err.msg, "without libpfm4");
    /* generic names still work */
    enc_ok("cycles");
    enc_ok("page-faults:u");
    /* a lowercase typo is an unknown name, not a libpfm4 matter */
    cr_assert_lt(cprof_perf_encode("cylces", &ev, &err), 0);
    cr_assert_eq(err.code, ENOENT);
    cr_assert_eq(cprof_perf_pmu_events(NULL, NULL, &err), -ENOTSUP);
    HAS(err.msg, "without libpfm4");
}

#endif

/* ================================================================ the host's sentences
 *
 * What a PMU event name gets depends on the host: libpfm4 in the build or not, the
 * core PMU libpfm4 detects (from CPUID), whether the kernel lets perf open a
 * hardware event (no PMU in a VM without passthrough), and whether another CPU's
 * PMU has the event.  Each case is injected here, so every host tests all of
 * them: (a) PMU detected and usable, (b) detected but perf sees no PMU (an AMD
 * EPYC VM), (c) none detected, (d) a name libpfm4 knows nowhere, (e) no libpfm4. */

#define INTEL_NAME "INST_RETIRED.ANY_P:u"
#define KNOWN "spr and 23 more"

static struct cprof_error name_error(int libpfm, const char *core, int hw_errno, const char *known)
{
    struct cprof_perf_host h = {.libpfm = libpfm, .core_pmu = core, .hw_errno = hw_errno};
    struct cprof_error err = {0, ""};

    FAILS(cprof_perf_pmu_name_error(INTEL_NAME, known, &h, &err), err);
    if (err.msg[0])
        assert_sentence(err.msg, "'" INTEL_NAME "'");
    return err;
}

#define LACKS(msg, sub) cr_assert(strstr((msg), (sub)) == NULL, "'%s' in: %s", (sub), (msg))

Test(perf_host, no_pmu_means_the_kernel_has_none_not_a_refusal)
{
    struct cprof_perf_host h = {1, "icl", 0};

    cr_assert_not(cprof_perf_host_no_pmu(&h));
    for (int e = 1; e < 134; e++) {
        h.hw_errno = e;
        cr_assert_eq(cprof_perf_host_no_pmu(&h),
                     !(e == EACCES || e == EPERM || e == EMFILE || e == ENFILE || e == EINTR ||
                       e == EBUSY),
                     "errno %d", e);
    }
}

Test(perf_host, a_pmu_here_and_another_cpus_event)
{
    /* (a) with a name of another CPU: an AMD host with its PMU, an Intel name */
    struct cprof_error err = name_error(1, "amd64_fam19h_zen4", 0, KNOWN);

    cr_assert_eq(err.code, ENOENT);
    HAS(err.msg, "an event of other PMUs in libpfm4 (" KNOWN ")");
    HAS(err.msg, "not of this CPU's (amd64_fam19h_zen4)");
    HAS(err.msg, "cprof --list-counters --pmu");
    LACKS(err.msg, "no hardware PMU");
    /* a refusal (paranoid) is not the absence of a PMU: the same sentence */
    err = name_error(1, "amd64_fam19h_zen4", EACCES, KNOWN);
    LACKS(err.msg, "no hardware PMU");
}

Test(perf_host, a_pmu_detected_that_perf_cannot_open)
{
    /* (b): the AMD EPYC VM of issue 12, libpfm4 sees Zen 4 in CPUID, the kernel no PMU */
    char why[80];
    struct cprof_error err = name_error(1, "amd64_fam19h_zen4", ENOENT, KNOWN);

    cr_assert_eq(err.code, ENOENT);
    HAS(err.msg, "an event of other PMUs in libpfm4 (" KNOWN ")");
    HAS(err.msg, "not of this CPU's (amd64_fam19h_zen4)");
    snprintf(why, sizeof(why), "no hardware PMU is visible to perf here (perf_event_open: %s)",
             strerror(ENOENT));
    HAS(err.msg, why);
    HAS(err.msg, "task-clock");
    LACKS(err.msg, "--pmu");
    err = name_error(1, "amd64_fam19h_zen4", EOPNOTSUPP, KNOWN);
    HAS(err.msg, strerror(EOPNOTSUPP));
    /* long core PMU names (libpfm4 names core PMUs in the list, uncore ones only
     * when no core PMU has the event) still leave the sentence whole */
    err = name_error(1, "amd64_fam1ah_zen5", ENOENT, "amd64_fam15h_interlagos and 130 more");
    HAS(err.msg, "task-clock");
}

Test(perf_host, no_pmu_detected)
{
    /* (c): libpfm4 recognises no core PMU (this Xeon VM; or a CPU newer than libpfm4) */
    struct cprof_error err = name_error(1, NULL, ENOENT, KNOWN);

    HAS(err.msg, "an event of other PMUs in libpfm4 (" KNOWN ")");
    HAS(err.msg, "it detects none on this CPU");
    HAS(err.msg, "no hardware PMU is visible to perf here");
    err = name_error(1, NULL, 0, KNOWN);    /* bare metal, CPU too new for this libpfm4 */
    HAS(err.msg, "does not recognise this CPU's");
    HAS(err.msg, "cycles or instructions work here");
    LACKS(err.msg, "no hardware PMU");
}

Test(perf_host, a_name_known_nowhere_is_unknown)
{
    /* (d): the registry's "unknown counter" sentence, with its suggestions */
    struct cprof_error err = name_error(1, "icl", 0, "");

    cr_assert_eq(err.code, ENOENT);
    cr_assert_str_eq(err.msg, "");
    err = name_error(1, NULL, ENOENT, NULL);
    cr_assert_str_eq(err.msg, "");
}

Test(perf_host, without_libpfm4)
{
    /* (e) */
    struct cprof_error err = name_error(0, NULL, 0, NULL);

    cr_assert_eq(err.code, ENOTSUP);
    HAS(err.msg, "without libpfm4");
    HAS(err.msg, "libpfm4-dev");
    HAS(err.msg, "cycles or instructions");
    err = name_error(0, NULL, ENOENT, NULL);
    HAS(err.msg, "without libpfm4");
    HAS(err.msg, "no hardware PMU is visible to perf here");
    LACKS(err.msg, "cycles");   /* which could not count here either */
}

Test(perf_host, open_errors_by_host)
{
    struct cprof_perf_host vm = {1, "amd64_fam19h_zen4", ENOENT}, metal = {1, "icl", 0};
    struct cprof_perf_event ev;
    struct cprof_error err = {0, ""};

    memset(&ev, 0, sizeof(ev));
    ev.kind = CPROF_PERF_HW;
    ev.attr.type = PERF_TYPE_RAW;
    ev.pmu = "amd64_fam19h_zen4";
    /* (b), a name this CPU's PMU has: encoded, then the kernel has no PMU to count it */
    cprof_perf_open_error("RETIRED_INSTRUCTIONS", &ev, ENOENT, 2, &vm, &err);
    assert_sentence(err.msg, "'RETIRED_INSTRUCTIONS'");
    HAS(err.msg, "libpfm4 knows it as an event of this CPU's PMU (amd64_fam19h_zen4)");
    HAS(err.msg, "no hardware PMU is visible to perf here");
    /* (a) where the PMU is there: the event or the group is what it refuses */
    cprof_perf_open_error("RETIRED_INSTRUCTIONS", &ev, ENOENT, 2, &metal, &err);
    assert_sentence(err.msg, "'RETIRED_INSTRUCTIONS'");
    HAS(err.msg, "does not support this event or group");
    /* a generic name, or libpfm4's generic PMU: no PMU of this CPU to speak of */
    ev.pmu = "perf";
    cprof_perf_open_error("perf::PERF_COUNT_HW_CPU_CYCLES", &ev, ENOENT, 2, &vm, &err);
    HAS(err.msg, "no hardware PMU is visible to perf here");
    LACKS(err.msg, "libpfm4");
    ev.pmu = NULL;
    cprof_perf_open_error("cycles", &ev, ENOENT, 2, &vm, &err);
    assert_sentence(err.msg, "'cycles'");
    HAS(err.msg, "VM");
    /* a refusal stays a refusal, PMU or not */
    cprof_perf_open_error("cycles", &ev, EACCES, 3, &vm, &err);
    HAS(err.msg, "kernel.perf_event_paranoid is 3");
}

Test(perf_host, detection_here)
{
    struct cprof_perf_host h;

    cprof_perf_host_detect(&h);
    cr_assert_eq(h.libpfm, cprof_perf_have_libpfm);
    if (!h.libpfm)
        cr_assert_null(h.core_pmu);
    cr_log_info("core PMU %s, hardware event: %s", h.core_pmu ? h.core_pmu : "(none)",
                h.hw_errno ? strerror(h.hw_errno) : "opens");
#if defined(__x86_64__)
    /* the kernel's own list agrees: a PMU device of type PERF_TYPE_RAW ("cpu") */
    if (h.hw_errno != EACCES && h.hw_errno != EPERM)
        cr_assert_eq(cprof_perf_host_no_pmu(&h), !cprof_perf_hw_pmu_visible(), "%s",
                     strerror(h.hw_errno));
#endif
}

#if CPROF_HAVE_LIBPFM
/* libpfm4 forced to AMD Zen 4 tables: what an AMD EPYC host's libpfm4 detects.
 * (Forced, libpfm4 registers only the PMUs listed before the forced one, all of
 * them AMD: the other vendor's names are tested the other way round below.) */
static void force_zen4(void)
{
    setenv("LIBPFM_FORCE_PMU", "amd64_fam19h_zen4", 1);
}

Test(perf_host, amd_pmu_detected, .init = force_zen4)
{
    struct cprof_perf_host h;
    struct cprof_perf_event ev;
    struct cprof_error err = {0, ""};
    char path[240];

    cprof_perf_host_detect(&h);
    cr_assert_str_eq(h.core_pmu, "amd64_fam19h_zen4");
    /* Zen 4's own name encodes; where the kernel has no PMU, opening it says so */
    ev = enc_ok("RETIRED_INSTRUCTIONS:u");
    cr_assert_str_eq(ev.pmu, "amd64_fam19h_zen4");
    cr_assert_eq(ev.kind, CPROF_PERF_HW);
    if (!cprof_perf_host_no_pmu(&h))
        return;
    FAILS(cprof_counter_perf_hw_leader.probe("RETIRED_INSTRUCTIONS:u", NULL, path, sizeof(path),
                                             &err),
          err);
    assert_sentence(err.msg, "'RETIRED_INSTRUCTIONS:u'");
    HAS(err.msg, "this CPU's PMU (amd64_fam19h_zen4)");
    HAS(err.msg, "no hardware PMU is visible to perf here");
    cr_log_info("%s", err.msg);
}

Test(perf_host, another_vendors_name, .init = force_icelake)
{
    struct cprof_counter_spec out[4];
    struct cprof_perf_host h;
    struct cprof_perf_event ev;
    struct cprof_error err = {0, ""};
    unsigned n;

    /* an AMD name on an Intel CPU (the AMD EPYC host's case, mirrored): AMD's PMUs
     * have the event, this one has not, whatever the kernel can count */
    cprof_perf_host_detect(&h);
    cr_assert_str_eq(h.core_pmu, "icl");
    FAILS(cprof_spec_resolve("RETIRED_INSTRUCTIONS:u", no_builtins, perf_only, out, 4, &n,
                                    &err), err);
    assert_sentence(err.msg, "'RETIRED_INSTRUCTIONS:u'");
    HAS(err.msg, "an event of other PMUs in libpfm4 (amd64_fam19h_zen4 and ");
    HAS(err.msg, "not of this CPU's (icl)");
    if (cprof_perf_host_no_pmu(&h))
        HAS(err.msg, "no hardware PMU is visible to perf here");
    else
        LACKS(err.msg, "no hardware PMU");
    cr_log_info("%s", err.msg);
    /* with the PMU named, the list is that PMU */
    cr_assert_lt(cprof_perf_encode("amd64_k7::RETIRED_INSTRUCTIONS", &ev, &err), 0);
    HAS(err.msg, "other PMUs in libpfm4 (amd64_k7),");
    /* a name no PMU has: unknown, with the registry's sentence */
    cr_assert_lt(cprof_perf_encode("NO_SUCH_EVENT_ANYWHERE.X", &ev, &err), 0);
    cr_assert_str_eq(err.msg, "");
}
#endif

/* ================================================================ the resolver */
#ifndef CPROF_TEST_NOPFM        /* the full registry: built with counters_lib only */

Test(perf_resolver, names_are_the_users_and_hardware_forms_a_group)
{
    struct cprof_counter_spec s[CPROF_MAX_COUNTERS];
    struct cprof_error err = {0, ""};
    unsigned n = 0;

    cr_assert_eq(cprof_spec_resolve("cpu,page-faults,cycles:u,wall,instructions,branch-misses",
                                    cprof_builtin_counters, cprof_counter_resolvers, s,
                                    CPROF_MAX_COUNTERS, &n, &err),
                 0, "%s", err.msg);
    cr_assert_eq(n, 6);
    cr_assert_eq(s[0].def, &cprof_counter_cpu);
    cr_assert_str_eq(s[1].def->name, "page-faults");
    cr_assert_str_eq(s[1].arg, "page-faults");
    cr_assert_str_eq(s[1].def->unit, "faults");
    cr_assert_eq(s[1].def->read, cprof_counter_perf_sw.read);
    cr_assert_null(s[1].def->group, "software events are not grouped");
    cr_assert_str_eq(s[2].def->name, "cycles:u", "modifiers are part of the name");
    cr_assert_eq(s[2].def->read, cprof_counter_perf_hw_leader.read,
                 "the first hardware counter leads the group");
    cr_assert_eq(s[4].def->read, cprof_counter_perf_hw_member.read);
    cr_assert_eq(s[5].def->read, cprof_counter_perf_hw_member.read);
    cr_assert_not_null(s[2].def->group);
    cr_assert_eq(s[4].def->group, s[2].def->group, "one group for the run's hardware events");
    cr_assert_eq(s[5].def->group, s[2].def->group);
    for (unsigned i = 0; i < n; i++)
        cr_assert_eq(cprof_spec_check(&s[i], &err), 0, "%s: %s", s[i].def->name, err.msg);
}

Test(perf_resolver, errors)
{
    struct cprof_counter_spec s[CPROF_MAX_COUNTERS];
    struct cprof_error err = {0, ""};
    unsigned n = 0;

    FAILS(cprof_spec_resolve("cycles,cpu,cycles", cprof_builtin_counters,
                                    cprof_counter_resolvers, s, CPROF_MAX_COUNTERS, &n, &err), err);
    assert_sentence(err.msg, "'cycles' is given twice");
    FAILS(cprof_spec_resolve("cpu,cylces", cprof_builtin_counters, cprof_counter_resolvers,
                                    s, CPROF_MAX_COUNTERS, &n, &err), err);
    cr_assert_eq(err.code, ENOENT);
    assert_sentence(err.msg, "unknown counter 'cylces'");
    HAS(err.msg, "did you mean cycles");
    HAS(err.msg, "cpu, wall, ctxsw");
    FAILS(cprof_spec_resolve("pagefaults", cprof_builtin_counters, cprof_counter_resolvers,
                                    s, CPROF_MAX_COUNTERS, &n, &err), err);
    HAS(err.msg, "page-faults");
    FAILS(cprof_spec_resolve("wal", cprof_builtin_counters, cprof_counter_resolvers, s,
                                    CPROF_MAX_COUNTERS, &n, &err), err);
    HAS(err.msg, "did you mean wall");
    FAILS(cprof_spec_resolve("cpu,wall,page-faults", cprof_builtin_counters,
                                    cprof_counter_resolvers, s, 2, &n, &err), err);
    cr_assert_eq(err.code, E2BIG);
}

/* Every listed name resolves to a valid descriptor, and probing it here either
 * works with a read path or fails with one sentence naming it. */
static int listed_idx[64];

ParameterizedTestParameters(perf_resolver, listed_names_probe)
{
    size_t n = 0;

    while (cprof_perf_generic_names[n] && n < 64) {
        listed_idx[n] = (int)n;
        n++;
    }
    return cr_make_param_array(int, listed_idx, n);
}

ParameterizedTest(int *i, perf_resolver, listed_names_probe)
{
    const char *name = cprof_perf_generic_names[*i];
    struct cprof_counter_spec spec;
    struct cprof_error err = {0, ""};
    char path[240] = "";

    cr_assert_eq(cprof_resolve_one(name, cprof_counter_resolvers, &spec, &err), 0, "%s",
                 err.msg);
    cr_assert_eq(cprof_spec_check(&spec, &err), 0, "%s", err.msg);
    if (spec.def->probe(spec.arg, NULL, path, sizeof(path), &err) == 0) {
        cr_assert_gt(strlen(path), 20, "%s: no read path", name);
        cr_log_info("%s: %s", name, path);
    } else {
        cr_assert_gt(err.code, 0);
        assert_sentence(err.msg, name);
        cr_log_info("%s: %s", name, err.msg);
    }
}

#endif /* CPROF_TEST_NOPFM */

/* ================================================================ real software events */

/* Open a counter in this thread; `shared`: its group's state (NULL: none). */
static void *open_in(const struct cprof_counter_def *def, const char *arg, void *shared)
{
    struct cprof_error err = {0, ""};
    void *state = NULL;

    cr_assert_eq(def->thread_open(&state, arg, NULL, shared, &err), 0, "open %s: %s", arg,
                 err.msg);
    return state;
}

static void *open_ctr(const struct cprof_counter_def *def, const char *arg)
{
    return open_in(def, arg, NULL);
}

/* A perf group's state for this thread, as cprof_counters_open opens it. */
static void *open_group(void)
{
    struct cprof_error err = {0, ""};
    void *g = NULL;

    cr_assert_eq(cprof_counter_perf_hw_leader.group->thread_open(&g, &err), 0, "%s", err.msg);
    return g;
}

/* Faults beyond one per page that touching n pages may take: under
 * AddressSanitizer each write also reads the region's shadow memory, one more
 * page for every 8. */
#if defined(__SANITIZE_ADDRESS__)
#define EXTRA_FAULTS(n) ((n) / 8 + 10)
#else
#define EXTRA_FAULTS(n) 10
#endif

static void touch_pages(size_t n)
{
    long pg = sysconf(_SC_PAGESIZE);
    volatile char *m = mmap(NULL, n * (size_t)pg, PROT_READ | PROT_WRITE,
                            MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

    cr_assert_neq((void *)m, MAP_FAILED);
    for (size_t i = 0; i < n; i++)
        m[i * (size_t)pg] = 1;
    munmap((void *)m, n * (size_t)pg);
}

Test(perf_events, page_faults_count_fresh_pages)
{
    void *s = open_ctr(&cprof_counter_perf_sw, "page-faults");
    uint64_t a, b, c;

    touch_pages(1);             /* warm the code paths */
    a = cprof_counter_perf_sw.read(s);
    touch_pages(1000);
    b = cprof_counter_perf_sw.read(s);
    c = cprof_counter_perf_sw.read(s);
    cr_assert_geq(b - a, 1000, "%" PRIu64 " faults for 1000 fresh pages", b - a);
    cr_assert_leq(b - a, 1000 + EXTRA_FAULTS(1000), "%" PRIu64 " faults for 1000 fresh pages",
                  b - a);
    cr_assert_leq(c - b, 2, "reading faults nothing: %" PRIu64, c - b);
    cprof_counter_perf_sw.thread_close(s);
}

static uint64_t all_switches(void)
{
    struct rusage ru;

    getrusage(RUSAGE_THREAD, &ru);
    return (uint64_t)ru.ru_nvcsw + (uint64_t)ru.ru_nivcsw;
}

Test(perf_events, context_switches_from_the_page_equal_getrusage)
{
    void *s = open_ctr(&cprof_counter_perf_sw, "context-switches");
    uint64_t a, b, ra, rb;
    int exact = 0;

    /* getrusage's window contains the page's: a preemption between the two reads
     * at either end (rare) makes getrusage see one more, never fewer.  Of a few
     * tries, one must agree exactly. */
    for (int attempt = 0; attempt < 5 && !exact; attempt++) {
        ra = all_switches();
        a = cprof_counter_perf_sw.read(s);
        for (int i = 0; i < 20; i++)
            usleep(500);
        b = cprof_counter_perf_sw.read(s);
        rb = all_switches();
        cr_assert_geq(b - a, 20);
        cr_assert_leq(b - a, rb - ra, "perf page %" PRIu64 " > getrusage %" PRIu64, b - a, rb - ra);
        exact = b - a == rb - ra;
    }
    cr_assert(exact, "perf page %" PRIu64 " vs getrusage %" PRIu64 " in 5 tries", b - a, rb - ra);
    cprof_counter_perf_sw.thread_close(s);
}

/* The group plumbing, for real, with software events (the kernel groups them
 * like hardware ones; not with task-clock, whose own PMU leaves page-fault
 * members at 0): the leader reads the group, members return its values. */
Test(perf_events, group_read_with_software_events)
{
    struct cprof_counter_spec specs[3] = {
        {&cprof_counter_perf_hw_leader, "page-faults", NULL},
        {&cprof_counter_perf_hw_member, "minor-faults", NULL},
        {&cprof_counter_perf_hw_member, "major-faults", NULL},
    };
    struct cprof_error err = {0, ""};
    void *st[3], *shared[3];
    uint64_t a[3], b[3], cnt = 9, amt = 9;

    cr_assert_eq(cprof_counters_open(specs, 3, st, shared, &err), 0, "%s", err.msg);
    cr_assert_not_null(shared[0]);
    cr_assert_eq(shared[1], shared[0], "one group state for the three");
    cr_assert_eq(shared[2], shared[0]);
    a[0] = cprof_counter_perf_hw_leader.read(st[0]);
    a[1] = cprof_counter_perf_hw_member.read(st[1]);
    a[2] = cprof_counter_perf_hw_member.read(st[2]);
    touch_pages(500);
    b[0] = cprof_counter_perf_hw_leader.read(st[0]);
    b[1] = cprof_counter_perf_hw_member.read(st[1]);
    b[2] = cprof_counter_perf_hw_member.read(st[2]);
    cr_assert_geq(b[0] - a[0], 500, "%" PRIu64 " faults for 500 pages", b[0] - a[0]);
    cr_assert_leq(b[0] - a[0], 500 + EXTRA_FAULTS(500), "%" PRIu64 " faults for 500 pages",
                  b[0] - a[0]);
    cr_assert_eq(b[1] - a[1] + b[2] - a[2], b[0] - a[0],
                 "minor + major = all faults: the values come from one group read");
    /* members do not read: without a leader read their values stay */
    touch_pages(50);
    cr_assert_eq(cprof_counter_perf_hw_member.read(st[1]), b[1]);
    cr_assert_geq(cprof_counter_perf_hw_leader.read(st[0]) - b[0], 50);
    cr_assert_geq(cprof_counter_perf_hw_member.read(st[1]) - b[1], 50);
    cprof_counter_perf_hw_member.corrections(st[1], &cnt, &amt);
    cr_assert_eq(cnt, 0, "software events are never multiplexed");
    cr_assert_eq(amt, 0);
    cprof_counters_close(specs, 3, st, shared);
}

/* Two runs opened in one thread, their opens interleaved: each member joins its
 * own run's group (given as its shared state), not the last one opened.  (With a
 * thread-local "group being formed", run A's member joined run B's group.) */
Test(perf_events, two_runs_in_one_thread_keep_their_groups)
{
    void *ga = open_group(), *gb = open_group();
    void *la = open_in(&cprof_counter_perf_hw_leader, "page-faults", ga);
    void *lb = open_in(&cprof_counter_perf_hw_leader, "page-faults", gb);
    void *ma = open_in(&cprof_counter_perf_hw_member, "minor-faults", ga);
    void *mb = open_in(&cprof_counter_perf_hw_member, "minor-faults", gb);
    uint64_t a0 = cprof_counter_perf_hw_leader.read(la), m0 = cprof_counter_perf_hw_member.read(ma);
    uint64_t a1, m1;

    (void)cprof_counter_perf_hw_leader.read(lb);
    touch_pages(300);
    a1 = cprof_counter_perf_hw_leader.read(la);         /* reads run A's group only */
    m1 = cprof_counter_perf_hw_member.read(ma);
    cr_assert_geq(a1 - a0, 300);
    cr_assert_geq(m1 - m0, 300, "A's member has A's group read: %" PRIu64, m1 - m0);
    cr_assert_leq(m1 - m0, a1 - a0);
    cprof_counter_perf_hw_member.thread_close(mb);
    cprof_counter_perf_hw_member.thread_close(ma);
    cprof_counter_perf_hw_leader.thread_close(lb);
    cprof_counter_perf_hw_leader.thread_close(la);
    cprof_counter_perf_hw_leader.group->thread_close(gb);
    cprof_counter_perf_hw_leader.group->thread_close(ga);
}

Test(perf_events, a_member_needs_its_group)
{
    struct cprof_error err = {0, ""};
    void *st = NULL;

    FAILS(cprof_counter_perf_hw_member.thread_open(&st, "page-faults", NULL, NULL, &err), err);
    cr_assert_eq(err.code, EINVAL, "%s", err.msg);
    HAS(err.msg, "without its perf group");
}

Test(perf_events, hardware_events_here)
{
    char path[240];
    struct cprof_error err = {0, ""};

    if (cprof_perf_hw_pmu_visible()) {
        /* a machine with a PMU: the group opens and counts */
        void *g = open_group();
        void *s = open_in(&cprof_counter_perf_hw_leader, "instructions", g);
        uint64_t a = cprof_counter_perf_hw_leader.read(s), b;
        for (volatile int i = 0; i < 100000; i++)
            ;
        b = cprof_counter_perf_hw_leader.read(s);
        cr_assert_gt(b - a, 100000);
        cprof_counter_perf_hw_leader.thread_close(s);
        cprof_counter_perf_hw_leader.group->thread_close(g);
        return;
    }
    /* no PMU (this VM): one sentence naming the event and the reason */
    FAILS(cprof_counter_perf_hw_leader.probe("cycles", NULL, path, sizeof(path), &err), err);
    assert_sentence(err.msg, "'cycles'");
    HAS(err.msg, "no hardware PMU is visible");
    void *state = NULL, *g = open_group();
    FAILS(cprof_counter_perf_hw_leader.thread_open(&state, "cycles", NULL, g, &err), err);
    HAS(err.msg, "no hardware PMU");
    cprof_counter_perf_hw_leader.group->thread_close(g);
}

/* As an unprivileged user (Criterion runs each test in its own process, so
 * dropping root here affects this test only). */
static int become_nobody(void)
{
    if (geteuid() != 0)
        return 0;
    return setgroups(0, NULL) == 0 && setresgid(65534, 65534, 65534) == 0 &&
                   setresuid(65534, 65534, 65534) == 0
               ? 0
               : -1;
}

static int paranoid(void)
{
    FILE *f = fopen("/proc/sys/kernel/perf_event_paranoid", "r");
    int v = 2;

    if (f) {
        if (fscanf(f, "%d", &v) != 1)
            v = 2;
        fclose(f);
    }
    return v;
}

Test(perf_events, unprivileged_user)
{
    char path[240] = "";
    struct cprof_error err = {0, ""};
    int p = paranoid();

    cr_assert_eq(become_nobody(), 0);
    if (p < 2)
        cr_skip_test("kernel.perf_event_paranoid is %d: unprivileged users may count everything",
                     p);
    /* kernel-mode counting is refused: switches are counted in kernel mode */
    FAILS(cprof_counter_perf_sw.probe("context-switches", NULL, path, sizeof(path), &err), err);
    assert_sentence(err.msg, "'context-switches'");
    HAS(err.msg, "kernel.perf_event_paranoid is");
    HAS(err.msg, "at most 1");
    err.code = 0;
    if (p > 2) {
        FAILS(cprof_counter_perf_sw.probe("page-faults", NULL, path, sizeof(path), &err), err);
        HAS(err.msg, "at most 2");
        return;
    }
    /* user-mode faults still count exactly */
    cr_assert_eq(cprof_counter_perf_sw.probe("page-faults", NULL, path, sizeof(path), &err), 0, "%s",
                 err.msg);
    HAS(path, "user mode only");
    void *s = open_ctr(&cprof_counter_perf_sw, "page-faults");
    uint64_t a = cprof_counter_perf_sw.read(s);
    touch_pages(300);
    uint64_t b = cprof_counter_perf_sw.read(s);
    cr_assert_geq(b - a, 300);
    cr_assert_leq(b - a, 300 + EXTRA_FAULTS(300));
    cprof_counter_perf_sw.thread_close(s);
}
