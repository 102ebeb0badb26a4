/* perf event names -> struct perf_event_attr.
 *
 * perf's generic names (page-faults, context-switches, cycles, instructions...)
 * come from the table below and work with or without libpfm4; they map to
 * PERF_TYPE_SOFTWARE / PERF_TYPE_HARDWARE events, which the kernel translates to
 * each CPU's own event.  Every other name goes to libpfm4 when cprof was built
 * with it (CPROF_HAVE_LIBPFM): "INST_RETIRED.ANY_P:u", "icl::INST_RETIRED:ANY_P",
 * "perf::PERF_COUNT_HW_CPU_CYCLES", with libpfm4's modifiers.  Nothing here opens
 * an event: perf.c does, and says why one cannot be counted. */
#define _GNU_SOURCE
#include "perf.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifndef CPROF_HAVE_LIBPFM
#define CPROF_HAVE_LIBPFM 0
#endif
#if CPROF_HAVE_LIBPFM
#include <perfmon/pfmlib_perf_event.h>
#endif

const int cprof_perf_have_libpfm = CPROF_HAVE_LIBPFM;

struct generic {
    const char *name;           /* as perf list spells it */
    uint32_t type;              /* PERF_TYPE_SOFTWARE or PERF_TYPE_HARDWARE */
    uint64_t config;            /* PERF_COUNT_SW_* or PERF_COUNT_HW_* */
    enum cprof_perf_kind kind;
    int kernel_counted;         /* see struct cprof_perf_event */
    const char *unit;
    const char *description;
};

#define SW(n, c, k, kc, u, d) {n, PERF_TYPE_SOFTWARE, PERF_COUNT_SW_##c, CPROF_PERF_SW_##k, kc, u, d}
#define HW(n, c, d) {n, PERF_TYPE_HARDWARE, PERF_COUNT_HW_##c, CPROF_PERF_HW, 0, "events", d}

static const struct generic generic[] = {
    SW("page-faults", PAGE_FAULTS, READ, 0, "faults",
       "page faults of the thread, minor and major (perf software event)"),
    SW("minor-faults", PAGE_FAULTS_MIN, READ, 0, "faults",
       "page faults served without I/O (perf software event)"),
    SW("major-faults", PAGE_FAULTS_MAJ, READ, 0, "faults",
       "page faults that waited for I/O (perf software event)"),
    SW("context-switches", CONTEXT_SWITCHES, PAGE, 1, "switches",
       "context switches of the thread, voluntary and involuntary (perf software event)"),
    SW("cpu-migrations", CPU_MIGRATIONS, PAGE, 1, "migrations",
       "moves of the thread to another CPU (perf software event)"),
    SW("task-clock", TASK_CLOCK, READ, 0, "ns",
       "CPU time of the thread as perf's task clock counts it (perf software event)"),
    HW("cycles", CPU_CYCLES, "CPU cycles (generic hardware event)"),
    HW("instructions", INSTRUCTIONS, "instructions retired (generic hardware event)"),
    HW("branches", BRANCH_INSTRUCTIONS, "branch instructions retired (generic hardware event)"),
    HW("branch-misses", BRANCH_MISSES, "mispredicted branches (generic hardware event)"),
    HW("cache-references", CACHE_REFERENCES,
       "last-level cache accesses (generic hardware event)"),
    HW("cache-misses", CACHE_MISSES, "last-level cache misses (generic hardware event)"),
    HW("ref-cycles", REF_CPU_CYCLES,
       "reference cycles, not scaled by frequency changes (generic hardware event)"),
    HW("bus-cycles", BUS_CYCLES, "bus cycles (generic hardware event)"),
    HW("stalled-cycles-frontend", STALLED_CYCLES_FRONTEND,
       "cycles the frontend issued nothing (generic hardware event)"),
    HW("stalled-cycles-backend", STALLED_CYCLES_BACKEND,
       "cycles the backend retired nothing (generic hardware event)"),
};
#define NGENERIC (sizeof(generic) / sizeof(generic[0]))

/* perf's other spellings of the same events. */
static const struct {
    const char *alias, *name;
} aliases[] = {
    {"faults", "page-faults"},  {"cs", "context-switches"},
    {"migrations", "cpu-migrations"}, {"cpu-cycles", "cycles"},
    {"branch-instructions", "branches"},
};

