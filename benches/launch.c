/* Run a command and report what the kernel says of it: wall time, CPU time, peak RSS.
 *
 *     launch REPORT_FILE COMMAND [ARGS...]
 *
 * compare.py runs every measured process through this (built with cc next to the venv's
 * floor).  Why not wait4 from compare.py itself: a process forked from a Python of 25 MB
 * carries that Python's peak RSS through exec (the kernel keeps the larger of the old and the
 * new image's high-water mark in ru_maxrss), so an empty script would read 25 MB.  This
 * program is small when it forks, so its child's peak is the child's own.
 *
 * REPORT_FILE gets one line: "wall_s cpu_s maxrss_kib" of the child and every descendant it
 * reaped (wait4's rusage), wall from fork to reaping.  The exit status is the child's (128+N
 * for a signal N, as a shell reports it); 127 if it could not be started.
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: launch REPORT_FILE COMMAND [ARGS...]\n");
        return 2;
    }
    double t0 = now();
    pid_t pid = fork();
    if (pid < 0) {
        perror("launch: fork");
        return 127;
    }
    if (pid == 0) {
        execvp(argv[2], argv + 2);
        perror("launch: exec");
        _exit(127);
    }
    int status = 0;
    struct rusage ru;
    while (wait4(pid, &status, 0, &ru) < 0) {
        /* EINTR only: the pid is ours */
    }
    double wall = now() - t0;
    FILE *f = fopen(argv[1], "w");
    if (f) {
        fprintf(f, "%.9f %.6f %ld\n", wall,
                (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec * 1e-6 +
                    (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec * 1e-6,
                ru.ru_maxrss);
        fclose(f);
    }
    if (WIFSIGNALED(status))
        return 128 + WTERMSIG(status);
    return WEXITSTATUS(status);
}
