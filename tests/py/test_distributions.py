"""Per-call distributions and the slowest calls with their arguments, measured with
counters that are exact (a UserCounter, sleeps for ctxsw), so every number is known."""
import os
import subprocess
import sys
import textwrap

import pytest

import cprof
from conftest import fn, load, run_cprof


def named(prof, suffix):
    found = [f for f in prof["functions"] if f["name"].rsplit(".", 1)[-1] == suffix]
    assert len(found) == 1, [f["name"] for f in prof["functions"]]
    return found[0]


def test_bimodal_distribution_and_the_five_slowest_calls():
    cost = cprof.UserCounter("cost", unit="units")

    def work(n):
        cost.add(100 if n % 200 == 13 else 1)   # 100x dearer for 5 calls in 1,000

    def run():
        for i in range(1000):
            work(i)

    with cprof.Profile([cost, "wall"], distributions=True, slow_calls=5) as prof:
        run()
    p = prof.profile()
    w = named(p, "work")
    d = w["dist"]["cost"]
    assert d["count"] == 1000
    assert (d["p50"], d["p90"], d["p99"], d["max"]) == (1, 1, 1, 100)
    assert d["buckets"] == [[1, 1, 995], [100, 101, 5]]   # from 64 on, buckets are wider
    slow = w["slow_calls"]
    assert [s["values"]["cost"] for s in slow] == [100] * 5
    assert sorted(s["args"] for s in slow) == sorted(f"n={i}" for i in (13, 213, 413, 613, 813))
    assert {s["thread"] for s in slow} == {"MainThread"}
    r = named(p, "run")["dist"]["cost"]
    assert (r["count"], r["max"]) == (1, 995 + 500)
    assert w["dist"]["wall"]["count"] == 1000


def test_recursive_calls_each_count():
    c = cprof.UserCounter("steps")

    def down(n):
        c.add(1)
        if n:
            down(n - 1)

    with cprof.Profile([c], distributions=True) as prof:
        down(4)
    d = named(prof.profile(), "down")["dist"]["steps"]
    # inclusive per call: 5, 4, 3, 2, 1
    assert d["buckets"] == [[k, k, 1] for k in range(1, 6)]
    assert (d["p50"], d["max"]) == (3, 5)


def test_sleeps_counted_by_ctxsw_per_call():
    import time

    def nap(k):
        for _ in range(k):
            time.sleep(0.001)

    with cprof.Profile(["ctxsw"], distributions=True, slow_calls=2) as prof:
        for k in (1, 1, 1, 4, 2):
            nap(k)
    n = named(prof.profile(), "nap")
    assert n["dist"]["ctxsw"]["max"] >= 4
    assert [s["args"] for s in n["slow_calls"]] == ["k=4", "k=2"]


def test_off_by_default():
    with cprof.Profile(["wall"]) as prof:
        sum(range(10))
    assert all("dist" not in f and "slow_calls" not in f for f in prof.profile()["functions"])


SCRIPT = textwrap.dedent("""
    import sys
    class Loud:
        def __repr__(self):
            print("REPR PRINTED")          # must not reach the program's output
            return "Loud()"
    class Broken:
        def __repr__(self):
            raise ValueError("no repr")
    def handle(item, *rest, flag=False, **opts):
        print("handled", type(item).__name__)
    handle(Loud())
    handle(Broken(), 1, 2, flag=True)
    handle("x" * 10_000, big=list(range(100_000)))
    sys.exit(3)
""")


def test_reprs_that_raise_print_or_are_huge_change_nothing(tmp_path):
    script = tmp_path / "reprs.py"
    script.write_text(SCRIPT)
    plain = subprocess.run([sys.executable, str(script)], capture_output=True, text=True)
    out = tmp_path / "p.json"
    r = run_cprof(["--counter=wall", "--slow-calls=3", "-o", str(out), str(script)])
    assert r.returncode == plain.returncode == 3
    assert r.stdout == plain.stdout
    assert "REPR PRINTED" not in r.stdout + r.stderr
    args = sorted(s["args"] for s in fn(load(out), "__main__.handle")["slow_calls"])
    assert len(args) == 3
    broken = [a for a in args if a.startswith("item=<repr failed")]
    assert broken == ["item=<repr failed: ValueError>, rest=(1, 2), flag=True, opts={}"]
    assert any(a.startswith("item=Loud()") for a in args)
    huge = [a for a in args if a.startswith("item='xxx")][0]
    assert len(huge) <= 400 and "opts={'big': [0, 1, 2" in huge


def test_bad_slow_calls_value_is_one_sentence(tmp_path):
    script = tmp_path / "s.py"
    script.write_text("pass\n")
    r = run_cprof(["--slow-calls=1000", str(script)])
    assert r.returncode == 2 and r.stderr.startswith("cprof: error:") and "Traceback" not in r.stderr


REPORT_SCRIPT = textwrap.dedent("""
    import time
    def work(n):
        if n == 7:
            time.sleep(0.002)      # the one call that gives up the CPU
    for i in range(20):
        work(i)
""")


def test_report_columns_slow_lines_and_hist(tmp_path):
    script = tmp_path / "w.py"
    script.write_text(REPORT_SCRIPT)
    r = run_cprof(["--counter=ctxsw,wall", "--distributions", "--slow-calls=2", str(script)],
                  check_rc=0)
    head = [l for l in r.stderr.splitlines() if l.lstrip().startswith("calls")][0]
    assert head.split()[-6:] == ["per", "call", "p50", "p99", "max", "function"], head
    slow = [l.strip() for l in r.stderr.splitlines() if l.strip().startswith("slow:")]
    assert any("(n=7)" in l for l in slow), r.stderr
    out = tmp_path / "p.json"
    run_cprof(["--counter=ctxsw", "--distributions", "-o", str(out), str(script)], check_rc=0)
    h = run_cprof(["report", str(out), "--hist", "work"], check_rc=0).stdout
    lines = h.splitlines()
    assert lines[0].startswith("__main__.work: 20 calls, ctxsw per call")
    # 19 calls without a switch, one with at least one (the 2 ms sleep)
    assert lines[1].split()[:2] == ["0", "19"] and lines[1].endswith("#" * 40)
    bad = run_cprof(["report", str(out), "--hist", "nosuch"])
    assert bad.returncode == 2 and bad.stderr.startswith("cprof: error: no function named 'nosuch'")
    plain = tmp_path / "plain.json"
    run_cprof(["--counter=ctxsw", "-o", str(plain), str(script)], check_rc=0)
    nodist = run_cprof(["report", str(plain), "--hist", "work"])
    assert nodist.returncode == 2 and "record it with cprof --distributions" in nodist.stderr
