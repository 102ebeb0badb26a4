/* libpfm4 loaded at run time: see pfm_loader.h. */
#define _GNU_SOURCE
#include "pfm_loader.h"

#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Where libpfm4's headers are installed, check that the declarations in
 * pfm_loader.h are its ABI: sizes, the offsets cprof reads and the constants. */
#if defined(__has_include)
#if __has_include(<perfmon/pfmlib_perf_event.h>)
#include <perfmon/pfmlib_perf_event.h>
#define SAME_FIELD(ours, theirs, f) \
    _Static_assert(offsetof(struct ours, f) == offsetof(theirs, f), #f " of " #theirs)
_Static_assert(sizeof(struct cprof_pfm_pmu_info) == sizeof(pfm_pmu_info_t), "pfm_pmu_info_t");
SAME_FIELD(cprof_pfm_pmu_info, pfm_pmu_info_t, name);
SAME_FIELD(cprof_pfm_pmu_info, pfm_pmu_info_t, desc);
SAME_FIELD(cprof_pfm_pmu_info, pfm_pmu_info_t, size);
SAME_FIELD(cprof_pfm_pmu_info, pfm_pmu_info_t, type);
SAME_FIELD(cprof_pfm_pmu_info, pfm_pmu_info_t, first_event);
SAME_FIELD(cprof_pfm_pmu_info, pfm_pmu_info_t, num_fixed_cntrs);
_Static_assert(sizeof(struct cprof_pfm_event_info) == sizeof(pfm_event_info_t), "pfm_event_info_t");
SAME_FIELD(cprof_pfm_event_info, pfm_event_info_t, name);
SAME_FIELD(cprof_pfm_event_info, pfm_event_info_t, desc);
SAME_FIELD(cprof_pfm_event_info, pfm_event_info_t, size);
SAME_FIELD(cprof_pfm_event_info, pfm_event_info_t, pmu);
SAME_FIELD(cprof_pfm_event_info, pfm_event_info_t, reserved);
_Static_assert(sizeof(struct cprof_pfm_perf_encode_arg) == sizeof(pfm_perf_encode_arg_t),
               "pfm_perf_encode_arg_t");
SAME_FIELD(cprof_pfm_perf_encode_arg, pfm_perf_encode_arg_t, attr);
SAME_FIELD(cprof_pfm_perf_encode_arg, pfm_perf_encode_arg_t, size);
SAME_FIELD(cprof_pfm_perf_encode_arg, pfm_perf_encode_arg_t, idx);
_Static_assert(sizeof(pfm_pmu_t) == sizeof(int) && sizeof(pfm_os_t) == sizeof(int), "enums");
_Static_assert(CPROF_PFM_SUCCESS == PFM_SUCCESS && CPROF_PFM_ERR_NOTFOUND == PFM_ERR_NOTFOUND,
               "error codes");
_Static_assert(CPROF_PFM_PLM0 == PFM_PLM0 && CPROF_PFM_PLM3 == PFM_PLM3, "privilege levels");
_Static_assert(CPROF_PFM_OS_NONE == PFM_OS_NONE &&
                   CPROF_PFM_OS_PERF_EVENT_EXT == PFM_OS_PERF_EVENT_EXT, "OS layers");
_Static_assert(CPROF_PFM_PMU_TYPE_CORE == PFM_PMU_TYPE_CORE, "PMU type");
_Static_assert(CPROF_PFM_PMU_LIMIT > PFM_PMU_MAX, "CPROF_PFM_PMU_LIMIT covers the PMU ids");
#endif
#endif

static pthread_once_t once = PTHREAD_ONCE_INIT;
static struct cprof_pfm pfm;            /* the functions, valid when `loaded` */
static int loaded;                      /* 1 once libpfm4 is loaded and started */
static char why_not[256];               /* why it is not, else "" */

/* The symbols resolved, in the order load() takes them from `sym`. */
static const char *const symbols[] = {
    "pfm_initialize", "pfm_strerror", "pfm_get_pmu_info", "pfm_get_event_next",
    "pfm_get_event_info", "pfm_get_os_event_encoding",
};
#define NSYMBOLS (sizeof(symbols) / sizeof(symbols[0]))

static void load(void)
{
    const char *file = getenv("CPROF_LIBPFM");
    void *sym[NSYMBOLS];
    int (*initialize)(void);
    void *h;
    int r;

    if (!file || !file[0])
        file = "libpfm.so.4";
    /* RTLD_LOCAL: its symbols stay out of the process's namespace.  Kept open for
     * the life of the process once started (its tables back the names it returns). */
    h = dlopen(file, RTLD_NOW | RTLD_LOCAL);
    if (!h) {
        snprintf(why_not, sizeof(why_not), "libpfm4 was not found (%s)", dlerror());
        return;
    }
    for (size_t i = 0; i < NSYMBOLS; i++) {
        if (!(sym[i] = dlsym(h, symbols[i]))) {
            snprintf(why_not, sizeof(why_not),
                     "libpfm4 was not found (%s has no %s: not libpfm4, or too old)", file,
                     symbols[i]);
            dlclose(h);
            return;
        }
    }
    initialize = (int (*)(void))sym[0];
    pfm.strerror = (const char *(*)(int))sym[1];
    pfm.get_pmu_info = (int (*)(int, struct cprof_pfm_pmu_info *))sym[2];
    pfm.get_event_next = (int (*)(int))sym[3];
    pfm.get_event_info = (int (*)(int, int, struct cprof_pfm_event_info *))sym[4];
    pfm.get_os_event_encoding = (int (*)(const char *, int, int, void *))sym[5];
    r = initialize();
    if (r != CPROF_PFM_SUCCESS) {
        snprintf(why_not, sizeof(why_not), "libpfm4 could not start (%s)", pfm.strerror(r));
        dlclose(h);
        return;
    }
    loaded = 1;
}

const struct cprof_pfm *cprof_pfm_get(const char **why)
{
    pthread_once(&once, load);
    if (why)
        *why = loaded ? NULL : why_not;
    return loaded ? &pfm : NULL;
}
