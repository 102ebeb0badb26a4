#define _GNU_SOURCE
#include "switchdet.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/rseq.h>

/* The kernel validates a non-NULL rseq_cs before clearing it: version 0, abort_ip
 * outside [start_ip, start_ip + post_commit_offset), and the 4 bytes before
 * abort_ip equal to the signature the thread registered (glibc's RSEQ_SIG).
 * post_commit_offset 0 makes the range empty, so no instruction is ever inside
 * it and the kernel only ever clears the field.  abort_ip is never jumped to. */
static const uint32_t rseq_sig_area[2] __attribute__((aligned(8))) = {RSEQ_SIG, 0};

const struct rseq_cs cprof_rseq_armed __attribute__((aligned(32))) = {
    .version = 0,
    .flags = 0,
    .start_ip = (uint64_t)(uintptr_t)&rseq_sig_area[1],
    .post_commit_offset = 0,
    .abort_ip = (uint64_t)(uintptr_t)&rseq_sig_area[1],
};

/* initial-exec: a direct %fs-relative load, no __tls_get_addr call per event (the
 * few bytes come from glibc's static TLS surplus reserved for dlopen'ed objects) */
static _Thread_local struct cprof_switchdet self_det __attribute__((tls_model("initial-exec")));
static _Thread_local int self_init __attribute__((tls_model("initial-exec")));

static int rseq_disabled_by_env(void)
{
    const char *e = getenv("CPROF_NO_RSEQ");
    return e && e[0] && strcmp(e, "0") != 0;
}

int cprof_switchdet_available(char *why, size_t len)
{
    if (rseq_disabled_by_env()) {
        snprintf(why, len, "CPROF_NO_RSEQ is set");
        return 0;
    }
    if (__rseq_size == 0) {
        snprintf(why, len, "glibc did not register rseq for this thread "
                           "(glibc older than 2.35, or GLIBC_TUNABLES=glibc.pthread.rseq=0)");
        return 0;
    }
    /* cpu_id is -1 (uninitialised) or -2 (registration failed) when the kernel does
     * not maintain this thread's area: then nobody would clear rseq_cs. */
    if ((int32_t)((struct rseq *)((char *)__builtin_thread_pointer() + __rseq_offset))->cpu_id < 0) {
        snprintf(why, len, "this thread's rseq area is not registered with the kernel");
        return 0;
    }
    why[0] = '\0';
    return 1;
}

struct cprof_switchdet *cprof_switchdet_self(void)
{
    if (!self_init) {
        char why[160]; /* whole sentences: the call may be inlined, and a short buffer warns */
        self_det.rseq_cs = NULL;
        if (cprof_switchdet_available(why, sizeof(why))) {
            struct rseq *r = (struct rseq *)((char *)__builtin_thread_pointer() + __rseq_offset);
            self_det.rseq_cs = (volatile uint64_t *)&r->rseq_cs;
        }
        self_init = 1;
    }
    return &self_det;
}
