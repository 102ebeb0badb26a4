"""cprof on the free-threaded build with the GIL off (PYTHON_GIL=0): importing it
leaves the GIL off (no RuntimeWarning), the ground truths of test_ground_truth.py
hold, and threads that truly run in parallel are counted exactly while others
start and stop and profiling is switched on and off around them.

Every profiled program runs in a child process with PYTHON_GIL=0, which makes
CPython keep the GIL off even if an extension asked for it (and say so on
stderr); each child checks sys._is_gil_enabled() itself."""
import json
import os
import subprocess
import sys
import sysconfig
import textwrap

import pytest

from conftest import run_cprof
import test_ground_truth

pytestmark = pytest.mark.skipif(not sysconfig.get_config_var("Py_GIL_DISABLED"),
                                reason="not a free-threaded build of Python")


# profiles switched on and off per test (fewer under ThreadSanitizer, ten times slower)
CYCLES = int(os.environ.get("CPROF_FT_CYCLES", "100"))


@pytest.fixture(autouse=True)
def gil_off(monkeypatch):
    """Every child (cprof's CLI, cProfile, the scripts) runs with the GIL off."""
    monkeypatch.setenv("PYTHON_GIL", "0")


def _run(code, tmp_path, *args, timeout=600):
    script = tmp_path / "script.py"
    script.write_text(textwrap.dedent(code))
    r = subprocess.run([sys.executable, str(script), *map(str, args)], capture_output=True,
                       text=True, timeout=timeout)
    assert r.returncode == 0, f"exit {r.returncode}\nstdout:\n{r.stdout}\nstderr:\n{r.stderr}"
    assert r.stderr == "", r.stderr  # no "the GIL has been enabled" warning, no other
    return json.loads(r.stdout)


def test_import_keeps_the_gil_off(tmp_path):
    """Importing cprof and profiling a program leaves the GIL off, in the API and
    under the CLI, with nothing on stderr."""
    got = _run("""
        import json, sys
        import cprof
        before = sys._is_gil_enabled()
        with cprof.Profile(compensate=False):
            inside = sys._is_gil_enabled()
        print(json.dumps([before, inside, sys._is_gil_enabled()]))
    """, tmp_path)
    assert got == [False, False, False]
    # without PYTHON_GIL, an extension without Py_mod_gil turns the GIL back on at import
    env = {k: v for k, v in os.environ.items() if k != "PYTHON_GIL"}
    r = subprocess.run([sys.executable, "-c", "import sys, cprof; print(sys._is_gil_enabled())"],
                       capture_output=True, text=True, env=env)
    assert (r.stdout, r.stderr) == ("False\n", "")
    prog = tmp_path / "prog.py"
    prog.write_text("import sys\nprint(sys._is_gil_enabled())\n")
    r = run_cprof(["-o", str(tmp_path / "p.json"), str(prog)], check_rc=0)
    assert r.stdout == "False\n"
    assert r.stderr.startswith("cprof: wrote") and r.stderr.count("\n") == 1, r.stderr


def test_call_counts_agree_with_cprofile(tmp_path):
    """The recursion / generator / exception workload: cProfile's counts, edge by edge."""
    test_ground_truth.test_call_counts_agree_with_cprofile(tmp_path)


def test_switches_and_cpu_agree_with_getrusage(shared_dir):
    """Switches equal getrusage's, cpu within the thread clock's bounds."""
    test_ground_truth.test_sleeps_give_exact_voluntary_switches(shared_dir, None)


def test_switches_agree_under_load(shared_dir):
    """The same with two CPU hogs competing for the cores: pauses that cprof caused
    (stopping the world at call sites) would show as extra switches here."""
    hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(2)]
    try:
        test_ground_truth.test_sleeps_give_exact_voluntary_switches(shared_dir, None)
    finally:
        for h in hogs:
            h.kill()
            h.wait()


PARALLEL = """
    import json, sys, threading
    import cprof

    WORKERS, K, CHURN, M, CYCLES = map(int, sys.argv[1:6])

    def leaf():
        pass

    def work(k):
        for _ in range(k):
            leaf()

    def churn(m):
        work(m)

    go = threading.Barrier(WORKERS + 1)
    done = threading.Barrier(WORKERS + 1)
    stop = False

    def worker():
        while True:
            go.wait()
            if stop:
                return
            work(K)
            done.wait()

    workers = [threading.Thread(target=worker) for _ in range(WORKERS)]
    for t in workers:
        t.start()
    cycles = []
    for c in range(CYCLES):
        prof = cprof.Profile(counters="wall", compensate=False)
        prof.enable()
        go.wait()           # the workers run work(K) in parallel from here
        extra = [threading.Thread(target=churn, args=(M,)) for _ in range(CHURN)]
        for t in extra:     # threads that start and end while the workers run
            t.start()
        for t in extra:
            t.join()
        done.wait()
        prof.disable()
        p = prof.profile()
        calls = {f["name"].rsplit(".", 1)[-1]: f["calls"] for f in p["functions"]
                 if f["name"].startswith("__main__.")}
        cycles.append([calls.get("leaf", 0), calls.get("work", 0), calls.get("churn", 0),
                       p["meta"]["threads"]])
    stop = True
    go.wait()
    for t in workers:
        t.join()
    print(json.dumps({"gil": sys._is_gil_enabled(), "cycles": cycles}))
"""


