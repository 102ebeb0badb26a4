/* libpfm4, loaded at run time.
 *
 * cprof names PMU events through libpfm4 where a machine has it, and one build
 * (one wheel) must work on machines with and without it: nothing links
 * libpfm.so.4; the first use dlopens it, resolves the six functions below and
 * starts the library.  The types and constants are libpfm4's (pfmlib.h and
 * pfmlib_perf_event.h, the ABI of libpfm 4.x, whose structs carry their size for
 * versioning), declared here under cprof_pfm_ names so the build needs neither the
 * library nor its headers; where the headers are installed, pfm_loader.c checks at
 * compile time that the two agree.  Private to counters/ (perf_names.c). */
#ifndef CPROF_PFM_LOADER_H
#define CPROF_PFM_LOADER_H

#include <stddef.h>
#include <stdint.h>

#define CPROF_PFM_SUCCESS 0             /* PFM_SUCCESS */
#define CPROF_PFM_ERR_NOTFOUND (-4)     /* PFM_ERR_NOTFOUND: no such event */
#define CPROF_PFM_PLM0 0x01             /* PFM_PLM0: kernel */
#define CPROF_PFM_PLM3 0x08             /* PFM_PLM3: user */
#define CPROF_PFM_OS_NONE 0             /* PFM_OS_NONE: libpfm4's own view of an event */
#define CPROF_PFM_OS_PERF_EVENT_EXT 2   /* PFM_OS_PERF_EVENT_EXT: all perf_event_attr fields */
#define CPROF_PFM_PMU_TYPE_CORE 1       /* PFM_PMU_TYPE_CORE */

/* PMU ids run from 0 to libpfm4's PFM_PMU_MAX, which grows with each release (517
 * in 4.13); pfm_get_pmu_info refuses the ids past the loaded library's, so a walk
 * over all PMUs goes to this bound, with room for releases to come. */
#define CPROF_PFM_PMU_LIMIT 4096

struct cprof_pfm_pmu_info {             /* pfm_pmu_info_t */
    const char *name;                   /* PMU name ("icl", "perf") */
    const char *desc;                   /* one line */
    size_t size;                        /* sizeof this struct, set by the caller */
    int pmu;                            /* pfm_pmu_t: the PMU's id */
    int type;                           /* pfm_pmu_type_t: CPROF_PFM_PMU_TYPE_CORE... */
    int nevents;                        /* events in its table */
    int first_event;                    /* opaque index of its first event, -1 if none */
    int max_encoding;                   /* uint64_t words to encode an event */
    int num_cntrs;                      /* generic counters */
    int num_fixed_cntrs;                /* fixed counters */
    struct {
        unsigned int is_present : 1;    /* detected on this machine */
        unsigned int is_dfl : 1;        /* the architecture's default PMU */
        unsigned int reserved_bits : 30;
    };
};

struct cprof_pfm_event_info {           /* pfm_event_info_t */
    const char *name;                   /* event name */
    const char *desc;                   /* one line */
    const char *equiv;                  /* the event it is equivalent to, or NULL */
    size_t size;                        /* sizeof this struct, set by the caller */
    uint64_t code;                      /* raw event code (not the encoding) */
    int pmu;                            /* pfm_pmu_t: its PMU's id */
    int dtype;                          /* pfm_dtype_t: type of its value */
    int idx;                            /* unique event index */
    int nattrs;                         /* number of attributes */
    int reserved;
    struct {
        unsigned int is_precise : 1;    /* precise sampling (PEBS) */
        unsigned int is_speculative : 2;
        unsigned int support_hw_smpl : 1;
        unsigned int reserved_bits : 28;
    };
};

struct perf_event_attr;

struct cprof_pfm_perf_encode_arg {      /* pfm_perf_encode_arg_t */
    struct perf_event_attr *attr;       /* in/out: the attributes libpfm4 fills */
    char **fstr;                        /* out: the fully qualified event string, or NULL */
    size_t size;                        /* sizeof this struct, set by the caller */
    int idx;                            /* out: the event's index (for get_event_info) */
    int cpu;                            /* out: CPU to program, -1 = any */
    int flags;                          /* out: perf_event_open flags */
    int pad0;
};

/* The functions of libpfm4 cprof uses (same names without "pfm_"). */
struct cprof_pfm {
    const char *(*strerror)(int code);
    int (*get_pmu_info)(int pmu, struct cprof_pfm_pmu_info *info);
    int (*get_event_next)(int idx);
    int (*get_event_info)(int idx, int os, struct cprof_pfm_event_info *info);
    int (*get_os_event_encoding)(const char *str, int dfl_plm, int os, void *args);
};

/* libpfm4, loaded and started on the first call (thread-safe, once per process),
 * or NULL with *why (if why) set to the reason, static storage, one clause:
 * "libpfm4 was not found (libpfm.so.4: cannot open shared object file: ...)" or
 * "libpfm4 could not start (...)".  The environment variable CPROF_LIBPFM names
 * another file to load instead of libpfm.so.4 (tests hide libpfm4 that way). */
const struct cprof_pfm *cprof_pfm_get(const char **why);

#endif
