"""Compensation takes out only what the tracer itself raises, and the invariants users
rely on hold on a busy machine: for one thread, cpu <= wall for the region and for
every function's self and total, with CPU hogs on every core during start-up
(calibration) and profiling."""
import os
import subprocess
import sys
import textwrap
import time

import pytest

from conftest import fn, load, run_cprof

N = 100_000


@pytest.fixture
def alloc_script(tmp_path):
    p = tmp_path / "alloc.py"
    p.write_text(textwrap.dedent(f"""
        def mk():
            return bytes(100)

        def direct(n):
            for _ in range(n):
                mk()

        def in_genexpr(n):
            return sum(len(mk()) for _ in range(n))

        direct({N})
        in_genexpr({N})
    """))
    return str(p)


@pytest.mark.pymalloc
@pytest.mark.parametrize("compensate", [True, False])
def test_allocation_counts_are_never_compensated(alloc_script, tmp_path, compensate):
    """mk's self pymalloc-bytes is what its 2N bytes objects asked for (sys.getsizeof,
    the size requested from PyObject_Malloc), with and without compensation; before,
    calibration charged its own loop's allocations to the tracer and took 11-68% out."""
    out = str(tmp_path / "p.json")
    args = ["--counter=pymalloc-bytes,pymalloc-calls,wall", "-o", out, alloc_script]
    run_cprof(args if compensate else ["--no-compensate"] + args, check_rc=0)
    prof = load(out)
    size = sys.getsizeof(bytes(100))
    mk = fn(prof, "__main__.mk")
    assert mk["calls"] == 2 * N
    # a few allocations of the interpreter's own on a function's first calls
    # (specialisation, caches) land there too: at most 16 and 2 KiB
    assert 2 * N * size <= mk["self"]["pymalloc-bytes"] <= 2 * N * size + 2048, mk["self"]
    assert 2 * N <= mk["self"]["pymalloc-calls"] <= 2 * N + 16, mk["self"]
    genexpr = [f for f in prof["functions"] if f["name"].endswith("<genexpr>")]  # bare before 3.11
    assert len(genexpr) == 1
    assert genexpr[0]["total"]["pymalloc-bytes"] >= N * size
    share = prof["meta"]["tracer_share"]
    assert share["per_event"]["pymalloc-bytes"] == share["per_event"]["pymalloc-calls"] == 0
    assert share["compensated"]["pymalloc-bytes"] == share["compensated"]["pymalloc-calls"] == 0
    if compensate:
        assert share["per_event"]["wall"] > 0


@pytest.mark.pymalloc
def test_one_time_cost_for_every_clock_and_none_for_events():
    from cprof import Counter, UserCounter
    from cprof.api import calibrate
    cost = calibrate(["cpu", "ctxsw", "wall", "pymalloc-calls", Counter("c", read=lambda: 0),
                      UserCounter("u")])
    assert cost[0] > 0
    assert cost[2] == cost[0]       # one measurement, shared by the time counters
    assert cost[1] == cost[3] == cost[4] == cost[5] == 0


def test_set_compensation_refuses_to_cut_the_programs_events():
    """Even asked to, the C profiler takes nothing out of a counter that the tracer
    does not raise."""
    from cprof._cprof import Profiler
    p = Profiler(["wall", "ctxsw"])
    p.set_compensation([50, 50])
    p.enable(push_existing=False)
    for _ in range(1000):
        len(())
    p.disable()
    share = p.stats()["meta"]["tracer_share"]
    assert share["per_event"] == [50, 0]
    assert share["compensated"][1] == 0 and share["compensated"][0] > 0


def test_list_counters_says_which_are_compensated():
    r = run_cprof(["--list-counters"], check_rc=0)
    lines = r.stdout.splitlines()

    def said(name):
        i = next(i for i, l in enumerate(lines) if l.split() and l.split()[0] == name)
        block = []
        for l in lines[i + 1:]:
            if l and not l.startswith(" "):
                break
            block.append(l)
        yes = any(l.strip().startswith("compensated (") for l in block)
        no = any(l.strip().startswith("not compensated (") for l in block)
        assert yes != no, block
        return yes

    assert said("cpu") and said("wall")
    for name in ("ctxsw", "malloc-bytes", "free-calls", "pymalloc-bytes", "pymalloc-calls"):
        assert not said(name), name
    for name in ("page-faults", "context-switches"):
        assert not said(name), name
    assert said("task-clock")


RECURSION = """
def fib(n):
    return n if n < 2 else fib(n - 1) + fib(n - 2)

def work():
    return [fib(17) for _ in range(6)]

work()
"""


@pytest.fixture
def cpu_hogs():
    """Two spinning processes per core, started before cprof so that its calibration
    runs under the same load as the profile."""
    n = 2 * len(os.sched_getaffinity(0))
    hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(n)]
    yield n
    for h in hogs:
        h.kill()
    for h in hogs:
        h.wait()


