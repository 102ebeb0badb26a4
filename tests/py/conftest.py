import json
import os
import shutil
import subprocess
import sys
import tempfile

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))

# A free-threaded build running with the GIL off (PYTHON_GIL=0; the CLI the tests start
# inherits it), where cprof refuses the pymalloc-* counters with one sentence (it would swap
# Python's allocator while other threads allocate): test_free_threading.py tests the refusal,
# and tests/run.sh runs the tests marked `pymalloc` again with the GIL on.
GIL_OFF = not getattr(sys, "_is_gil_enabled", lambda: True)()


def pytest_configure(config):
    config.addinivalue_line("markers", "pymalloc: uses the pymalloc-* counters, which cprof "
                            "refuses on a free-threaded build with the GIL off")


def pytest_collection_modifyitems(config, items):
    if not GIL_OFF:
        return
    skip = pytest.mark.skip(reason="the pymalloc-* counters are refused with the GIL off "
                            "(test_free_threading.py tests the refusal; run with PYTHON_GIL=1)")
    for item in items:
        if item.get_closest_marker("pymalloc"):
            item.add_marker(skip)
SCRIPTS = os.path.join(HERE, "scripts")

# cprof keeps its calibration in $XDG_CACHE_HOME/cprof across runs: the tests use a cache
# of their own (shared by this session's runs, removed at its end), never the user's.
_CACHE = tempfile.mkdtemp(prefix="cprof-test-cache-")
os.environ["XDG_CACHE_HOME"] = _CACHE
os.environ.pop("CPROF_NO_CACHE", None)


def pytest_unconfigure(config):
    shutil.rmtree(_CACHE, ignore_errors=True)


def can_run_as_nobody() -> str:
    """'' if `setpriv` can run this Python as nobody, else the reason."""
    if os.geteuid() != 0:
        return ""  # already unprivileged: the plain runs are the unprivileged runs
    if not shutil.which("setpriv"):
        return "setpriv is not installed (util-linux)"
    r = subprocess.run(["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups",
                        sys.executable, "-c", "import cprof"], capture_output=True, text=True)
    if r.returncode != 0:
        return ("user nobody cannot import cprof with this Python (%s); .ci/run makes the "
                "interpreter reachable with chmod o+x on its parent folders" % r.stderr.strip()[-200:])
    return ""


@pytest.fixture
def shared_dir():
    """A folder that user nobody can read and write (tmp_path is private to root)."""
    d = tempfile.mkdtemp(prefix="cprof-test-")
    os.chmod(d, 0o777)
    yield d
    shutil.rmtree(d, ignore_errors=True)


def run_cprof(args, cwd=None, user=None, env=None, check_rc=None):
    cmd = [sys.executable, "-m", "cprof"] + list(args)
    if user == "nobody" and os.geteuid() == 0:
        cmd = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"] + cmd
    full_env = dict(os.environ)
    full_env.update(env or {})
    r = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, env=full_env, timeout=300)
    if check_rc is not None:
        assert r.returncode == check_rc, f"exit {r.returncode}\nstdout:\n{r.stdout}\nstderr:\n{r.stderr}"
    return r


def load(path):
    """A profile file as JSON, its tree's packed columns (format version 3) as lists of
    ints (which version 3 also allows): what the tests read, change and write back."""
    with open(path) as f:
        prof = json.load(f)
    tree = prof.get("tree") if isinstance(prof, dict) else None
    if isinstance(tree, dict) and "nodes" in tree:
        from cprof import schema
        t = schema._tree(tree, [c["name"] for c in prof["counters"]], len(prof["functions"]), prof["version"])
        prof["tree"] = {k: list(v) if k not in ("self", "total") else {c: list(x) for c, x in v.items()}
                        for k, v in t.items()}
    return prof


def fn(profile, name):
    """The single function record called `name`."""
    found = [f for f in profile["functions"] if f["name"] == name]
    assert len(found) == 1, f"{name}: {len(found)} records; have {[f['name'] for f in profile['functions']]}"
    return found[0]
