"""The Python API and the hook, in-process: exact attribution with the ctxsw
counter (a 1 ms sleep is one voluntary switch, checked against getrusage)."""
import resource
import sys
import sysconfig
import threading
import time

import pytest

import cprof
from conftest import fn


def nvcsw():
    return resource.getrusage(resource.RUSAGE_THREAD).ru_nvcsw


def nap(k=1):
    for _ in range(k):
        time.sleep(0.001)


def named(prof, suffix):
    """The one function whose qualified name ends with `suffix` (names carry
    <locals> paths on 3.11+, bare names on 3.10)."""
    found = [f for f in prof["functions"] if f["name"].rsplit(".", 1)[-1] == suffix]
    assert len(found) == 1, [f["name"] for f in prof["functions"]]
    return found[0]


def conserved(prof):
    for c in prof["counters"]:
        name = c["name"]
        assert sum(f["self"][name] for f in prof["functions"]) + prof["meta"]["unattributed"][name] \
            == prof["meta"]["region"][name]
        # the call tree's root holds what no function got (frames running before the start
        # included, in nodes of their own), so its paths add up to region - unattributed
        assert prof["tree"]["self"][name][0] == prof["meta"]["unattributed"][name]
        assert sum(prof["tree"]["self"][name]) == prof["meta"]["region"][name]


def test_profile_context_manager_attributes_exactly():
    def leaf():
        nap(2)

    def mid():
        nap(1)
        leaf()

    with cprof.Profile(["ctxsw", "wall"]) as p:
        before = nvcsw()
        mid()
        seen = nvcsw() - before
    prof = p.profile()
    m, l = named(prof, "mid"), named(prof, "leaf")
    assert (m["calls"], l["calls"]) == (1, 1)
    assert l["total"]["ctxsw"] >= 2 and m["total"]["ctxsw"] >= 3
    assert m["total"]["ctxsw"] == seen
    assert fn(prof, "time.sleep")["calls"] == 3
    assert l["total"]["wall"] <= m["total"]["wall"]
    conserved(prof)


def test_mid_stack_start_charges_the_running_function():
    def outer():
        with cprof.Profile(["ctxsw"]) as p:
            before = nvcsw()
            nap(3)             # inline in outer: outer's total, time.sleep's self
            inner()
            seen = nvcsw() - before
        return p, seen

    def inner():
        nap(2)

    p, seen = outer()
    prof = p.profile()
    o = named(prof, "outer")
    assert o["calls"] == 0          # it was running before profiling began
    assert o["total"]["ctxsw"] >= seen >= 5
    assert fn(prof, "time.sleep")["calls"] == 5
    conserved(prof)


def test_suspended_generator_time_belongs_to_the_consumer():
    def produce():
        for i in range(5):
            yield i

    def consume():
        for _ in produce():
            nap(1)         # while the generator is suspended

    with cprof.Profile(["ctxsw"]) as p:
        consume()
    prof = p.profile()
    gen, con = named(prof, "produce"), named(prof, "consume")
    assert gen["calls"] == 6        # first start + 5 resumes, as cProfile counts them
    assert gen["total"]["ctxsw"] == 0
    assert con["total"]["ctxsw"] >= 5
    conserved(prof)


def test_exceptions_unwinding_keep_the_stack_consistent():
    # naps: a counter raised only inside sleep_once, so its attribution is exact; ctxsw's
    # sleeps give lower bounds (a stray voluntary switch, such as a major page fault on a
    # busy disk, can land in any function's own code: CI saw one in a's)
    naps = cprof.UserCounter("naps")

    def sleep_once():
        naps.add(1)
        time.sleep(0.001)

    def c():
        sleep_once()
        raise KeyError("x")

    def b():
        sleep_once()
        c()

    def a():
        sleep_once()
        try:
            b()
        except KeyError:
            pass
        sleep_once()

    with cprof.Profile(["ctxsw", naps]) as p:
        a()
    prof = p.profile()
    byname = {f["name"].rsplit(".", 1)[-1]: f for f in prof["functions"]}
    assert [byname[k]["total"]["naps"] for k in "cba"] == [1, 2, 4]
    assert [byname[k]["self"]["naps"] for k in "cba"] == [0, 0, 0]
    assert byname["sleep_once"]["self"]["naps"] == 4 and byname["sleep_once"]["calls"] == 4
    assert byname["c"]["total"]["ctxsw"] >= 1
    assert byname["b"]["total"]["ctxsw"] >= byname["c"]["total"]["ctxsw"] + 1
    assert byname["a"]["total"]["ctxsw"] >= byname["b"]["total"]["ctxsw"] + 2
    assert prof["meta"]["health"]["unmatched_exits"] == 0     # Profile.__enter__ and _start returning are expected
    conserved(prof)


