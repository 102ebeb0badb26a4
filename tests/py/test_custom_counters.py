"""Counters users define: Counter (a Python callable), UserCounter (add() from
Python, read in C), C plugins (plugin:/path/lib.so) and entry points.  Exact
attribution: the counts are made by the test, so every number is known."""
import os
import shutil
import subprocess
import sys
import textwrap
import threading
import warnings

import pytest

import cprof
from conftest import fn, load, run_cprof

HERE = os.path.dirname(os.path.abspath(__file__))
EXAMPLE_PLUGIN = os.path.join(HERE, "..", "..", "examples", "plugin", "launches.c")


def named(prof, suffix):
    found = [f for f in prof["functions"] if f["name"].rsplit(".", 1)[-1] == suffix]
    assert len(found) == 1, [f["name"] for f in prof["functions"]]
    return found[0]


def conserved(prof):
    for c in prof["counters"]:
        n = c["name"]
        assert sum(f["self"][n] for f in prof["functions"]) + prof["meta"]["unattributed"][n] \
            == prof["meta"]["region"][n]


def test_counter_and_user_counter_attribute_exactly():
    hits = [0]
    queries = cprof.Counter("queries", read=lambda: hits[0], unit="queries")
    sent = cprof.UserCounter("bytes_sent", unit="B")

    def query_db():
        for _ in range(30):
            hits[0] += 1

    def send():
        for _ in range(4):
            sent.add(1500)

    def idle():
        return sum(range(100))

    def handle():
        query_db()
        send()
        idle()

    with cprof.Profile(counters=["wall", queries, sent]) as prof:
        handle()
    p = prof.profile()
    assert [c["name"] for c in p["counters"]] == ["wall", "queries", "bytes_sent"]
    assert [c["unit"] for c in p["counters"]] == ["ns", "queries", "B"]
    q, s, i, h = named(p, "query_db"), named(p, "send"), named(p, "idle"), named(p, "handle")
    assert q["self"]["queries"] == 30 and q["total"]["queries"] == 30
    assert h["total"]["queries"] == 30 and h["self"]["queries"] == 0
    assert i["total"]["queries"] == 0 and i["total"]["bytes_sent"] == 0
    assert s["self"]["bytes_sent"] == 6000          # add() is not an entry of its own
    assert h["total"]["bytes_sent"] == 6000
    assert not [f for f in p["functions"] if f["name"].endswith("add")]
    assert p["meta"]["tracer_share"]["per_event"]["queries"] == 0
    conserved(p)