def test_parallel_threads_counted_exactly(tmp_path):
    """8 threads each make K calls in parallel inside each of 100 profiles (enabled
    and disabled with the threads alive), while 4 more start, make M calls and end:
    every profile counts exactly 8*K + 4*M calls of leaf."""
    workers, k, churn, m, cycles = 8, 2000, 4, 500, CYCLES
    got = _run(PARALLEL, tmp_path, workers, k, churn, m, cycles)
    assert got["gil"] is False
    expected = [workers * k + churn * m, workers + churn, churn]
    for i, (leaf, work, ch, threads) in enumerate(got["cycles"]):
        assert [leaf, work, ch] == expected, f"profile {i}"
        assert threads >= 1 + workers + churn, f"profile {i}"


FREE_RUNNING = """
    import json, sys, threading, time
    import cprof

    WORKERS, CYCLES = map(int, sys.argv[1:3])
    done = [0] * WORKERS        # calls of leaf finished, per worker (its own slot)
    stop = False

    def leaf():
        pass

    def churn_leaf():
        pass

    def worker(i):
        while not stop:
            leaf()
            done[i] += 1

    def churner():              # threads start and end all the time
        while not stop:
            t = threading.Thread(target=lambda: [churn_leaf() for _ in range(50)])
            t.start()
            t.join()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(WORKERS)]
    threads.append(threading.Thread(target=churner))
    for t in threads:
        t.start()
    while min(done) == 0:
        time.sleep(0.001)
    cycles = []
    for c in range(CYCLES):
        prof = cprof.Profile(counters="wall", compensate=False)
        e = list(done)          # calls finished before enable() began
        prof.enable()
        a = list(done)          # ... after it returned
        while True:             # until the workers surely made 50 calls inside it
            time.sleep(0.001)
            b = list(done)      # ... before disable() began
            if sum(max(0, bi - ai - 1) for ai, bi in zip(a, b)) >= 50:
                break
        prof.disable()
        f = list(done)          # ... after it returned
        p = prof.profile()
        seen = [x["calls"] for x in p["functions"] if x["name"] == "__main__.leaf"]
        cycles.append([seen[0] if seen else 0,
                       sum(max(0, bi - ai - 1) for ai, bi in zip(a, b)),
                       sum(fi + 1 - ei for ei, fi in zip(e, f))])
    stop = True
    for t in threads:
        t.join()
    print(json.dumps({"gil": sys._is_gil_enabled(), "cycles": cycles}))
"""


def test_enable_disable_while_threads_run(tmp_path):
    """8 threads call leaf() without pause while a ninth starts and ends threads;
    profiling is enabled and disabled 100 times around them.  Each profile's count
    lies between the calls that surely ran inside it (finished after enable()
    returned, plus one started before: per thread b - a - 1) and those that may
    have (started after enable() began and before disable() returned: f + 1 - e)."""
    got = _run(FREE_RUNNING, tmp_path, 8, CYCLES)
    assert got["gil"] is False
    for i, (counted, low, high) in enumerate(got["cycles"]):
        assert low <= counted <= high, f"profile {i}: {counted} not in [{low}, {high}]"
        assert low >= 50

def test_pymalloc_counters_are_refused_in_one_sentence(tmp_path):
    """With the GIL off the pymalloc-* counters are refused (swapping Python's allocator
    while other threads allocate is not safe): one sentence naming PYTHON_GIL=1, exit 2,
    in the CLI and in the API; with PYTHON_GIL=1 the same run works."""
    prog = tmp_path / "prog.py"
    prog.write_text("x = [bytes(100) for _ in range(1000)]\n")
    out = tmp_path / "p.json"
    r = run_cprof(["--counter=pymalloc-bytes", "-o", str(out), str(prog)], check_rc=2)
    assert r.stdout == "" and r.stderr.count("\n") == 1, r.stderr
    assert r.stderr.startswith("cprof: error: the pymalloc-* counters") and "PYTHON_GIL=1" in r.stderr
    assert not out.exists()
    got = _run("""
        import json, cprof
        try:
            cprof.Profile(counters=["pymalloc-calls"]).enable()
            print(json.dumps("enabled"))
        except cprof.CprofError as e:
            print(json.dumps(str(e)))
    """, tmp_path)
    assert "PYTHON_GIL=1" in got and "\n" not in got
    r = run_cprof(["--counter=pymalloc-bytes", "-o", str(out), str(prog)], env={"PYTHON_GIL": "1"},
                  check_rc=0)
    assert json.loads(out.read_text())["counters"][0]["name"] == "pymalloc-bytes"
