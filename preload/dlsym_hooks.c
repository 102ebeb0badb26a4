/* dlsym and dlvsym, interposed for the malloc family (glibc only).
 *
 * A program that looks malloc up on a library's handle (ctypes.CDLL("libc.so.6")
 * .malloc; dlsym(dlopen("libc.so.6"), "malloc") in a JIT or a plugin host) gets
 * the C library's own function, past the interposer that the program's other
 * calls reach through the global symbol lookup.  Here dlsym returns the
 * interposed function instead, when what it found is the very function the
 * interposer forwards to (cprof_mc_dlsym_result, malloc_count.c).
 *
 * glibc's dlsym depends on its caller, which it finds from its return address:
 * RTLD_NEXT searches the objects after the caller's, RTLD_DEFAULT the caller's
 * scope (a library loaded RTLD_LOCAL also sees its own dependencies).  So every
 * call but a family lookup on an explicit handle is passed on as a tail call:
 * the real dlsym then returns to, and sees, the program's caller, not this
 * library.  On an explicit handle the search is the handle's scope whoever calls,
 * so that call can be made from here.
 *
 * The real dlsym and dlvsym cannot be found with dlsym or dlvsym (these would
 * answer), so they are read from the dynamic symbol table of the first object
 * after this one that defines them (the C library; libdl before glibc 2.34): what
 * dlsym(RTLD_NEXT) would give. */
#define _GNU_SOURCE
#include "malloc_count.h"

#include <dlfcn.h>
#include <elf.h>
#include <link.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#if defined(__GLIBC__)

#define EXPORT __attribute__((visibility("default")))

/* The pass-through must be a tail call (see above).  musttail makes the compiler
 * guarantee it (clang 13+, GCC 15+); older GCCs do it at -O2, which the optimize
 * attribute asks for whatever the build type. */
#if defined(__has_attribute)
#if __has_attribute(musttail)
#define TAIL_CALL __attribute__((musttail))
#endif
#endif
#ifndef TAIL_CALL
#define TAIL_CALL
#endif
#if defined(__GNUC__) && !defined(__clang__)
#define SIBLING_CALLS __attribute__((optimize("O2", "optimize-sibling-calls")))
#else
#define SIBLING_CALLS
#endif

typedef void *(*dlsym_fn)(void *, const char *);
typedef void *(*dlvsym_fn)(void *, const char *, const char *);

static void *real_dlsym_p;      /* the C library's dlsym, once found (atomic access) */
static void *real_dlvsym_p;     /* its dlvsym */

/* ---- a symbol from an object's dynamic symbol table --------------------------------- */

struct dynsyms {
    ElfW(Addr) base;            /* load address */
    const ElfW(Sym) *symtab;
    const char *strtab;
    const ElfW(Half) *versym;   /* or NULL */
    const uint32_t *gnu_hash;   /* DT_GNU_HASH, or NULL */
    const uint32_t *sysv_hash;  /* DT_HASH, or NULL */
};

/* ld.so rewrites the .dynamic pointers to addresses in place, except where
 * .dynamic is read-only (the vDSO; MIPS, RISC-V): offsets there. */
static const void *dyn_ptr(ElfW(Addr) base, ElfW(Addr) p)
{
    return (const void *)(p < base ? p + base : p);
}

static int dynsyms_read(const struct dl_phdr_info *info, struct dynsyms *d)
{
    const ElfW(Dyn) *dyn = NULL;

    memset(d, 0, sizeof(*d));
    d->base = info->dlpi_addr;
    for (ElfW(Half) i = 0; i < info->dlpi_phnum; i++)
        if (info->dlpi_phdr[i].p_type == PT_DYNAMIC)
            dyn = (const ElfW(Dyn) *)(info->dlpi_addr + info->dlpi_phdr[i].p_vaddr);
    for (; dyn && dyn->d_tag != DT_NULL; dyn++) {
        const void *p = dyn_ptr(d->base, dyn->d_un.d_ptr);
        switch (dyn->d_tag) {
        case DT_SYMTAB: d->symtab = p; break;
        case DT_STRTAB: d->strtab = p; break;
        case DT_VERSYM: d->versym = p; break;
        case DT_GNU_HASH: d->gnu_hash = p; break;
        case DT_HASH: d->sysv_hash = p; break;
        default: break;
        }
    }
    return d->symtab && d->strtab && (d->gnu_hash || d->sysv_hash) ? 0 : -1;
}

/* Symbol i, if it is the function `name` defined here: its address; *hidden set
 * when it is a non-default version (dlsym@GLIBC_2.2.5 beside dlsym@@GLIBC_2.34).
 * (ELF64_ST_TYPE is ELF32_ST_TYPE: the low four bits.) */
static void *dynsym_match(const struct dynsyms *d, uint32_t i, const char *name, int *hidden)
{
    const ElfW(Sym) *s = &d->symtab[i];

    if (s->st_shndx == SHN_UNDEF || ELF64_ST_TYPE(s->st_info) != STT_FUNC ||
        strcmp(d->strtab + s->st_name, name) != 0)
        return NULL;
    *hidden = d->versym && (d->versym[i] & 0x8000);
    return (void *)(d->base + s->st_value);
}

