"""cprof beside the standard tools that hook the interpreter: cProfile and coverage.py.

3.12+: every tool has its own sys.monitoring tool id, so each order works (cprof running
when the program starts cProfile or coverage, and cprof started inside a program where
they already run) and every tool's numbers stay whole.  3.10-3.11: coverage's trace hook
and cprof's profile hook are separate, but a thread has one profile hook: a program that
replaces cprof's (sys.setprofile, cProfile) is said in the profile and on stderr, and cprof
refuses to start over another profiler's hook rather than silently breaking it."""
import json
import os
import subprocess
import sys
import textwrap

import pytest

import cprof
from conftest import fn, load, run_cprof

MONITORING = sys.version_info >= (3, 12)
needs_monitoring = pytest.mark.skipif(not MONITORING, reason="sys.monitoring tool ids exist on 3.12+")
needs_setprofile = pytest.mark.skipif(MONITORING, reason="one profile hook per thread before 3.12")


def write(tmp_path, name, text):
    p = tmp_path / name
    p.write_text(textwrap.dedent(text))
    return str(p)


def mine(f, name):
    """f is this file's function called name (qualified names differ across Pythons)."""
    return f["file"] == __file__ and f["name"].rsplit(".", 1)[-1] == name


def conserved(prof):
    """Every export adds up: functions' self + unattributed == region, and the call tree's
    root holds exactly what no function got."""
    for c in prof["counters"]:
        name = c["name"]
        m = prof["meta"]
        assert sum(f["self"][name] for f in prof["functions"]) + m["unattributed"][name] == m["region"][name]
        assert prof["tree"]["self"][name][0] == m["unattributed"][name]


CPROFILE_SCRIPT = """
    import cProfile, pstats, sys

    def leaf(i):
        return i + 1

    def work(n):
        for i in range(n):
            leaf(i)

    pr = cProfile.Profile()
    pr.enable()
    work(300)
    pr.disable()
    st = pstats.Stats(pr).stats
    print("cProfile leaf calls", sum(v[1] for k, v in st.items() if k[2] == "leaf"))
    work(200)
"""


@needs_monitoring
def test_program_runs_cprofile_under_cprof(tmp_path):
    script = write(tmp_path, "uses_cprofile.py", CPROFILE_SCRIPT)
    out = tmp_path / "p.json"
    r = run_cprof(["-o", str(out), script], check_rc=0)
    assert "cProfile leaf calls 300" in r.stdout
    assert "Another profiling tool" not in r.stderr
    prof = load(out)
    assert fn(prof, "__main__.leaf")["calls"] == 500     # cprof saw both halves
    assert fn(prof, "__main__.work")["calls"] == 2
    assert "hook_replaced" not in prof["meta"] or prof["meta"]["hook_replaced"] == []
    conserved(prof)


@needs_monitoring
def test_cprof_started_while_cprofile_runs_and_cprofile_started_while_cprof_runs():
    import cProfile
    import pstats

    def leaf():
        return 1

    def work(n):
        for _ in range(n):
            leaf()

    cp = cProfile.Profile()
    cp.enable()                         # cProfile first, cprof inside it
    try:
        with cprof.Profile(["wall"]) as p:
            work(7)
    finally:
        cp.disable()
    prof = p.profile()
    assert [f["calls"] for f in prof["functions"] if mine(f, "leaf")] == [7]
    st = pstats.Stats(cp).stats
    assert [v[1] for k, v in st.items() if k[0] == __file__ and k[2] == "leaf"] == [7]

    with cprof.Profile(["wall"]) as p:  # cprof first, cProfile inside it
        cp = cProfile.Profile()
        cp.enable()
        work(5)
        cp.disable()
        work(4)
    prof = p.profile()
    assert [f["calls"] for f in prof["functions"] if mine(f, "leaf")] == [9]
    st = pstats.Stats(cp).stats
    assert [v[1] for k, v in st.items() if k[0] == __file__ and k[2] == "leaf"] == [5]


COVERAGE_SCRIPT = """
    import coverage, sys
    cov = coverage.Coverage(data_file=None, include=[__file__])
    cov.start()

    def covered(x):
        if x:
            return 1        # RUN
        return 2            # NEVER

    for _ in range(40):
        covered(True)
    cov.stop()
    _, statements, _, missing, _ = cov.analysis2(__file__)
    lines = open(__file__).read().splitlines()
    run, never = (lines.index(next(l for l in lines if l.endswith(m))) + 1 for m in ("# RUN", "# NEVER"))
    print("missing", missing, "covered", run not in missing, never in missing)
"""


def coverage_cores():
    cores = ["ctrace"]
    if MONITORING:
        cores.append("sysmon")  # coverage on COVERAGE_ID through sys.monitoring
    return cores