const char *const cprof_perf_generic_names[] = {
    "page-faults", "minor-faults", "major-faults", "context-switches", "cpu-migrations",
    "task-clock", "cycles", "instructions", "branches", "branch-misses", "cache-references",
    "cache-misses", "ref-cycles", "bus-cycles", "stalled-cycles-frontend",
    "stalled-cycles-backend", NULL,
};

int cprof_perf_hw_pmu_visible(void)
{
    DIR *d = opendir("/sys/bus/event_source/devices");
    struct dirent *e;
    int found = 0;

    if (!d)
        return 0;
    while (!found && (e = readdir(d))) {
        char path[512];
        FILE *f;
        unsigned type;
        if (e->d_name[0] == '.')
            continue;
        snprintf(path, sizeof(path), "/sys/bus/event_source/devices/%s/type", e->d_name);
        if ((f = fopen(path, "re"))) {
            found = fscanf(f, "%u", &type) == 1 && type == PERF_TYPE_RAW;
            fclose(f);
        }
    }
    closedir(d);
    return found;
}

/* ---- the host: what the sentences about PMU events rest on ------------------------------ */

#if CPROF_HAVE_LIBPFM
static const char *pfm_core_pmu(void);
#endif

void cprof_perf_host_detect(struct cprof_perf_host *h)
{
    struct perf_event_attr a;
    int fd;

    memset(h, 0, sizeof(*h));
    h->libpfm = CPROF_HAVE_LIBPFM;
    /* user mode only: an unprivileged user may count that much where a PMU exists */
    memset(&a, 0, sizeof(a));
    a.size = sizeof(a);
    a.type = PERF_TYPE_HARDWARE;
    a.config = PERF_COUNT_HW_INSTRUCTIONS;
    a.disabled = 1;
    a.exclude_kernel = 1;
    a.exclude_hv = 1;
    fd = (int)syscall(SYS_perf_event_open, &a, 0, -1, -1, PERF_FLAG_FD_CLOEXEC);
    if (fd >= 0)
        close(fd);
    else
        h->hw_errno = errno;
#if CPROF_HAVE_LIBPFM
    h->core_pmu = pfm_core_pmu();
#endif
}

int cprof_perf_host_no_pmu(const struct cprof_perf_host *h)
{
    switch (h->hw_errno) {
    case 0:
    case EACCES:
    case EPERM:
    case EMFILE:
    case ENFILE:
    case EINTR:
    case EBUSY:
        return 0;
    default:
        return 1;
    }
}

int cprof_perf_pmu_name_error(const char *name, const char *known, const struct cprof_perf_host *h,
                              struct cprof_error *err)
{
    char why[120] = "";         /* why no PMU event can be counted here, or "" */

    if (cprof_perf_host_no_pmu(h))
        snprintf(why, sizeof(why), "no hardware PMU is visible to perf here (perf_event_open: %s)",
                 strerror(h->hw_errno));
    if (!h->libpfm && why[0])
        cprof_error_set(err, ENOTSUP,
                        "counter '%s' looks like a PMU event name, but this cprof was built "
                        "without libpfm4, which encodes such names, and %s, as in a VM without "
                        "PMU passthrough; software events such as task-clock or page-faults work",
                        name, why);
    else if (!h->libpfm)
        cprof_error_set(err, ENOTSUP,
                        "counter '%s' looks like a PMU event name, but this cprof was built "
                        "without libpfm4, which encodes such names; install libpfm4-dev "
                        "(Debian/Ubuntu) or libpfm-devel (Fedora) and reinstall cprof, or use a "
                        "generic event such as cycles or instructions",
                        name);
    else if (!known || !known[0])
        cprof_error_set(err, ENOENT, "%s", "");        /* unknown: the registry's sentence */
    else if (h->core_pmu && why[0])
        cprof_error_set(err, ENOENT,
                        "counter '%s' is an event of other PMUs in libpfm4 (%s), not of this "
                        "CPU's (%s), and %s, as in a VM without PMU passthrough; use software "
                        "events such as task-clock",
                        name, known, h->core_pmu, why);
    else if (h->core_pmu)
        cprof_error_set(err, ENOENT,
                        "counter '%s' is an event of other PMUs in libpfm4 (%s), not of this "
                        "CPU's (%s); cprof --list-counters --pmu lists this CPU's events",
                        name, known, h->core_pmu);
    else if (why[0])
        cprof_error_set(err, ENOENT,
                        "counter '%s' is an event of other PMUs in libpfm4 (%s); it detects none "
                        "on this CPU, and %s, as in a VM without PMU passthrough; use software "
                        "events such as task-clock",
                        name, known, why);
    else
        cprof_error_set(err, ENOENT,
                        "counter '%s' is an event of other PMUs in libpfm4 (%s); it does not "
                        "recognise this CPU's, so only perf's generic events such as cycles or "
                        "instructions work here",
                        name, known);
    return -err->code;
}

