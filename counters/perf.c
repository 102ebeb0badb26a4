/* perf: any event perf_event_open can count, per thread, as a counter named by
 * the event ("page-faults", "cycles", "INST_RETIRED.ANY_P:u").
 *
 * The resolver (cprof_perf_resolver) turns a name into a copy of one of three
 * descriptors below, whose arg is the event name:
 *
 *   software, read()      page-faults, task-clock ...: a system call per read (the
 *                         mmap'd page's count of these lags until the next switch-in)
 *   software, page        context-switches, cpu-migrations: the kernel refreshes the
 *                         page's offset at every switch-in, and these counts only
 *                         change at a switch, so a read is a seqlock'd load
 *   hardware              the first hardware counter of a run leads a perf group and
 *                         the others join it, so the group is scheduled and read
 *                         together: rdpmc from each member's page while the group is
 *                         on the PMU and was never multiplexed (x86-64,
 *                         cap_user_rdpmc), else one read() of the whole group, scaled
 *                         by time_enabled / time_running when multiplexed
 *
 * In each thread the hardware counters of a run share one struct perf_group, the
 * state of their descriptors' group (perf_hw_group), which cprof_counters_open
 * opens before them: the first to open leads the kernel's group, the others join
 * it.  The leader's descriptor reads the group when the engine reads it (counters
 * are read in spec order and the resolver makes the first hardware one the
 * leader); members return the values of that read.
 * For the profile, `corrections` reports how many group reads were scaled and how
 * many of the events are estimates (scaled minus counted).
 *
 * Unprivileged users: with kernel.perf_event_paranoid 2 an event may be counted in
 * user mode only; cprof then retries with exclude_kernel, which is exact for user
 * page faults and hardware events, and refuses events the kernel counts in kernel
 * mode (context switches, migrations) with the sysctl value they need. */
#define _GNU_SOURCE
#include "counters.h"
#include "perf.h"
#include "perf_math.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#define GROUP_MAX CPROF_MAX_COUNTERS
#define GROUP_FORMAT                                                                            \
    (PERF_FORMAT_GROUP | PERF_FORMAT_TOTAL_TIME_ENABLED | PERF_FORMAT_TOTAL_TIME_RUNNING)

/* ---- opening, with the sentences a user can act on ------------------------------------ */

static int paranoid_level(void)
{
    FILE *f = fopen("/proc/sys/kernel/perf_event_paranoid", "re");
    int v = 2;

    if (f) {
        if (fscanf(f, "%d", &v) != 1)
            v = 2;
        fclose(f);
    }
    return v;
}

/* Open `ev` for the calling thread.  *user_only is set when the kernel refused
 * kernel-mode counting and user mode alone was granted.  fd, or -errno. */
static int event_open(const struct cprof_perf_event *ev, int group_fd, uint64_t read_format,
                      int *user_only)
{
    struct perf_event_attr attr = ev->attr;
    int fd;

    attr.size = sizeof(attr);
    attr.read_format = read_format;
    attr.disabled = 0;
    attr.inherit = 0;
    *user_only = attr.exclude_kernel && !attr.exclude_user;
    fd = (int)syscall(SYS_perf_event_open, &attr, 0, -1, group_fd, PERF_FLAG_FD_CLOEXEC);
    if (fd < 0 && (errno == EACCES || errno == EPERM) && !ev->levels_chosen &&
        !ev->kernel_counted) {
        attr.exclude_kernel = 1;
        attr.exclude_hv = 1;
        fd = (int)syscall(SYS_perf_event_open, &attr, 0, -1, group_fd, PERF_FLAG_FD_CLOEXEC);
        if (fd >= 0)
            *user_only = 1;
    }
    return fd < 0 ? -errno : fd;
}

