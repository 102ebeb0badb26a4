/* Native allocation loops for tests/py/test_malloc.py, loaded with ctypes (which
 * releases the GIL around the call, so Python threads calling it allocate at the
 * same time).  Built by the test with the system C compiler. */
#include <pthread.h>
#include <stdlib.h>

/* n malloc/free pairs of `size` bytes; returns how many succeeded. */
long alloc_loop(long n, size_t size)
{
    long ok = 0;

    for (long i = 0; i < n; i++) {
        void *volatile p = malloc(size);
        if (p)
            ok++;
        free(p);
    }
    return ok;
}

struct job {
    long n;
    size_t size;
    long done;
};

static void *run_job(void *arg)
{
    struct job *j = arg;

    j->done = alloc_loop(j->n, j->size);
    return NULL;
}

/* `threads` threads created here, never seen by Python, each running alloc_loop;
 * returns the allocations made, or -1 if a thread could not start. */
long native_threads(int threads, long n, size_t size)
{
    pthread_t tid[64];
    struct job jobs[64];
    long total = 0;

    if (threads > 64)
        return -1;
    for (int i = 0; i < threads; i++) {
        jobs[i] = (struct job){n, size, 0};
        if (pthread_create(&tid[i], NULL, run_job, &jobs[i]) != 0)
            return -1;
    }
    for (int i = 0; i < threads; i++) {
        pthread_join(tid[i], NULL);
        total += jobs[i].done;
    }
    return total;
}