/* A name with '.', "::" or capitals is a PMU event name (libpfm4's domain),
 * not a mistyped generic one. */
static int looks_like_pmu_event(const char *name)
{
    if (strchr(name, '.') || strstr(name, "::"))
        return 1;
    for (const char *p = name; *p && *p != ':'; p++)
        if (isupper((unsigned char)*p))
            return 1;
    return 0;
}

/* "cycles:u" -> the generic event with exclude_kernel; "uk" and 'h' as perf.
 * -ENOENT: not a generic name; -EINVAL: one with modifiers it does not know. */
static int encode_generic(const char *name, struct cprof_perf_event *ev)
{
    const char *colon = strchr(name, ':');
    size_t len = colon ? (size_t)(colon - name) : strlen(name);
    const char *canon = NULL;
    const struct generic *g = NULL;

    for (size_t i = 0; i < sizeof(aliases) / sizeof(aliases[0]); i++)
        if (strlen(aliases[i].alias) == len && memcmp(aliases[i].alias, name, len) == 0)
            canon = aliases[i].name;
    for (size_t i = 0; i < NGENERIC && !g; i++) {
        const char *n = canon ? canon : name;
        size_t nl = canon ? strlen(canon) : len;
        if (strlen(generic[i].name) == nl && memcmp(generic[i].name, n, nl) == 0)
            g = &generic[i];
    }
    if (!g)
        return -ENOENT;
    memset(ev, 0, sizeof(*ev));
    ev->attr.type = g->type;
    ev->attr.config = g->config;
    ev->kind = g->kind;
    ev->kernel_counted = g->kernel_counted;
    ev->unit = g->unit;
    ev->description = g->description;
    if (colon) {
        int u = 0, k = 0, h = 0;
        if (!colon[1])
            return -EINVAL;
        for (const char *m = colon + 1; *m; m++) {
            if (*m == 'u')
                u = 1;
            else if (*m == 'k')
                k = 1;
            else if (*m == 'h')
                h = 1;
            else
                return -EINVAL;
        }
        ev->attr.exclude_user = !u;
        ev->attr.exclude_kernel = !k;
        ev->attr.exclude_hv = !h;
        ev->levels_chosen = 1;
    }
    return 0;
}

#if CPROF_HAVE_LIBPFM
static pthread_once_t pfm_once = PTHREAD_ONCE_INIT;
static int pfm_status = PFM_ERR_NOINIT;

static void pfm_init_once(void)
{
    pfm_status = pfm_initialize();
}

static int pfm_ready(void)
{
    pthread_once(&pfm_once, pfm_init_once);
    return pfm_status == PFM_SUCCESS;
}

/* libpfm4's name of the core PMU it detects on this CPU, or NULL (only perf's
 * generic events). */
static const char *pfm_core_pmu(void)
{
    pfm_pmu_t p;

    if (!pfm_ready())
        return NULL;
    pfm_for_all_pmus(p) {
        pfm_pmu_info_t info;
        memset(&info, 0, sizeof(info));
        info.size = sizeof(info);
        if (pfm_get_pmu_info(p, &info) == PFM_SUCCESS && info.is_present &&
            info.type == PFM_PMU_TYPE_CORE)
            return info.name;
    }
    return NULL;
}

/* "icl::INST_RETIRED.ANY_P:u" -> "INST_RETIRED" (its length into *len). */
static const char *event_base(const char *name, size_t *len)
{
    const char *base = strstr(name, "::") ? strstr(name, "::") + 2 : name;

    *len = strcspn(base, ".:");
    return base;
}

/* Does the table of `pinfo`, a PMU libpfm4 does not detect here, hold an event
 * named base[0..blen)? */
static int pfm_pmu_has_event(const pfm_pmu_info_t *pinfo, const char *base, size_t blen)
{
    for (int i = pinfo->first_event; i != -1; i = pfm_get_event_next(i)) {
        pfm_event_info_t e;
        memset(&e, 0, sizeof(e));
        e.size = sizeof(e);
        if (pfm_get_event_info(i, PFM_OS_NONE, &e) == PFM_SUCCESS && e.name &&
            strlen(e.name) == blen && strncasecmp(e.name, base, blen) == 0)
            return 1;
    }
    return 0;
}

