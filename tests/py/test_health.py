"""meta.health: what went wrong while profiling (memory, readings that went down,
counters that failed, a full tree, lost values, unmatched exits), merged over
threads, in the profile and warned about at disable(); and the named records
Profiler.stats() returns, merged in C."""
import textwrap
import threading
import warnings

import pytest

import cprof
from cprof import _cprof
from conftest import fn, load, run_cprof

CLEAN = {"out_of_memory": 0, "backwards_readings": 0, "backwards_first": None,
         "counter_failures": [], "tree_folded": 0, "distribution_values_lost": 0}


def runtime_warnings(caught):
    return [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]


def test_clean_profile_has_a_clean_health_and_no_warning():
    def work():
        return sum(range(100))

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with cprof.Profile(counters=["wall"]) as p:
            work()
    assert runtime_warnings(caught) == []
    health = p.profile()["meta"]["health"]
    assert health == {**CLEAN, "unmatched_exits": 0}
    for k in ("unmatched_exits", "backwards_readings", "tree_folded", "distribution_values_lost"):
        assert k not in p.profile()["meta"]     # moved into health


@pytest.mark.parametrize("form", ["with", "enable", "decorator"])
def test_the_profilers_own_frames_returning_are_not_unmatched_exits(form):
    """Profile.__enter__/enable/the decorator's wrapper and _start were running when
    profiling began and are left out of the profile: their returns are expected, so
    a plain profile is clean (before, 2-3 unmatched exits in every API profile)."""
    def work():
        return sum(range(100))

    p = cprof.Profile(counters=["wall"])
    if form == "with":
        with p:
            work()
    elif form == "enable":
        p.enable()
        work()
        p.disable()
    else:
        p(work)()
    prof = p.profile()
    assert prof["meta"]["health"] == {**CLEAN, "unmatched_exits": 0}
    names = {f["name"] for f in prof["functions"]}
    started = {"cprof.api.Profile._start", "cprof.api.Profile.enable", "cprof.api.Profile.__enter__"}
    assert not started & names, names     # (the frames that stop it are entered inside it)
    assert any(n.endswith("work") for n in names)


def dipping(name):
    """A UserCounter, and functions that take 1 off its total (add(2**64 - 1) wraps
    around) and put it back: between the two, every reading is lower than the
    highest one seen (dip's return and recover's call: two readings)."""
    u = cprof.UserCounter(name)

    def dip():
        u.add(2**64 - 1)

    def recover():
        u.add(1)

    return u, dip, recover


def test_backwards_reading_names_counter_and_function():
    """Readings that went down are clamped, counted, the first one named (counter,
    function), and warned about once at disable()."""
    u, dip, recover = dipping("wrapping")

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with cprof.Profile(counters=["wall", u]) as p:
            u.add(5)
            dip()
            recover()
    msgs = runtime_warnings(caught)
    assert len(msgs) == 1, msgs
    assert "2 readings went backwards" in msgs[0] and "counter 'wrapping'" in msgs[0], msgs[0]
    assert "dip" in msgs[0], msgs[0]
    prof = p.profile()
    health = prof["meta"]["health"]
    assert health["backwards_readings"] == 2
    first = health["backwards_first"]
    assert first["counter"] == "wrapping"
    culprit = prof["functions"][first["function"]]
    assert culprit["name"].endswith(".dip") and culprit["calls"] == 1
    assert culprit["total"]["wrapping"] == 0          # clamped: never negative


def test_warned_once_per_new_trouble():
    u, dip, recover = dipping("wrapping2")
    p = cprof.Profile(counters=["wall", u])

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        p.enable()
        u.add(1)
        dip()
        recover()
        p.disable()
        p.enable()                # nothing new: no second warning
        sum(range(10))
        p.disable()
        p.enable()                # new trouble: warned again
        dip()
        recover()
        p.disable()
    msgs = runtime_warnings(caught)
    assert len(msgs) == 2, msgs
    assert "2 readings" in msgs[0] and "4 readings" in msgs[1], msgs