/* `name`'s address in this object (its default version first), or NULL. */
static void *dynsym_lookup(const struct dynsyms *d, const char *name)
{
    void *found = NULL, *p;
    int hidden;

    if (d->gnu_hash) {
        uint32_t nbuckets = d->gnu_hash[0], symoffset = d->gnu_hash[1], h = 5381;
        const ElfW(Addr) *bloom = (const ElfW(Addr) *)&d->gnu_hash[4];
        const uint32_t *buckets = (const uint32_t *)&bloom[d->gnu_hash[2]];
        const uint32_t *chain = &buckets[nbuckets];

        for (const unsigned char *c = (const unsigned char *)name; *c; c++)
            h = h * 33 + *c;
        if (nbuckets == 0)
            return NULL;
        for (uint32_t i = buckets[h % nbuckets]; i >= symoffset && i != 0; i++) {
            uint32_t h2 = chain[i - symoffset];
            if ((h | 1) == (h2 | 1) && (p = dynsym_match(d, i, name, &hidden))) {
                if (!hidden)
                    return p;
                found = p;
            }
            if (h2 & 1)
                break;
        }
        return found;
    }
    {
        uint32_t nbucket = d->sysv_hash[0], h = 0;
        const uint32_t *bucket = &d->sysv_hash[2], *chain = &bucket[nbucket];

        for (const unsigned char *c = (const unsigned char *)name; *c; c++) {
            uint32_t g;
            h = (h << 4) + *c;
            g = h & 0xf0000000u;
            if (g)
                h ^= g >> 24;
            h &= ~g;
        }
        if (nbucket == 0)
            return NULL;
        for (uint32_t i = bucket[h % nbucket]; i != STN_UNDEF; i = chain[i])
            if ((p = dynsym_match(d, i, name, &hidden))) {
                if (!hidden)
                    return p;
                found = p;
            }
        return found;
    }
}

/* ---- finding the real ones ------------------------------------------------------------ */

struct search {
    int past_self;              /* this library has been passed */
    int after_only;             /* consider only objects after it */
    void *dlsym, *dlvsym;       /* found so far */
};

static int contains(const struct dl_phdr_info *info, uintptr_t addr)
{
    for (ElfW(Half) i = 0; i < info->dlpi_phnum; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        uintptr_t start = info->dlpi_addr + ph->p_vaddr;
        if (ph->p_type == PT_LOAD && addr >= start && addr - start < ph->p_memsz)
            return 1;
    }
    return 0;
}

static int search_object(struct dl_phdr_info *info, size_t size, void *arg)
{
    struct search *s = arg;
    struct dynsyms d;

    (void)size;
    if (contains(info, (uintptr_t)&search_object)) {
        s->past_self = 1;
        return 0;
    }
    if ((s->after_only && !s->past_self) || dynsyms_read(info, &d) < 0)
        return 0;
    if (!s->dlsym)
        s->dlsym = dynsym_lookup(&d, "dlsym");
    if (!s->dlvsym)
        s->dlvsym = dynsym_lookup(&d, "dlvsym");
    return s->dlsym && s->dlvsym;
}

static void find_real(void)
{
    /* After this library, as RTLD_NEXT; if it was dlopen'ed rather than preloaded
     * (the C library is then before it), anywhere but here. */
    struct search s = {0, 1, NULL, NULL};

    dl_iterate_phdr(search_object, &s);
    if (!s.dlsym || !s.dlvsym) {
        s.after_only = 0;
        dl_iterate_phdr(search_object, &s);
    }
    if (!s.dlsym || !s.dlvsym) {
        static const char msg[] = "libcprof_malloc.so: the C library's dlsym and dlvsym are not "
                                  "in its dynamic symbol table; run without the malloc counters\n";
        if (write(2, msg, sizeof(msg) - 1) < 0) {
            /* nothing better to do */
        }
        abort();
    }
    __atomic_store_n(&real_dlvsym_p, s.dlvsym, __ATOMIC_RELEASE);
    __atomic_store_n(&real_dlsym_p, s.dlsym, __ATOMIC_RELEASE);
}

static dlsym_fn real_dlsym(void)
{
    void *p = __atomic_load_n(&real_dlsym_p, __ATOMIC_ACQUIRE);

    if (__builtin_expect(!p, 0)) {
        find_real();
        p = __atomic_load_n(&real_dlsym_p, __ATOMIC_ACQUIRE);
    }
    return (dlsym_fn)p;
}

static dlvsym_fn real_dlvsym(void)
{
    void *p = __atomic_load_n(&real_dlvsym_p, __ATOMIC_ACQUIRE);

    if (__builtin_expect(!p, 0)) {
        find_real();
        p = __atomic_load_n(&real_dlvsym_p, __ATOMIC_ACQUIRE);
    }
    return (dlvsym_fn)p;
}

void cprof_mc_dl_init(void)
{
    real_dlsym();
}

/* ---- the interposed functions ---------------------------------------------------------- */

static int family_on_a_handle(void *handle, const char *name)
{
    return handle != RTLD_DEFAULT && handle != RTLD_NEXT && cprof_mc_is_family(name);
}

EXPORT SIBLING_CALLS void *dlsym(void *restrict handle, const char *restrict name)
{
    dlsym_fn real = real_dlsym();

    if (family_on_a_handle(handle, name))
        return cprof_mc_dlsym_result(handle, name, real(handle, name));
    TAIL_CALL return real(handle, name);
}

EXPORT SIBLING_CALLS void *dlvsym(void *restrict handle, const char *restrict name,
                                  const char *restrict version)
{
    dlvsym_fn real = real_dlvsym();

    if (family_on_a_handle(handle, name))
        return cprof_mc_dlsym_result(handle, name, real(handle, name, version));
    TAIL_CALL return real(handle, name, version);
}

#else /* not glibc: dlsym is left alone */

void cprof_mc_dl_init(void)
{
}

#endif
