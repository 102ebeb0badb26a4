#include "registry.h"

#include <ctype.h>
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
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
    if (missing)
        return cprof_error_set(err, EINVAL,
                               "counter module '%s' has no %s; every descriptor needs one",
                               def->name ? def->name : "(unnamed)", missing);
    if (def->group && (!def->group->thread_open || !def->group->thread_close))
        return cprof_error_set(err, EINVAL,
                               "counter module '%s' has a group without thread_open or "
                               "thread_close; a group needs both",
                               def->name);
    return 0;
}

int cprof_registry_check(const struct cprof_counter_def *def, struct cprof_error *err)
{
    int r = check_complete(def, err);

    if (r < 0)
        return r;
    if (strpbrk(def->name, ",: \t"))
        return cprof_error_set(err, EINVAL,
                               "counter name '%s' contains ',', ':' or a space; rename it",
                               def->name);
    return 0;
}

/* "counter 'cpu' takes no argument; write just 'cpu'" for `typed` (what precedes
 * ":arg" in the spec) if def takes none. */
static int check_arg(const struct cprof_counter_def *def, const char *arg, const char *typed,
                     size_t tlen, struct cprof_error *err)
{
    if (!arg[0] || (def->flags & CPROF_COUNTER_TAKES_ARG))
        return 0;
    return cprof_error_set(err, EINVAL, "counter '%s' takes no argument; write just '%.*s'",
                           def->name, (int)tlen, typed);
}

int cprof_spec_check(const struct cprof_counter_spec *spec, struct cprof_error *err)
{
    int r = check_complete(spec->def, err);

    if (r < 0)
        return r;
    /* a resolved name is the whole token: modifiers after ':' belong to it */
    if (strpbrk(spec->def->name, ", \t"))
        return cprof_error_set(err, EINVAL, "counter name '%s' contains ',' or a space",
                               spec->def->name);
    return check_arg(spec->def, spec->arg, spec->def->name, strlen(spec->def->name), err);
}

/* ---- descriptors kept for the process ----------------------------------------------------- */

struct kept {
    struct cprof_counter_def def;   /* the copy; its strings point into text */
    struct kept *next;              /* the list of every kept descriptor */
    char text[];                    /* name, unit, description, NUL-separated */
};

static pthread_mutex_t kept_lock = PTHREAD_MUTEX_INITIALIZER;
static struct kept *kept_list;      /* under kept_lock; never freed */

static int same_def(const struct cprof_counter_def *a, const struct cprof_counter_def *b)
{
    return strcmp(a->name, b->name) == 0 && strcmp(a->unit, b->unit) == 0 &&
           strcmp(a->description, b->description) == 0 && a->probe == b->probe &&
           a->thread_open == b->thread_open && a->read == b->read &&
           a->thread_close == b->thread_close && a->corrections == b->corrections &&
           a->flags == b->flags && a->group == b->group && a->take_failure == b->take_failure;
}

int cprof_registry_keep(const struct cprof_counter_def *def, const struct cprof_counter_def **out,
                        struct cprof_error *err)
{
    size_t ln = strlen(def->name) + 1, lu = strlen(def->unit) + 1,
           ld = strlen(def->description) + 1;
    struct kept *k;

    pthread_mutex_lock(&kept_lock);
    for (k = kept_list; k; k = k->next)
        if (same_def(&k->def, def))
            goto out;
    if (!(k = malloc(sizeof(*k) + ln + lu + ld))) {
        pthread_mutex_unlock(&kept_lock);
        return cprof_error_set(err, ENOMEM, "out of memory describing counter '%s'", def->name);
    }
    k->def = *def;
    k->def.name = memcpy(k->text, def->name, ln);
    k->def.unit = memcpy(k->text + ln, def->unit, lu);
    k->def.description = memcpy(k->text + ln + lu, def->description, ld);
    k->next = kept_list;
    kept_list = k;
out:
    pthread_mutex_unlock(&kept_lock);
    *out = &k->def;
    return 0;
}

/* ---- opening a run's counters in a thread -------------------------------------------------- */

/* The first spec of i's group (i itself if it has none or leads it). */
static unsigned group_first(const struct cprof_counter_spec *specs, unsigned i)
{
    for (unsigned j = 0; j < i; j++)
        if (specs[i].def->group && specs[j].def->group == specs[i].def->group)
            return j;
    return i;
}

void cprof_counters_close(const struct cprof_counter_spec *specs, unsigned n, void **states,
                          void **shared)
{
    for (unsigned i = n; i-- > 0;)
        if (specs[i].def->thread_close)
            specs[i].def->thread_close(states[i]);
    for (unsigned i = 0; i < n; i++)
        if (specs[i].def->group && group_first(specs, i) == i)
            specs[i].def->group->thread_close(shared[i]);
}

