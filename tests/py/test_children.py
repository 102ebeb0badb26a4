"""--follow-children: the program's Python child processes (multiprocessing with each
start method, ProcessPoolExecutor, subprocess running this Python) profiled with the
same counters, each writing NAME.<pid>.json beside the parent's, and merged back by
`cprof report` / `export` / `compare`.  Every run has a timeout: nothing may hang."""
from __future__ import annotations

import glob
import gzip
import json
import multiprocessing
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from test_cli import cprof as _cprof
from test_cli import _env, load

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="fork and forkserver: Linux")

METHODS = [m for m in ("fork", "spawn", "forkserver") if m in multiprocessing.get_all_start_methods()]

POOL = """\
import multiprocessing as mp, sys
def f(x):
    return x * x
if __name__ == "__main__":
    with mp.get_context(sys.argv[1]).Pool(4) as p:
        print(sum(p.map(f, range(int(sys.argv[2]) if len(sys.argv) > 2 else 400))))
    sys.exit(3)
"""

EXECUTOR = """\
import concurrent.futures as cf, multiprocessing as mp, sys
def f(x):
    return x * x
if __name__ == "__main__":
    with cf.ProcessPoolExecutor(2, mp_context=mp.get_context(sys.argv[1])) as ex:
        print(sum(ex.map(f, range(400), chunksize=50)))
"""


def cprof(*args, cwd, timeout=60):
    return _cprof(*args, cwd=cwd, timeout=timeout)


def write(folder: Path, name: str, text: str) -> Path:
    p = folder / name
    p.write_text(text)
    return p


def children_of(out: Path) -> dict[int, dict]:
    """The children's profiles written beside `out`, by pid."""
    stem = str(out)[:-len(".json")]
    found = {}
    for path in glob.glob(glob.escape(stem) + ".*.json"):
        pid = path[len(stem) + 1:-len(".json")]
        if pid.isdigit():
            found[int(pid)] = load(path)
    return found


def calls(profile: dict, suffix: str) -> int:
    return sum(f["calls"] for f in profile["functions"] if f["name"].endswith(suffix))


def fn_named(profile: dict, name: str) -> dict:
    found = [f for f in profile["functions"] if f["name"] == name]
    assert len(found) == 1, [f["name"] for f in profile["functions"]]
    return found[0]


def merged(out: Path) -> dict:
    from cprof import children
    return children.load(str(out))


@pytest.mark.parametrize("method", METHODS)
def test_pool_map_counts_every_call_once_across_the_children(tmp_path, method):
    """Pool(4).map(f, range(400)): f has exactly 400 calls summed over the workers,
    none in the parent (its numbers up to a fork stay its own); the merge sums them,
    misses none, and the parent's output and exit code pass through."""
    script = write(tmp_path, "pool.py", POOL)
    out = tmp_path / "out.json"
    r = cprof("--follow-children", "-o", out, script, method, cwd=tmp_path)
    assert r.returncode == 3, r.stderr
    assert r.stdout.decode() == f"{sum(x * x for x in range(400))}\n"
    parent = load(out)
    kids = children_of(out)
    listed = {c["pid"] for c in parent["meta"]["children"]}
    assert set(kids) == listed and listed, (kids.keys(), listed)
    assert calls(parent, ".f") == 0
    assert sum(calls(k, ".f") for k in kids.values()) == 400
    for pid, k in kids.items():
        assert k["meta"]["pid"] == pid and k["meta"]["run"] == parent["meta"]["run"]
        assert k["meta"]["health"]["unmatched_exits"] == 0, k["meta"]["health"]
        assert [c["name"] for c in k["counters"]] == ["cpu", "wall"]
    m = merged(out)
    assert calls(m, ".f") == 400
    # spawn and forkserver workers import the script as __mp_main__: one function all the same
    assert [f["calls"] for f in m["functions"] if f["name"].endswith(".f")] == [400]
    assert fn_named(m, "__main__.f")["calls"] == 400
    assert [p["status"] for p in m["processes"]] == ["ok"] * (1 + len(kids))
    for n in ("cpu", "wall"):
        assert m["meta"]["region"][n] == sum(p["meta"]["region"][n] for p in [parent, *kids.values()])
        assert sum(f["self"][n] for f in m["functions"]) + m["meta"]["unattributed"][n] == \
            m["meta"]["region"][n]
    if method != METHODS[0]:
        return   # the command line once: the merge above is the same code
    rep = cprof("report", out, "--limit", "0", cwd=tmp_path)
    assert rep.returncode == 0, rep.stderr
    text = rep.stdout.decode()
    assert text.startswith(f"cprof: {1 + len(kids)} processes summed (0 missing)")
    assert any(line.split()[:1] == ["400"] and ".f  (pool.py:2)" in line for line in text.splitlines()), text


