/* libcprof_malloc.so preloaded for real (meson runs this with LD_PRELOAD; not
 * under AddressSanitizer, which cannot share a process with an interposed malloc):
 *
 *   - the malloc family looked up on the C library's own handle (the ctypes idiom
 *     ctypes.CDLL("libc.so.6").malloc, JITs, plugin hosts) is the interposer's, and
 *     what is allocated through it is counted;
 *   - dlsym keeps its caller-relative answers for everyone else: RTLD_NEXT from
 *     another library finds what follows that library, RTLD_DEFAULT from a
 *     library loaded RTLD_LOCAL searches its own dependencies;
 *   - C23's free_sized and free_aligned_sized count as frees, and are passed on
 *     to a C library that has them (tests/c/preload/dl_libs.c's DL_LIB_C23,
 *     preloaded behind the interposer: glibc 2.36 has neither).
 *
 * The test executable links dl_lib_a before dl_lib_b (tests/c/preload/dl_libs.c). */
#define _GNU_SOURCE
#include <criterion/criterion.h>

#include <dlfcn.h>
#include <gnu/lib-names.h>
#include <malloc.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cprof_malloc.h"

const char *dl_which(void);
const char *dl_next_which(void);
void *dl_next_malloc(void);
void *dl_vnext_malloc(const char *version);
int dl_lib_b_linked(void);

/* malloc's version in glibc's symbol table, where this test knows it */
#if defined(__x86_64__)
#define MALLOC_VERSION "GLIBC_2.2.5"
#elif defined(__aarch64__)
#define MALLOC_VERSION "GLIBC_2.17"
#endif

static const char *const family[] = {
    "malloc", "calloc", "realloc", "reallocarray", "posix_memalign", "aligned_alloc", "memalign",
    "valloc", "pvalloc", "free", "free_sized", "free_aligned_sized", "malloc_usable_size", NULL,
};

/* The file name of the object holding address p. */
static const char *object_of(void *p)
{
    Dl_info info;

    cr_assert(dladdr(p, &info) && info.dli_fname, "no object holds %p", p);
    return info.dli_fname;
}

#define IN(p, lib) cr_assert(strstr(object_of(p), (lib)) != NULL, "%p is in %s, not %s", (p),   \
                             object_of(p), (lib))

static void *libc_handle(void)
{
    void *h = dlopen(LIBC_SO, RTLD_NOW | RTLD_NOLOAD);

    cr_assert_not_null(h, "%s", dlerror());
    return h;
}

static struct cprof_malloc_counts *counting(void)
{
    cprof_malloc_api_fn api = (cprof_malloc_api_fn)dlsym(RTLD_DEFAULT, CPROF_MALLOC_API_SYMBOL);
    struct cprof_malloc_counts *c;

    cr_assert_not_null(api, "run me with LD_PRELOAD=libcprof_malloc.so");
    cr_assert_str_eq(api()->unresolved, "");
    api()->activate();
    c = api()->thread_counts();
    cr_assert_not_null(c);
    return c;
}

static void snap(const struct cprof_malloc_counts *c, uint64_t out[CPROF_MALLOC_NCOUNTS])
{
    for (int k = 0; k < CPROF_MALLOC_NCOUNTS; k++)
        out[k] = atomic_load_explicit(&c->v[k], memory_order_relaxed);
}

Test(handle, the_c_librarys_handle_gives_the_interposers_functions)
{
    void *libc = libc_handle();
    unsigned n = 0;

    for (const char *const *name = family; *name; name++) {
        void *p = dlsym(libc, *name);
        if (!p) {       /* free_sized where the C library has none (glibc 2.36) */
            cr_log_info("%s has no %s", LIBC_SO, *name);
            continue;
        }
        IN(p, "libcprof_malloc.so");
        cr_assert_eq(p, dlsym(RTLD_DEFAULT, *name), "%s", *name);
        n++;
    }
    cr_assert_geq(n, 11);
#ifdef MALLOC_VERSION
    IN(dlvsym(libc, "malloc", MALLOC_VERSION), "libcprof_malloc.so");
    IN(dlvsym(libc, "free", MALLOC_VERSION), "libcprof_malloc.so");
#endif
    /* the rest of the C library is the C library's */
    IN(dlsym(libc, "strlen"), LIBC_SO);
    IN(dlsym(libc, "dlopen"), LIBC_SO);
    cr_assert_null(dlsym(libc, "no_such_symbol_anywhere"));
    cr_assert_not_null(dlerror(), "a failed lookup still sets dlerror");
    /* and RTLD_DEFAULT finds the interposer as before */
    IN(dlsym(RTLD_DEFAULT, "malloc"), "libcprof_malloc.so");
    IN(dlsym(RTLD_DEFAULT, "strlen"), LIBC_SO);
}

