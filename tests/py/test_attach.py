"""cprof attach PID (Python 3.14+, sys.remote_exec): a profile of a running process's
window with exact call counts, the process left as it was, and one sentence per
problem.

The exact count: the target counts its own calls of tick() (each entered holding
`gate`), and an audit hook on cprof's "cprof.attach" events takes `gate` and reads
the count at "starting" and "stopping", releasing it at "started" and "stopped":
no call of tick() can begin between a reading and the profile's start or stop, so
the profile's calls of tick() must equal the difference of the two readings."""
import glob
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time

import pytest

from conftest import can_run_as_nobody

NEW_ENOUGH = hasattr(sys, "remote_exec")
needs_remote_exec = pytest.mark.skipif(not NEW_ENOUGH, reason="cprof attach needs Python 3.14+ "
                                       "(sys.remote_exec)")
TIMEOUT = 60

TARGET = r'''
import json, os, sys, threading, time
state_path, quit_path = sys.argv[1], sys.argv[2]
count = 0
gate = threading.Lock()
marks = []


def tick():
    global count
    count += 1


def hook(event, args):
    if event == "cprof.attach":
        if args[0] in ("starting", "stopping"):
            gate.acquire()
            marks.append([args[0], count])
        else:
            gate.release()


sys.addaudithook(hook)


done = threading.Event()


def worker():
    while not done.is_set():
        with gate:
            tick()
        sum(range(20))


def fds():
    return sorted(os.listdir("/proc/self/fd"))


threads = [threading.Thread(target=worker, name=f"w{i}") for i in range(2)]
for t in threads:
    t.start()
before = {"fds": fds(), "tasks": len(os.listdir("/proc/self/task")),
          "threads": [t.name for t in threading.enumerate()]}
print("ready", flush=True)
while not os.path.exists(quit_path):
    time.sleep(0.005)
after = {"fds": fds(), "tasks": len(os.listdir("/proc/self/task")),
         "threads": [t.name for t in threading.enumerate()]}
done.set()
for t in threads:
    t.join()
tools = [sys.monitoring.get_tool(i) for i in range(6)]
with open(state_path, "w") as f:
    json.dump({"marks": marks, "before": before, "after": after, "tools": tools,
               "profile": [sys.getprofile(), threading.getprofile()] != [None, None]}, f)
print("bye", flush=True)
'''

# A target that only loops (for the errors): its main thread runs Python code often
LOOP = "import time\nprint('ready', flush=True)\nwhile True:\n    time.sleep(0.005)\n"


def _start(cmd, env=None, user=None):
    if user:
        cmd = ["setpriv", f"--reuid={user}", "--regid=nogroup", "--clear-groups", *cmd]
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    assert p.stdout.readline() == b"ready\n"
    return p


def _stop(p):
    if p.poll() is None:
        p.kill()
    return p.communicate(timeout=TIMEOUT)


def _attach(pid, *args, env=None, user=None, python=None):
    cmd = [python or sys.executable, "-m", "cprof", "attach", str(pid), *args]
    if user:
        cmd = ["setpriv", f"--reuid={user}", "--regid=nogroup", "--clear-groups", *cmd]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT, env=env)


def _calls(profile, name):
    return sum(f["calls"] for f in profile["functions"] if f["name"] == name)


@pytest.fixture
def tmp_env(tmp_path):
    """The attacher's environment, with a temporary folder of its own to check it
    leaves nothing there."""
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    return dict(os.environ, TMPDIR=str(tmp)), tmp


@needs_remote_exec
def test_attach_twice_exact_calls_target_unchanged(tmp_path, tmp_env):
    env, tmp = tmp_env
    script = tmp_path / "target.py"
    script.write_text(TARGET)
    state, quit = tmp_path / "state.json", tmp_path / "quit"
    target = _start([sys.executable, str(script), str(state), str(quit)])
    try:
        out1 = tmp_path / "one.json"
        r1 = _attach(target.pid, "--duration=1", "-o", str(out1), env=env)
        assert r1.returncode == 0, r1.stderr
        assert list(tmp.iterdir()) == []
        # again at once, the report this time
        r2 = _attach(target.pid, "--duration=0.5", "--all", "--limit=0", env=env)
        assert r2.returncode == 0, r2.stderr
        assert list(tmp.iterdir()) == []
        quit.touch()
        out, err = target.communicate(timeout=TIMEOUT)
    finally:
        _stop(target)
    assert target.returncode == 0
    assert b"ready\n" + out == b"ready\nbye\n"   # what it prints unprofiled ("ready" read above)
    assert err == b""                      # nothing printed in the target
    st = json.loads(state.read_text())
    assert [m[0] for m in st["marks"]] == ["starting", "stopping"] * 2
    (_, a0), (_, a1), (_, b0), (_, b1) = st["marks"]
    profile = json.loads(out1.read_text())
    assert a1 - a0 > 100                   # the workers ran during the window
    assert _calls(profile, "__main__.tick") == a1 - a0
    assert _calls(profile, "__main__.worker") == 0  # running since before: open, not called
    assert profile["meta"]["pid"] == target.pid and profile["meta"]["attached"] is True
    line = [ln for ln in r2.stdout.splitlines() if ln.rstrip().endswith("__main__.tick  (target.py:9)")]
    assert len(line) == 1, r2.stdout
    assert int(line[0].split()[0].replace(",", "")) == b1 - b0
    # left as it was: no thread, file or monitoring tool of cprof, no profile hook
    assert st["after"] == st["before"]
    assert st["tools"] == [None] * 6 or all(t in (None, "coverage.py") for t in st["tools"])
    assert st["profile"] is False


