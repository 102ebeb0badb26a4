"""Ground-truth workload: 40 sleeps in the main thread, 10 in each of 3 threads,
a CPU spinner.  Records, per call, the thread's own getrusage/thread_time deltas
(independent of cprof) and writes them as JSON to argv[1]; exits with argv[2]."""
import json
import os
import resource
import sys
import threading
import time

truth = {"sleeper_nvcsw": [], "sleeper_nivcsw": [], "spin_nvcsw": [], "spin_nivcsw": [], "spin_cpu_ns": [], "sleeper_cpu_ns": []}
lock = threading.Lock()


def nvcsw():
    return resource.getrusage(resource.RUSAGE_THREAD).ru_nvcsw


def sleeper(n):
    for _ in range(n):
        time.sleep(0.001)


def spin():
    s = 0
    for i in range(400_000):
        s += i * i
    return s


def measured_sleeper(n):
    i0 = resource.getrusage(resource.RUSAGE_THREAD).ru_nivcsw
    c0, t0 = nvcsw(), time.thread_time_ns()
    sleeper(n)
    t1, c1 = time.thread_time_ns(), nvcsw()
    i1 = resource.getrusage(resource.RUSAGE_THREAD).ru_nivcsw
    with lock:
        truth["sleeper_nvcsw"].append(c1 - c0)
        truth["sleeper_nivcsw"].append(i1 - i0)
        truth["sleeper_cpu_ns"].append(t1 - t0)


def worker():
    measured_sleeper(10)


threads = [threading.Thread(target=worker) for _ in range(3)]
for t in threads:
    t.start()
measured_sleeper(40)
for t in threads:
    t.join()
def taken_ticks():
    """Time the kernel took from every CPU for interrupts and for other guests (the
    machine's irq, softirq and steal, in clock ticks): a thread's wall time it spends
    off its own CPU time without any context switch of its own."""
    try:
        with open("/proc/stat") as f:
            fields = f.readline().split()
        return sum(int(x) for x in fields[6:9])
    except (OSError, ValueError):
        return 0


i0 = resource.getrusage(resource.RUSAGE_THREAD).ru_nivcsw
k0 = taken_ticks()
c0, t0 = nvcsw(), time.thread_time_ns()
spin()
t1, c1 = time.thread_time_ns(), nvcsw()
truth["spin_taken_ns"] = (taken_ticks() - k0) * 1_000_000_000 // os.sysconf("SC_CLK_TCK")
truth["tick_ns"] = 1_000_000_000 // os.sysconf("SC_CLK_TCK")
truth["spin_nivcsw"].append(resource.getrusage(resource.RUSAGE_THREAD).ru_nivcsw - i0)
truth["spin_nvcsw"].append(c1 - c0)
truth["spin_cpu_ns"].append(t1 - t0)
with open(sys.argv[1], "w") as f:
    json.dump(truth, f)
print("workload done")
sys.exit(int(sys.argv[2]))