@pytest.mark.parametrize("counters", ["cpu,wall", "wall,ctxsw,cpu", "--no-compensate"])
def test_cpu_never_above_wall_under_load(tmp_path, cpu_hogs, counters):
    """One thread: its CPU time cannot exceed its wall time, for the region and for
    every function's self and total, whatever compensation took out.  Before, on a
    loaded machine, cpu and wall got different calibrated costs and the raw cpu
    clock's resyncs could jump ahead of wall: 12-13 functions broke it in each of 6
    runs here (exec's self by up to 9 us, the region by up to 0.8 ms)."""
    script = tmp_path / "rec.py"
    script.write_text(RECURSION)
    flags = ["--no-compensate", "--counter=cpu,wall"] if counters.startswith("--") \
        else ["--counter=" + counters]
    for i in range(3):
        out = str(tmp_path / f"p{i}.json")
        run_cprof(flags + ["-o", out, str(script)], check_rc=0)
        prof = load(out)
        region = prof["meta"]["region"]
        assert region["cpu"] <= region["wall"], region
        bad = [(f["name"], k, f[k]["cpu"], f[k]["wall"]) for f in prof["functions"]
               for k in ("self", "total") if f[k]["cpu"] > f[k]["wall"]]
        assert not bad, f"run {i}: cpu above wall in {bad}"
        assert fn(prof, "__main__.fib")["calls"] == 6 * 5167
        share = prof["meta"]["tracer_share"]["per_event"]
        assert share["cpu"] == share["wall"]


def _sched():
    """This thread's (ns run, ns waited on a run queue, voluntary and involuntary
    switches): the kernel's own accounts."""
    import resource
    with open("/proc/thread-self/schedstat") as f:
        run, wait = map(int, f.read().split()[:2])
    ru = resource.getrusage(resource.RUSAGE_THREAD)
    return run, wait, ru.ru_nvcsw, ru.ru_nivcsw


def _wall_stretch(sleep_every, exhaust_fds=False):
    """A wall-only profile of a second of calls (a sleep of 0.5 ms every `sleep_every`
    rounds, or none) with a set cost per event: the cost it took out per event over
    that cost, and the factor the kernel's accounts give over the same span, (run +
    the wait in the preemptions' share of the switches) / run."""
    from cprof._cprof import Profiler

    def f(x):
        for _ in range(8):
            x += 1
        return x

    p = Profiler(["wall"])
    p.set_compensation([8])
    a = _sched()
    p.enable(push_existing=False)
    if exhaust_fds:     # no descriptor free for the accounts' first looks (0.1 s of calls)
        held = []
        try:
            while True:
                held.append(os.open(os.devnull, os.O_RDONLY))
        except OSError:
            pass
        t0 = time.monotonic()
        while time.monotonic() - t0 < 0.1:
            for i in range(200):
                f(i)
        for fd in held:
            os.close(fd)
    t0 = time.monotonic()
    rounds = 0
    while time.monotonic() - t0 < 1.0:
        for i in range(200):
            f((i * 3 + 1) % 7 + (i * 5 + 2) % 11)
        rounds += 1
        if sleep_every and rounds % sleep_every == 0:
            time.sleep(0.0005)
    p.disable()
    b = _sched()
    stats = p.stats()["meta"]
    taken = stats["tracer_share"]["compensated"][0] / (8 * stats["events"])
    run, wait, vol, invol = (y - x for x, y in zip(a, b))
    preempted = wait * invol / (invol + vol) if invol else 0
    return taken, (run + preempted) / run


def _has_schedstat():
    try:
        return _sched()[0] > 0
    except (OSError, ValueError):
        return False


def _near_the_accounts(taken, factor, low):
    """The factor cprof took out lies within low-1.1 of the kernel's accounts' factor,
    which the hogs must have raised (and not near cprof's cap of 16)."""
    assert factor > 1.3, f"the hogs did not preempt this thread ({factor:.2f})"
    if factor > 12:
        pytest.skip(f"a factor of {factor:.1f}: near cprof's cap of 16")
    assert low * factor <= taken <= 1.1 * factor, (taken, factor)


needs_schedstat = pytest.mark.skipif(not _has_schedstat(),
                                     reason="the kernel keeps no scheduler statistics here")


@needs_schedstat
def test_wall_cost_grows_with_the_preemptions_under_load(cpu_hogs):
    """With every core busy, the thread waits for a CPU in proportion to the CPU time it
    uses, the tracer's included: a wall clock's cost per event is the calibrated (CPU)
    cost times (run + preempted wait) / run, which the kernel's accounts give (2.4-2.6
    on a 2-vCPU machine under these hogs).  Before, the CPU cost alone was taken out
    (1.00).  The factor is measured over 50 ms windows from the thread's first event,
    so what it took out over the second lies within 0.75-1.1 of the accounts' factor
    (0.93-0.95 there)."""
    _near_the_accounts(*_wall_stretch(0), low=0.75)


@needs_schedstat
def test_wall_cost_recovers_after_the_program_used_up_its_fds(cpu_hogs):
    """A look at the accounts that finds no file descriptor free skips that window, and
    the next one tries again: before, one failed look turned the scaling off for the
    rest of the thread (1.02 where 2.2 was due)."""
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(soft, 256), hard))
    try:
        taken, factor = _wall_stretch(0, exhaust_fds=True)
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    _near_the_accounts(taken, factor, low=0.7)


@needs_schedstat
def test_wall_cost_ignores_waits_after_sleeps(cpu_hogs):
    """A thread that sleeps often, even on a busy machine, waits for a CPU after it wakes
    (not for what it ran, not the tracer's doing) and is rarely preempted: its wall
    cost per event follows its preemptions alone (within 5% of the CPU cost here,
    where counting every wait gave up to 1.12 in trials), however long the waits after
    waking."""
    taken, factor = _wall_stretch(2)
    assert taken <= max(1.05, 1.15 * factor), (taken, factor)
