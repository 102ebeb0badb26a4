"""Free-threaded builds: what setting sys.monitoring local events once per code object costs
while other threads run (each call stops the world), the alternative to watching every call
site that README ("--all-call-sites") weighs.

    PYTHON_GIL=0 python3.14t benches/ft_local_events.py THREADS
"""
# Cost of sys.monitoring.set_local_events once per code object on a free-threaded build,
# with N spinning threads (each call stops the world), vs the same with no threads.
import sys, threading, time
N = int(sys.argv[1]); K = 3000
codes = []
for i in range(K):
    ns = {}
    exec(f"def f{i}(x):\n    return len(x)\n", ns)
    codes.append(ns[f"f{i}"].__code__)
stop = False
def spin():
    x = 0
    while not stop:
        x += 1
ts = [threading.Thread(target=spin) for _ in range(N)]
for t in ts: t.start()
time.sleep(0.05)
M = sys.monitoring
M.use_tool_id(4, "t")
t0 = time.perf_counter()
for c in codes:
    M.set_local_events(4, c, M.events.CALL)
t1 = time.perf_counter()
stop = True
for t in ts: t.join()
M.free_tool_id(4)
print(f"threads={N} gil={sys._is_gil_enabled()} {K} code objects: {(t1-t0)*1e3:.1f} ms, {(t1-t0)/K*1e6:.1f} us each")