ASYNC_TARGET = r'''
import asyncio, os, sys
async def job():
    await asyncio.sleep(0.05)
async def main():
    print("ready", flush=True)
    k = 0
    while not os.path.exists(sys.argv[1]):
        tasks = [asyncio.create_task(job(), name=f"job-{k + i}") for i in range(5)]
        k += 5
        await asyncio.gather(*tasks)
asyncio.run(main())
'''


@needs_remote_exec
def test_attach_async_counts_calls_and_awaits(tmp_path, tmp_env):
    """attach --async: each job() is one call (its resume is not another), its wait an
    [await] child of at least the sleep, its task listed; a job already suspended when
    the window opens counts its first resume as its call."""
    from conftest import load
    env, tmp = tmp_env
    script, quit = tmp_path / "target.py", tmp_path / "quit"
    script.write_text(ASYNC_TARGET)
    target = _start([sys.executable, str(script), str(quit)])
    try:
        out = tmp_path / "a.json"
        r = _attach(target.pid, "--async", "--duration=1", "-c", "wall", "-o", str(out), env=env)
        assert r.returncode == 0, r.stderr
        quit.touch()
        target.communicate(timeout=TIMEOUT)
    finally:
        _stop(target)
    assert target.returncode == 0
    p = load(out)
    job = [f for f in p["functions"] if f["name"] == "__main__.job"][0]
    started = [t for t in p["tasks"] if t["name"].startswith("job-") and t["started"] is not None]
    done = [t for t in started if t["outcome"] == "returned"]
    assert len(done) >= 5, p["tasks"]
    # created in the window and started: a call each; at most the 5 of the round the
    # window opened in were suspended then (their first resume is their call)
    assert len(started) <= job["calls"] <= len(started) + 5, (job["calls"], len(started))
    assert job["resumes"] <= job["calls"]
    # every job that started and returned in the window waited its sleep (50 ms) there:
    # in job's total, and in [await] (the child of sleep, the coroutine that suspended)
    whole = len([t for t in done if t["created"] is not None]) * 0.05e9 * 0.999
    awaited = [f for f in p["functions"] if f["name"] == "[await]"][0]
    assert job["total"]["wall"] >= whole and awaited["total"]["wall"] >= whole


@needs_remote_exec
def test_blocked_main_thread_times_out_and_cleans_up_later(tmp_path, tmp_env):
    env, tmp = tmp_env
    script = tmp_path / "sleepy.py"
    script.write_text("import time\nprint('ready', flush=True)\ntime.sleep(1.5)\n"
                      "for _ in range(400):\n    time.sleep(0.005)\n")
    target = _start([sys.executable, str(script)])
    try:
        r = _attach(target.pid, "--timeout=0.3", "--duration=0.1", env=env)
        assert r.returncode == 2
        assert "did not reach a point where it can run Python code within 0.3 s" in r.stderr
        assert r.stderr.count("\n") == 1
        # the cancelled request is still there for the target, which removes it when it runs it
        deadline = time.monotonic() + 10
        while list(tmp.iterdir()) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert list(tmp.iterdir()) == []
        out, err = target.communicate(timeout=TIMEOUT)
    finally:
        _stop(target)
    assert (out, err, target.returncode) == (b"", b"", 0)