int cprof_counters_open(const struct cprof_counter_spec *specs, unsigned n, void **states,
                        void **shared, struct cprof_error *err)
{
    for (unsigned i = 0; i < n; i++) {
        const struct cprof_counter_def *def = specs[i].def;
        unsigned first = group_first(specs, i);
        int r = 0;

        shared[i] = NULL;
        if (def->group && first == i)
            r = def->group->thread_open(&shared[i], err);
        else if (def->group)
            shared[i] = shared[first];
        if (r == 0)
            r = def->thread_open(&states[i], specs[i].arg, specs[i].ctx, shared[i], err);
        if (r < 0) {
            if (def->group && first == i && shared[i])
                def->group->thread_close(shared[i]);
            cprof_counters_close(specs, i, states, shared);
            return r;
        }
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
        int rc = (*r)->resolve(name, NULL, 0, out, &e);
        if (rc == 0)
            return 0;
        if (rc != -ENOENT || (e.msg[0] && !first.msg[0]))
            first = e;
        if (rc != -ENOENT) {
            first.code = -rc;
            break;
        }
    }
    if (!first.msg[0])
        cprof_error_set(&first, ENOENT, "unknown counter '%s'", name);
    *err = first;
    return -err->code;
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
        return cprof_error_set(err, ENOENT, "unknown counter '%.*s'; valid counters are: %s",
                               (int)nlen, tok, names);
    }
    if (len >= sizeof(name))
        return cprof_error_set(err, E2BIG, "counter name '%.40s...' is too long (at most %d bytes)",
                               tok, CPROF_ARG_LEN - 1);
    memcpy(name, tok, len);
    name[len] = '\0';
    for (const struct cprof_resolver *const *r = resolvers; *r; r++) {
        struct cprof_error e = {0, ""};
        int rc = (*r)->resolve(name, out, n, &out[n], &e);
        if (rc == 0) {
            size_t alen = strlen(out[n].arg), tlen = len;
            /* what the user typed before ":ARG", for the sentence */
            if (alen && alen < len && tok[len - alen - 1] == ':' &&
                memcmp(tok + len - alen, out[n].arg, alen) == 0)
                tlen = len - alen - 1;
            return check_arg(out[n].def, out[n].arg, tok, tlen, err);
        }
        if (rc != -ENOENT || e.msg[0]) {
            *err = e;   /* a definite error, or a better sentence than ours */
            err->code = -rc;
            return rc;
        }
    }
    unknown_name(tok, len, known, resolvers, err);
    return -ENOENT;
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

        int r;

        list_names(known, names, sizeof(names));
        if (nlen == 0)
            return cprof_error_set(err, EINVAL,
                                   "empty counter name in '%s'; give a comma-separated list of: %s",
                                   spec, names);
        def = cprof_registry_find(known, p, nlen);
        if (!def) {
            if (resolvers && *resolvers && *n == max)
                return cprof_error_set(err, E2BIG, "too many counters: at most %u per run, in '%s'",
                                       max, spec);
            if ((r = resolve_token(p, len, known, resolvers, out, *n, err)) < 0)
                return r;
            def = out[*n].def;
            for (unsigned i = 0; i < *n; i++)
                if (strcmp(out[i].def->name, def->name) == 0)
                    return cprof_error_set(err, EINVAL,
                                           "counter '%s' is given twice; name each counter once",
                                           def->name);
            (*n)++;
            goto next;
        }
        for (unsigned i = 0; i < *n; i++)
            if (out[i].def == def)
                return cprof_error_set(err, EINVAL,
                                       "counter '%s' is given twice; name each counter once",
                                       def->name);
        if (*n == max)
            return cprof_error_set(err, E2BIG, "too many counters: at most %u per run, in '%s'",
                                   max, spec);
        if (colon && len - nlen - 1 >= CPROF_ARG_LEN)
            return cprof_error_set(err, E2BIG,
                                   "the argument of counter '%s' is too long (at most %d bytes)",
                                   def->name, CPROF_ARG_LEN - 1);
        out[*n].def = def;
        out[*n].arg[0] = '\0';
        out[*n].ctx = NULL;
        if (colon) {
            memcpy(out[*n].arg, colon + 1, len - nlen - 1);
            out[*n].arg[len - nlen - 1] = '\0';
        }
        if ((r = check_arg(def, out[*n].arg, p, nlen, err)) < 0)
            return r;
        (*n)++;
next:
        if (!end)
            return 0;
        p = end + 1;
    }
}