@pytest.mark.parametrize("core", coverage_cores())
def test_program_runs_coverage_under_cprof(tmp_path, core):
    pytest.importorskip("coverage")
    script = write(tmp_path, "uses_coverage.py", COVERAGE_SCRIPT)
    plain = subprocess.run([sys.executable, script], capture_output=True, text=True,
                           env={**os.environ, "COVERAGE_CORE": core}, timeout=120)
    assert plain.returncode == 0, plain.stderr
    out = tmp_path / "p.json"
    r = run_cprof(["-o", str(out), script], env={"COVERAGE_CORE": core}, check_rc=0)
    assert r.stdout == plain.stdout                     # coverage saw what it sees alone
    assert "covered True True" in r.stdout
    prof = load(out)
    assert fn(prof, "__main__.covered")["calls"] == 40
    assert prof["meta"].get("hook_replaced", []) == []  # coverage traces, it does not profile
    conserved(prof)


@pytest.mark.parametrize("core", coverage_cores())
def test_cprof_started_inside_coverage(tmp_path, core):
    pytest.importorskip("coverage")
    script = write(tmp_path, "cprof_in_coverage.py", """
        import coverage, json, sys
        import cprof
        cov = coverage.Coverage(data_file=None, include=[__file__])
        cov.start()

        def covered(x):
            if x:
                return 1    # RUN
            return 2        # NEVER

        with cprof.Profile(["wall"]) as p:
            for _ in range(30):
                covered(True)
        cov.stop()
        _, _, _, missing, _ = cov.analysis2(__file__)
        lines = open(__file__).read().splitlines()
        run, never = (lines.index(next(l for l in lines if l.endswith(m))) + 1 for m in ("# RUN", "# NEVER"))
        calls = [f["calls"] for f in p.profile()["functions"] if f["name"].rsplit(".", 1)[-1] == "covered"]
        print("covered", run not in missing, never in missing, "calls", calls)
    """)
    r = subprocess.run([sys.executable, script], capture_output=True, text=True,
                       env={**os.environ, "COVERAGE_CORE": core}, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "covered True True calls [30]" in r.stdout, r.stdout + r.stderr


@needs_setprofile
def test_cprofile_taking_the_hook_is_said_in_the_profile_and_on_stderr(tmp_path):
    script = write(tmp_path, "uses_cprofile.py", CPROFILE_SCRIPT)
    out = tmp_path / "p.json"
    r = run_cprof(["-o", str(out), script], check_rc=0)
    assert "cProfile leaf calls 300" in r.stdout          # the program runs as it would alone
    warning = [l for l in r.stderr.splitlines() if l.startswith("cprof: warning:")]
    assert len(warning) == 1, r.stderr
    assert "in thread 'MainThread' the program" in warning[0]
    assert "(_lsprof.Profiler.enable called from __main__.<module>, after " in warning[0]
    assert "the rest of that thread's run is not in the profile" in warning[0]
    prof = load(out)
    [entry] = prof["meta"]["hook_replaced"]
    assert entry["thread"] == "MainThread" and entry["alive"] is True
    assert entry["by"] == "_lsprof.Profiler.enable"
    assert entry["in"] == "__main__.<module>"
    assert entry["holder"] is None                       # cProfile's disable() removed its own
    assert 0 < entry["after"]["cpu"] <= prof["meta"]["region"]["cpu"]
    assert not [f for f in prof["functions"] if f["name"] in ("__main__.leaf", "__main__.work")]
    conserved(prof)
    # and the saved profile's report says it too, a day later
    r = run_cprof(["report", str(out)], check_rc=0)
    assert f"warning: {entry['message']}" in r.stdout.splitlines(), r.stdout
    prof["meta"]["hook_replaced"][0]["message"] = 7
    out.write_text(json.dumps(prof))
    r = run_cprof(["report", str(out)], check_rc=2)
    assert r.stderr.strip().splitlines() == [
        f"cprof: error: '{out}' is a damaged cprof profile: meta.hook_replaced[0].message is an "
        "integer, not a string; give a file written by cprof -o"], r.stderr


@needs_setprofile
def test_setprofile_in_threads_is_said_for_each_thread(tmp_path):
    script = write(tmp_path, "setprofile.py", """
        import sys, threading

        def mine(frame, event, arg):
            pass

        def leaf():
            return 1

        def quiet():
            sys.setprofile(None)        # a thread that ends without cprof's hook
            leaf()

        def noisy():
            sys.setprofile(mine)        # a thread still running with another hook
            leaf()
            stop.wait()

        stop = threading.Event()
        a = threading.Thread(target=quiet, name="quiet-thread")
        b = threading.Thread(target=noisy, name="noisy-thread", daemon=True)
        a.start(); a.join()
        b.start()
        for _ in range(5):
            leaf()
    """)
    out = tmp_path / "p.json"
    r = run_cprof(["-o", str(out), script], check_rc=0)
    warning = [l for l in r.stderr.splitlines() if l.startswith("cprof: warning:")]
    assert len(warning) == 1 and "(and in 1 more threads)" in warning[0], r.stderr
    prof = load(out)
    got = {e["thread"] or "ended": e for e in prof["meta"]["hook_replaced"]}
    assert set(got) == {"ended", "noisy-thread"}, got
    assert got["ended"]["alive"] is False and got["ended"]["holder"] is None
    assert got["ended"]["by"] == "sys.setprofile" and got["ended"]["in"] == "__main__.quiet"
    assert got["noisy-thread"]["alive"] is True
    assert got["noisy-thread"]["holder"] == "__main__.mine"
    assert got["noisy-thread"]["by"] == "sys.setprofile" and got["noisy-thread"]["in"] == "__main__.noisy"
    assert fn(prof, "__main__.leaf")["calls"] == 5       # the main thread's, none after the hooks went
    conserved(prof)


@needs_setprofile
def test_the_api_warns_when_the_program_takes_the_hook():
    def leaf():
        return 1

    with pytest.warns(RuntimeWarning, match="took cprof's profile hook away"):
        with cprof.Profile(["wall"]) as p:
            leaf()
            sys.setprofile(None)
            leaf()
    prof = p.profile()
    assert [f["calls"] for f in prof["functions"] if mine(f, "leaf")] == [1]
    [entry] = prof["meta"]["hook_replaced"]
    assert entry["by"] == "sys.setprofile" and entry["in"].endswith("test_the_api_warns_when_the_program_takes_the_hook")
    conserved(prof)


@needs_setprofile
def test_cprof_does_not_take_another_profilers_hook():
    import cProfile
    cp = cProfile.Profile()
    cp.enable()
    try:
        with pytest.raises(cprof.CprofError, match=r"already has a profile hook .* allows one per thread"):
            cprof.Profile(["wall"]).enable()
    finally:
        cp.disable()
    assert sys.getprofile() is None
    with cprof.Profile(["wall"]) as p:      # and starts once cProfile has stopped
        pass
    assert p.profile()["meta"]["hook_replaced"] == []


@needs_setprofile
def test_a_hook_put_back_with_setprofile_getprofile_resumes(tmp_path):
    """old = sys.getprofile(); sys.setprofile(None); ...; sys.setprofile(old): getprofile()
    gives cprof's profiler, which the interpreter then calls with each event (it raised
    TypeError: not callable, in the program).  cprof takes its C hook back and the
    profile misses only what ran in between, which it says."""
    script = write(tmp_path, "restore.py", """
        import sys

        def leaf():
            return 1

        def quiet():
            old = sys.getprofile()
            sys.setprofile(None)
            for _ in range(10):
                leaf()          # not seen
            sys.setprofile(old)

        for _ in range(3):
            leaf()
        quiet()
        for _ in range(4):
            leaf()
        print("ok")
    """)
    out = tmp_path / "p.json"
    r = run_cprof(["-o", str(out), script], check_rc=0)
    assert r.stdout == "ok\n"
    assert "took cprof's profile hook away and put it back" in r.stderr
    assert "what that thread ran meanwhile is not in the profile" in r.stderr
    prof = load(out)
    assert fn(prof, "__main__.leaf")["calls"] == 7
    assert fn(prof, "__main__.quiet")["calls"] == 1
    [entry] = prof["meta"]["hook_replaced"]
    assert entry["restored"] is True and entry["by"] == "sys.setprofile"
    assert entry["in"] == "__main__.quiet"
    conserved(prof)
    # the rebuilt stack holds the program's frames only, not the ones that started
    # profiling (cprof's CLI, the console script: a 0-call <module> there, before)
    names = {f["name"]: f for f in prof["functions"]}
    assert not [n for n in names if n.startswith("cprof.cli._profile") and n != "cprof.cli._profile.<locals>.finish"]
    assert not [f for f in prof["functions"] if f["calls"] == 0], \
        [f["name"] for f in prof["functions"] if f["calls"] == 0]
    assert names["__main__.<module>"]["total"]["cpu"] <= names["builtins.exec"]["total"]["cpu"]


@needs_monitoring
def test_a_freed_tool_id_taken_by_another_tool_is_left_to_it():
    mon = sys.monitoring
    p = cprof.Profile(["wall"])
    p.enable()
    mine = [i for i in range(6) if mon.get_tool(i) == "cprof"]
    assert mine and mine[0] in (3, 4)
    mon.free_tool_id(mine[0])           # the program frees it and another tool takes it
    mon.use_tool_id(mine[0], "other")
    try:
        with pytest.raises(cprof.CprofError, match="freed cprof's sys.monitoring tool id"):
            p.disable()
        assert mon.get_tool(mine[0]) == "other"     # cprof did not free the other tool's id
    finally:
        mon.free_tool_id(mine[0])
    del p
    with cprof.Profile(["wall"]) as q:              # and the next profile works
        sum(range(10))
    assert q.profile()["meta"]["region"]["wall"] > 0