@needs_remote_exec
def test_target_exits_during_the_window(tmp_path, tmp_env):
    env, tmp = tmp_env
    quit = tmp_path / "quit"
    script = tmp_path / "short.py"
    script.write_text(f"import os, time\nprint('ready', flush=True)\n"
                      f"while not os.path.exists({str(quit)!r}):\n    time.sleep(0.005)\n")
    target = _start([sys.executable, str(script)])
    try:
        a = subprocess.Popen([sys.executable, "-m", "cprof", "attach", str(target.pid),
                              "--duration=20"], stderr=subprocess.PIPE, text=True, env=env)
        line = a.stderr.readline()
        assert line.startswith(f"cprof: attached to process {target.pid}"), line
        quit.touch()
        _, err = a.communicate(timeout=TIMEOUT)
    finally:
        _stop(target)
    assert a.returncode == 2
    assert err == (f"cprof: error: process {target.pid} exited during the profiling window; "
                   "no profile was written\n")
    assert list(tmp.iterdir()) == []


@needs_remote_exec
def test_ctrl_c_ends_the_window_one_attach_at_a_time(tmp_path, tmp_env):
    env, tmp = tmp_env
    target = _start([sys.executable, "-c", LOOP])
    try:
        a = subprocess.Popen([sys.executable, "-m", "cprof", "attach", str(target.pid),
                              "--duration=30", "-o", str(tmp_path / "p.json")],
                             stderr=subprocess.PIPE, text=True, env=env)
        assert a.stderr.readline().startswith("cprof: attached")
        _one_sentence(_attach(target.pid, env=env),   # a second attach meanwhile
                      f"another cprof attach is already profiling process {target.pid}")
        a.send_signal(signal.SIGINT)
        _, err = a.communicate(timeout=TIMEOUT)
        assert a.returncode == 0, err
        assert "cprof: wrote" in err
        assert json.loads((tmp_path / "p.json").read_text())["meta"]["duration_s"] < 25
        assert target.poll() is None   # still running
    finally:
        out, err = _stop(target)
    assert err == b"" and list(tmp.iterdir()) == []


# ---------------------------------------------------------------- errors, one sentence each

def _one_sentence(r, *parts):
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    assert r.stderr.startswith("cprof: error: ") and r.stderr.count("\n") == 1, r.stderr
    assert "Traceback" not in r.stderr
    for part in parts:
        assert part in r.stderr, r.stderr
    return r.stderr


@pytest.mark.skipif(NEW_ENOUGH, reason="the refusal of Pythons before 3.14")
def test_attacher_older_than_314():
    r = _attach(1)
    _one_sentence(r, "cprof attach needs Python 3.14 or newer", "sys.remote_exec")


@needs_remote_exec
def test_no_such_process():
    pid_max = int(open("/proc/sys/kernel/pid_max").read())
    _one_sentence(_attach(pid_max + 1), f"no process {pid_max + 1}")
    _one_sentence(_attach("abc"), "'abc' is not a process id")


@needs_remote_exec
def test_not_python():
    p = subprocess.Popen(["sleep", "30"])
    try:
        _one_sentence(_attach(p.pid), f"process {p.pid} is not a Python 3.14+ process")
    finally:
        p.kill()
        p.wait()


def _other_pythons():
    """Interpreters of other minor versions found on this machine: {(major, minor): path}."""
    found = {}
    candidates = [shutil.which(f"python3.{m}") for m in range(8, 20)]
    candidates += glob.glob("/root/.pyenv/versions/*/bin/python3")
    candidates += glob.glob("/opt/cpython/3.1?/bin/python3.1?")
    for c in candidates:
        if not c or "/shims/" in c or not os.access(c, os.X_OK):
            continue
        m = re.search(r"python(3\.\d+)$", os.path.realpath(c)) or re.search(r"/(3\.\d+)\.\d+/", c)
        if not m:
            continue
        v = tuple(int(x) for x in m.group(1).split("."))
        if v != sys.version_info[:2]:
            found.setdefault(v, c)
    return found


@needs_remote_exec
def test_other_python_versions():
    others = _other_pythons()
    if not others:
        pytest.skip("no Python of another minor version on this machine")
    env = {k: v for k, v in os.environ.items() if k != "PYTHON_GIL"}   # not for other builds
    for version, python in sorted(others.items())[-2:]:  # an older one and the newest
        p = _start([python, "-c", LOOP], env=env)
        try:
            r = _attach(p.pid)
        finally:
            _stop(p)
        text = _one_sentence(r, f"runs Python {version[0]}.{version[1]}")
        if version < (3, 14):
            assert "needs Python 3.14 or newer in the target" in text
        else:
            assert f"run cprof attach with Python {version[0]}.{version[1]}" in text


