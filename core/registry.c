#include "registry.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

void cprof_error_set(struct cprof_error *err, int code, const char *fmt, ...)
{
    va_list ap;

    if (!err)
        return;
    err->code = code;
    va_start(ap, fmt);
    vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
    va_end(ap);
}

const struct cprof_counter_def *cprof_registry_find(const struct cprof_counter_def *const *known,
                                                    const char *name, size_t len)
{
    for (; *known; known++)
        if (strlen((*known)->name) == len && memcmp((*known)->name, name, len) == 0)
            return *known;
    return NULL;
}

int cprof_registry_check(const struct cprof_counter_def *def, struct cprof_error *err)
{
    const char *missing = NULL;

    if (!def->name || !def->name[0])
        missing = "name";
    else if (!def->unit || !def->unit[0])
        missing = "unit";
    else if (!def->description)
        missing = "description";
    else if (!def->probe)
        missing = "probe";
    else if (!def->thread_open)
        missing = "thread_open";
    else if (!def->read)
        missing = "read";
    if (missing) {
        cprof_error_set(err, EINVAL, "counter module '%s' has no %s; every descriptor needs one",
                        def->name ? def->name : "(unnamed)", missing);
        return -1;
    }
    if (strpbrk(def->name, ",: \t")) {
        cprof_error_set(err, EINVAL, "counter name '%s' contains ',', ':' or a space; rename it",
                        def->name);
        return -1;
    }
    return 0;
}

/* "cpu, wall, ctxsw" into buf, for error sentences. */
static void list_names(const struct cprof_counter_def *const *known, char *buf, size_t len)
{
    size_t used = 0;

    buf[0] = '\0';
    for (; *known && used < len; known++) {
        int w = snprintf(buf + used, len - used, "%s%s", used ? ", " : "", (*known)->name);
        if (w < 0)
            break;
        used += (size_t)w;
    }
}

int cprof_spec_parse(const char *spec, const struct cprof_counter_def *const *known,
                     struct cprof_counter_spec *out, unsigned max, unsigned *n,
                     struct cprof_error *err)
{
    char names[200];
    const char *p = spec;

    *n = 0;
    for (;;) {
        const char *end = strchr(p, ',');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        const char *colon = memchr(p, ':', len);
        size_t nlen = colon ? (size_t)(colon - p) : len;
        const struct cprof_counter_def *def;

        list_names(known, names, sizeof(names));
        if (nlen == 0) {
            cprof_error_set(err, EINVAL,
                            "empty counter name in '%s'; give a comma-separated list of: %s",
                            spec, names);
            return -1;
        }
        def = cprof_registry_find(known, p, nlen);
        if (!def) {
            cprof_error_set(err, ENOENT, "unknown counter '%.*s'; valid counters are: %s",
                            (int)nlen, p, names);
            return -1;
        }
        for (unsigned i = 0; i < *n; i++)
            if (out[i].def == def) {
                cprof_error_set(err, EINVAL, "counter '%s' is given twice; name each counter once",
                                def->name);
                return -1;
            }
        if (*n == max) {
            cprof_error_set(err, E2BIG, "too many counters: at most %u per run, in '%s'", max, spec);
            return -1;
        }
        if (colon && len - nlen - 1 >= CPROF_ARG_LEN) {
            cprof_error_set(err, E2BIG, "the argument of counter '%s' is too long (at most %d bytes)",
                            def->name, CPROF_ARG_LEN - 1);
            return -1;
        }
        out[*n].def = def;
        out[*n].arg[0] = '\0';
        if (colon) {
            memcpy(out[*n].arg, colon + 1, len - nlen - 1);
            out[*n].arg[len - nlen - 1] = '\0';
        }
        (*n)++;
        if (!end)
            return 0;
        p = end + 1;
    }
}