int cprof_perf_open_error(const char *name, const struct cprof_perf_event *ev, int e, int paranoid,
                          const struct cprof_perf_host *h, struct cprof_error *err)
{
    int need = ev->kernel_counted || (ev->levels_chosen && !ev->attr.exclude_kernel) ? 1 : 2;
    int pfm_pmu = ev->pmu && strcmp(ev->pmu, "perf") != 0 && strcmp(ev->pmu, "perf_raw") != 0;

    if (e == EACCES || e == EPERM) {
        if (paranoid > need)
            cprof_error_set(err, e,
                            "counter '%s' is refused: kernel.perf_event_paranoid is %d and an "
                            "unprivileged user needs it at most %d to count this event%s; run "
                            "'sysctl kernel.perf_event_paranoid=%d' as root, or profile as root "
                            "or with CAP_PERFMON",
                            name, paranoid, need,
                            ev->kernel_counted ? " (the kernel counts it in kernel mode)" : "",
                            need);
        else
            cprof_error_set(err, e,
                            "counter '%s' is refused by the kernel (perf_event_open: %s) although "
                            "kernel.perf_event_paranoid is %d; a container or security policy "
                            "may forbid perf events, so profile outside it or as root",
                            name, strerror(e), paranoid);
    } else if (e == EMFILE || e == ENFILE) {
        cprof_error_set(err, e,
                        "counter '%s' cannot be opened: too many open files (perf needs one per "
                        "event and thread); raise the limit with ulimit -n",
                        name);
    } else if (e == ENOSYS) {
        cprof_error_set(err, e,
                        "counter '%s' is unavailable: this kernel has no perf_event_open (built "
                        "without CONFIG_PERF_EVENTS, or blocked by seccomp)",
                        name);
    } else if (ev->kind == CPROF_PERF_HW && cprof_perf_host_no_pmu(h) && pfm_pmu) {
        /* libpfm4 knows the CPU (from CPUID), the kernel shows no PMU: a VM */
        cprof_error_set(err, e,
                        "counter '%s' is unavailable: libpfm4 knows it as an event of this CPU's "
                        "PMU (%s), but no hardware PMU is visible to perf here (perf_event_open: "
                        "%s), as in a VM without PMU passthrough; software counters such as "
                        "task-clock or page-faults work",
                        name, ev->pmu, strerror(e));
    } else if (ev->kind == CPROF_PERF_HW && cprof_perf_host_no_pmu(h)) {
        cprof_error_set(err, e,
                        "counter '%s' is unavailable: no hardware PMU is visible to perf here "
                        "(perf_event_open: %s), as in a VM without PMU passthrough; software "
                        "counters such as task-clock or page-faults work",
                        name, strerror(e));
    } else if (ev->kind == CPROF_PERF_HW) {
        cprof_error_set(err, e,
                        "counter '%s' is unavailable: the CPU's PMU does not support this event "
                        "or group (perf_event_open: %s); cprof --list-counters --pmu lists the "
                        "events of this machine",
                        name, strerror(e));
    } else {
        cprof_error_set(err, e,
                        "counter '%s' is unavailable: this kernel does not provide it "
                        "(perf_event_open: %s)",
                        name, strerror(e));
    }
    return -e;
}

/* The sentence for a failed open of counter `name` on this machine; -e. */
static int open_error(const char *name, const struct cprof_perf_event *ev, int e,
                      struct cprof_error *err)
{
    struct cprof_perf_host h;

    cprof_perf_host_detect(&h);
    return cprof_perf_open_error(name, ev, e, paranoid_level(), &h, err);
}

static const char *user_only_note(int user_only, const struct cprof_perf_event *ev)
{
    if (!user_only || ev->levels_chosen)
        return "";
    return "; user mode only (kernel.perf_event_paranoid refuses kernel-mode counting to this "
           "user)";
}

static struct perf_event_mmap_page *page_map(int fd)
{
    void *p = mmap(NULL, (size_t)sysconf(_SC_PAGESIZE), PROT_READ, MAP_SHARED, fd, 0);

    return p == MAP_FAILED ? NULL : p;
}

static void page_unmap(struct perf_event_mmap_page *p)
{
    if (p)
        munmap(p, (size_t)sysconf(_SC_PAGESIZE));
}

/* cprof_perf_encode, with the code always in err too. */
static int encode(const char *name, struct cprof_perf_event *ev, struct cprof_error *err)
{
    int r = cprof_perf_encode(name, ev, err);

    if (r == 0)
        return 0;
    err->code = err->code ? err->code : r < -1 ? -r : EINVAL;
    return -err->code;
}

