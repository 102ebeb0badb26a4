"""asyncio ground truth for test_async.py: one scenario (argv[1]) profiled with
cprof.Profile(async_mode=True) (argv[3]: "default" for the default mode), the profile
written to argv[2] and what the program measured itself to argv[2] + ".truth.json"."""
import asyncio
import json
import sys
import time

import cprof

SCENARIO, OUT = sys.argv[1], sys.argv[2]
ASYNC = len(sys.argv) < 4 or sys.argv[3] != "default"
N, SLEEP = 100, 0.1
truth = {}


async def worker(i, marks):
    start = time.perf_counter()
    await asyncio.sleep(SLEEP)
    marks[i] = [start, time.perf_counter()]
    return i


async def gather_sleepers():
    marks = {}
    t0 = time.perf_counter()
    await asyncio.gather(*(worker(i, marks) for i in range(N)))
    t1 = time.perf_counter()
    truth.update(t0=t0, t1=t1, marks=marks)


async def spinner(i, slices, spent):
    for _ in range(slices):
        t = time.thread_time()
        x = 0
        for _ in range(300_000):    # no call inside: the tracer's cost stays out of `spent`
            x += 1
        spent[i] += time.thread_time() - t
        await asyncio.sleep(0)


async def cpu_bound():
    spent = [0.0, 0.0]
    t0 = time.perf_counter()
    await asyncio.gather(spinner(0, 4, spent), spinner(1, 4, spent))
    truth.update(spent=spent, elapsed=time.perf_counter() - t0)


async def sleeper(delay):
    await asyncio.sleep(delay)


async def raiser():
    await asyncio.sleep(0.01)
    raise ValueError("boom")


# TaskGroup and except* are 3.11+ (except* is a syntax error before): compiled there only
TASK_GROUP = """
async def task_group():
    t0 = time.perf_counter()
    try:
        async with asyncio.TaskGroup() as tg:
            tg.create_task(sleeper(5), name="long-1")
            tg.create_task(sleeper(5), name="long-2")
            tg.create_task(raiser(), name="raiser")
    except* ValueError:
        truth.update(raised=True)
    truth.update(elapsed=time.perf_counter() - t0)
"""


async def slow():
    await asyncio.sleep(10)


async def wait_for_timeout():
    t0 = time.perf_counter()
    try:
        await asyncio.wait_for(asyncio.ensure_future(slow()), 0.05)
    except asyncio.TimeoutError:
        truth.update(timed_out=True)
    truth.update(elapsed=time.perf_counter() - t0)


async def raising_task():
    r = await asyncio.gather(asyncio.create_task(raiser(), name="bad"), sleeper(0.02),
                             return_exceptions=True)
    truth.update(results=[type(x).__name__ for x in r])


async def small_gather(marks):
    await asyncio.gather(*(worker(i, marks) for i in range(10)))


def loops_in_threads():
    """Two event loops, each in its own thread, each with 10 sleepers."""
    import threading
    marks = [{}, {}]
    threads = [threading.Thread(target=asyncio.run, args=(small_gather(m),)) for m in marks]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    truth.update(done=[len(m) for m in marks], alive=[t.is_alive() for t in threads])


async def threads_scenario():
    await asyncio.get_running_loop().run_in_executor(None, loops_in_threads)


SCENARIOS = {"threads": threads_scenario, "gather": gather_sleepers, "cpu": cpu_bound, "wait_for": wait_for_timeout,
             "raising": raising_task}
if sys.version_info >= (3, 11):
    exec(TASK_GROUP)
    SCENARIOS["taskgroup"] = task_group  # noqa: F821 (defined by the exec)

# compensate=False: the ground truth is the clock the program reads.  With compensation
# every interval loses the tracer's cost of the events inside it, and a coroutine's
# wait spans the events of every task that ran meanwhile (in the gather, ~1% of 0.1 s).
prof = cprof.Profile(["cpu", "wall", "ctxsw"], async_mode=ASYNC, compensate=False)
with prof:
    asyncio.run(SCENARIOS[SCENARIO]())
prof.dump(OUT)
with open(OUT + ".truth.json", "w") as f:
    json.dump(truth, f)