def test_failing_counter_reaches_health_in_a_cli_run(tmp_path):
    """A Counter that raises, exposed by an entry point and used by the CLI: the
    failure is in meta.health.counter_failures, with the function it stopped in."""
    (tmp_path / "flakycounters.py").write_text(textwrap.dedent("""
        import cprof
        n = [0]
        def read():
            n[0] += 1
            if n[0] > 3:
                raise ZeroDivisionError("no")
            return n[0]
        FLAKY = cprof.Counter("flaky", read=read)
    """))
    dist = tmp_path / "flakycounters-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: flakycounters\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[cprof.counters]\nflaky = flakycounters:FLAKY\n")
    script = tmp_path / "app.py"
    script.write_text(textwrap.dedent("""
        def work():
            return sum(range(10))
        for _ in range(5):
            work()
    """))
    out = tmp_path / "p.json"
    run_cprof(["--counter=wall,flaky", "-o", str(out), str(script)],
              env={"PYTHONPATH": str(tmp_path)}, check_rc=0)
    health = load(out)["meta"]["health"]
    assert len(health["counter_failures"]) == 1, health
    failure = health["counter_failures"][0]
    assert failure["counter"] == "flaky"
    assert failure["message"].startswith("stopped in "), failure
    assert "raised ZeroDivisionError" in failure["message"], failure
    assert health["backwards_readings"] == 0


def test_health_adds_up_over_threads():
    u, dip, recover = dipping("wrapping3")

    def worker():
        u.add(5)                  # a thread's own total
        for _ in range(2):
            dip()
            recover()

    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        with cprof.Profile(counters=["wall", u]) as p:
            u.add(5)
            dip()
            recover()
            t = threading.Thread(target=worker)
            t.start()
            t.join()
    health = p.profile()["meta"]["health"]
    assert health["backwards_readings"] == 2 + 4
    assert health["backwards_first"]["counter"] == "wrapping3"


# ---- the records Profiler.stats() returns, and the one merge ---------------------------

def test_stats_are_named_records_merged_by_identity_in_c():
    src = "def f(x):\n    return x + 1\n"
    fs = []
    for _ in range(3):            # three code objects of one (name, file, line)
        ns = {}
        exec(compile(src, "same.py", "exec"), ns)
        fs.append(ns["f"])
    p = _cprof.Profiler(["wall"], distributions=True)
    p.enable(push_existing=False)
    for f in fs:
        f(1)
        f(2)
    p.disable()
    seen = []

    def identify(key, entry):
        seen.append(key)
        return cprof.build.identity(key, entry)

    raw = p.stats(identify)
    assert len(seen) == len(set(seen))          # asked once per key
    same = [f for f in raw["functions"] if f.identity == ("f", "same.py", 1)]
    assert len(same) == 1
    f = same[0]
    assert type(f).__name__ == "FunctionStats"
    assert f.calls == 6 and f.primitive_calls == 6
    assert f.dist[0].count == 6 and type(f.dist[0]).__name__ == "Histogram"
    assert sum(b[2] for b in f.dist[0].buckets) == 6
    assert f.slow_calls is None
    assert type(raw["health"]).__name__ == "Health"
    assert raw["health"].counter_failures == []
    by_key = p.stats()                          # no identify: by key, the three apart
    assert sum(1 for r in by_key["functions"] if r.calls == 2) >= 3


def test_identify_error_propagates():
    p = _cprof.Profiler(["wall"])
    p.enable(push_existing=False)
    sum(range(3))
    p.disable()

    def bad(key, entry):
        raise LookupError("nope")

    with pytest.raises(LookupError, match="nope"):
        p.stats(bad)


def test_limits_are_module_constants():
    assert _cprof.MAX_SLOW_CALLS == 64
    assert _cprof.MAX_COUNTERS == 16
    with pytest.raises(cprof.CprofError, match="from 1 to 64"):
        cprof.Profile(counters=["wall"], slow_calls=_cprof.MAX_SLOW_CALLS + 1)