/* The PMUs libpfm4 does not detect here whose tables hold the event of `name`
 * (only the one it names, if "pmu::EVENT"), into buf as the last of them in
 * libpfm4's order (the newest CPU, as a rule) and how many more: "spr and 23 more",
 * or "".  Core PMUs only, unless no core PMU has the event. */
static void pfm_known_elsewhere(const char *name, char *buf, size_t len)
{
    size_t blen, plen = 0;
    const char *base = event_base(name, &blen);
    const char *last = NULL;
    unsigned found = 0;

    buf[0] = '\0';
    if (strstr(name, "::"))
        plen = (size_t)(strstr(name, "::") - name);
    if (!pfm_ready() || blen == 0)
        return;
    for (int core = 1; core >= 0 && !found; core--) {
        pfm_pmu_t p;
        pfm_for_all_pmus(p) {
            pfm_pmu_info_t pinfo;
            memset(&pinfo, 0, sizeof(pinfo));
            pinfo.size = sizeof(pinfo);
            if (pfm_get_pmu_info(p, &pinfo) != PFM_SUCCESS || pinfo.is_present || !pinfo.name ||
                (pinfo.type == PFM_PMU_TYPE_CORE) != core)
                continue;
            if (plen && (strlen(pinfo.name) != plen || strncasecmp(pinfo.name, name, plen)))
                continue;
            if (pfm_pmu_has_event(&pinfo, base, blen)) {
                last = pinfo.name;
                found++;
            }
        }
    }
    if (found == 1)
        snprintf(buf, len, "%s", last);
    else if (found > 1)
        snprintf(buf, len, "%s and %u more", last, found - 1);
}

static int encode_pfm(const char *name, struct cprof_perf_event *ev, struct cprof_error *err)
{
    pfm_perf_encode_arg_t arg;
    pfm_event_info_t info;
    int r;

    if (!pfm_ready()) {
        cprof_error_set(err, EIO, "libpfm4 could not start (%s), so event '%s' cannot be encoded",
                        pfm_strerror(pfm_status), name);
        return -1;
    }
    memset(ev, 0, sizeof(*ev));
    memset(&arg, 0, sizeof(arg));
    arg.attr = &ev->attr;
    arg.size = sizeof(arg);
    r = pfm_get_os_event_encoding(name, PFM_PLM0 | PFM_PLM3, PFM_OS_PERF_EVENT_EXT, &arg);
    if (r == PFM_ERR_NOTFOUND) {
        struct cprof_perf_host h;
        char known[96];
        if (!looks_like_pmu_event(name)) {
            cprof_error_set(err, ENOENT, "%s", "");     /* a typo: the registry's sentence */
            return -1;
        }
        pfm_known_elsewhere(name, known, sizeof(known));
        cprof_perf_host_detect(&h);
        return cprof_perf_pmu_name_error(name, known, &h, err);
    }
    if (r != PFM_SUCCESS) {
        cprof_error_set(err, EINVAL,
                        "libpfm4 cannot encode counter '%s' (%s); cprof --list-counters --pmu "
                        "lists the events and their unit masks",
                        name, pfm_strerror(r));
        return -1;
    }
    ev->attr.size = sizeof(ev->attr);
    ev->levels_chosen = ev->attr.exclude_kernel || ev->attr.exclude_user;
    ev->unit = "events";
    ev->description = "PMU event named through libpfm4";
    memset(&info, 0, sizeof(info));
    info.size = sizeof(info);
    if (pfm_get_event_info(arg.idx, PFM_OS_NONE, &info) == PFM_SUCCESS) {
        pfm_pmu_info_t pinfo;
        if (info.desc)
            ev->description = info.desc;
        memset(&pinfo, 0, sizeof(pinfo));
        pinfo.size = sizeof(pinfo);
        if (pfm_get_pmu_info(info.pmu, &pinfo) == PFM_SUCCESS)
            ev->pmu = pinfo.name;
    }
    if (ev->attr.type == PERF_TYPE_SOFTWARE) {
        ev->unit = ev->attr.config == PERF_COUNT_SW_TASK_CLOCK ||
                           ev->attr.config == PERF_COUNT_SW_CPU_CLOCK
                       ? "ns"
                       : "events";
        ev->kernel_counted = ev->attr.config == PERF_COUNT_SW_CONTEXT_SWITCHES ||
                             ev->attr.config == PERF_COUNT_SW_CPU_MIGRATIONS;
        ev->kind = ev->kernel_counted ? CPROF_PERF_SW_PAGE : CPROF_PERF_SW_READ;
    } else if (ev->attr.type == PERF_TYPE_TRACEPOINT) {
        ev->kind = CPROF_PERF_SW_READ;
    } else {
        ev->kind = CPROF_PERF_HW;
    }
    return 0;
}
#endif

