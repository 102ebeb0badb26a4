"""The command line, run as a subprocess of the Python that runs pytest:
`python -m cprof ...`.  Target scripts are in tests/py/scripts/ (introspect.py,
behave.py, threads_nojoin.py) or written to tmp_path."""
from __future__ import annotations

import collections
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

SCRIPTS = Path(__file__).resolve().parent / "scripts"
INTROSPECT = SCRIPTS / "introspect.py"
BEHAVE = SCRIPTS / "behave.py"
THREADS = SCRIPTS / "threads_nojoin.py"

# co_qualname exists from 3.11 on; before that a method is named by its function name only.
METHOD = "__main__.Klass.method" if sys.version_info >= (3, 11) else "__main__.method"
COUNTERS = ("cpu", "wall", "ctxsw")
UNITS = {"cpu": "ns", "wall": "ns", "ctxsw": "switches"}


# ---------------------------------------------------------------- helpers

def _env() -> dict:
    env = dict(os.environ)
    for var in ("PYTHONPATH", "PYTHONSTARTUP", "PYTHONINSPECT", "PYTHONWARNINGS", "PYTHONSAFEPATH"):
        env.pop(var, None)
    env["PYTHONIOENCODING"] = "utf-8"
    return env


def run_py(*args, cwd=None, input: bytes | None = None, timeout: float = 30) -> subprocess.CompletedProcess:
    """[sys.executable, *args]; stdout stays bytes, stderr is decoded."""
    proc = subprocess.run([sys.executable, *map(str, args)], cwd=cwd, input=input,
                          stdin=None if input is not None else subprocess.DEVNULL,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=_env(), timeout=timeout)
    proc.stderr = proc.stderr.decode("utf-8", "replace")
    return proc


def cprof(*args, **kw) -> subprocess.CompletedProcess:
    return run_py("-m", "cprof", *args, **kw)


def load(path) -> dict:
    with open(path) as f:
        return json.load(f)


class _ByName(dict):
    def __getitem__(self, name):
        found = super().__getitem__(name)
        assert len(found) == 1, f"{len(found)} functions named {name!r}: {found}"
        return found[0]


def by_name(profile: dict) -> dict:
    """name -> function record; looking up a name that two functions share fails
    (before 3.11 a method is named without its class, so `threading.__init__` repeats)."""
    out = _ByName()
    for f in profile["functions"]:
        out.setdefault(f["name"], []).append(f)
    return out


def edge(profile: dict, caller: str, callee: str) -> dict:
    fns = by_name(profile)
    found = [e for e in profile["edges"]
             if e["caller"] == fns[caller]["id"] and e["callee"] == fns[callee]["id"]]
    assert len(found) == 1, (caller, callee, found)
    return found[0]


def one_sentence(proc: subprocess.CompletedProcess, *needles: str) -> str:
    """Exit 2 and stderr is exactly one 'cprof: error:' line naming every needle."""
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("cprof: error: "), lines[0]
    for n in needles:
        assert n in lines[0], (n, lines[0])
    return lines[0]


def line_of(path: Path, text: str) -> int:
    for i, line in enumerate(path.read_text().splitlines(), 1):
        if line.lstrip().startswith(text):
            return i
    raise AssertionError(f"{text!r} not in {path}")


def no_temp_files(folder: Path) -> None:
    assert list(folder.glob(".cprof-*.tmp")) == []


def assert_valid_profile(profile: dict, counters=("cpu", "wall")) -> None:
    """The version-3 format (as loaded): exact keys, types and cross-references."""
    assert profile["version"] == 3
    assert [c["name"] for c in profile["counters"]] == list(counters)
    for c in profile["counters"]:
        assert c["unit"] == UNITS[c["name"]]
        assert isinstance(c["description"], str) and c["description"]
    ids = [f["id"] for f in profile["functions"]]
    assert ids == list(range(len(ids)))
    for f in profile["functions"]:
        assert {"id", "name", "file", "line", "calls", "primitive_calls", "self", "total"} <= f.keys()
        assert isinstance(f["name"], str) and isinstance(f["file"], str)
        for k in ("line", "calls", "primitive_calls"):
            assert type(f[k]) is int and f[k] >= 0, (f, k)
        assert f["primitive_calls"] <= f["calls"]
        for k in ("self", "total"):
            assert list(f[k]) == list(counters), f  # keys in command-line order
            assert all(type(v) is int and v >= 0 for v in f[k].values()), f
    for e in profile["edges"]:
        assert 0 <= e["caller"] < len(ids) and 0 <= e["callee"] < len(ids), e
        assert type(e["calls"]) is int and e["calls"] >= 1
        assert list(e["total"]) == list(counters)
        assert all(type(v) is int for v in e["total"].values())
    meta = profile["meta"]
    for k in ("region", "unattributed"):
        assert list(meta[k]) == list(counters)
        assert all(type(v) is int for v in meta[k].values())
    assert type(meta["threads"]) is int and meta["threads"] >= 1


def assert_conserved(profile: dict) -> None:
    meta = profile["meta"]
    for c in profile["counters"]:
        n = c["name"]
        self_sum = sum(f["self"][n] for f in profile["functions"])
        assert self_sum + meta["unattributed"][n] == meta["region"][n], n


