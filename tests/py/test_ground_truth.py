"""cprof's numbers against independent ground truth: getrusage and thread_time
measured inside the profiled program, and cProfile's call counts."""
import os
import pstats
import shutil
import subprocess
import sys

import pytest

from conftest import SCRIPTS, can_run_as_nobody, fn, load, run_cprof

USERS = ["root", "nobody"] if os.geteuid() == 0 else ["self"]


def _sleepers(shared_dir, user, env=None):
    script = os.path.join(shared_dir, "gt_sleepers.py")
    shutil.copy(os.path.join(SCRIPTS, "gt_sleepers.py"), script)
    os.chmod(script, 0o644)
    truth_path = os.path.join(shared_dir, "truth.json")
    out = os.path.join(shared_dir, "out.json")
    r = run_cprof(["--counter=cpu,wall,ctxsw", "-o", out, script, truth_path, "7"],
                  cwd=shared_dir, user=user, env=env)
    assert r.returncode == 7, r.stderr  # the script's own exit code passes through
    assert r.stdout == "workload done\n"
    return load(out), load(truth_path)


@pytest.mark.parametrize("user", USERS)
def test_sleeps_give_exact_voluntary_switches(shared_dir, user):
    if user == "nobody" and can_run_as_nobody():
        pytest.skip(can_run_as_nobody())
    prof, truth = _sleepers(shared_dir, user)
    assert [c["name"] for c in prof["counters"]] == ["cpu", "wall", "ctxsw"]
    sleeper, sleep = fn(prof, "__main__.sleeper"), fn(prof, "time.sleep")
    # calls merged across the main thread and 3 workers
    assert sleeper["calls"] == 4 and fn(prof, "__main__.worker")["calls"] == 3
    assert sleep["calls"] == 70
    assert prof["meta"]["threads"] == 4
    # every switch the threads saw during sleeper(), by getrusage(RUSAGE_THREAD)
    expected = sum(truth["sleeper_nvcsw"])
    assert expected >= 70
    assert sleeper["total"]["ctxsw"] == expected
    assert sleep["self"]["ctxsw"] + sleeper["self"]["ctxsw"] == expected
    assert sleeper["self"]["ctxsw"] == 0
    # the spinner: exactly what getrusage saw (normally 0) and CPU close to thread_time
    spin = fn(prof, "__main__.spin")
    assert spin["total"]["ctxsw"] == truth["spin_nvcsw"][0]
    real_cpu = truth["spin_cpu_ns"][0]
    assert abs(spin["total"]["cpu"] - real_cpu) <= 0.03 * real_cpu + 300_000
    if truth["spin_nivcsw"][0] == 0:  # never preempted: its CPU time is its wall time
        assert spin["total"]["cpu"] >= 0.95 * spin["total"]["wall"] - 200_000
    # the sleeper: cpu << wall, and cpu close to what thread_time measured
    assert sleeper["total"]["cpu"] < 0.2 * sleeper["total"]["wall"]
    assert sleeper["total"]["wall"] >= 70 * 1_000_000 * 0.99
    real_sleeper_cpu = sum(truth["sleeper_cpu_ns"])
    assert abs(sleeper["total"]["cpu"] - real_sleeper_cpu) <= 0.2 * real_sleeper_cpu + 500_000
    # conservation: self over all functions + unattributed == the region, per counter
    for c in ("cpu", "wall", "ctxsw"):
        total_self = sum(f["self"][c] for f in prof["functions"])
        assert total_self + prof["meta"]["unattributed"][c] == prof["meta"]["region"][c]


def test_without_rseq_numbers_stay_exact(shared_dir):
    """glibc's rseq turned off: the slow path (a system call per read) is still exact."""
    env = {"GLIBC_TUNABLES": "glibc.pthread.rseq=0"}
    lc = run_cprof(["--list-counters"], env=env, check_rc=0)
    assert "slow path" in lc.stdout
    prof, truth = _sleepers(shared_dir, None, env=env)
    assert "slow path" in prof["counters"][0]["read_path"]
    sleeper = fn(prof, "__main__.sleeper")
    assert sleeper["total"]["ctxsw"] == sum(truth["sleeper_nvcsw"])
    assert fn(prof, "__main__.spin")["total"]["ctxsw"] == truth["spin_nvcsw"][0]


def test_read_paths_are_reported():
    r = run_cprof(["--list-counters"], check_rc=0)
    assert "rseq" in r.stdout and "getrusage" in r.stdout and "CLOCK_MONOTONIC" in r.stdout


def _cprofile_counts(path, tmp_path):
    out = tmp_path / "c.prof"
    subprocess.run([sys.executable, "-m", "cProfile", "-o", str(out), path], check=True)
    st = pstats.Stats(str(out)).stats
    counts, edges = {}, {}
    for (file, line, name), (cc, nc, _tt, _ct, callers) in st.items():
        if file != path:
            continue
        counts[(line, name)] = (nc, cc)
        for (cfile, cline, cname), cstat in callers.items():
            if cfile == path:
                edges[((cline, cname), (line, name))] = (cstat[0], cstat[1])  # (calls, primitive)
    return counts, edges


def test_call_counts_agree_with_cprofile(tmp_path):
    path = os.path.join(SCRIPTS, "recursive.py")
    expected, expected_edges = _cprofile_counts(path, tmp_path)
    out = tmp_path / "p.json"
    run_cprof(["-o", str(out), path], check_rc=0)
    prof = load(out)
    got = {}
    by_id = {}
    for f in prof["functions"]:
        if f["file"] == path:
            short = f["name"].split(".")[-1]
            got[(f["line"], short)] = (f["calls"], f["primitive_calls"])
            by_id[f["id"]] = (f["line"], short)
    assert expected, "cProfile saw nothing"
    assert got == expected
    assert got[(4, "fib")] == (8361, 1)
    got_edges = {}
    for e in prof["edges"]:
        if e["caller"] in by_id and e["callee"] in by_id:
            got_edges[(by_id[e["caller"]], by_id[e["callee"]])] = (e["calls"], e["primitive_calls"])
    assert got_edges == expected_edges