Test(handle, allocations_through_the_handle_are_counted)
{
    void *libc = libc_handle();
    void *(*m)(size_t) = (void *(*)(size_t))dlsym(libc, "malloc");
    void *(*ca)(size_t, size_t) = (void *(*)(size_t, size_t))dlsym(libc, "calloc");
    void *(*re)(void *, size_t) = (void *(*)(void *, size_t))dlsym(libc, "realloc");
    void (*f)(void *) = (void (*)(void *))dlsym(libc, "free");
    size_t (*us)(void *) = (size_t (*)(void *))dlsym(libc, "malloc_usable_size");
    struct cprof_malloc_counts *c = counting();
    uint64_t a[CPROF_MALLOC_NCOUNTS], b[CPROF_MALLOC_NCOUNTS];
    size_t usable;
    void *p, *q;

    snap(c, a);
    p = m(1000);
    q = ca(10, 100);
    p = re(p, 3000);            /* grows by 2000 */
    usable = us(p) + us(q);
    f(p);
    f(q);
    snap(c, b);
    cr_expect_eq(b[CPROF_MALLOC_BYTES] - a[CPROF_MALLOC_BYTES], 1000 + 1000 + 2000);
    cr_expect_eq(b[CPROF_MALLOC_CALLS] - a[CPROF_MALLOC_CALLS], 3);
    cr_expect_eq(b[CPROF_FREE_BYTES] - a[CPROF_FREE_BYTES], usable);
    cr_expect_eq(b[CPROF_FREE_CALLS] - a[CPROF_FREE_CALLS], 2);
    cr_expect_geq(usable, 4000);
}

Test(caller, rtld_next_from_another_library_is_relative_to_it)
{
    /* a's RTLD_NEXT finds b's dl_which: relative to a, not to the interposer, whose
     * RTLD_NEXT would find a's own */
    cr_assert(dl_lib_b_linked());
    cr_assert_str_eq(dl_which(), "a");
    cr_assert_str_eq(dl_next_which(), "b");
    /* the C library's malloc, which a library after the interposer asked for: kept */
    IN(dl_next_malloc(), LIBC_SO);
#ifdef MALLOC_VERSION
    IN(dl_vnext_malloc(MALLOC_VERSION), LIBC_SO);
#endif
}

Test(caller, rtld_default_from_a_local_library_searches_its_own_scope)
{
    void *h = dlopen(DL_LIB_SCOPED, RTLD_NOW | RTLD_LOCAL);
    void *(*find)(void);
    int *v;

    cr_assert_not_null(h, "%s", dlerror());
    find = (void *(*)(void))dlsym(h, "dl_scoped_find");
    cr_assert_not_null(find);
    v = find();
    cr_assert_not_null(v, "RTLD_DEFAULT from the library missed its own dependency");
    cr_assert_eq(*v, 42);
    /* from here (or from the interposer) the dependency is out of scope */
    cr_assert_null(dlsym(RTLD_DEFAULT, "dl_dep_symbol"));
    dlclose(h);
}

Test(sized, free_sized_counts_as_a_free)
{
    void (*fs)(void *, size_t) = (void (*)(void *, size_t))dlsym(RTLD_DEFAULT, "free_sized");
    void (*fas)(void *, size_t, size_t) =
        (void (*)(void *, size_t, size_t))dlsym(RTLD_DEFAULT, "free_aligned_sized");
    long *c23_calls = dlsym(RTLD_DEFAULT, "dl_c23_calls");
    size_t *c23_last = dlsym(RTLD_DEFAULT, "dl_c23_last");
    struct cprof_malloc_counts *c = counting();
    uint64_t a[CPROF_MALLOC_NCOUNTS], b[CPROF_MALLOC_NCOUNTS];
    size_t usable;
    void *p, *q;

    /* the interposer exports both, whether the C library has them or not */
    cr_assert_not_null(fs);
    cr_assert_not_null(fas);
    IN((void *)fs, "libcprof_malloc.so");
    IN((void *)fas, "libcprof_malloc.so");
    p = malloc(500);
    q = aligned_alloc(256, 1024);
    usable = malloc_usable_size(p) + malloc_usable_size(q);
    snap(c, a);
    fs(p, 500);
    fas(q, 256, 1024);
    snap(c, b);
    cr_expect_eq(b[CPROF_FREE_CALLS] - a[CPROF_FREE_CALLS], 2);
    cr_expect_eq(b[CPROF_FREE_BYTES] - a[CPROF_FREE_BYTES], usable);
    cr_expect_eq(b[CPROF_MALLOC_CALLS] - a[CPROF_MALLOC_CALLS], 0);
    if (getenv("CPROF_TEST_C23")) {
        /* a C library with them (preloaded behind the interposer): passed on, once each */
        void *shim = dlopen(DL_LIB_C23, RTLD_NOW | RTLD_NOLOAD);
        cr_assert_not_null(c23_calls, "the C23 library is not preloaded");
        cr_expect_eq(*c23_calls, 2);
        cr_expect_eq(c23_last[0], 1024);
        cr_expect_eq(c23_last[1], 256);
        /* looked up on that library's handle: the interposer's, as for malloc */
        cr_assert_not_null(shim);
        cr_expect_eq(dlsym(shim, "free_sized"), (void *)fs);
    } else {
        cr_expect_null(c23_calls);
    }
}
