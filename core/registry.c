#include "registry.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

const struct cprof_counter_def *cprof_registry_find(const struct cprof_counter_def *const *known,
                                                    const char *name, size_t len)
{
    for (; *known; known++)
        if (strlen((*known)->name) == len && memcmp((*known)->name, name, len) == 0)
            return *known;
    return NULL;
}

/* Every mandatory slot is there. */
static int check_complete(const struct cprof_counter_def *def, struct cprof_error *err)
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
    return 0;
}

int cprof_registry_check(const struct cprof_counter_def *def, struct cprof_error *err)
{
    if (check_complete(def, err) < 0)
        return -1;
    if (strpbrk(def->name, ",: \t")) {
        cprof_error_set(err, EINVAL, "counter name '%s' contains ',', ':' or a space; rename it",
                        def->name);
        return -1;
    }
    return 0;
}

int cprof_spec_check(const struct cprof_counter_spec *spec, struct cprof_error *err)
{
    if (spec->def != &spec->own)
        return cprof_registry_check(spec->def, err);
    if (check_complete(spec->def, err) < 0)
        return -1;
    /* a resolved name is the whole token: modifiers after ':' belong to it */
    if (spec->own.name != spec->arg || strpbrk(spec->arg, ", \t")) {
        cprof_error_set(err, EINVAL, "resolved counter '%s' is not named by its spec's argument, "
                        "or contains ',' or a space", spec->def->name);
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

unsigned cprof_name_distance(const char *a, size_t alen, const char *b, size_t blen, unsigned cap)
{
    unsigned row[64 + 1];

    if (alen > 64 || blen > 64)
        return cap;
    if ((alen > blen ? alen - blen : blen - alen) >= cap)
        return cap;
    for (size_t j = 0; j <= blen; j++)
        row[j] = (unsigned)j;
    for (size_t i = 1; i <= alen; i++) {
        unsigned diag = row[0], best;
        row[0] = best = (unsigned)i;
        for (size_t j = 1; j <= blen; j++) {
            unsigned up = row[j];
            unsigned cost = tolower((unsigned char)a[i - 1]) != tolower((unsigned char)b[j - 1]);
            unsigned v = diag + cost;
            if (up + 1 < v)
                v = up + 1;
            if (row[j - 1] + 1 < v)
                v = row[j - 1] + 1;
            row[j] = v;
            diag = up;
            if (v < best)
                best = v;
        }
        if (best >= cap)
            return cap;
    }
    return row[blen] < cap ? row[blen] : cap;
}

/* Append `cand` to the ", "-separated list in buf unless it is there already. */
static void add_unique(char *buf, size_t len, const char *cand, size_t clen)
{
    size_t used = strlen(buf);

    for (const char *p = buf; *p; p++)    /* names compare case-insensitively */
        if ((p == buf || p[-1] == ' ') && strncasecmp(p, cand, clen) == 0 &&
            (p[clen] == ',' || p[clen] == '\0'))
            return;
    if (used + clen + 3 < len)
        snprintf(buf + used, len - used, "%s%.*s", used ? ", " : "", (int)clen, cand);
}

/* Append `cand` if it is close to the typed name. */
static void add_if_close(char *buf, size_t len, const char *name, size_t nlen, const char *cand)
{
    size_t clen = strlen(cand);
    unsigned cap = cprof_close_distance(nlen) + 1;

    if (cprof_name_distance(name, nlen, cand, clen, cap) < cap)
        add_unique(buf, len, cand, clen);
}

/* "unknown counter 'x'; did you mean a, b?; valid counters are: ..." */
static void unknown_name(const char *name, size_t nlen, const struct cprof_counter_def *const *known,
                         const struct cprof_resolver *const *resolvers, struct cprof_error *err)
{
    char names[200], close[160] = "", theirs[160];
    char typed[CPROF_ARG_LEN];

    snprintf(typed, sizeof(typed), "%.*s", (int)nlen, name);
    list_names(known, names, sizeof(names));
    for (const struct cprof_counter_def *const *k = known; *k; k++)
        add_if_close(close, sizeof(close), name, nlen, (*k)->name);
    for (const struct cprof_resolver *const *r = resolvers; *r; r++) {
        for (const char *const *l = (*r)->listed; l && *l; l++)
            add_if_close(close, sizeof(close), name, nlen, *l);
        if ((*r)->suggest) {
            char *save = NULL;
            theirs[0] = '\0';
            (*r)->suggest(typed, theirs, sizeof(theirs));
            for (char *tok = strtok_r(theirs, ", ", &save); tok; tok = strtok_r(NULL, ", ", &save))
                add_unique(close, sizeof(close), tok, strlen(tok));
        }
    }
    cprof_error_set(err, ENOENT,
                    "unknown counter '%s'%s%s%s; valid counters are: %s, and the %s events that "
                    "cprof --list-counters shows",
                    typed, close[0] ? " (did you mean " : "", close, close[0] ? "?)" : "", names,
                    resolvers[0]->name);
}

int cprof_resolve_one(const char *name, const struct cprof_resolver *const *resolvers,
                      struct cprof_counter_spec *out, struct cprof_error *err)
{
    struct cprof_error first = {0, ""};

    for (const struct cprof_resolver *const *r = resolvers; r && *r; r++) {
        struct cprof_error e = {0, ""};
        if ((*r)->resolve(name, NULL, 0, out, &e) == 0)
            return 0;
        if (e.code != ENOENT || (e.msg[0] && !first.msg[0]))
            first = e;
        if (e.code != ENOENT)
            break;
    }
    if (!first.msg[0])
        cprof_error_set(&first, ENOENT, "unknown counter '%s'", name);
    *err = first;
    return -1;
}

/* One token that is not a built-in counter: the resolvers' turn. */
static int resolve_token(const char *tok, size_t len, const struct cprof_counter_def *const *known,
                         const struct cprof_resolver *const *resolvers,
                         struct cprof_counter_spec *out, unsigned n, struct cprof_error *err)
{
    char name[CPROF_ARG_LEN];
    size_t nlen = len;
    const char *colon = memchr(tok, ':', len);

    if (!resolvers || !*resolvers) {
        char names[200];
        if (colon)
            nlen = (size_t)(colon - tok);
        list_names(known, names, sizeof(names));
        cprof_error_set(err, ENOENT, "unknown counter '%.*s'; valid counters are: %s", (int)nlen,
                        tok, names);
        return -1;
    }
    if (len >= sizeof(name)) {
        cprof_error_set(err, E2BIG, "counter name '%.40s...' is too long (at most %d bytes)", tok,
                        CPROF_ARG_LEN - 1);
        return -1;
    }
    memcpy(name, tok, len);
    name[len] = '\0';
    for (const struct cprof_resolver *const *r = resolvers; *r; r++) {
        struct cprof_error e = {0, ""};
        if ((*r)->resolve(name, out, n, &out[n], &e) == 0)
            return 0;
        if (e.code != ENOENT || e.msg[0]) {
            *err = e;   /* a definite error, or a better sentence than ours */
            if (!err->code)
                err->code = EINVAL;
            return -1;
        }
    }
    unknown_name(tok, len, known, resolvers, err);
    return -1;
}

int cprof_spec_parse(const char *spec, const struct cprof_counter_def *const *known,
                     struct cprof_counter_spec *out, unsigned max, unsigned *n,
                     struct cprof_error *err)
{
    return cprof_spec_resolve(spec, known, NULL, out, max, n, err);
}

int cprof_spec_resolve(const char *spec, const struct cprof_counter_def *const *known,
                       const struct cprof_resolver *const *resolvers,
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
            if (resolvers && *resolvers && *n == max) {
                cprof_error_set(err, E2BIG, "too many counters: at most %u per run, in '%s'", max,
                                spec);
                return -1;
            }
            if (resolve_token(p, len, known, resolvers, out, *n, err) < 0)
                return -1;
            def = out[*n].def;
            for (unsigned i = 0; i < *n; i++)
                if (strcmp(out[i].def->name, def->name) == 0) {
                    cprof_error_set(err, EINVAL,
                                    "counter '%s' is given twice; name each counter once",
                                    def->name);
                    return -1;
                }
            (*n)++;
            goto next;
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
next:
        if (!end)
            return 0;
        p = end + 1;
    }
}
