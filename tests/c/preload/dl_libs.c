/* Small libraries for tests/c/test_malloc_preload.c, one per -D: what dlsym
 * returns to code in other objects than the interposer, which glibc's dlsym
 * answers relative to its caller. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stddef.h>

#define EXPORT __attribute__((visibility("default")))

/* After a call to dlsym: the call stays a call (not a jump), so that dlsym's
 * caller is this library, not whoever called us. */
#define STAY() __asm__ volatile("" ::: "memory")

#if defined(DL_LIB_A)
/* Linked into the test before dl_lib_b, which defines dl_which too. */
EXPORT const char *dl_which(void)
{
    return "a";
}

/* dlsym(RTLD_NEXT) from here: the definition after this library, b's */
EXPORT const char *dl_next_which(void)
{
    const char *(*f)(void) = (const char *(*)(void))dlsym(RTLD_NEXT, "dl_which");

    return f ? f() : "none";
}

EXPORT void *dl_next_malloc(void)
{
    void *p = dlsym(RTLD_NEXT, "malloc");

    STAY();
    return p;
}

EXPORT void *dl_vnext_malloc(const char *version)
{
    void *p = dlvsym(RTLD_NEXT, "malloc", version);

    STAY();
    return p;
}

#elif defined(DL_LIB_B)
EXPORT const char *dl_which(void)
{
    return "b";
}

/* For the test to call, so that the linker keeps this library (--as-needed). */
EXPORT int dl_lib_b_linked(void)
{
    return 1;
}

#elif defined(DL_LIB_DEP)
EXPORT int dl_dep_symbol = 42;

#elif defined(DL_LIB_SCOPED)
/* dlopen'ed RTLD_LOCAL: its dependency dl_lib_dep is in its own scope only, which
 * dlsym(RTLD_DEFAULT) from here searches and from anywhere else does not */
extern int dl_dep_symbol;

EXPORT void *dl_scoped_find(void)
{
    void *p = dlsym(RTLD_DEFAULT, "dl_dep_symbol");

    STAY();
    return p;
}

EXPORT int dl_scoped_dep_value(void)
{
    return dl_dep_symbol;
}

#elif defined(DL_LIB_C23)
/* A C library with C23's sized frees, preloaded behind the interposer: counts
 * its calls and frees with the free behind it (not the interposer's, which
 * would count the block a second time). */
EXPORT long dl_c23_calls;
EXPORT size_t dl_c23_last[2];   /* the last size and alignment given */

static void real_free(void *p)
{
    void (*f)(void *) = (void (*)(void *))dlsym(RTLD_NEXT, "free");

    f(p);
}

EXPORT void free_sized(void *p, size_t size)
{
    dl_c23_calls++;
    dl_c23_last[0] = size;
    real_free(p);
}

EXPORT void free_aligned_sized(void *p, size_t alignment, size_t size)
{
    dl_c23_calls++;
    dl_c23_last[0] = size;
    dl_c23_last[1] = alignment;
    real_free(p);
}
#endif
