/* perf_event_open counters: every event perf can count, by the name perf or
 * libpfm4 gives it.  Private to counters/ (and its tests): the rest of cprof
 * sees only the resolver, cprof_counter_resolvers[] in counters.h.
 *
 *   perf_names.c   name -> struct perf_event_attr (perf's generic names, and any
 *                  libpfm4 event string when built with libpfm4), close-name
 *                  suggestions, libpfm4's PMU event list
 *   perf.c         the descriptors: open, probe with one-sentence errors, read
 *   perf_math.h    the read arithmetic as pure functions (seqlock, rdpmc, scaling) */
#ifndef CPROF_PERF_H
#define CPROF_PERF_H

#include <linux/perf_event.h>
#include <stddef.h>

#include "../core/registry.h"

enum cprof_perf_kind {
    CPROF_PERF_SW_READ,         /* software event read with read(): page-faults, task-clock */
    CPROF_PERF_SW_PAGE,         /* software event whose mmap'd page is exact after each
                                 * switch-in: context-switches, cpu-migrations */
    CPROF_PERF_HW,              /* a PMU event: one perf group with the other hardware ones */
};

struct cprof_perf_event {
    struct perf_event_attr attr;        /* type, config*, exclude_* */
    enum cprof_perf_kind kind;
    int kernel_counted;         /* counted in kernel mode: user-only counting would give 0 */
    int levels_chosen;          /* the name chose privilege levels (":u"): keep them */
    const char *unit;           /* "faults", "ns", "events": static storage */
    const char *description;    /* one line: static storage (libpfm4's tables included) */
    const char *pmu;            /* libpfm4's PMU that encoded the name ("icl", "perf"), or
                                 * NULL for perf's generic names: static storage */
};

/* What this machine offers PMU events: the facts the sentences about a PMU event
 * rest on.  cprof_perf_host_detect() finds them; tests inject their own. */
struct cprof_perf_host {
    int libpfm;                 /* this cprof was built with libpfm4 */
    const char *core_pmu;       /* libpfm4's name of the core PMU it detects on this CPU
                                 * ("icl", "amd64_fam19h_zen4"), or NULL: static storage */
    int hw_errno;               /* 0 if perf_event_open counts a hardware event here
                                 * (instructions, user mode), else its errno */
};

void cprof_perf_host_detect(struct cprof_perf_host *h);

/* 1 if hw_errno says the kernel has no hardware PMU to count on (ENOENT,
 * EOPNOTSUPP...), not that it refused this user (EACCES, EPERM) or ran out of
 * files. */
int cprof_perf_host_no_pmu(const struct cprof_perf_host *h);

/* The sentence for `name`, a PMU event name that libpfm4 (if any) could not
 * encode on this host.  known: the PMUs of other CPUs whose tables hold its event
 * ("spr and 23 more"), "" or NULL if none does: then the name is
 * simply unknown (ENOENT with an empty msg, the registry's sentence and its
 * suggestions).  Returns -err->code. */
int cprof_perf_pmu_name_error(const char *name, const char *known, const struct cprof_perf_host *h,
                              struct cprof_error *err);

/* The sentence for a failed perf_event_open of counter `name` (errno e), given
 * kernel.perf_event_paranoid and the host; returns -e. */
int cprof_perf_open_error(const char *name, const struct cprof_perf_event *ev, int e, int paranoid,
                          const struct cprof_perf_host *h, struct cprof_error *err);

/* 1 if this cprof was built with libpfm4. */
extern const int cprof_perf_have_libpfm;

/* Name -> event, opening nothing.  0, or a negative value and err: code ENOENT
 * means "not a perf event name" (msg empty, or a sentence better than "unknown
 * counter"); any other code is a definite error about this name.  (The libpfm4
 * encoder still returns -1 with err->code set; perf.c goes by err->code.) */
int cprof_perf_encode(const char *name, struct cprof_perf_event *ev, struct cprof_error *err);

/* Up to three known names close to an unknown one, ", "-separated, into buf. */
void cprof_perf_suggest(const char *name, char *buf, size_t len);

/* perf's generic names (software, then hardware), NULL-terminated. */
extern const char *const cprof_perf_generic_names[];

/* libpfm4's events of the PMUs it detects here, for --list-counters --pmu: fn is
 * called for each (its full "pmu::EVENT" name, the PMU, descriptions) and returns
 * 0 or -errno; a failure stops the walk and is returned.  -ENOTSUP without
 * libpfm4. */
typedef int (*cprof_pmu_event_fn)(void *ctx, const char *name, const char *pmu,
                                  const char *pmu_desc, const char *desc);
int cprof_perf_pmu_events(cprof_pmu_event_fn fn, void *ctx, struct cprof_error *err);

/* 1 if the kernel exposes a hardware PMU to perf (a device of type PERF_TYPE_RAW
 * under /sys/bus/event_source/devices): false in a VM without PMU passthrough. */
int cprof_perf_hw_pmu_visible(void);

/* The counter descriptors the resolver copies (perf.c). */
extern const struct cprof_counter_def cprof_counter_perf_sw;
extern const struct cprof_counter_def cprof_counter_perf_hw_leader;
extern const struct cprof_counter_def cprof_counter_perf_hw_member;
extern const struct cprof_resolver cprof_perf_resolver;

#endif