def test_user_counter_is_per_thread():
    c = cprof.UserCounter("items")
    seen = {}

    def work(n):
        for _ in range(n):
            c.add(2)
        seen[n] = c.value

    with cprof.Profile(counters=[c]) as prof:
        ts = [threading.Thread(target=work, args=(n,)) for n in (10, 20, 30)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
    assert seen == {10: 20, 20: 40, 30: 60}   # each thread's own total
    w = named(prof.profile(), "work")
    assert (w["calls"], w["self"]["items"]) == (3, 120)


def test_user_counters_are_not_limited_per_process():
    """UserCounters hold their own per-thread totals: created and dropped in any
    number across profiles (there were 63 slots per process, never recycled), each
    starts at 0 and counts exactly."""
    import gc
    for i in range(200):
        c = cprof.UserCounter(f"n{i}")
        assert c.value == 0
        with cprof.Profile(counters=[c]) as prof:
            for _ in range(i % 7 + 1):
                c.add(3)
        assert c.value == 3 * (i % 7 + 1)
        assert prof.profile()["meta"]["region"][f"n{i}"] == 3 * (i % 7 + 1)
        del c, prof
        gc.collect()
    live = [cprof.UserCounter(f"live{i}") for i in range(100)]   # many at once too
    for i, c in enumerate(live):
        c.add(i)
    assert [c.value for c in live] == list(range(100))


def test_builtin_counters_come_from_the_registry():
    """What Python knows of the built-in counters is what the C registry says."""
    rows = cprof._cprof.builtin_counters()
    names = [r["name"] for r in rows]
    assert names[:3] == ["cpu", "wall", "ctxsw"]
    assert "pymalloc-bytes" in names and "malloc-bytes" in names
    assert len(set(names)) == len(names)
    for r in rows:
        assert set(r) == {"name", "unit", "description", "compensable", "time", "elapsed",
                          "takes_argument", "needs_preload"}
        assert r["needs_preload"] == (r["name"] in ("malloc-bytes", "malloc-calls", "free-bytes",
                                                    "free-calls"))
        assert r["takes_argument"] is False
    cpu, wall = rows[0], rows[1]
    assert (cpu["compensable"], cpu["time"], cpu["elapsed"]) == (True, True, False)
    assert (wall["compensable"], wall["time"], wall["elapsed"]) == (True, True, True)
    with pytest.raises(cprof.CprofError, match="counter 'wall' takes no argument; write just "
                                               "'wall'"):
        cprof.Profile(counters="wall:x")


@pytest.mark.parametrize("bad, why", [
    ("down", "went down from 5 to 2"),
    ("raise", "raised ZeroDivisionError"),
    ("str", "returned '7', not an int"),
    ("negative", "returned -1, not a count"),
])
def test_bad_reading_stops_the_counter_with_a_warning(bad, why):
    state = {"n": 0}

    def read():
        state["n"] += 1
        if state["n"] <= 5:
            return state["n"]        # 1..5: fine
        if bad == "raise":
            return 1 / 0
        return {"down": 2, "str": "7", "negative": -1}[bad]

    c = cprof.Counter("flaky", read=read)
    out = []

    def culprit():
        for _ in range(3):
            out.append(len(out))

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with cprof.Profile(counters=["wall", c]) as prof:
            culprit()
            culprit()
    assert out == list(range(6))                  # the program ran on, unaffected
    msgs = [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]
    assert len(msgs) == 1, msgs
    assert "counter 'flaky' stopped in" in msgs[0] and why in msgs[0], msgs[0]
    p = prof.profile()
    assert max(f["total"]["flaky"] for f in p["functions"]) <= 5   # held, never negative
    conserved(p)


def test_counter_type_errors():
    with pytest.raises(TypeError, match="needs a callable"):
        cprof.Counter("x", read=3)
    with pytest.raises(ValueError, match="without ','"):
        cprof.UserCounter("a,b")
    with pytest.raises(ValueError, match="only goes up"):
        cprof.UserCounter("y").add(-1)
    with pytest.raises(cprof.CprofError, match="given twice"):
        cprof.Profile(counters=[cprof.UserCounter("dup"), cprof.UserCounter("dup")])
    with pytest.raises(cprof.CprofError, match="neither a counter name"):
        cprof.Profile(counters=["wall", 3.5])


def test_decorator_profiles_each_call_and_nests():
    c = cprof.UserCounter("ticks")
    prof = cprof.Profile(counters=[c])

    @prof
    def countdown(n):
        c.add(1)
        if n:
            countdown(n - 1)

    countdown(3)
    countdown(1)
    f = named(prof.profile(), "countdown")
    assert f["calls"] == 4 + 2       # profiling starts before the outermost call
    assert f["total"]["ticks"] == 6  # recursion counted once, at the outermost frame


def test_second_running_profile_is_a_clear_error():
    a, b = cprof.Profile(["wall"]), cprof.Profile(["wall"])
    with a:
        with pytest.raises(cprof.CprofError, match="already running"):
            b.enable()
    with b:                          # fine once the first one stopped
        pass


def test_get_include_has_the_header():
    assert os.path.isfile(os.path.join(cprof.get_include(), "cprof", "counter.h"))


def build(source, out, tmp_path):
    cc = shutil.which("cc") or shutil.which("gcc")
    if not cc:
        pytest.skip("no C compiler")
    subprocess.run([cc, "-shared", "-fPIC", "-O2", "-Wall", "-Werror", "-I", cprof.get_include(),
                    source, "-o", str(out)], check=True)
    return str(out)


def test_example_plugin_through_the_cli(tmp_path):
    """The example plugin, built as a user would (cprof.get_include()), counts
    exactly: 30 + 12 launches, on the functions that made them."""
    so = build(EXAMPLE_PLUGIN, tmp_path / "liblaunches.so", tmp_path)
    script = tmp_path / "launch.py"
    script.write_text(textwrap.dedent("""
        import ctypes, sys
        lib = ctypes.CDLL(sys.argv[1])
        def launcher(n):
            for _ in range(n):
                lib.example_launch()
        def quiet():
            return 1
        def outer():
            launcher(30)
            launcher(12)
            quiet()
        outer()
        sys.exit(4)
    """))
    out = tmp_path / "p.json"
    run_cprof([f"--counter=wall,plugin:{so}", "-o", str(out), str(script), so], check_rc=4)
    p = load(out)
    assert [c["name"] for c in p["counters"]] == ["wall", "launches"]
    assert fn(p, "__main__.launcher")["total"]["launches"] == 42
    assert fn(p, "__main__.launcher")["calls"] == 2
    assert fn(p, "__main__.outer")["total"]["launches"] == 42
    assert fn(p, "__main__.outer")["self"]["launches"] == 0
    assert fn(p, "__main__.quiet")["total"]["launches"] == 0


@pytest.mark.parametrize("case, expect", [
    ("missing", "cannot load counter plugin"),
    ("no_symbol", "is not a cprof counter plugin"),
    ("bad_abi", "was built for counter ABI"),
])
def test_bad_plugins_are_one_sentence(tmp_path, case, expect):
    if case == "missing":
        so = str(tmp_path / "nope.so")
    elif case == "no_symbol":
        src = tmp_path / "x.c"
        src.write_text("int f(void); int f(void) { return 1; }\n")
        so = build(str(src), tmp_path / "libx.so", tmp_path)
    else:
        src = tmp_path / "abi.c"
        src.write_text('#include <cprof/counter.h>\n'
                       'const struct cprof_plugin cprof_plugin = {CPROF_COUNTER_ABI + 1, 0, 0};\n')
        so = build(str(src), tmp_path / "libabi.so", tmp_path)
    script = tmp_path / "s.py"
    script.write_text("print('never runs')\n")
    r = run_cprof([f"--counter=plugin:{so}", str(script)])
    assert r.returncode == 2
    assert r.stdout == ""
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("cprof: error:") and expect in lines[0], r.stderr
    assert "Traceback" not in r.stderr


def test_entry_point_counter(tmp_path):
    """A package exposes a counter in the cprof.counters entry-point group; the CLI
    finds it by name."""
    (tmp_path / "mycounters.py").write_text(
        "import cprof\nREQUESTS = cprof.UserCounter('requests', unit='requests')\n")
    dist = tmp_path / "mycounters-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: mycounters\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[cprof.counters]\nrequests = mycounters:REQUESTS\n")
    script = tmp_path / "app.py"
    script.write_text(textwrap.dedent("""
        from mycounters import REQUESTS
        def serve(n):
            for _ in range(n):
                REQUESTS.add()
        serve(7)
    """))
    out = tmp_path / "p.json"
    env = {"PYTHONPATH": str(tmp_path)}
    run_cprof(["--counter=wall,requests", "-o", str(out), str(script)], env=env, check_rc=0)
    p = load(out)
    assert fn(p, "__main__.serve")["self"]["requests"] == 7


def test_readme_example_runs_as_written(tmp_path):
    readme = open(os.path.join(HERE, "..", "..", "README.md")).read()
    section = readme[readme.index("### Counters you define"):]
    code = section[section.index("```python") + len("```python"):]
    code = code[:code.index("```")]
    r = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    p = load(tmp_path / "profile.json")
    assert fn(p, "__main__.query")["self"]["queries"] == 10
    assert fn(p, "__main__.handle_requests")["self"]["bytes_sent"] == 15000
    assert "sorted by queries" in r.stderr
