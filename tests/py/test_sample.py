"""Profile(sample=p): about p of a handler's calls are profiled, each exactly (its
callees counted in the chosen calls only), merged, and meta and the report say how
many of how many."""
from __future__ import annotations

import io
import random
import threading

import pytest

import cprof


def parse(i):
    return int(str(i))


def helper():
    return 1


def chosen_calls(fraction, seed, n):
    draw = random.Random(seed).random
    return [i for i in range(n) if draw() < fraction]


def test_decorator_profiles_the_chosen_calls_exactly():
    prof = cprof.Profile(sample=0.1, sample_seed=7)
    seen = []

    @prof
    def handler(i):
        seen.append(i)
        for _ in range(i % 5 + 1):   # a number of callees that depends on the call
            parse(i)
        return i

    for i in range(600):
        handler(i)
    expected = chosen_calls(0.1, 7, 600)
    assert 30 < len(expected) < 90
    p = prof.profile()
    fns = {f["name"]: f for f in p["functions"]}
    assert p["meta"]["sample"] == {"fraction": 0.1, "profiled": len(expected), "calls": 600}
    name = next(n for n in fns if n.endswith("handler"))
    assert fns[name]["calls"] == len(expected)
    assert fns["test_sample.parse"]["calls"] == sum(i % 5 + 1 for i in expected)
    assert seen == list(range(600))   # every call ran, profiled or not
    out = io.StringIO()
    prof.print_stats(file=out)
    assert f"sampled: {len(expected)} of 600 calls profiled (sample=0.1)" in out.getvalue()


def test_context_manager_and_other_threads_in_a_chosen_call():
    prof = cprof.Profile(sample=0.5, sample_seed=3)
    for i in range(40):
        with prof:
            t = threading.Thread(target=helper)
            t.start()
            t.join()
            parse(i)
    expected = chosen_calls(0.5, 3, 40)
    p = prof.profile()
    fns = {f["name"]: f for f in p["functions"]}
    assert p["meta"]["sample"]["profiled"] == len(expected)
    assert fns["test_sample.parse"]["calls"] == len(expected)
    # the thread each chosen call started: profiled too (all threads)
    assert fns["test_sample.helper"]["calls"] == len(expected)


def test_sample_one_profiles_every_call_and_nested_calls_count_once():
    prof = cprof.Profile(sample=1.0)

    @prof
    def rec(n):
        return rec(n - 1) if n else 0

    for _ in range(5):
        rec(3)
    p = prof.profile()
    assert p["meta"]["sample"] == {"fraction": 1.0, "profiled": 5, "calls": 5}
    assert next(f for f in p["functions"] if f["name"].endswith("rec"))["calls"] == 20


@pytest.mark.parametrize("bad", [0, -0.1, 1.5, "x", float("nan")])
def test_bad_sample_is_one_sentence(bad):
    with pytest.raises(cprof.CprofError, match="give the fraction of calls"):
        cprof.Profile(sample=bad)


def test_seed_without_sample():
    with pytest.raises(cprof.CprofError, match="sample_seed goes with sample"):
        cprof.Profile(sample_seed=1)