static int encode_or_fail(const char *name, struct cprof_perf_event *ev, struct cprof_error *err)
{
    int r = encode(name, ev, err);

    if (r == 0 || err->msg[0])
        return r;
    return cprof_error_set(err, ENOENT, "unknown counter '%s'; cprof --list-counters lists them",
                           name);
}

/* ---- software events ---------------------------------------------------------------------- */

struct perf_sw {
    int fd;                     /* the event, opened for this thread */
    struct perf_event_mmap_page *page; /* mmap'd page (page kind), or NULL: read() */
    uint64_t last;              /* last value returned */
};

static int sw_probe(const char *arg, void *ctx, char *path, size_t pathlen,
                    struct cprof_error *err)
{
    struct cprof_perf_event ev;
    int user_only, fd;

    (void)ctx;
    if ((fd = encode_or_fail(arg, &ev, err)) < 0)
        return fd;
    fd = event_open(&ev, -1, 0, &user_only);
    if (fd < 0)
        return open_error(arg, &ev, -fd, err);
    close(fd);
    if (ev.kind == CPROF_PERF_SW_PAGE)
        snprintf(path, pathlen, "perf software event, count loaded from its mmap'd page (the "
                                "kernel refreshes it at every switch-in), no system call");
    else
        snprintf(path, pathlen, "perf software event, read() per read, a system call%s",
                 user_only_note(user_only, &ev));
    return 0;
}

static int sw_open(void **state, const char *arg, void *ctx, void *shared,
                   struct cprof_error *err)
{
    struct cprof_perf_event ev;
    struct perf_sw *s;
    int user_only, fd;

    (void)ctx;
    (void)shared;
    if ((fd = encode_or_fail(arg, &ev, err)) < 0)
        return fd;
    fd = event_open(&ev, -1, 0, &user_only);
    if (fd < 0)
        return open_error(arg, &ev, -fd, err);
    if (!(s = calloc(1, sizeof(*s)))) {
        close(fd);
        return cprof_error_set(err, ENOMEM, "out of memory opening counter '%s'", arg);
    }
    s->fd = fd;
    if (ev.kind == CPROF_PERF_SW_PAGE)
        s->page = page_map(fd); /* NULL: fall back to read() */
    *state = s;
    return 0;
}

static uint64_t sw_read(void *state)
{
    struct perf_sw *s = state;
    uint64_t v;

    if (s->page) {
        struct cprof_perf_snap snap;
        cprof_perf_page_snap(s->page, NULL, NULL, &snap);
        v = snap.count;
    } else if (read(s->fd, &v, sizeof(v)) != (ssize_t)sizeof(v)) {
        return s->last;
    }
    return cprof_perf_hold(v, &s->last);
}

static void sw_close(void *state)
{
    struct perf_sw *s = state;

    page_unmap(s->page);
    if (s->fd >= 0)
        close(s->fd);
    free(s);
}

const struct cprof_counter_def cprof_counter_perf_sw = {
    .name = "perf-software",
    .unit = "events",
    .description = "a perf software event",
    .probe = sw_probe,
    .thread_open = sw_open,
    .read = sw_read,
    .thread_close = sw_close,
    .flags = CPROF_COUNTER_TAKES_ARG,   /* the event's name */
};

/* ---- hardware events: one group per thread ------------------------------------------------ */

/* The shared state of a run's hardware counters in one thread. */
struct perf_group {
    unsigned n;                 /* members opened, the leader first */
    int fd[GROUP_MAX];          /* each member's event */
    struct perf_event_mmap_page *page[GROUP_MAX]; /* each member's page, or NULL */
    int rdpmc;                  /* every member's page allows rdpmc (x86-64 only) */
    uint64_t value[GROUP_MAX];  /* values of the last read, scaled, held monotonic */
    uint64_t estimated[GROUP_MAX]; /* of which scaling estimated (scaled - counted) */
    uint64_t nscaled;           /* group reads that were scaled (multiplexed) */
    uint64_t buf[3 + GROUP_MAX]; /* read() buffer: nr, enabled, running, values */
};

struct perf_member {
    struct perf_group *g;       /* this thread's group (shared) */
    unsigned idx;               /* position in it */
};

static int hw_group_open(void **shared, struct cprof_error *err)
{
    struct perf_group *g = calloc(1, sizeof(*g));

    if (!g)
        return cprof_error_set(err, ENOMEM, "out of memory opening a perf group");
    *shared = g;
    return 0;
}

