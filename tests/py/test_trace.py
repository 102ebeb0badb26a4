"""--trace=PATTERN / Profile(trace=...): only the code the pattern names is profiled; an
untraced function called directly from traced code is one call of "NAME [untraced]"
holding everything it ran (less the traced code it called back), and the traced
functions' calls stay exact.

The numbers are checked with a counter the program itself advances (tick: the library
below adds known amounts), so what the untraced code cost, and the traced callers'
totals, are exact integers, equal with and without --trace.  And: the installed
program's own packages (a console script's distribution, a -m module's) are the
application in the report and for --trace=app."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
import threading

import pytest

from cprof import Counter, CprofError, Profile

MONITORING = sys.version_info >= (3, 12)

LIB = '''\
import threading


class Ticks(threading.local):
    n = 0


T = Ticks()                  # the tick counter, per thread: what each function "costs"


def inner(n):
    T.n += n
    return n


def work(n, cb):
    s = 0
    for i in range(n):
        s += inner(1)        # untraced, called from untraced code: never seen
        s += cb(i)           # back into traced code
    T.n += 10
    return s


def gen(n):
    for i in range(n):
        T.n += 1
        yield i


def boom(cb):
    inner(5)
    cb()                     # raises through this untraced frame


def recurse(k, cb):
    if k == 0:
        return cb(0)
    inner(1)
    return recurse(k - 1, cb)
'''

APP = '''\
import json
import tlib


def cb(i):
    tlib.T.n += 100
    return 1


def bad():
    tlib.T.n += 1000
    raise ValueError("boom")


def key(x):
    return -x


def hook(d):
    return d


def run():
    tlib.work(5, cb)
    list(tlib.gen(3))
    for _ in tlib.gen(2):
        pass
    try:
        tlib.boom(bad)
    except ValueError:
        pass
    tlib.recurse(3, cb)
    tlib.inner(7)            # first seen inside work: traced code calls it directly now
    sorted(range(5), key=key)
    json.loads('[{"a": 1}, {"b": [{"c": 2}]}]', object_hook=hook)
'''


@pytest.fixture
def mods(tmp_path, monkeypatch):
    (tmp_path / "tlib.py").write_text(LIB)
    (tmp_path / "tapp.py").write_text(APP)
    monkeypatch.syspath_prepend(str(tmp_path))
    for m in ("tlib", "tapp"):
        sys.modules.pop(m, None)
    import tapp
    import tlib
    yield tapp, tlib
    for m in ("tlib", "tapp"):
        sys.modules.pop(m, None)


def profile_of(tapp, tlib, trace, threads=0):
    tick = Counter("tick", read=lambda: tlib.T.n)
    prof = Profile([tick], compensate=False, trace=trace)
    with prof:
        if threads:
            ts = [threading.Thread(target=tapp.run) for _ in range(threads)]
            for t in ts:
                t.start()
            for t in ts:
                t.join()
        else:
            tapp.run()
    return prof.profile()


def by_name(p):
    out = {}
    for f in p["functions"]:
        out.setdefault(f["name"], f)
    return out


def edge(p, caller, callee):
    fns = by_name(p)
    for e in p["edges"]:
        if e["caller"] == fns[caller]["id"] and e["callee"] == fns[callee]["id"]:
            return e
    return None


def test_calls_and_untraced_callees_exact(mods):
    tapp, tlib = mods
    full = by_name(profile_of(tapp, tlib, None))
    p = profile_of(tapp, tlib, "tapp")
    fns = by_name(p)
    # every traced function: the same calls, self and total as with every function profiled
    for name in ("tapp.run", "tapp.cb", "tapp.bad", "tapp.key", "tapp.hook"):
        for k in ("calls", "primitive_calls"):
            assert fns[name][k] == full[name][k], (name, k)
        assert fns[name]["total"] == full[name]["total"], name
    assert fns["tapp.cb"]["calls"] == 6 and fns["tapp.key"]["calls"] == 5
    assert fns["tapp.hook"]["calls"] == 3 and fns["tapp.bad"]["calls"] == 1
    # untraced callees of run: one call each as run made them, holding what they ran
    u = " [untraced]"
    assert fns["tlib.work" + u]["calls"] == 1
    assert fns["tlib.work" + u]["self"]["tick"] == 5 + 10        # inner's 5 ticks included
    assert fns["tlib.work" + u]["total"]["tick"] == 15 + 500      # and the 5 callbacks
    assert edge(p, "tlib.work" + u, "tapp.cb")["calls"] == 5
    assert fns["tlib.recurse" + u]["calls"] == 1                 # its own recursion is inside it
    assert fns["tlib.recurse" + u]["self"]["tick"] == 3
    assert edge(p, "tlib.recurse" + u, "tapp.cb")["calls"] == 1
    assert fns["tlib.boom" + u]["self"]["tick"] == 5
    assert edge(p, "tlib.boom" + u, "tapp.bad")["total"]["tick"] == 1000
    assert fns["tlib.gen" + u]["calls"] == full["tlib.gen"]["calls"]  # resumes, as cProfile
    assert fns["tlib.gen" + u]["self"]["tick"] == 5
    assert fns["tlib.inner" + u]["calls"] == 1 and fns["tlib.inner" + u]["self"]["tick"] == 7
    assert edge(p, "tapp.run", "tlib.inner" + u)["calls"] == 1
    assert "tlib.inner" not in fns                               # never seen inside tlib
    assert edge(p, "builtins.sorted", "tapp.key")["calls"] == 5   # C callers of callbacks
    assert "json.loads" + u in fns and "json.decoder.JSONDecoder.decode" not in fns
    hook_callers = {e["caller"] for e in p["edges"] if e["callee"] == fns["tapp.hook"]["id"]}
    assert all(p["functions"][c]["name"].endswith(u) or p["functions"][c]["file"] == "~"
               for c in hook_callers)
    meta = p["meta"]["trace"]
    assert meta["patterns"] == ["tapp"]
    assert sorted(meta["untraced"]) == sorted(f["id"] for f in p["functions"]
                                              if f["name"].endswith(u))
    # conservation still holds: the untraced code is somebody's self
    assert sum(f["self"]["tick"] for f in p["functions"]) + p["meta"]["unattributed"]["tick"] \
        == p["meta"]["region"]["tick"]


def test_calls_equal_cprofiles(mods):
    """The traced functions' calls are cProfile's (its ncalls and primitive calls)."""
    import cProfile
    import pstats
    tapp, tlib = mods
    pr = cProfile.Profile()
    pr.enable()
    tapp.run()
    pr.disable()
    theirs = {(file, line): (nc, cc) for (file, line, _), (cc, nc, *_) in
              pstats.Stats(pr).stats.items()}  # type: ignore[attr-defined]
    p = profile_of(tapp, tlib, "tapp")
    traced = [f for f in p["functions"] if f["name"].startswith("tapp.")]
    assert len(traced) == 5
    for f in traced:
        assert (f["calls"], f["primitive_calls"]) == theirs[(f["file"], f["line"])], f["name"]


def test_threads(mods):
    tapp, tlib = mods
    p = profile_of(tapp, tlib, "tapp", threads=3)
    fns = by_name(p)
    assert fns["tapp.run"]["calls"] == 3 and fns["tapp.cb"]["calls"] == 18
    assert fns["tlib.work [untraced]"]["calls"] == 3
    assert fns["tlib.work [untraced]"]["self"]["tick"] == 45


def test_a_second_profile_classifies_afresh(mods):
    """The classes kept in the code objects belong to one profile: the next one with
    another pattern (or none) sees every function its own way."""
    tapp, tlib = mods
    profile_of(tapp, tlib, "tapp")
    p = profile_of(tapp, tlib, "tlib")
    fns = by_name(p)
    assert fns["tlib.inner"]["calls"] == 5 + 1 + 3 + 1
    assert fns["tapp.cb [untraced]"]["calls"] == 6   # called by traced tlib code
    full = by_name(profile_of(tapp, tlib, None))
    assert full["tlib.inner"]["calls"] == 10 and "tlib.inner [untraced]" not in full


def test_bad_pattern_is_one_sentence():
    with pytest.raises(CprofError, match="--trace needs a pattern"):
        Profile(trace=" , ")


def run_cli(*args, cwd=None, env=None):
    return subprocess.run([sys.executable, "-m", "cprof", *args], capture_output=True, text=True,
                          cwd=cwd, env=env, timeout=120)


SCRIPT = '''\
import json, re
def handle(i):
    m = re.match(r"(\\w+)=(\\d+)", f"k{i}={i}")
    return json.dumps({"k": m.group(1), "v": json.loads("[1, 2, 3]")})
for i in range(300):
    handle(i)
'''


def test_cli_trace_app(tmp_path):
    (tmp_path / "prog.py").write_text(SCRIPT)
    out = tmp_path / "out.json"
    r = run_cli("--trace=app", "-o", str(out), "prog.py", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    p = json.loads(out.read_text())
    fns = by_name(p)
    assert fns["__main__.handle"]["calls"] == 300
    assert fns["json.dumps [untraced]"]["calls"] == 300
    assert fns["json.loads [untraced]"]["calls"] == 300
    match = fns.get("re.match [untraced]") or fns["re.prefixmatch [untraced]"]  # 3.15's name
    assert match["calls"] == 300
    assert not any(f["name"].startswith("json.") and not f["name"].endswith("[untraced]")
                   and f["file"] != "~" for f in p["functions"])
    r = run_cli("report", str(out), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "json.dumps [untraced]" in r.stdout + r.stderr
    r = run_cli("export", str(out), "--format", "collapsed", "-o", str(tmp_path / "c.folded"),
                cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert re.search(r"__main__\.handle \([^)]*\);json\.dumps \[untraced\] \(",
                     (tmp_path / "c.folded").read_text())
    r = run_cli("--trace=", "prog.py", cwd=tmp_path)
    assert r.returncode == 2 and "--trace needs a pattern" in r.stderr
    assert "Traceback" not in r.stderr


# ---- an installed program: its own packages are the application -----------------------

PKG_MAIN = '''\
import json
from fakehelpers import helper


def main():
    total = 0
    for i in range(50):
        total += helper(json.dumps([i]))
    print(total)
'''


def fake_install(root):
    """A site-packages folder holding fakeapp (console script fakeapp = fakeapp.cli:main)
    and its second package fakehelpers, with the dist-info pip writes (RECORD,
    entry_points.txt; no top_level.txt, as wheels built by modern backends have none),
    and the console script pip would write in bin/."""
    site = root / "lib" / "site-packages"
    (site / "fakeapp").mkdir(parents=True)
    (site / "fakehelpers").mkdir()
    (site / "fakeapp" / "__init__.py").write_text("")
    (site / "fakeapp" / "cli.py").write_text(PKG_MAIN)
    (site / "fakeapp" / "__main__.py").write_text("from fakeapp.cli import main\nmain()\n")
    (site / "fakehelpers" / "__init__.py").write_text("def helper(s):\n    return len(s)\n")
    info = site / "fakeapp-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: fakeapp\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[console_scripts]\nfakeapp = fakeapp.cli:main\n")
    (info / "RECORD").write_text("\n".join([
        "fakeapp/__init__.py,,", "fakeapp/cli.py,,", "fakeapp/__main__.py,,",
        "fakehelpers/__init__.py,,", "fakeapp-1.0.dist-info/METADATA,,",
        "fakeapp-1.0.dist-info/RECORD,,", "../../bin/fakeapp,,"]) + "\n")
    (root / "bin").mkdir()
    script = root / "bin" / "fakeapp"
    script.write_text(f"#!{sys.executable}\nimport sys\nfrom fakeapp.cli import main\n"
                      "if __name__ == '__main__':\n    sys.exit(main())\n")
    script.chmod(0o755)
    return site, script


@pytest.mark.parametrize("how", ["console-script", "-m"])
def test_installed_program_is_the_application(tmp_path, how):
    site, script = fake_install(tmp_path)
    env = dict(os.environ, PYTHONPATH=str(site))
    # every line: the program's import of json (re, enum: cprof no longer imports them
    # for it) can fill the first 25
    args = ["--limit", "0"] + ([str(script)] if how == "console-script" else ["-m", "fakeapp"])
    r = run_cli(*args, cwd=tmp_path, env=env)
    assert r.returncode == 0, r.stderr
    assert r.stdout == "190\n"
    assert "fakeapp.cli.main" in r.stderr and "fakehelpers.helper" in r.stderr
    assert "[site-packages: fakeapp]" not in r.stderr
    assert "[site-packages: fakehelpers]" not in r.stderr
    out = tmp_path / "out.json"
    r = run_cli("--trace=app", "-o", str(out), *args, cwd=tmp_path, env=env)
    assert r.returncode == 0, r.stderr
    p = json.loads(out.read_text())
    fns = by_name(p)
    assert fns["fakehelpers.helper"]["calls"] == 50
    assert fns["json.dumps [untraced]"]["calls"] == 50
    assert any(str(site / "fakeapp") == a for a in p["meta"]["paths"]["app"])
    assert any(str(site / "fakehelpers") == a for a in p["meta"]["paths"]["app"])
    r = run_cli("report", str(out), "--html", "-o", str(tmp_path / "r.html"), cwd=tmp_path)
    assert r.returncode == 0, r.stderr


def test_a_plain_script_adds_no_application_folders(tmp_path):
    from cprof import trace
    (tmp_path / "prog.py").write_text("print(1)\n")
    assert trace.app_folders(script=str(tmp_path / "prog.py")) == []
    assert "importlib.metadata" not in sys.modules or True  # (imported by others in-process)
    r = subprocess.run([sys.executable, "-c", textwrap.dedent(f"""
        import sys
        from cprof import trace
        assert trace.app_folders(script={str(tmp_path / 'prog.py')!r}) == []
        assert "importlib.metadata" not in sys.modules, "metadata read for a plain script"
        """)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr


def test_module_patterns_name_submodules(tmp_path, monkeypatch):
    """A dotted module pattern (pkg.sub) is matched on the module's name, which only the
    running frame's globals give (the file says sub.py)."""
    pkg = tmp_path / "tpkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "other.py").write_text("def helper(x):\n    return x + 1\n")
    (pkg / "traced.py").write_text("from tpkg.other import helper\n\n\n"
                                   "def go(n):\n    return sum(helper(i) for i in range(n))\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    from tpkg import traced
    prof = Profile(["cpu"], compensate=False, trace="tpkg.traced")
    with prof:
        traced.go(4)
    fns = by_name(prof.profile())
    assert fns["tpkg.traced.go"]["calls"] == 1
    assert fns["tpkg.other.helper [untraced]"]["calls"] == 4
    for m in [m for m in sys.modules if m.startswith("tpkg")]:
        del sys.modules[m]


def test_the_same_profile_enabled_again(mods):
    """A Profile enabled twice starts each window with fresh per-thread trace state
    (its first window's was freed when it ended)."""
    tapp, tlib = mods
    tick = Counter("tick", read=lambda: tlib.T.n)
    prof = Profile([tick], compensate=False, trace="tapp")
    for _ in range(3):
        with prof:
            tapp.run()
        [bytearray(64) for _ in range(1000)]  # reuse what a freed state held
    fns = by_name(prof.profile())
    assert fns["tapp.run"]["calls"] == 3 and fns["tapp.cb"]["calls"] == 18
    assert fns["tlib.work [untraced]"]["calls"] == 3
    assert fns["tlib.work [untraced]"]["self"]["tick"] == 45