def test_process_pool_executor(tmp_path):
    method = "forkserver" if "forkserver" in METHODS else "fork"   # 3.14's default
    script = write(tmp_path, "ex.py", EXECUTOR)
    out = tmp_path / "out.json"
    r = cprof("--follow-children", "-o", out, script, method, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    kids = children_of(out)
    assert kids and sum(calls(k, ".f") for k in kids.values()) == 400
    assert calls(merged(out), ".f") == 400


SUBPROCESS = """\
import os, subprocess, sys
child = os.path.join(os.path.dirname(os.path.abspath(__file__)), "child.py")
r = subprocess.run([sys.executable, child, "7"], timeout=60)
print("child exit", r.returncode, flush=True)
r = subprocess.run(["/bin/sh", "-c", "echo sh says hi; exit 4"], timeout=60)
print("sh exit", r.returncode, flush=True)
r = subprocess.run([sys.executable, "-I", "-c", "import sys; print('isolated', 'cprof' in sys.modules)"],
                   timeout=60)
sys.exit(5)
"""

CHILD = """\
import os, sys
def child_work(n):
    return sum(range(n))
for i in range(int(sys.argv[1])):
    child_work(1000)
print("child pid", os.getpid(), "sitecustomize", sys.modules["sitecustomize"].__name__,
      [p for p in sys.path if "cprof-children" in p], flush=True)
sys.exit(2)
"""


def test_subprocess_running_this_python_is_profiled_and_others_are_untouched(tmp_path):
    """subprocess.run([sys.executable, child.py]): profiled, its exit code and output
    pass through; a shell and a `python -I` child run as they would, unprofiled, and
    nothing is listed for them."""
    write(tmp_path, "child.py", CHILD)
    script = write(tmp_path, "parent.py", SUBPROCESS)
    out = tmp_path / "out.json"
    r = cprof("--follow-children", "-o", out, script, cwd=tmp_path)
    assert r.returncode == 5, r.stderr
    lines = r.stdout.decode().splitlines()
    assert lines[1:] == ["child exit 2", "sh says hi", "sh exit 4", "isolated False"], lines
    child_pid = int(lines[0].split()[2])
    assert lines[0].endswith("sitecustomize sitecustomize []")   # no private folder on its sys.path
    kids = children_of(out)
    assert list(kids) == [child_pid]
    assert [c["pid"] for c in load(out)["meta"]["children"]] == [child_pid]
    assert calls(kids[child_pid], "child_work") == 7
    assert calls(merged(out), "child_work") == 7
    assert not [f for f in kids[child_pid]["functions"] if "children" in f["file"] and
                f["calls"] and "cprof" in f["file"] and "child_work" in f["name"]]


OTHER = [p for p in ("/root/.pyenv/versions/3.11.7/bin/python", "/root/.pyenv/versions/3.12.1/bin/python",
                     shutil.which("python3") or "") if p and os.path.exists(p)]


def test_another_python_runs_untouched_and_passes_nothing_on(tmp_path):
    """A child running another Python runs unprofiled, takes cprof's folder and
    variable out of its environment (its own children see neither), and still runs
    the sitecustomize the user had."""
    other = next((p for p in OTHER if subprocess.run(
        [p, "-c", "import sys; print(sys.version)"], check=False, capture_output=True, text=True,
        timeout=30).stdout.strip() != sys.version), None)
    if other is None:
        pytest.skip("no other Python installed")
    user = tmp_path / "user"
    user.mkdir()
    write(user, "sitecustomize.py", "import os\nos.environ['USER_SITECUSTOMIZE'] = 'ran'\n")
    write(tmp_path, "parent.py", f"""\
import subprocess, sys
code = ("import os, subprocess; print(os.environ.get('USER_SITECUSTOMIZE'), "
        "os.environ.get('PYTHONPATH'), flush=True); "
        "subprocess.run(['/bin/sh', '-c', 'echo ${{CPROF_FOLLOW_CHILDREN:-unset}}'])")
subprocess.run([{other!r}, "-c", code], timeout=60)
subprocess.run([sys.executable, "-c", code], timeout=60)
""")
    out = tmp_path / "out.json"
    env_path = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = str(user)
    try:
        r = subprocess.run([sys.executable, "-m", "cprof", "--follow-children", "-o", str(out),
                            "parent.py"], check=False, cwd=tmp_path, capture_output=True, text=True,
                           timeout=60)
    finally:
        if env_path is None:
            del os.environ["PYTHONPATH"]
        else:
            os.environ["PYTHONPATH"] = env_path
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[:2] == [f"ran {user}", "unset"], lines          # the other Python
    assert lines[2].startswith("ran ") and lines[2].endswith(str(user)), lines   # this one: profiled
    assert lines[3] != "unset"                                    # its children are followed
    assert len(children_of(out)) == 1


CRASH = """\
import multiprocessing as mp, os, signal, sys
def ok():
    return sum(range(1000))
def crash():
    os._exit(3)
def killed():
    os.kill(os.getpid(), signal.SIGKILL)
if __name__ == "__main__":
    ctx = mp.get_context(sys.argv[1])
    ps = [ctx.Process(target=t) for t in (ok, crash, killed)]
    for p in ps:
        p.start()
    for p in ps:
        p.join(30)
    print(" ".join(str(p.pid) for p in ps))
"""


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_a_crashed_or_killed_worker_loses_only_its_own_profile(tmp_path, method):
    script = write(tmp_path, "crash.py", CRASH)
    out = tmp_path / "out.json"
    r = cprof("--follow-children", "-o", out, script, method, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    ok, crash, killed = map(int, r.stdout.split())
    assert set(children_of(out)) == {ok}
    m = merged(out)
    assert {p["pid"]: p["status"] for p in m["processes"][1:]} == {ok: "ok", crash: "missing",
                                                                  killed: "missing"}
    assert calls(m, ".ok") == 1
    text = cprof("report", out, cwd=tmp_path).stdout.decode()
    assert text.startswith("cprof: 2 processes summed (2 missing)")
    for pid in (crash, killed):
        assert sum(line.startswith(f"warning: process {pid} (child of ") and "wrote no profile" in line
                   for line in text.splitlines()) == 1, text
    by = cprof("report", out, "--by-process", cwd=tmp_path).stdout.decode().splitlines()
    rows = {int(line.split()[0]): line for line in by[2:6] if line.split()[0].isdigit()}
    assert set(rows) == {load(out)["meta"]["pid"], ok, crash, killed}
    assert rows[crash].endswith("[missing]") and rows[killed].endswith("[missing]")
    assert sum(line.startswith(f"cprof: process {ok}, child of ") for line in by) == 1
    # compare says what each sum lacks
    c = cprof("compare", out, out, cwd=tmp_path)
    assert c.returncode == 0, c.stderr
    said = c.stderr if isinstance(c.stderr, str) else c.stderr.decode()
    assert said.count(f"cprof: {out}: 2 processes summed (2 missing)\n") == 2, said
    for pid in (crash, killed):
        assert said.count(f"cprof: {out}: warning: process {pid} (child of ") == 2, said
    # a child's file that is there but no profile is said so, not blamed on the child
    (tmp_path / f"out.{ok}.json").write_text("{bad")
    m = merged(out)
    assert {p["pid"]: p["status"] for p in m["processes"][1:]}[ok] == "unreadable"
    text = cprof("report", out, cwd=tmp_path).stdout.decode()
    line = [ln for ln in text.splitlines() if ln.startswith(f"warning: process {ok} ")]
    assert len(line) == 1 and "its profile could not be read: " in line[0] and "not valid JSON" in line[0], text


def test_without_output_the_report_sums_the_processes(tmp_path, monkeypatch):
    script = write(tmp_path, "pool.py", POOL)
    private = tmp_path / "tmp"
    private.mkdir()
    monkeypatch.setenv("TMPDIR", str(private))   # where the run's folder goes, and must go away
    r = cprof("--follow-children", "--limit", "0", script, "fork", "40", cwd=tmp_path)
    assert r.returncode == 3, r.stderr
    assert sorted(os.listdir(tmp_path)) == ["pool.py", "tmp"]
    assert os.listdir(private) == []
    report = r.stderr.splitlines()
    assert "error" not in r.stderr, r.stderr
    # 2 to 5: a worker that Pool.terminate() ends before its profile starts is not listed
    summed = [line for line in report if re.fullmatch(
        r"cprof: [2-5] processes summed \(0 missing\); cprof report FILE --by-process for each", line)]
    assert len(summed) == 1, r.stderr
    assert any(line.split()[:1] == ["40"] and ".f  (pool.py:2)" in line for line in report), r.stderr


def test_pprof_export_of_a_merged_profile_has_a_pid_label(tmp_path):
    script = write(tmp_path, "pool.py", POOL)
    out = tmp_path / "out.json"
    r = cprof("--follow-children", "-o", out, script, "fork", "40", cwd=tmp_path)
    assert r.returncode == 3, r.stderr
    pb = tmp_path / "out.pb.gz"
    e = cprof("export", out, "--format", "pprof", "-o", pb, cwd=tmp_path)
    assert e.returncode == 0, e.stderr
    pids = {load(out)["meta"]["pid"], *children_of(out)}
    go = shutil.which("go")
    if go is None:
        data = gzip.decompress(pb.read_bytes())
        assert data.count(b"pid") == 1
        return
    raw = subprocess.run([go, "tool", "pprof", "-raw", str(pb)], check=False, capture_output=True, text=True,
                         timeout=120)
    assert raw.returncode == 0, raw.stderr
    labels = {int(line.split("pid:[")[1].split("]")[0]) for line in raw.stdout.splitlines()
              if "pid:[" in line}
    assert labels == pids, raw.stdout[-2000:]
    # every sample has one: in -raw, a sample is "VALUES: LOCATIONS", its labels on the next line
    lines = raw.stdout.split("Samples:")[1].split("Locations")[0].splitlines()
    samples = [i for i, line in enumerate(lines) if line.rstrip().endswith(tuple("0123456789")) and
               ": " in line and line.split(":")[0].split()[0].isdigit()]
    assert samples and all("pid:[" in lines[i + 1] for i in samples), raw.stdout[:3000]


def test_compare_and_fail_above_on_merged_profiles(tmp_path):
    """compare sums the processes: f's total grows with the work the children do,
    which the parent's own profile never shows."""
    script = write(tmp_path, "pool.py", POOL.replace("return x * x", "return sum(range(3000)) + x"))
    small, big = tmp_path / "small.json", tmp_path / "big.json"
    for out, n in ((small, "40"), (big, "400")):
        r = cprof("--follow-children", "-c", "cpu", "-o", out, script, "fork", n, cwd=tmp_path)
        assert r.returncode == 3, r.stderr
    same = cprof("compare", small, small, "--fail-above", "1", "--function", "__main__.f",
                 cwd=tmp_path)
    assert same.returncode == 0, same.stderr
    grew = cprof("compare", small, big, "--fail-above", "50", "--function", "__main__.f",
                 "--limit", "0", cwd=tmp_path)
    assert grew.returncode == 1, grew.stderr
    assert "FAIL" in grew.stderr
    table = grew.stdout.decode().splitlines()
    assert any(line.split()[:1] == ["40->400"] and "__main__.f  (pool.py:2)" in line for line in table), table
    said = grew.stderr.splitlines() if isinstance(grew.stderr, str) else grew.stderr.decode().splitlines()
    assert [line.rsplit(": ", 1)[1] for line in said[:2]] == [
        f"{len(load(small)['meta']['children']) + 1} processes summed (0 missing)",
        f"{len(load(big)['meta']['children']) + 1} processes summed (0 missing)"], said


MISSED = """\
import signal, sys, threading, time
def work():
    return sum(range(1000))
work()
lock = threading.Lock()
lock.acquire()
def poke():
    time.sleep(0.2)
    # delivered to this thread, not the main one: Python's flag is tripped, but the main
    # thread's wait is not interrupted, as for a signal landing just before a blocking call
    signal.pthread_kill(threading.get_ident(), signal.SIGTERM)
threading.Thread(target=poke).start()
lock.acquire(timeout=30)
print("woke", flush=True)
"""


def test_a_signal_python_would_miss_still_ends_the_child_with_its_profile(tmp_path):
    """A SIGTERM that trips Python's flag while the main thread waits (a pool worker
    going back to its queue as Pool.terminate() sends it) is sent again until the
    handler runs: the child writes its profile and ends by SIGTERM at once, instead of
    after its wait (forever, for a pool worker whose parent holds the queue's lock)."""
    write(tmp_path, "child.py", MISSED)
    script = write(tmp_path, "parent.py", """\
import subprocess, sys, time
t = time.monotonic()
r = subprocess.run([sys.executable, "child.py"], timeout=60)
print(r.returncode, round(time.monotonic() - t, 1), flush=True)
""")
    out = tmp_path / "out.json"
    r = cprof("--follow-children", "-o", out, script, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    code, took = r.stdout.decode().split()
    assert code == "-15" and float(took) < 15, r.stdout   # 30 s and "woke" without the guard
    (kid,) = children_of(out).values()
    assert kid["meta"]["signal"] == "SIGTERM"
    assert calls(kid, "work") == 1


UNBORN = """\
import os, signal, subprocess, sys, time
if sys.argv[1:] == ["again"]:   # a followed new interpreter (its own handler) forks instead
    r = subprocess.run([sys.executable, sys.argv[0]], stdout=subprocess.PIPE, timeout=60)
    sys.stdout.write(r.stdout.decode())
    sys.exit(r.returncode)
# Realtime on one CPU, its forks not (SCHED_RESET_ON_FORK): the child cannot run
# before this process blocks, so SIGTERM reaches it before its first instruction, as
# Pool.terminate() reaches a worker that a loaded machine has not scheduled yet
os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
try:
    os.sched_setscheduler(0, os.SCHED_FIFO | os.SCHED_RESET_ON_FORK, os.sched_param(1))
except PermissionError:
    print("no-realtime", flush=True)
    sys.exit(0)
pid = os.fork()
if pid == 0:
    time.sleep(10)   # a pool worker waiting for its queue (forever: its parent holds the lock)
    print("lost", flush=True)
    os._exit(0)
os.kill(pid, signal.SIGTERM)
os.sched_setscheduler(0, os.SCHED_OTHER, os.sched_param(0))
_, status = os.waitpid(pid, 0)
print(os.waitstatus_to_exitcode(status), flush=True)
"""


@pytest.mark.parametrize("how", ["plain", "follow", "follow-again"])
def test_a_signal_before_the_forks_first_instruction_still_ends_it(tmp_path, how):
    """A fork's interpreter clears the signals its handlers have not run yet as it
    starts (CPython's _PySignal_AfterFork): a SIGTERM that reaches the child before its
    first instruction trips the flag of the handler it inherited (cprof's) and is
    lost, where the default action would end the child; a pool's worker then waits
    forever for its queue, and Pool.terminate() for the worker (seen under load: the
    test above hung).  Blocked across the fork, the signal waits until the child's
    handlers are set: the child ends by SIGTERM at once (a followed one with its
    profile), from cprof's process and from a followed process's own fork."""
    script = write(tmp_path, "unborn.py", UNBORN)
    out = tmp_path / "out.json"
    flags = [] if how == "plain" else ["--follow-children"]
    r = cprof(*flags, "-o", out, script, *(["again"] if how == "follow-again" else []),
              cwd=tmp_path)
    said = r.stdout.decode().split()
    if said == ["no-realtime"]:
        pytest.skip("SCHED_FIFO not allowed here: the child's first instruction cannot be held")
    assert r.returncode == 0 and said == ["-15"], (said, r.stderr)
    if how == "follow-again":   # the child that forked, and the fork, each wrote its profile
        kids = children_of(out)
        assert len(kids) == 2 and sorted(k["meta"].get("signal", "") for k in kids.values()) == [
            "", "SIGTERM"], kids


IMPORTING = """\
import os, signal, sys, time
class Trip:
    def find_spec(self, name, path, target=None):
        if name == "inner":   # outer half imported
            os.kill(os.getpid(), signal.SIGTERM)
        return None
sys.meta_path.insert(0, Trip())
import outer
time.sleep(30)
print("slept", flush=True)
"""


def test_a_signal_during_an_import_writes_the_profile_at_once(tmp_path):
    """A SIGTERM that comes while the program imports a module (3.14's forkserver
    workers unpickling their Process) writes the profile at once: the writer needs no
    import (cprof imported what it needs before the program ran), so neither waits
    for the other."""
    write(tmp_path, "child.py", IMPORTING)
    write(tmp_path, "outer.py", "import inner\n")
    write(tmp_path, "inner.py", "X = 1\n")
    script = write(tmp_path, "parent.py", """\
import subprocess, sys, time
t = time.monotonic()
r = subprocess.run([sys.executable, "child.py"], capture_output=True, text=True, timeout=60)
print(r.returncode, round(time.monotonic() - t, 1), flush=True)
sys.stderr.write(r.stderr)
""")
    out = tmp_path / "out.json"
    r = cprof("--follow-children", "-o", out, script, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    code, took = r.stdout.decode().split()
    assert code == "-15" and float(took) < 15, (r.stdout, r.stderr)   # 30 s if it waited
    assert "error" not in r.stderr, r.stderr
    (kid,) = children_of(out).values()
    assert kid["meta"]["signal"] == "SIGTERM"
    assert calls(kid, "find_spec") >= 1


WRITER_IMPORTS = """\
import os, subprocess, sys
started = set(sys.modules)
def written(how):
    from cprof import children
    before = set(sys.modules)
    children.end()
    print(how, sorted(set(sys.modules) - before), flush=True)
if sys.argv[1:] == ["child"]:
    written("new")
    sys.exit(0)
pid = os.fork()
if pid == 0:
    print("started", sorted(set(sys.modules) - started), flush=True)
    written("forked")
    os._exit(0)
os.waitpid(pid, 0)
subprocess.run([sys.executable, __file__, "child"], timeout=60)
"""


@pytest.mark.parametrize("name", ["out.json", "out.pb.gz"])
def test_writing_a_childs_profile_imports_nothing(tmp_path, name):
    """What a child's profile is started and written with was imported before the
    program ran: an ending signal's handler, and a forked child's at-fork hook, import
    nothing (a module the program half imported, or whose lock a thread that did not
    fork holds, cannot fail or block them)."""
    script = write(tmp_path, "w.py", WRITER_IMPORTS)
    r = cprof("--follow-children", "-o", tmp_path / name, script, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    # nor does starting a forked child's profile (in the at-fork hook)
    assert r.stdout.decode().splitlines() == ["started []", "forked []", "new []"], r.stderr
    ending = name[len("out"):]
    assert len([p for p in os.listdir(tmp_path) if re.fullmatch(r"out\.\d+" + re.escape(ending), p)]) == 2
    # another format than JSON: one file per process, which cprof says it cannot sum
    assert ("cprof: note: each of the 2 child processes wrote its own file" in r.stderr) == (name != "out.json")


def test_the_malloc_counters_are_refused_in_one_sentence(tmp_path):
    script = write(tmp_path, "pool.py", POOL)
    r = cprof("--follow-children", "-c", "cpu,malloc-calls", script, "fork", cwd=tmp_path)
    assert r.returncode == 2
    assert r.stderr.startswith("cprof: error: --follow-children does not work with the malloc "
                               "counters") and r.stderr.count("\n") == 1, r.stderr
    assert r.stdout == b""


STARTING = """\
import os, signal, sys, threading
root = os.getpid()
def work():
    return sum(range(1000))
def trip(real):
    def starting(*args):
        if os.getpid() != root and args[-1]:   # cprof enabling the child's own profile
            os.kill(os.getpid(), signal.SIGTERM)   # Pool.terminate() as the worker starts
        return real(*args)
    return starting
if hasattr(sys, "monitoring"):
    sys.monitoring.set_events = trip(sys.monitoring.set_events)
else:
    threading.setprofile = trip(threading.setprofile)
pid = os.fork()
if pid == 0:
    work()
    os._exit(0)
_, status = os.waitpid(pid, 0)
print(pid, os.waitstatus_to_exitcode(status), flush=True)
"""


def test_a_signal_while_the_child_starts_profiling_waits_until_it_has(tmp_path):
    """Pool.terminate() can SIGTERM a worker while cprof starts its profile (in the
    at-fork hook, inside enable): the signal waits until the profile has started,
    then writes it and ends the child by SIGTERM.  Before, the handler ran inside
    enable and the profile was lost ("another thread is enabling ..."), the child
    listed as missing (seen on 3.10 under load: a Pool worker's profile missing)."""
    script = write(tmp_path, "starting.py", STARTING)
    out = tmp_path / "out.json"
    r = cprof("--follow-children", "-o", out, script, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "error" not in r.stderr, r.stderr
    pid, code = map(int, r.stdout.split())
    assert code == -15
    assert [c["pid"] for c in load(out)["meta"]["children"]] == [pid]
    kid = children_of(out)[pid]
    assert kid["meta"]["signal"] == "SIGTERM"
    assert calls(kid, "work") == 0   # ended before it ran


SWITCH = r"""
<script>
(function () {
  var out = {};
  function fCalls() {
    return Array.from(document.querySelectorAll("#functions tbody tr")).filter(function (r) {
      var n = r.querySelector(".fname"); return n && n.textContent === "__main__.f"; })
      .map(function (r) { return r.children[1].textContent; });
  }
  try {
    var sel = document.getElementById("process");
    out.shown = !document.getElementById("process-pick").hidden;
    out.options = Array.from(sel.options).map(function (o) { return [o.value, o.textContent, o.disabled]; });
    out.sum = fCalls();
    out.views = {};
    Array.from(sel.options).forEach(function (o) {
      if (o.disabled || o.value === "-1") return;
      sel.value = o.value; sel.dispatchEvent(new Event("change"));
      out.views[o.value] = { f: fCalls(), meta: document.getElementById("meta").textContent };
    });
    sel.value = "-1"; sel.dispatchEvent(new Event("change"));
    out.back = fCalls();
  } catch (e) { out.exception = String(e && e.stack || e); }
  out.errors = document.getElementById("errors").textContent;
  var pre = document.createElement("pre");
  pre.id = "cprof-test";
  pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
})();
</script>
"""


def test_html_report_switches_between_the_processes(tmp_path):
    """The HTML report of a --follow-children profile opens on the sum (f: 40 calls)
    and its process switcher shows each process's own numbers; a process that wrote
    no profile is listed, not selectable."""
    import html as htmlmod

    from test_html import console_lines, page_data, run_browser
    script = write(tmp_path, "crash.py", CRASH.replace("return sum(range(1000))", "return [f(x) for x in range(40)]")
                   .replace("def ok():", "def f(x):\n    return x\ndef ok():"))
    out = tmp_path / "out.json"
    r = cprof("--follow-children", "-o", out, script, "fork", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    ok, crash, killed = map(int, r.stdout.split())
    page = tmp_path / "out.html"
    h = cprof("report", out, "--html", "-o", page, cwd=tmp_path)
    assert h.returncode == 0, h.stderr
    data = page_data(page.read_text())
    procs = {p["pid"]: p for p in data["processes"]}
    assert set(procs) == {load(out)["meta"]["pid"], ok, crash, killed}
    assert procs[crash]["view"] is None and procs[crash]["status"] == "missing"
    assert sum(f["calls"] for f in procs[ok]["view"]["functions"] if f["name"] == "__main__.f") == 40
    driven = tmp_path / "driven.html"
    driven.write_text(page.read_text().replace("</body>", SWITCH + "</body>"))
    b = run_browser(driven, tmp_path, "--dump-dom")
    assert b.returncode == 0, b.stderr[-3000:]
    assert console_lines(b.stderr) == [], console_lines(b.stderr)
    seen = json.loads(htmlmod.unescape(re.search(r'<pre id="cprof-test">(.*?)</pre>', b.stdout, re.DOTALL).group(1)))
    assert "exception" not in seen, seen["exception"]
    assert seen["errors"] == "" and seen["shown"]
    assert seen["options"][0][:2] == ["-1", "all 2 summed (2 missing)"]
    disabled = {int(text.split()[0]) for _, text, off in seen["options"][1:] if off}
    assert disabled == {crash, killed}
    assert seen["sum"] == ["40"] and seen["back"] == ["40"]
    by_pid = {int(seen["options"][int(i) + 1][1].split()[0]): v for i, v in seen["views"].items()}
    assert by_pid[ok]["f"] == ["40"] and by_pid[load(out)["meta"]["pid"]]["f"] == []
    assert "4 processes, wrote no profile: " in by_pid[ok]["meta"]


LINGERING = """\
import multiprocessing as mp, os, sys, threading, time
def linger():
    threading.Event().wait(30)   # a thread the worker's exit waits for
def target(done):
    threading.Thread(target=linger).start()   # not a daemon
    done.set()
if __name__ == "__main__":
    ctx = mp.get_context("fork")
    done = ctx.Event()
    p = ctx.Process(target=target, args=(done,))
    p.start()
    done.wait(30)
    t = time.monotonic()
    mine = f"out.{p.pid}.json"
    while not os.path.exists(mine) and time.monotonic() < t + 3:
        time.sleep(0.01)   # 3.10-3.13 write it as the bootstrap ends (3.14 once the threads end)
    p.terminate()
    p.join(60)
    print(p.exitcode, round(time.monotonic() - t, 1), os.path.exists(mine), flush=True)
"""


def test_a_worker_whose_profile_is_written_still_ends_by_sigterm_at_once(tmp_path):
    """A multiprocessing worker writes its profile as its bootstrap ends (before 3.14),
    and then waits for its non-daemon threads: a SIGTERM then ends it at once, as
    without cprof (it waited for the threads before: 30 s, Pool.terminate() as long)."""
    script = write(tmp_path, "linger.py", LINGERING)
    r = cprof("--follow-children", "-o", tmp_path / "out.json", script, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    code, took, written = r.stdout.decode().split()
    assert (code, written) == ("-15", "True") and float(took) < 15, r.stdout


def test_a_new_interpreter_uses_the_parents_calibration(tmp_path):
    """A followed new interpreter takes cprof's cost per event from the parent, which
    measured it moments ago, instead of measuring again (most of a child's start-up:
    3.12, callgrind, `python -c pass` as a followed child 519M -> 116M instructions)."""
    script = write(tmp_path, "parent.py", """\
import subprocess, sys
from cprof import calibration
mine = calibration._calibrated
code = "from cprof import calibration; print(sorted(calibration._calibrated.items()))"
out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60).stdout
print(out.strip() == str(sorted(mine.items())) and bool(mine), flush=True)
""")
    r = cprof("--follow-children", "-o", tmp_path / "out.json", script, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stdout.decode() == "True\n", r.stdout


def test_a_start_that_fails_leaves_nothing_behind(tmp_path, monkeypatch):
    """children.start() failing after it made its private folder (here: the imports the
    writer needs) removes the folder and leaves the environment as it was."""
    import tempfile

    from cprof import children
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    monkeypatch.delenv(children.ENV, raising=False)
    before = os.environ.get("PYTHONPATH")

    def fail():
        raise OSError("no room")
    monkeypatch.setattr(children, "_preload", fail)
    with pytest.raises(OSError):
        children.start(None, str(tmp_path / "out.json"), "wall", {})
    assert list(tmp_path.iterdir()) == []
    assert children._state.folder is None
    assert children.ENV not in os.environ and os.environ.get("PYTHONPATH") == before


GROUP = """\
import multiprocessing as mp, sys, time
def f(x):
    time.sleep(0.01)
    return x
if __name__ == "__main__":
    with mp.get_context(sys.argv[1]).Pool(2) as p:
        p.map(f, range(4))
        print("ready", flush=True)
        time.sleep(30)
"""


def test_without_output_a_signal_to_the_group_keeps_the_workers_profiles(tmp_path):
    """SIGTERM to the whole process group (as `timeout` or a service manager sends it)
    while spawn workers are idle: the workers write their profiles as the parent ends,
    and the parent's report (no -o: their folder is removed after it) waits for them,
    bounded, instead of calling them missing (before: 1 process summed, 2 missing)."""
    script = write(tmp_path, "group.py", GROUP)
    with open(tmp_path / "err.txt", "wb") as err:
        p = subprocess.Popen([sys.executable, "-m", "cprof", "--follow-children", str(script), "spawn"],
                             cwd=tmp_path, stdout=subprocess.PIPE, stderr=err,
                             start_new_session=True, env=_env())
        try:
            assert p.stdout.readline() == b"ready\n"
            os.killpg(p.pid, signal.SIGTERM)
            p.wait(timeout=60)
        finally:
            try:   # the pool's replacements for the ended workers, if any outlived the run
                os.killpg(p.pid, signal.SIGKILL)
            except OSError:
                pass
            p.wait()
            p.stdout.close()
    assert p.returncode == -signal.SIGTERM
    text = (tmp_path / "err.txt").read_text()
    summed = re.search(r"cprof: (\d+) processes summed \((\d+) missing\)", text)
    assert summed and int(summed.group(1)) >= 3, text   # the parent and its 2 workers
    assert "profile was not written" not in text, text