/* After every member closed its event. */
static void hw_group_close(void *shared)
{
    free(shared);
}

static const struct cprof_counter_group perf_hw_group = {
    .name = "perf hardware",
    .thread_open = hw_group_open,
    .thread_close = hw_group_close,
};

#if defined(__x86_64__)
static inline uint64_t rdpmc_x86(uint32_t counter, void *ctx)
{
    uint32_t lo, hi;

    (void)ctx;
    __asm__ volatile("rdpmc" : "=a"(lo), "=d"(hi) : "c"(counter));
    return (uint64_t)hi << 32 | lo;
}

/* Every member from its page; 0 if any is off the PMU or was multiplexed. */
static int group_read_rdpmc(struct perf_group *g)
{
    uint64_t v[GROUP_MAX];

    for (unsigned i = 0; i < g->n; i++) {
        struct cprof_perf_snap s;
        cprof_perf_page_snap(g->page[i], rdpmc_x86, NULL, &s);
        if (!cprof_perf_snap_exact(&s))
            return 0;
        v[i] = s.count;
    }
    for (unsigned i = 0; i < g->n; i++)
        cprof_perf_hold(v[i], &g->value[i]);
    return 1;
}
#endif

static void group_read(struct perf_group *g)
{
    uint64_t v[GROUP_MAX], enabled, running;
    ssize_t got;

#if defined(__x86_64__)
    if (g->rdpmc && group_read_rdpmc(g))
        return;
#endif
    got = read(g->fd[0], g->buf, sizeof(g->buf));
    if (got <= 0 ||
        cprof_perf_group_parse(g->buf, (size_t)got, GROUP_FORMAT, g->n, v, &enabled, &running))
        return;         /* keep the last values */
    if (running < enabled)
        g->nscaled++;
    for (unsigned i = 0; i < g->n; i++) {
        uint64_t s = cprof_perf_scale(v[i], enabled, running);
        g->estimated[i] = s - v[i];
        cprof_perf_hold(s, &g->value[i]);
    }
}

static void hw_path(const struct cprof_perf_event *ev, int fd, int user_only, char *path,
                    size_t pathlen)
{
    struct perf_event_mmap_page *pg = page_map(fd);
    int rdpmc = 0;

#if defined(__x86_64__)
    rdpmc = pg && pg->cap_user_rdpmc;
#endif
    page_unmap(pg);
    snprintf(path, pathlen, "perf group of this run's hardware counters, %s; scaled by "
                            "time_enabled/time_running if multiplexed%s",
             rdpmc ? "rdpmc from the mmap'd page, one read() of the group when multiplexed"
                   : "one read() of the group per read (a system call; no rdpmc here)",
             user_only_note(user_only, ev));
}

static int hw_probe(const char *arg, void *ctx, char *path, size_t pathlen,
                    struct cprof_error *err)
{
    struct cprof_perf_event ev;
    int user_only, fd;

    (void)ctx;
    if ((fd = encode_or_fail(arg, &ev, err)) < 0)
        return fd;
    fd = event_open(&ev, -1, GROUP_FORMAT, &user_only);
    if (fd < 0)
        return open_error(arg, &ev, -fd, err);
    hw_path(&ev, fd, user_only, path, pathlen);
    close(fd);
    return 0;
}

/* Join this thread's group (the first member leads the kernel's group). */
static int hw_open(void **state, const char *arg, void *ctx, void *shared,
                   struct cprof_error *err)
{
    struct cprof_perf_event ev;
    struct perf_group *g = shared;
    struct perf_member *m;
    int user_only, fd;

    (void)ctx;
    if (!g)
        return cprof_error_set(err, EINVAL,
                               "counter '%s' was opened without its perf group (cprof bug)", arg);
    if ((fd = encode_or_fail(arg, &ev, err)) < 0)
        return fd;
    if (g->n == GROUP_MAX || !(m = calloc(1, sizeof(*m))))
        return cprof_error_set(err, ENOMEM, "out of memory opening counter '%s'", arg);
    fd = event_open(&ev, g->n ? g->fd[0] : -1, GROUP_FORMAT, &user_only);
    if (fd < 0) {
        free(m);
        return open_error(arg, &ev, -fd, err);
    }
    m->g = g;
    m->idx = g->n;
    g->fd[g->n] = fd;
    g->page[g->n] = page_map(fd);
#if defined(__x86_64__)
    g->rdpmc = (g->n == 0 || g->rdpmc) && g->page[g->n] && g->page[g->n]->cap_user_rdpmc;
#endif
    g->n++;
    *state = m;
    return 0;
}