def report_rows(text: str) -> list[dict]:
    """The table of a text report: one dict per function row."""
    lines = text.splitlines()
    head = next(i for i, line in enumerate(lines) if line.lstrip().startswith("calls ") and line.endswith("function"))
    at = lines[head].index("function")
    rows = []
    for line in lines[head + 1:]:
        if not line.strip():
            break
        cells = re.split(r"\s{2,}", line[:at].strip())
        name, where = line[at:].rsplit("  (", 1)
        assert where.endswith(")"), line
        rows.append({"name": name, "id": (name, where[:-1]), "calls": cells[0], "cells": cells[1:],
                     "line": line})
    return rows


# ---------------------------------------------------------------- the script runs as python runs it

def test_script_sees_what_python_gives_it():
    args = ["introspect.py", "x y", "\u00fc", "-o", "out.json", "--counter=nosuch"]
    r = cprof(*args, cwd=SCRIPTS)
    assert r.returncode == 0, r.stderr
    info = json.loads(r.stdout.splitlines()[0])
    # everything after the script is the script's, even what looks like cprof's options
    assert info["argv"] == args
    assert info["path0"] == str(SCRIPTS)
    assert info["file"] == str(INTROSPECT)  # absolute, as python gives it
    assert info["name"] == "__main__"
    assert info["main_is_me"] is True
    assert info["helper"] == "sibling-helper-imported"
    assert not (SCRIPTS / "out.json").exists()