@needs_remote_exec
def test_other_build_of_the_same_version():
    import sysconfig
    ft = bool(sysconfig.get_config_var("Py_GIL_DISABLED"))
    v = "%d.%d" % sys.version_info[:2]
    other = shutil.which(f"python{v}" if ft else f"python{v}t") or next(
        iter(glob.glob(f"/opt/cpython/{v}/bin/python{v}" if ft else f"/opt/cpython/{v}t/bin/python{v}t")),
        None)
    if other is None:
        pytest.skip(f"no {'default' if ft else 'free-threaded'} build of Python {v} here")
    env = {k: val for k, val in os.environ.items() if k != "PYTHON_GIL"}
    p = _start([other, "-c", LOOP], env=env)
    try:
        r = _attach(p.pid)
    finally:
        _stop(p)
    _one_sentence(r, f"runs the {'default (with the GIL)' if ft else 'free-threaded'} build of Python {v}",
                  "run cprof attach with the target's build")


@needs_remote_exec
def test_cprof_not_importable_in_target(tmp_env):
    env, tmp = tmp_env
    p = _start([sys.executable, "-S", "-c", LOOP])   # -S: no site-packages, so no cprof
    try:
        r = _attach(p.pid, env=env)
    finally:
        out, err = _stop(p)
    _one_sentence(r, "cprof cannot be imported in process", sys.executable, "sys.path",
                  "install cprof into that interpreter's environment")
    assert err == b"" and list(tmp.iterdir()) == []


@needs_remote_exec
@pytest.mark.parametrize("how", ["env", "-X"])
def test_remote_debugging_disabled(how):
    env = dict(os.environ)
    if how == "env":
        cmd = [sys.executable, "-c", LOOP]
        env["PYTHON_DISABLE_REMOTE_DEBUG"] = "1"
    else:
        cmd = [sys.executable, "-X", "disable-remote-debug", "-c", LOOP]
    p = _start(cmd, env=env)
    try:
        r = _attach(p.pid)
    finally:
        _stop(p)
    _one_sentence(r, f"remote debugging is disabled in process {p.pid}",
                  "PYTHON_DISABLE_REMOTE_DEBUG" if how == "env" else "-X disable-remote-debug",
                  "restart it without")


@needs_remote_exec
def test_malloc_counters_need_the_interposer():
    p = _start([sys.executable, "-c", LOOP])
    try:
        r = _attach(p.pid, "--counter=wall,malloc-bytes")
    finally:
        _stop(p)
    _one_sentence(r, "'malloc-bytes' needs cprof's malloc interposer", "pymalloc-bytes")


@needs_remote_exec
@pytest.mark.skipif(os.geteuid() != 0, reason="runs the attacher as nobody against root's process")
def test_ptrace_other_user():
    why = can_run_as_nobody()
    if why:
        pytest.skip(why)
    p = _start([sys.executable, "-c", LOOP])
    try:
        r = _attach(p.pid, user="nobody")
    finally:
        _stop(p)
    _one_sentence(r, f"cannot attach to process {p.pid}", "belongs to user root",
                  "CAP_SYS_PTRACE", "run cprof attach as that user")


@needs_remote_exec
@pytest.mark.skipif(os.geteuid() != 0, reason="root attaching to another user's process")
def test_root_attaches_to_another_users_process(tmp_path, tmp_env):
    why = can_run_as_nobody()
    if why:
        pytest.skip(why)
    env, tmp = tmp_env
    tmp.chmod(0o700)
    if not os.stat("/tmp").st_mode & 0o001:
        pytest.skip("/tmp is closed to other users")
    p = _start([sys.executable, "-c", LOOP], user="nobody")
    try:
        closed = _attach(p.pid, "--duration=0.2", env=env)   # a TMPDIR nobody cannot enter
        r = _attach(p.pid, "--duration=0.2", "-o", str(tmp_path / "p.json"),
                    env=dict(os.environ, TMPDIR="/tmp"))
    finally:
        out, err = _stop(p)
    _one_sentence(closed, "runs as nobody (uid", "which cannot enter", "set TMPDIR")
    assert r.returncode == 0, r.stderr
    assert json.loads((tmp_path / "p.json").read_text())["meta"]["pid"] == p.pid
    assert err == b""


@needs_remote_exec
def test_target_already_profiled_by_cprof(tmp_path, tmp_env):
    env, tmp = tmp_env
    script = tmp_path / "loop.py"
    script.write_text(LOOP)
    p = _start([sys.executable, "-m", "cprof", str(script)])
    try:
        r = _attach(p.pid, env=env)
    finally:
        _stop(p)
    _one_sentence(r, f"process {p.pid} is already profiled by cprof")
    assert list(tmp.iterdir()) == []


@needs_remote_exec
def test_bad_duration_and_timeout():
    _one_sentence(_attach(os.getpid(), "--duration=0"), "--duration=0.0 is not a length of time")
    _one_sentence(_attach(os.getpid(), "--timeout=-1"), "--timeout=-1.0 is not a length of time")