static uint64_t hw_leader_read(void *state)
{
    struct perf_member *m = state;

    group_read(m->g);
    return m->g->value[m->idx];
}

static uint64_t hw_member_read(void *state)
{
    const struct perf_member *m = state;

    return m->g->value[m->idx];
}

static void hw_close(void *state)
{
    struct perf_member *m = state;
    struct perf_group *g = m->g;

    page_unmap(g->page[m->idx]);
    g->page[m->idx] = NULL;
    close(g->fd[m->idx]);
    g->fd[m->idx] = -1;
    free(m);
}

/* Reads scaled for multiplexing, and the events that scaling estimated. */
static void hw_corrections(void *state, uint64_t *count, uint64_t *amount)
{
    const struct perf_member *m = state;

    *count = m->g->nscaled;
    *amount = m->g->estimated[m->idx];
}

const struct cprof_counter_def cprof_counter_perf_hw_leader = {
    .name = "perf-hardware",
    .unit = "events",
    .description = "a hardware event, leading this run's perf group",
    .probe = hw_probe,
    .thread_open = hw_open,
    .read = hw_leader_read,
    .thread_close = hw_close,
    .corrections = hw_corrections,
    .flags = CPROF_COUNTER_TAKES_ARG,   /* the event's name */
    .group = &perf_hw_group,
};

const struct cprof_counter_def cprof_counter_perf_hw_member = {
    .name = "perf-hardware-member",
    .unit = "events",
    .description = "a hardware event in this run's perf group",
    .probe = hw_probe,
    .thread_open = hw_open,
    .read = hw_member_read,
    .thread_close = hw_close,
    .corrections = hw_corrections,
    .flags = CPROF_COUNTER_TAKES_ARG,
    .group = &perf_hw_group,
};

/* ---- the resolver --------------------------------------------------------------------------- */

/* A copy of the template named by the event, kept for the process (one per name). */
static int perf_resolve(const char *name, const struct cprof_counter_spec *prev, unsigned nprev,
                        struct cprof_counter_spec *out, struct cprof_error *err)
{
    struct cprof_perf_event ev;
    struct cprof_counter_def def = cprof_counter_perf_sw;
    int r = encode(name, &ev, err);

    if (r < 0)
        return r;
    if (ev.kind == CPROF_PERF_HW) {
        def = cprof_counter_perf_hw_leader;
        for (unsigned i = 0; i < nprev; i++)
            if (prev[i].def->group == &perf_hw_group)
                def = cprof_counter_perf_hw_member;
    }
    def.name = name;
    def.unit = ev.unit;
    def.description = ev.description;
    /* the tracer's own instructions raise every hardware event and the CPU clocks;
     * faults, switches and migrations are the program's own events */
    if (ev.kind == CPROF_PERF_HW)
        def.flags |= CPROF_COUNTER_TRACER_COST;
    else if (ev.attr.type == PERF_TYPE_SOFTWARE && (ev.attr.config == PERF_COUNT_SW_TASK_CLOCK
                                                    || ev.attr.config == PERF_COUNT_SW_CPU_CLOCK))
        def.flags |= CPROF_COUNTER_TRACER_COST | CPROF_COUNTER_TIME;
    if ((r = cprof_registry_keep(&def, &out->def, err)) < 0)
        return r;
    snprintf(out->arg, sizeof(out->arg), "%s", name);
    out->ctx = NULL;
    return 0;
}

static void perf_suggest(const char *name, char *buf, size_t len)
{
    cprof_perf_suggest(name, buf, len);
}

const struct cprof_resolver cprof_perf_resolver = {
    .name = "perf",
    .resolve = perf_resolve,
    .listed = cprof_perf_generic_names,
    .suggest = perf_suggest,
};