def test_script_path0_is_its_folder_not_the_cwd(tmp_path):
    r = cprof(INTROSPECT, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    info = json.loads(r.stdout.splitlines()[0])
    assert info["path0"] == str(SCRIPTS)
    assert info["argv"] == [str(INTROSPECT)]


@pytest.mark.parametrize("where", ["script folder", "elsewhere"])
def test_stdout_is_byte_identical_to_python(tmp_path, where):
    cwd = SCRIPTS if where == "script folder" else tmp_path
    script = "introspect.py" if where == "script folder" else str(INTROSPECT)
    args = [script, "a", "b c", "\u2713"]
    plain = run_py(*args, cwd=cwd)
    profiled = cprof(*args, cwd=cwd)
    assert plain.returncode == profiled.returncode == 0, profiled.stderr
    assert profiled.stdout == plain.stdout
    assert profiled.stdout.endswith(b"\x00\x01\xfe\xff raw bytes, no newline at the end")
    # the script's stderr passes through; the report follows it on stderr, never on stdout
    assert profiled.stderr.startswith(plain.stderr)
    assert plain.stderr == "introspect: a line on stderr\n"
    assert "sorted by cpu self" in profiled.stderr and b"sorted by" not in profiled.stdout


def test_stdin_passes_through():
    data = b"line one\nline two \xff\x00 end"
    plain = run_py(INTROSPECT, "stdin", input=data)
    profiled = cprof(INTROSPECT, "stdin", input=data)
    assert profiled.returncode == 0, profiled.stderr
    assert f"stdin: {len(data)} {data.hex()}".encode() in profiled.stdout.splitlines()
    assert profiled.stdout == plain.stdout


# ---------------------------------------------------------------- exit codes and exceptions

@pytest.mark.parametrize("mode, code", [("ok", 0), ("exitnone", 0), ("exit3", 3), ("exitmsg", 1)])
def test_exit_code_passes_through(tmp_path, mode, code):
    out = tmp_path / "p.json"
    assert run_py(BEHAVE, mode).returncode == code  # what python itself does
    r = cprof("-o", out, BEHAVE, mode)
    assert r.returncode == code, r.stderr
    assert r.stdout == f"behave: {mode}\n".encode()
    profile = load(out)
    assert_valid_profile(profile)
    assert profile["meta"]["exit_code"] == code
    fns = by_name(profile)
    if mode.startswith("exit"):
        assert fns["__main__.leave"]["calls"] == 1
        assert fns["sys.exit"]["calls"] == 1
    no_temp_files(tmp_path)


def test_exit_with_message_prints_it_and_exits_1(tmp_path):
    r = cprof(BEHAVE, "exitmsg")
    assert r.returncode == 1
    assert r.stderr.splitlines()[-1] == "goodbye: cprof test message"
    assert "Traceback" not in r.stderr
    r = cprof("-o", tmp_path / "p.json", BEHAVE, "exitmsg")
    assert r.returncode == 1
    assert "goodbye: cprof test message" in r.stderr.splitlines()


@pytest.mark.parametrize("with_output", [True, False])
def test_uncaught_exception_prints_pythons_traceback(tmp_path, with_output):
    out = tmp_path / "p.json"
    plain = run_py(BEHAVE, "fail")
    r = cprof(*(["-o", out] if with_output else []), BEHAVE, "fail")
    assert plain.returncode == 1 and r.returncode == 1
    assert r.stdout == plain.stdout == b"behave: fail\n"
    assert r.stderr.splitlines()[-1] == "ValueError: bad thing 42"
    assert "cprof/cli.py" not in r.stderr and "cprof" + os.sep not in r.stderr
    # the traceback is the one python prints, frame for frame
    assert plain.stderr.startswith("Traceback (most recent call last):\n")
    assert r.stderr.endswith(plain.stderr)
    if with_output:
        profile = load(out)
        assert_valid_profile(profile)
        fns = by_name(profile)
        assert fns["__main__.fail"]["calls"] == 1
        assert fns["__main__.fail"]["line"] == line_of(BEHAVE, "def fail")
        assert profile["meta"]["exit_code"] == 1
        no_temp_files(tmp_path)


def test_the_scripts_own_excepthook_is_used(tmp_path):
    script = tmp_path / "hooked.py"
    script.write_text("import sys\n"
                      "def hook(t, v, tb):\n"
                      "    print('custom hook saw:', t.__name__, v, file=sys.stderr)\n"
                      "sys.excepthook = hook\n"
                      "raise RuntimeError('oops')\n")
    plain = run_py(script)
    r = cprof(script)
    assert plain.stderr == "custom hook saw: RuntimeError oops\n"
    assert r.returncode == plain.returncode == 1
    assert r.stderr.endswith(plain.stderr)
    assert "Traceback" not in r.stderr


def test_keyboard_interrupt_kills_with_sigint_like_python(tmp_path):
    out = tmp_path / "p.json"
    plain = run_py(BEHAVE, "interrupt")
    r = cprof("-o", out, BEHAVE, "interrupt")
    assert plain.returncode == -signal.SIGINT
    assert r.returncode == -signal.SIGINT, r.stderr
    assert r.stderr.splitlines()[-1] == "KeyboardInterrupt"
    assert r.stderr.endswith(plain.stderr)
    assert "cprof/cli.py" not in r.stderr
    profile = load(out)
    assert_valid_profile(profile)
    assert by_name(profile)["__main__.interrupt"]["calls"] == 1
    no_temp_files(tmp_path)


def test_ctrl_c_while_running_still_writes_the_profile(tmp_path):
    out = tmp_path / "p.json"
    p = subprocess.Popen([sys.executable, "-m", "cprof", "-o", str(out), str(BEHAVE), "wait"],
                         stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=_env(),
                         # a SIGINT ignored by whoever started pytest would be ignored by the child too
                         preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        assert p.stdout.readline() == b"behave: wait\n"
        assert p.stdout.readline() == b"ready\n"
        time.sleep(0.5)  # let it enter time.sleep(30)
        p.send_signal(signal.SIGINT)
        _, err = p.communicate(timeout=20)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert p.returncode == -signal.SIGINT, err
    assert err.decode().splitlines()[-1] == "KeyboardInterrupt"
    fns = by_name(load(out))
    assert fns["__main__.wait_forever"]["calls"] == 1
    assert fns["time.sleep"]["calls"] == 2
    assert fns["time.sleep"]["total"]["wall"] >= 400_000_000  # the interrupted sleep counts
    no_temp_files(tmp_path)


# ---------------------------------------------------------------- the profile file

def test_profile_format_and_qualified_names(tmp_path):
    out = tmp_path / "p.json"
    r = cprof("--counter=wall,ctxsw,cpu", "-o", out, BEHAVE)
    assert r.returncode == 0, r.stderr
    assert r.stdout == b"behave: ok\n"
    assert r.stderr.splitlines() == [f"cprof: wrote {out} ({len(load(out)['functions'])} functions)"]
    profile = load(out)
    assert_valid_profile(profile, counters=("wall", "ctxsw", "cpu"))
    assert profile["meta"]["threads"] == 1
    fns = by_name(profile)

    method = fns[METHOD]
    assert (method["file"], method["line"]) == (str(BEHAVE), line_of(BEHAVE, "def method"))
    assert method["calls"] == method["primitive_calls"] == 3
    rec = fns["__main__.rec"]
    assert (rec["calls"], rec["primitive_calls"]) == (5, 1)  # rec(4): 1 outer call, 4 recursive
    assert fns["__main__.tiny"]["calls"] == 200
    for name, calls in (("time.sleep", 1), ("list.sort", 3), ("builtins.len", 4)):  # + len(sys.argv)
        f = fns[name]
        assert (f["file"], f["line"], f["calls"], f["primitive_calls"]) == ("~", 0, calls, calls), f
    assert fns["time.sleep"]["self"]["wall"] >= 2_000_000  # time.sleep(0.002)

    assert edge(profile, METHOD, "list.sort")["calls"] == 3
    assert edge(profile, METHOD, "builtins.len")["calls"] == 3
    assert edge(profile, "__main__.<module>", "builtins.len")["calls"] == 1
    assert edge(profile, "__main__.main", METHOD)["calls"] == 3
    assert edge(profile, "__main__.main", "__main__.rec")["calls"] == 1
    assert edge(profile, "__main__.rec", "__main__.rec")["calls"] == 4
    assert edge(profile, "__main__.main", "time.sleep")["calls"] == 1
    # a function's total covers what it calls
    for e in profile["edges"]:
        caller = profile["functions"][e["caller"]]
        assert caller["total"]["wall"] >= caller["self"]["wall"]


def test_default_counters_are_cpu_then_wall(tmp_path):
    out = tmp_path / "p.json"
    assert cprof("-o", out, BEHAVE).returncode == 0
    profile = load(out)
    assert_valid_profile(profile, counters=("cpu", "wall"))
    assert_conserved(profile)


@pytest.mark.parametrize("script, args", [(BEHAVE, ["ok"]), (BEHAVE, ["fail"]), (THREADS, ["ok"])],
                         ids=["plain", "exception", "threads"])
def test_conservation_is_exact(tmp_path, script, args):
    out = tmp_path / "p.json"
    r = cprof("--counter=cpu,wall,ctxsw", "-o", out, script, *args)
    assert r.returncode in (0, 1), r.stderr
    profile = load(out)
    assert_valid_profile(profile, counters=COUNTERS)
    assert_conserved(profile)
    assert profile["meta"]["region"]["wall"] > 0


def test_output_replaces_an_existing_file_atomically(tmp_path):
    out = tmp_path / "p.json"
    out.write_text("old content, not a profile")
    r = cprof("-o", out, BEHAVE)
    assert r.returncode == 0, r.stderr
    assert load(out)["version"] == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.json"]


def test_failed_write_keeps_the_old_file_and_leaves_no_temp(tmp_path):
    from cprof import profile_file
    out = tmp_path / "p.json"
    out.write_text('{"old": true}\n')
    with pytest.raises(TypeError):
        profile_file.write({"version": 1, "bad": object()}, str(out))
    assert out.read_text() == '{"old": true}\n'
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.json"]


def test_output_into_a_missing_folder_is_refused_before_running(tmp_path):
    r = cprof("-o", tmp_path / "nosuch" / "p.json", BEHAVE)
    one_sentence(r, str(tmp_path / "nosuch"))
    assert r.stdout == b""  # the script did not run


# ---------------------------------------------------------------- -m module

@pytest.fixture
def project(tmp_path) -> Path:
    """tmp_path/proj/mypkg: a package with a __main__, a module `tool`; and nomain/ without __main__."""
    proj = tmp_path / "proj"
    pkg = proj / "mypkg"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "tool.py").write_text(
        "import json, sys\n"
        "def work(n):\n"
        "    return sum(range(n))\n"
        "work(100)\n"
        "print(json.dumps({'argv': sys.argv, 'name': __name__, 'path0': sys.path[0]}))\n"
        "sys.exit(int(sys.argv[1]) if len(sys.argv) > 1 else 0)\n")
    (pkg / "__main__.py").write_text("import sys\nprint('mypkg main', sys.argv[1:])\n")
    (proj / "nomain").mkdir()
    (proj / "nomain" / "__init__.py").write_text("")
    return proj


def test_module_runs_with_its_argv_and_exit_code(project):
    out = project / "p.json"
    args = ["-m", "mypkg.tool", "7", "a b", "-o", "x.json", "--help"]
    plain = run_py(*args, cwd=project)
    r = cprof("-o", out, *args, cwd=project)
    assert plain.returncode == 7
    assert r.returncode == 7, r.stderr
    assert r.stdout == plain.stdout
    info = json.loads(r.stdout)
    assert info == {"argv": [str(project / "mypkg" / "tool.py"), "7", "a b", "-o", "x.json", "--help"],
                    "name": "__main__", "path0": str(project)}
    assert not (project / "x.json").exists()
    profile = load(out)
    assert_valid_profile(profile)
    work = by_name(profile)["__main__.work"]
    assert (work["calls"], work["file"], work["line"]) == (1, str(project / "mypkg" / "tool.py"), 2)
    assert profile["meta"]["exit_code"] == 7


@pytest.mark.parametrize("before", [
    ["--slow-calls", "3"], ["--slow-calls=3"], ["--slow", "3"], ["--limit", "5"], ["-c", "cpu"],
    ["-ccpu"], ["--sort", "cpu"], ["--focus", "mypkg"], ["--counter", "cpu", "--slow-calls", "2"],
], ids=lambda a: " ".join(a))
def test_module_gets_everything_after_its_name_whatever_options_come_first(project, before):
    # every cprof option that takes a value is known to the split (it is the parser's
    # own list): `--slow-calls 3 -m mod -o x` gives `-o x` to the module, not to cprof
    (project / "echo.py").write_text("import sys\nprint(sys.argv[1:])\n")
    r = cprof(*before, "-m", "echo", "-o", "x.json", cwd=project)
    assert r.returncode == 0, r.stderr
    assert r.stdout == b"['-o', 'x.json']\n"
    assert not (project / "x.json").exists()
    assert "calls" in r.stderr  # the report, on stderr: no -o for cprof


def test_a_script_named_like_a_command(tmp_path):
    # `cprof report` is the command; the script named report runs as ./report, or
    # with options before it, as before the commands were subparsers
    (tmp_path / "report").write_text("print('the script')\n")
    one_sentence(cprof("report", cwd=tmp_path), "file")
    for args in (["./report"], ["-c", "cpu", "report"], ["--", "report"]):
        r = cprof(*args, cwd=tmp_path)
        assert r.returncode == 0 and r.stdout == b"the script\n", (args, r.stderr)


def test_usage_names_the_commands():
    r = cprof("--help")
    assert r.returncode == 0
    usage = r.stdout.decode().split("\n\n")[0]
    for command in ("report", "export", "compare", "-m"):
        assert command in usage, usage


def test_module_package_runs_its_main(project):
    r = cprof("-m", "mypkg", "x", cwd=project)
    assert r.returncode == 0, r.stderr
    assert r.stdout == b"mypkg main ['x']\n"


def test_module_through_the_console_script_finds_the_current_folder(project, tmp_path):
    # The `cprof` console script has its own folder as sys.path[0], not the current folder.
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "cprof_launcher.py").write_text("import sys\nfrom cprof.cli import main\nsys.exit(main())\n")
    r = run_py(bindir / "cprof_launcher.py", "-m", "mypkg.tool", "4", cwd=project)
    assert r.returncode == 4, r.stderr
    assert json.loads(r.stdout)["path0"] == str(project)