int cprof_perf_encode(const char *name, struct cprof_perf_event *ev, struct cprof_error *err)
{
    int r = encode_generic(name, ev);

    if (r == 0)
        return 0;
    if (r == -EINVAL)
        return cprof_error_set(err, EINVAL,
                               "counter '%s' has unknown modifiers; perf's generic events take "
                               ":u (user), :k (kernel), :h (hypervisor) or a combination such as "
                               ":uk",
                               name);
#if CPROF_HAVE_LIBPFM
    return encode_pfm(name, ev, err);
#else
    if (looks_like_pmu_event(name)) {
        struct cprof_perf_host h;
        cprof_perf_host_detect(&h);
        return cprof_perf_pmu_name_error(name, NULL, &h, err);
    }
    return cprof_error_set(err, ENOENT, "%s", "");
#endif
}

void cprof_perf_suggest(const char *name, char *buf, size_t len)
{
    buf[0] = '\0';
#if CPROF_HAVE_LIBPFM
    {
        /* Compare the event part ("INST_RETRED" of "icl::INST_RETRED.ANY_P:u") with
         * libpfm4's event names; suggest the close ones with the rest as typed. */
        const char *base = strstr(name, "::") ? strstr(name, "::") + 2 : name;
        size_t blen = strcspn(base, ".:");
        unsigned cap = cprof_close_distance(blen) + 1;
        unsigned found = 0;
        pfm_pmu_t p;

        if (!pfm_ready() || blen == 0)
            return;
        pfm_for_all_pmus(p) {
            pfm_pmu_info_t pinfo;
            memset(&pinfo, 0, sizeof(pinfo));
            pinfo.size = sizeof(pinfo);
            if (pfm_get_pmu_info(p, &pinfo) != PFM_SUCCESS || !pinfo.is_present)
                continue;
            for (int i = pinfo.first_event; i != -1 && found < 3; i = pfm_get_event_next(i)) {
                pfm_event_info_t e;
                size_t used = strlen(buf);
                memset(&e, 0, sizeof(e));
                e.size = sizeof(e);
                if (pfm_get_event_info(i, PFM_OS_NONE, &e) != PFM_SUCCESS || !e.name)
                    continue;
                if (cprof_name_distance(base, blen, e.name, strlen(e.name), cap) >= cap)
                    continue;
                snprintf(buf + used, len - used, "%s%s%s", used ? ", " : "", e.name, base + blen);
                found++;
            }
        }
    }
#else
    (void)name;
    (void)len;
#endif
}

int cprof_perf_pmu_events(cprof_pmu_event_fn fn, void *ctx, struct cprof_error *err)
{
#if CPROF_HAVE_LIBPFM
    pfm_pmu_t p;

    if (!pfm_ready()) {
        cprof_error_set(err, EIO, "libpfm4 could not start (%s), so it lists no PMU events",
                        pfm_strerror(pfm_status));
        return -EIO;
    }
    pfm_for_all_pmus(p) {
        pfm_pmu_info_t pinfo;
        memset(&pinfo, 0, sizeof(pinfo));
        pinfo.size = sizeof(pinfo);
        if (pfm_get_pmu_info(p, &pinfo) != PFM_SUCCESS || !pinfo.is_present)
            continue;
        for (int i = pinfo.first_event; i != -1; i = pfm_get_event_next(i)) {
            pfm_event_info_t e;
            char full[256];
            int r;
            memset(&e, 0, sizeof(e));
            e.size = sizeof(e);
            if (pfm_get_event_info(i, PFM_OS_NONE, &e) != PFM_SUCCESS || !e.name)
                continue;
            snprintf(full, sizeof(full), "%s::%s", pinfo.name, e.name);
            r = fn(ctx, full, pinfo.name, pinfo.desc ? pinfo.desc : "", e.desc ? e.desc : "");
            if (r)
                return r;
        }
    }
    return 0;
#else
    (void)fn;
    (void)ctx;
    cprof_error_set(err, ENOTSUP,
                    "this cprof was built without libpfm4, so it cannot list PMU events; install "
                    "libpfm4-dev (Debian/Ubuntu) or libpfm-devel (Fedora) and reinstall cprof");
    return -ENOTSUP;
#endif
}