def test_threads_started_before_profiling_are_profiled():
    go, counts = threading.Event(), []

    def waiter():
        go.wait()
        before = nvcsw()
        nap(5)
        counts.append(nvcsw() - before)

    t = threading.Thread(target=waiter)
    t.start()
    time.sleep(0.01)
    with cprof.Profile(["ctxsw"]) as p:
        go.set()
        t.join()
    prof = p.profile()
    assert fn(prof, "time.sleep")["calls"] == 5
    assert fn(prof, "time.sleep")["self"]["ctxsw"] >= 5
    napf = named(prof, "nap")
    assert napf["total"]["ctxsw"] == counts[0]
    assert prof["meta"]["threads"] >= 2
    conserved(prof)


def test_several_threads_merge_by_function():
    import resource
    seen = []

    def work():
        r0 = resource.getrusage(resource.RUSAGE_THREAD)
        nap(4)
        r1 = resource.getrusage(resource.RUSAGE_THREAD)
        seen.append((r1.ru_nvcsw - r0.ru_nvcsw, r1.ru_nivcsw - r0.ru_nivcsw))

    with cprof.Profile(["ctxsw", "cpu"]) as p:
        ts = [threading.Thread(target=work) for _ in range(4)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
    prof = p.profile()
    w = named(prof, "work")
    assert w["calls"] == 4
    # at least the switches getrusage saw around the naps (a sleep preempted for longer
    # than itself before blocking does not block: its switch was an involuntary one)
    assert w["total"]["ctxsw"] >= sum(v for v, _ in seen)
    assert sum(v + i for v, i in seen) >= 16, seen
    assert fn(prof, "time.sleep")["calls"] == 16
    conserved(prof)


def test_unknown_counter_is_one_sentence():
    with pytest.raises(cprof.CprofError) as e:
        cprof.Profile(["cpu", "nosuch"])
    assert "unknown counter 'nosuch'" in str(e.value)
    assert "cpu, wall, ctxsw" in str(e.value)


def test_stats_while_enabled_is_a_clear_error():
    p = cprof.Profile(["wall"])
    p.enable()
    try:
        with pytest.raises(cprof.CprofError, match="disable"):
            p.profile()
    finally:
        p.disable()
    assert p.profile()["version"] == 3


def test_re_enable_accumulates():
    p = cprof.Profile(["ctxsw"])
    for _ in range(2):
        p.enable()
        nap(2)
        p.disable()
    prof = p.profile()
    assert fn(prof, "time.sleep")["calls"] == 4
    conserved(prof)


@pytest.mark.skipif(sys.version_info < (3, 12), reason="sys.monitoring tool ids exist on 3.12+")
def test_coexists_with_cprofile_on_another_tool_id():
    import cProfile
    import pstats
    cp = cProfile.Profile()
    cp.enable()
    try:
        with cprof.Profile(["ctxsw"]) as p:
            nap(3)
    finally:
        cp.disable()
    assert fn(p.profile(), "time.sleep")["calls"] == 3
    st = pstats.Stats(cp).stats
    assert any(k[2].endswith("sleep>") and v[1] == 3 for k, v in st.items())


@pytest.mark.skipif(sys.version_info < (3, 12), reason="sys.monitoring tool ids exist on 3.12+")
def test_no_free_tool_id_is_one_sentence():
    mon = sys.monitoring
    taken = []
    for i in range(6):
        if mon.get_tool(i) is None:
            mon.use_tool_id(i, f"blocker{i}")
            taken.append(i)
    try:
        p = cprof.Profile(["wall"])
        with pytest.raises(cprof.CprofError, match="all 6 sys.monitoring tool ids are in use"):
            p.enable()
    finally:
        for i in taken:
            mon.free_tool_id(i)


def test_coroutines_keep_the_stack_consistent():
    import asyncio

    async def tick(n):
        for _ in range(n):
            await asyncio.sleep(0.002)    # suspended: the event loop's poll waits

    async def main():
        await asyncio.gather(tick(5), tick(5))

    with cprof.Profile(["ctxsw", "wall"]) as p:
        asyncio.run(main())
    prof = p.profile()
    t = named(prof, "tick")
    assert t["calls"] >= 12            # 2 starts + a resume per await, as cProfile counts
    assert t["total"]["ctxsw"] == 0    # its waits happen while it is suspended
    polls = [f for f in prof["functions"] if f["name"].endswith("epoll.poll")]
    assert polls and polls[0]["self"]["ctxsw"] >= 5
    assert prof["meta"]["health"]["unmatched_exits"] == 0     # Profile.__enter__ and _start returning are expected
    conserved(prof)


@pytest.mark.skipif(sys.version_info < (3, 12), reason="call sites are disabled only with sys.monitoring")
@pytest.mark.parametrize("all_sites", [False, True])
@pytest.mark.parametrize("first", ["function", "class"])
def test_polymorphic_call_site(all_sites, first):
    """A site that first calls a Python function, or a class, stops reporting CALL (fast
    path), so a C function called later from the same site is charged to the caller;
    with all_call_sites it is seen.  Both ways the numbers stay conserved."""
    def py_nap():
        pass

    class Nap:
        def __init__(self, s):
            pass

    def caller(fns):
        for f in fns:
            f(0.001)

    with cprof.Profile(["ctxsw"], all_call_sites=all_sites) as p:
        caller([(lambda s: py_nap()) if first == "function" else Nap, time.sleep, time.sleep])
    prof = p.profile()
    sleeps = [f for f in prof["functions"] if f["name"] == "time.sleep"]
    if all_sites or sysconfig.get_config_var("Py_GIL_DISABLED"):  # free-threaded: every site
        assert sleeps and sleeps[0]["calls"] == 2
    else:
        assert not sleeps
        assert named(prof, "caller")["self"]["ctxsw"] >= 2
    conserved(prof)


def test_compensation_is_calibrated_and_reported():
    """cprof's own per-event cost is measured at start-up and taken out: reported per
    counter, zero for a counter it does not move (ctxsw), at most one per-event cost
    per event, and the numbers stay conserved."""
    def leaf():
        pass

    with cprof.Profile(["cpu", "ctxsw"]) as p:
        for _ in range(2000):
            leaf()
    prof = p.profile()
    share = prof["meta"]["tracer_share"]
    assert 0 < share["per_event"]["cpu"] < 5000          # ns: tens here, never microseconds
    assert share["per_event"]["ctxsw"] == 0
    assert 0 < share["compensated"]["cpu"] <= share["per_event"]["cpu"] * prof["meta"]["events"]
    assert share["compensated"]["ctxsw"] == 0
    conserved(prof)

    with cprof.Profile(["cpu"], compensate=False) as q:
        leaf()
    qs = q.profile()["meta"]["tracer_share"]
    assert qs == {"per_event": {"cpu": 0}, "compensated": {"cpu": 0}}


def test_enable_twice_and_disable_without_enable_are_errors():
    p = cprof.Profile(["wall"])
    with pytest.raises(cprof.CprofError, match="not enabled; call enable"):
        p.disable()
    p.enable()
    try:
        with pytest.raises(cprof.CprofError, match="already enabled; call disable"):
            p.enable()
        with pytest.raises(cprof.CprofError, match="already enabled; call disable"):
            with p:
                pass
        nap(1)
    finally:
        p.disable()
    with pytest.raises(cprof.CprofError, match="not enabled; call enable"):
        p.disable()
    assert fn(p.profile(), "time.sleep")["calls"] == 1   # the profile is intact


def hooks_installed():
    """cprof's hooks in this interpreter: the threads' profile hooks (3.10-3.11) or the
    sys.monitoring tool ids it holds (3.12+)."""
    if sys.version_info >= (3, 12):
        return [i for i in range(6) if sys.monitoring.get_tool(i) == "cprof"]
    import threading as th
    return [x for x in (sys.getprofile(), th._profile_hook) if x is not None]


def test_a_dropped_enabled_profile_uninstalls_itself():
    import gc
    p = cprof.Profile(["wall"])
    p.enable()
    assert hooks_installed()
    with pytest.warns(ResourceWarning, match="dropped while enabled"):
        del p
        gc.collect()
    assert hooks_installed() == []
    with cprof.Profile(["ctxsw"]) as q:    # not "another cprof profile is already running"
        nap(2)
    assert fn(q.profile(), "time.sleep")["calls"] == 2


@pytest.mark.skipif(sys.version_info < (3, 12), reason="3.10-3.11: 35% -> 26%, the rest not yet found")
def test_installing_the_hooks_is_not_charged_to_the_enabling_frame():
    """`with Profile(): pass` charged cprof's own start (installing the hooks, tens of
    us) to the enclosing function's self: 37-49% of the whole enable/disable cycle's
    CPU time (thread clock, so load does not move it); now it is measured and kept out."""
    import statistics

    def block():
        p = cprof.Profile(counters=["cpu"])
        t0 = time.thread_time_ns()
        with p:
            pass
        t1 = time.thread_time_ns()
        prof = p.profile()
        me = [f for f in prof["functions"] if f["name"].endswith("block")]
        assert len(me) == 1
        share = prof["meta"]["tracer_share"]
        assert share["compensated"]["cpu"] <= share["per_event"]["cpu"] * prof["meta"]["events"]
        return me[0]["self"]["cpu"] / (t1 - t0)

    share = statistics.median(block() for _ in range(15))
    assert share < 0.2, share