@pytest.fixture
def heavy(tmp_path) -> Path:
    """tmp_path/heavy: a package whose import does measurable work (setup() once), with
    a __main__ and a module sub; ext: a package that extends its __path__ at import."""
    pkg = tmp_path / "heavy"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("print('heavy imported')\n"
                                     "def setup():\n    return sum(range(10000))\nsetup()\n")
    (pkg / "__main__.py").write_text("def main():\n    return 1\nmain()\n")
    (pkg / "sub.py").write_text("def run():\n    return 2\nrun()\n")
    (tmp_path / "ext").mkdir()
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "ext" / "__init__.py").write_text(
        "import os\n__path__.append(os.path.join(os.path.dirname(__path__[0]), 'elsewhere'))\n")
    (tmp_path / "elsewhere" / "plug.py").write_text("print('plug ran')\n")
    return tmp_path


@pytest.mark.parametrize("module, main", [("heavy", "__main__.main"), ("heavy.sub", "__main__.run")])
def test_module_the_packages_import_is_profiled(heavy, module, main):
    out = heavy / "p.json"
    r = cprof("-o", out, "-m", module, cwd=heavy)
    assert r.returncode == 0, r.stderr
    assert r.stdout == b"heavy imported\n"  # once: not before profiling and again in it
    fns = by_name(load(out))
    assert fns["heavy.setup"]["calls"] == 1
    assert fns[main]["calls"] == 1
    assert fns["heavy.setup"]["file"] == str(heavy / "heavy" / "__init__.py")


def test_module_of_a_package_that_extends_its_path(heavy):
    r = cprof("-m", "ext.plug", cwd=heavy)
    assert r.returncode == 0, r.stderr
    assert r.stdout == b"plug ran\n"


def test_module_missing_in_a_package_is_one_sentence(heavy):
    # python -m imports the package before it says so too (it may extend its __path__)
    one_sentence(cprof("-m", "heavy.nosuch", cwd=heavy), "'heavy.nosuch'")
    one_sentence(cprof("-m", "heavy.sub.x", cwd=heavy), "'heavy.sub'", "not a package")


# ---------------------------------------------------------------- sys.path: no more, no less

HIJACK = "import sys\nsys.stderr.write('HIJACKED by ' + __file__ + '\\n')\nsys.exit(97)\n"


@pytest.fixture
def launcher(tmp_path) -> Path:
    """What the `cprof` console script is: a file in a bin folder (its sys.path[0])."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    f = bindir / "cprof_launcher.py"
    f.write_text("import sys\nfrom cprof.cli import main\nsys.exit(main())\n")
    return f


@pytest.mark.parametrize("hostile", ["cprof.py", "argparse.py"])
def test_the_malloc_restart_runs_nothing_from_the_current_folder(tmp_path, launcher, hostile):
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    (cwd / hostile).write_text(HIJACK)
    app = tmp_path / "app"
    app.mkdir()
    script = app / "show.py"
    script.write_text("import sys\nprint(sys.path)\n")
    out = tmp_path / "p.json"
    plain = run_py(script, cwd=cwd)
    r = run_py(launcher, "--counter=malloc-calls,wall", "-o", out, script, cwd=cwd)
    assert "HIJACKED" not in r.stderr and r.returncode == 0, r.stderr
    assert r.stdout == plain.stdout  # the script's sys.path is python's: its folder first, no cwd
    assert str(cwd) not in r.stdout.decode()
    profile = load(out)
    assert "libcprof_malloc.so" in profile["counters"][0]["read_path"]


def test_the_malloc_restart_keeps_python_m_finding_the_current_folder(tmp_path, launcher):
    (tmp_path / "mymod.py").write_text("import sys\nprint(sys.path)\n")
    out = tmp_path / "p.json"
    plain = run_py("-m", "mymod", cwd=tmp_path)
    r = run_py(launcher, "--counter=malloc-calls", "-o", out, "-m", "mymod", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stdout == plain.stdout
    assert "libcprof_malloc.so" in load(out)["counters"][0]["read_path"]


SAFE_FLAGS = ["-I"] + (["-P"] if sys.version_info >= (3, 11) else [])


@pytest.mark.parametrize("counters", ["cpu", "malloc-calls"])
@pytest.mark.parametrize("flag", SAFE_FLAGS)
def test_isolated_and_safe_path_add_no_folder(tmp_path, flag, counters):
    # python -I / -P script.py puts neither the script's folder nor the cwd on sys.path
    app = tmp_path / "app"
    app.mkdir()
    script = app / "show.py"
    script.write_text("import sys\nprint(sys.path)\n")
    plain = run_py(flag, script, cwd=tmp_path)
    r = run_py(flag, "-m", "cprof", f"--counter={counters}", "-o", tmp_path / "p.json", script, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stdout == plain.stdout


# ---------------------------------------------------------------- cprof report

@pytest.fixture(scope="module")
def saved(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("saved") / "profile.json"
    r = cprof("--counter=cpu,wall,ctxsw", "-o", out, BEHAVE)
    assert r.returncode == 0, r.stderr
    return out


def by_row(profile: dict) -> dict:
    """(name, where) as a report row shows a function -> its record."""
    out = {}
    for f in profile["functions"]:
        where = "built-in" if f["file"] == "~" else f"{os.path.basename(f['file'])}:{f['line']}"
        assert (f["name"], where) not in out
        out[(f["name"], where)] = f
    return out


def test_report_from_a_saved_profile(saved):
    # --all: every function on its own row (the default folds library code: test_focus.py)
    profile = load(saved)
    fns = by_row(profile)
    r = cprof("report", saved, "--all")
    assert r.returncode == 0 and r.stderr == ""
    text = r.stdout.decode()
    ncalls = sum(f["calls"] for f in profile["functions"])
    assert text.splitlines()[0].startswith(
        f"cprof: {saved} \u2014 {len(fns)} functions, {ncalls:,} calls, 1 thread (Python ")
    shown = min(25, len(fns))
    assert f"sorted by cpu self; top {shown} of {len(fns)}" in text.splitlines()
    rows = report_rows(text)
    assert len(rows) == shown
    keys = [(fns[row["id"]]["self"]["cpu"], fns[row["id"]]["total"]["cpu"]) for row in rows]
    assert keys == sorted(keys, reverse=True)
    rest = [(f["self"]["cpu"], f["total"]["cpu"]) for i, f in fns.items() if i not in {r["id"] for r in rows}]
    assert all(k <= keys[-1] for k in rest)
    every = report_rows(cprof("report", saved, "--all", "--limit", "0").stdout.decode())
    assert sorted(row["id"] for row in every) == sorted(fns)
    for row in every:
        f = fns[row["id"]]
        assert row["calls"] == (str(f["calls"]) if f["calls"] == f["primitive_calls"]
                                else f"{f['calls']}/{f['primitive_calls']}")
    assert next(row for row in every if row["name"] == "__main__.rec")["calls"] == "5/1"


def test_report_is_the_same_as_the_live_one(saved):
    live = cprof("--counter=cpu,wall,ctxsw", "--sort", "calls", "--limit", "0", BEHAVE)
    again = cprof("report", saved, "--sort", "calls", "--limit", "0")
    assert live.returncode == again.returncode == 0
    assert live.stderr.startswith("\n")  # the report follows an empty line
    live_text = live.stderr[1:]
    live_lines, saved_lines = live_text.splitlines(), again.stdout.decode().splitlines()
    # same header (but the title), same counters and read paths, same rows
    assert live_lines[0].split(" \u2014 ", 1)[1] == saved_lines[0].split(" \u2014 ", 1)[1]
    assert live_lines[2:6] == saved_lines[2:6]
    key = lambda rows: collections.Counter((r["id"], r["calls"]) for r in rows)
    assert key(report_rows(live_text)) == key(report_rows(again.stdout.decode()))


def test_report_sort_and_limit(saved):
    fns = by_row(load(saved))
    by_total = report_rows(cprof("report", saved, "--all", "--sort", "cpu.total").stdout.decode())
    totals = [fns[r["id"]]["total"]["cpu"] for r in by_total]
    assert totals == sorted(totals, reverse=True)
    assert totals[0] == max(f["total"]["cpu"] for f in fns.values())

    by_calls = report_rows(cprof("report", saved, "--all", "--sort", "calls").stdout.decode())
    assert by_calls[0]["name"] == "__main__.tiny" and by_calls[0]["calls"] == "200"
    calls = [fns[r["id"]]["calls"] for r in by_calls]
    assert calls == sorted(calls, reverse=True)

    r = cprof("report", saved, "--all", "--limit", "3")
    text = r.stdout.decode()
    assert len(report_rows(text)) == 3
    assert f"sorted by cpu self; top 3 of {len(fns)}" in text.splitlines()
    assert [row["id"] for row in report_rows(text)] == [row["id"] for row in report_rows(
        cprof("report", saved, "--all").stdout.decode())][:3]
    assert len(report_rows(cprof("report", saved, "--all", "--limit", "0").stdout.decode())) == len(fns)


def test_report_of_a_known_profile_is_exact(tmp_path):
    profile = {
        "version": 1, "tool": "cprof 0.1.0",
        "counters": [{"name": "cpu", "unit": "ns", "description": "CPU time", "read_path": "test"},
                     {"name": "ctxsw", "unit": "switches", "description": "switches", "read_path": "test"}],
        "functions": [
            {"id": 0, "name": "mod.small", "file": "/x/mod.py", "line": 3, "calls": 1200, "primitive_calls": 1200,
             "self": {"cpu": 999, "ctxsw": 0}, "total": {"cpu": 999, "ctxsw": 0}},
            {"id": 1, "name": "mod.big", "file": "/x/mod.py", "line": 9, "calls": 4, "primitive_calls": 1,
             "self": {"cpu": 1_500_000, "ctxsw": 1234}, "total": {"cpu": 2_500_000_000, "ctxsw": 1234}},
        ],
        "edges": [], "meta": {"threads": 2, "python": "3.x", "hook": "test",
                              "region": {"cpu": 1_500_999, "ctxsw": 1234}, "unattributed": {"cpu": 0, "ctxsw": 0}},
    }
    path = tmp_path / "known.json"
    path.write_text(json.dumps(profile))
    r = cprof("report", path)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.decode().splitlines()
    assert lines[0] == f"cprof: {path} \u2014 2 functions, 1,204 calls, 2 threads (Python 3.x, test)"
    assert lines[1] == "profiled: cpu 1.5 ms, ctxsw 1,234"
    rows = report_rows(r.stdout.decode())
    assert [(row["name"], row["calls"], row["cells"]) for row in rows] == [
        ("mod.big", "4/1", ["1.5 ms", "2.5 s", "1,234", "1,234"]),
        ("mod.small", "1200", ["999 ns", "999 ns", "0", "0"]),
    ]
    assert rows[0]["line"].endswith("mod.big  (mod.py:9)")


def test_report_sort_by_unknown_counter_is_one_sentence(saved):
    r = cprof("report", saved, "--sort", "nosuch")
    one_sentence(r, "'nosuch'", "cpu.total", "calls")
    assert r.stdout == b""


def test_run_sort_by_unknown_counter_is_refused_before_running():
    r = cprof("--sort", "nosuch", BEHAVE)
    one_sentence(r, "'nosuch'")
    assert r.stdout == b""


# ---------------------------------------------------------------- bad input

def test_unknown_counter(tmp_path):
    r = cprof("--counter=cpu,nosuch", "-o", tmp_path / "p.json", BEHAVE)
    line = one_sentence(r, "'nosuch'", "cpu", "wall", "ctxsw")
    assert r.stdout == b""
    assert list(tmp_path.iterdir()) == []
    assert line.count("nosuch") == 1


def test_duplicate_counter():
    r = cprof("--counter=cpu,wall,cpu", BEHAVE)
    one_sentence(r, "'cpu'")
    assert r.stdout == b""


def test_empty_counter_list():
    one_sentence(cprof("--counter=", BEHAVE), "cpu", "wall", "ctxsw")


def test_missing_script(tmp_path):
    r = cprof(tmp_path / "nosuch.py", "arg")
    one_sentence(r, str(tmp_path / "nosuch.py"))


def test_folder_as_script(tmp_path):
    one_sentence(cprof(tmp_path), str(tmp_path))


def test_missing_module(project):
    one_sentence(cprof("-m", "nosuchmod_cprof", cwd=project), "'nosuchmod_cprof'")
    one_sentence(cprof("-m", "mypkg.nosuch", cwd=project), "'mypkg.nosuch'")
    one_sentence(cprof("-m", "nosuchpkg_cprof.sub", cwd=project), "'nosuchpkg_cprof.sub'")


def test_package_without_main(project):
    one_sentence(cprof("-m", "nomain", cwd=project), "'nomain'", "__main__")


def test_no_script_at_all():
    r = cprof()
    one_sentence(r, "script")
    one_sentence(cprof("--counter=cpu", "-o", "x.json"), "script")


def test_report_without_a_file():
    one_sentence(cprof("report"))


def test_report_of_a_missing_file(tmp_path):
    one_sentence(cprof("report", tmp_path / "nosuch.json"), str(tmp_path / "nosuch.json"))


def test_report_of_a_folder(tmp_path):
    one_sentence(cprof("report", tmp_path), str(tmp_path))


@pytest.mark.parametrize("content", [b"this is not json\n", b"\xff\xfe\x00garbage", b""],
                         ids=["text", "binary", "empty"])
def test_report_of_a_non_json_file(tmp_path, content):
    path = tmp_path / "bad.json"
    path.write_bytes(content)
    one_sentence(cprof("report", path), str(path))


@pytest.mark.parametrize("data", [
    {"a": 1},
    [1, 2, 3],
    "a string",
    {"version": 1, "functions": [{"name": "f", "time": 3}], "counters": ["cpu"], "edges": [], "meta": {}},
    {"version": 1, "functions": [], "counters": [], "edges": [], "meta": {}},
    {"version": 1, "functions": "none", "counters": [{"name": "cpu", "unit": "ns"}], "edges": [], "meta": {}},
], ids=["dict", "list", "string", "other-schema", "no-counters", "functions-not-list"])
def test_report_of_json_that_is_not_a_profile(tmp_path, data):
    path = tmp_path / "other.json"
    path.write_text(json.dumps(data))
    r = cprof("report", path)
    one_sentence(r, str(path))
    assert r.stdout == b""


def test_report_of_another_version(tmp_path, saved):
    profile = load(saved)
    profile["version"] = 4
    path = tmp_path / "v4.json"
    path.write_text(json.dumps(profile))
    one_sentence(cprof("report", path), "version 4", "versions 1 to 3")


@pytest.mark.parametrize("fraction", [0.5, 0.1, 0.99])
def test_report_of_a_truncated_profile(tmp_path, saved, fraction):
    data = saved.read_bytes()
    path = tmp_path / "cut.json"
    path.write_bytes(data[:int(len(data) * fraction)])
    r = cprof("report", path)
    one_sentence(r, str(path))
    assert r.stdout == b""


def test_bad_limit():
    one_sentence(cprof("--limit", "many", BEHAVE), "--limit")


# ---------------------------------------------------------------- --list-counters

def test_list_counters():
    r = cprof("--list-counters")
    assert r.returncode == 0 and r.stderr == ""
    lines = r.stdout.decode().splitlines()
    names = [line.split()[0] for line in lines if line[:1].strip()]
    assert names[:3] == ["cpu", "wall", "ctxsw"]
    for name in COUNTERS:
        i = next(i for i, line in enumerate(lines) if line.split()[:1] == [name])
        assert f"[{UNITS[name]}]" in lines[i]
        read_by = lines[i + 1].strip()
        assert read_by.startswith("read by: ")
        path = read_by[len("read by: "):]
        assert path and not path.startswith("UNAVAILABLE"), read_by


# ---------------------------------------------------------------- threads

@pytest.mark.parametrize("mode, code", [("ok", 0), ("exit", 5), ("fail", 1)])
def test_unjoined_threads_are_profiled(tmp_path, mode, code):
    out = tmp_path / "p.json"
    r = cprof("--counter=cpu,wall,ctxsw", "-o", out, THREADS, mode, timeout=20)
    assert r.returncode == code, r.stderr
    profile = load(out)
    assert_valid_profile(profile, counters=COUNTERS)
    fns = by_name(profile)
    # the 3 workers start their work after the main thread is done: 4 calls each
    assert fns["__main__.thread_work"]["calls"] == 12
    assert fns["__main__.worker"]["calls"] == 3
    assert fns["time.sleep"]["calls"] == 4  # 3 workers and the daemon, which is not waited for
    assert profile["meta"]["threads"] == 5
    assert r.stdout == b""


def test_a_profile_given_as_the_script_is_refused_not_run(tmp_path):
    """`cprof out.json` (report forgotten): JSON is often valid Python, so the profile
    ran as a script until a NameError on null, with a traceback."""
    prof = tmp_path / "p.json"
    prof.write_text('{"version": 2, "functions": [], "meta": {"x": null}}\n')
    r = cprof(str(prof))
    assert r.returncode == 2
    assert r.stderr.strip() == (f"cprof: error: '{prof}' is a JSON file, not a Python script; "
                                f"to read a profile: cprof report {prof}")
    assert "Traceback" not in r.stderr


@pytest.mark.parametrize("value", ["-3", "x"])
def test_limit_must_be_a_count(value):
    r = cprof("report", "--limit", value, os.path.join(os.path.dirname(__file__), "data", "v1", "v1.json"))
    assert r.returncode == 2
    assert f"argument --limit: '{value}' is not a count; give 0 (all) or more" in r.stderr
    assert "Traceback" not in r.stderr


def test_exit_code_survives_a_stderr_that_cannot_be_written(tmp_path):
    """cprof's own lines on a full stderr are lost, not the program's exit code (it was
    1); `cprof report` onto a full disk is one sentence, not a traceback."""
    prog = tmp_path / "tiny.py"
    prog.write_text("print('hi')\nimport sys; sys.exit(3)\n")
    with open("/dev/full", "w") as full:
        r = subprocess.run([sys.executable, "-m", "cprof", str(prog)], stderr=full,
                           stdout=subprocess.PIPE, text=True, timeout=120)
        assert (r.returncode, r.stdout) == (3, "hi\n")
        out = tmp_path / "p.json"
        r = subprocess.run([sys.executable, "-m", "cprof", "-o", str(out), str(prog)],
                           stderr=full, stdout=subprocess.PIPE, text=True, timeout=120)
        assert (r.returncode, r.stdout) == (3, "hi\n") and out.exists()
        r = subprocess.run([sys.executable, "-m", "cprof", "report", str(out)], stdout=full,
                           stderr=subprocess.PIPE, text=True, timeout=120)
    assert r.returncode != 0
    assert r.stderr.startswith("cprof: error: could not write the output") and r.stderr.count("\n") == 1, r.stderr
