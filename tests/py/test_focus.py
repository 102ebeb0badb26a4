"""Focus on the user's own code: the text report lists the program's functions and folds
the standard library, site-packages and cprof into one line per library ([json],
[threading]), with totals conserved; --all lists every function; --focus=PATTERN keeps the
matching functions and folds the rest into [other].  Exact sums on a hand-made profile,
and on a real run of a program that uses json and threading; a saved profile folds by
the folders it recorded (meta.paths), not by those of the Python reading it."""
from __future__ import annotations

import copy
import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from cprof import focus, profile_file, report

# co_qualname from 3.11 on; before that a method is named by its function name only
RAW_DECODE = "json.decoder.JSONDecoder.raw_decode" if sys.version_info >= (3, 11) else "json.decoder.raw_decode"

PROGRAM = '''\
import json
import threading


def encode(n):
    return [json.dumps({"i": i, "items": list(range(i % 7))}) for i in range(n)]


def decode(items):
    return sum(json.loads(s)["i"] for s in items)


def work(out):
    out.append(decode(encode(300)))


def main():
    out = []
    threads = [threading.Thread(target=work, args=(out,)) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    work(out)
    print(sorted(out))


main()
'''


def cprof(*args, cwd=None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONSTARTUP")}
    return subprocess.run([sys.executable, "-m", "cprof", *map(str, args)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)


def rows_of(text: str) -> list[tuple[str, str, str]]:
    """The table of a text report: (name, where, calls) per row."""
    return [row[:3] for row in cells_of(text)]


def cells_of(text: str) -> list[tuple]:
    """The table of a text report: (name, where, calls, *cells) per row."""
    lines = text.splitlines()
    head = next(i for i, line in enumerate(lines) if line.lstrip().startswith("calls ")
                and line.endswith("function"))
    at = lines[head].index("function")
    out = []
    for line in lines[head + 1:]:
        if not line.strip():
            break
        name, where = line[at:].rsplit("  (", 1)
        out.append((name, where[:-1], *re.split(r"\s{2,}", line[:at].strip())))
    return out


def check_conserved(profile: dict, rows: list[dict]) -> None:
    """Every function on exactly one row; the rows' self plus unattributed is the region."""
    on_rows = sorted([r["id"] for r in rows if "folded" not in r]
                     + [i for r in rows if "folded" in r for i in r["folded"]])
    assert on_rows == list(range(len(profile["functions"])))
    meta = profile["meta"]
    for c in (c["name"] for c in profile["counters"]):
        assert sum(r["self"][c] for r in rows) + meta["unattributed"][c] == meta["region"][c], c
        for r in rows:
            if "folded" in r:
                assert r["self"][c] == sum(profile["functions"][i]["self"][c] for i in r["folded"])


def group_total_by_ancestors(profile: dict, ids: set, counter: str) -> tuple[int, int, int]:
    """A folded line's (total, calls, primitive calls) the slow way: walk every node's
    ancestors; plus the self of the frames that are on no tree node (running when
    profiling began)."""
    tree = profile["tree"]
    parent, function = tree["parent"], tree["function"]
    total = calls = prim = 0
    for i in ids:
        total += profile["functions"][i]["self"][counter] - sum(
            tree["self"][counter][n] for n in range(1, len(parent)) if function[n] == i)
    for i in range(1, len(parent)):
        if function[i] not in ids:
            continue
        p, nested = parent[i], False
        while p > 0:
            nested = nested or function[p] in ids
            p = parent[p]
        if not nested:
            total += tree["total"][counter][i]
            prim += tree["calls"][i]
        if parent[i] == 0 or function[parent[i]] not in ids:
            calls += tree["calls"][i]
    return total, calls, prim


# ---------------------------------------------------------------- a hand-made profile, exact

def _known() -> dict:
    return profile_file.upgrade(_known_v1())


def _known_v1(tree: bool = True) -> dict:
    """main calls json.dumps twice, json calls back the program's default(), which calls
    json.dumps again (nested json), list.append from both sides, time.sleep from main,
    len from json only.  One counter; meta.paths says /py/lib is the standard library."""
    def fn(i, name, file, calls, prim, self_, total):
        return {"id": i, "name": name, "file": file, "line": 0 if file == "~" else 10 * (i + 1),
                "calls": calls, "primitive_calls": prim, "self": {"cpu": self_}, "total": {"cpu": total}}
    functions = [
        fn(0, "__main__.main", "/proj/app.py", 1, 1, 10, 158),
        fn(1, "json.dumps", "/py/lib/json/__init__.py", 3, 2, 9, 45),
        fn(2, "json.encoder.enc", "/py/lib/json/encoder.py", 3, 2, 26, 40),
        fn(3, "__main__.default", "/proj/app.py", 3, 3, 7, 18),
        fn(4, "list.append", "~", 6, 6, 5, 5),
        fn(5, "time.sleep", "~", 1, 1, 100, 100),
        fn(6, "builtins.len", "~", 1, 1, 1, 1),
    ]
    edges = [(0, 1, 2, 45), (1, 2, 3, 40), (2, 3, 3, 18), (3, 1, 1, 11), (2, 6, 1, 1),
             (2, 4, 5, 2), (0, 4, 1, 3), (0, 5, 1, 100)]
    #        node: 0    1  2  3  4  5  6  7  8  9  10
    parent = [-1, 0, 1, 2, 3, 4, 5, 6, 3, 1, 1]
    function = [-1, 0, 1, 2, 3, 1, 2, 6, 4, 4, 5]
    calls = [0, 1, 2, 2, 3, 1, 1, 1, 5, 1, 1]
    self_ = [2, 10, 5, 20, 7, 4, 6, 1, 2, 3, 100]
    total = [160, 158, 45, 40, 18, 11, 7, 1, 2, 3, 100]
    # written as version 1: read as every version-1 file is, through profile_file.upgrade
    prof = {"version": 1, "tool": "cprof 0.1.0",
            "counters": [{"name": "cpu", "unit": "ns", "description": "CPU time", "read_path": "test"}],
            "functions": functions,
            "edges": [{"caller": a, "callee": b, "calls": n, "primitive_calls": n, "total": {"cpu": t}}
                      for a, b, n, t in edges],
            "tree": {"parent": parent, "function": function, "calls": calls,
                     "self": {"cpu": self_}, "total": {"cpu": total}},
            "meta": {"threads": 1, "python": "3.x", "hook": "test", "region": {"cpu": 160},
                     "unattributed": {"cpu": 2}, "paths": {"stdlib": ["/py/lib"], "site": []}}}
    if not tree:
        del prof["tree"]
    return prof


def _by_name(rows: list[dict]) -> dict:
    return {r["name"]: r for r in rows}


def test_known_profile_default_folding():
    prof = _known()
    rows = focus.select(prof)
    check_conserved(prof, rows)
    got = {name: (r["calls"], r["primitive_calls"], r["self"]["cpu"], r["total"]["cpu"])
           for name, r in _by_name(rows).items()}
    assert got == {
        "__main__.main": (1, 1, 10, 158),
        "__main__.default": (3, 3, 7, 18),
        "list.append": (6, 6, 5, 5),     # called by main: on its own line, all its calls
        "time.sleep": (1, 1, 100, 100),  # called by main
        # dumps and enc: entered 3 times from outside (twice by main, once by default),
        # twice while json was not running; the nested dumps is inside the outer one's total
        "[json]": (3, 2, 35, 45),
        "[builtins]": (1, 1, 1, 1),      # len, called by json only
    }
    assert sorted(_by_name(rows)["[json]"]["folded"]) == [1, 2]
    for name in ("[json]", "[builtins]"):
        r = _by_name(rows)[name]
        assert (r["total"]["cpu"], r["calls"], r["primitive_calls"]) == \
            group_total_by_ancestors(prof, set(r["folded"]), "cpu")


def test_known_profile_report_text():
    text = report.format_report(_known(), title="known")
    lines = text.splitlines()
    assert lines[3] == ("sorted by cpu self; top 6 of 6 lines: your code, 3 library functions "
                        "folded into 2 [library] lines (--all lists every function)")
    assert rows_of(text) == [
        ("time.sleep", "built-in", "1"),
        ("[json]", "2 functions folded", "3/2"),
        ("__main__.main", "app.py:10", "1"),
        ("__main__.default", "app.py:40", "3"),
        ("list.append", "built-in", "6"),
        ("[builtins]", "1 function folded", "1"),
    ]
    every = report.format_report(_known(), all=True)
    assert "sorted by cpu self; top 7 of 7" in every.splitlines()
    assert sorted(r[0] for r in rows_of(every)) == sorted(f["name"] for f in _known()["functions"])


def test_known_profile_focus():
    prof = _known()
    rows = focus.select(prof, focus="__main__")
    check_conserved(prof, rows)
    got = {n: (r["calls"], r["primitive_calls"], r["self"]["cpu"], r["total"]["cpu"])
           for n, r in _by_name(rows).items()}
    # len is called by json only: folded with it into [other]
    assert got == {"__main__.main": (1, 1, 10, 158), "__main__.default": (3, 3, 7, 18),
                   "list.append": (6, 6, 5, 5), "time.sleep": (1, 1, 100, 100),
                   "[other]": (3, 2, 36, 45)}

    rows = focus.select(prof, focus="json.encoder")
    check_conserved(prof, rows)
    got = {n: (r["calls"], r["primitive_calls"], r["self"]["cpu"], r["total"]["cpu"])
           for n, r in _by_name(rows).items()}
    # enc and the built-ins it calls; main (a thread's root) and default (called back by enc)
    # enter [other], which has main's whole subtree as its total
    assert got == {"json.encoder.enc": (3, 2, 26, 40), "builtins.len": (1, 1, 1, 1),
                   "list.append": (6, 6, 5, 5), "[other]": (4, 1, 126, 158)}
    # the file instead of the module: the same functions
    assert {r["name"] for r in focus.select(prof, focus="json/encoder.py")} == set(got)
    assert {r["name"] for r in focus.select(prof, focus="/py/lib/json/enc*")} == set(got)
    assert {r["name"] for r in focus.select(prof, focus="nomatch,json.enc*")} == set(got)
    text = report.format_report(prof, focus="json.encoder")
    assert ("sorted by cpu self; top 4 of 4 lines: functions matching json.encoder, 4 other "
            "functions folded into [other] (--all lists every function)") in text.splitlines()


def test_known_profile_without_a_tree_gets_a_flat_one():
    # a version-1 file from before the call tree: each function one node under the root,
    # so a folded line's calls are its functions' and its total their self
    prof = profile_file.upgrade(_known_v1(tree=False))
    rows = _by_name(focus.select(prof))
    check_conserved(prof, list(rows.values()))
    json_fns = [f for f in prof["functions"] if f["name"].startswith("json.")]
    calls = sum(f["calls"] for f in json_fns)
    assert (rows["[json]"]["calls"], rows["[json]"]["primitive_calls"], rows["[json]"]["total"]["cpu"]) \
        == (calls, calls, 35)


def test_known_profile_all_is_every_function_unchanged():
    prof = _known()
    assert focus.select(prof, all=True) == prof["functions"]
    # the rows the default shows are the function records themselves
    for r in focus.select(prof):
        if "folded" not in r:
            assert r is prof["functions"][r["id"]]


# ---------------------------------------------------------------- what is library code

PATHS = {"stdlib": ["/opt/py/lib/python3.12"], "site": ["/opt/py/lib/python3.12/site-packages"],
         "cprof": ["/opt/py/lib/python3.12/site-packages/cprof"]}


@pytest.mark.parametrize("name,file,library", [
    ("app.main", "/home/u/proj/app.py", None),
    ("__main__.f", "<string>", None),
    ("__main__.f", "<stdin>", None),
    ("json.decoder.JSONDecoder.raw_decode", "/opt/py/lib/python3.12/json/decoder.py", "json"),
    ("threading.Thread.run", "/opt/py/lib/python3.12/threading.py", "threading"),
    ("requests.api.get", "/opt/py/lib/python3.12/site-packages/requests/api.py", "site-packages: requests"),
    ("six.f", "/opt/py/lib/python3.12/site-packages/six.py", "site-packages: six"),
    ("cprof.cli._join_threads", "/opt/py/lib/python3.12/site-packages/cprof/cli.py", "cprof"),
    # not in meta.paths, but a site-packages folder or another Python's standard library
    ("yaml.load", "/usr/lib/python3/dist-packages/yaml/__init__.py", "site-packages: yaml"),
    ("x.f", "/home/u/venv/lib/python3.11/site-packages/x/y.py", "site-packages: x"),
    ("csv.reader", "/usr/lib/python3.11/csv.py", "csv"),
    ("importlib._bootstrap._find_and_load", "<frozen importlib._bootstrap>", "importlib"),
    ("runpy._run_code", "<frozen runpy>", "runpy"),
    # built-ins: their module's library
    ("time.sleep", "~", "time"),
    ("_json.scanstring", "~", "json"),
    ("_thread.lock.acquire", "~", "threading"),
    ("posix.stat", "~", "os"),
    ("list.sort", "~", "builtins"),
    ("builtins.len", "~", "builtins"),
    ("dict.fromkeys", "~", "builtins"),
    ("cprof._cprof.Profiler.disable", "~", "cprof"),
    ("<unknown 0x1234>", "~", "builtins"),
])
def test_library_of(name, file, library):
    assert focus.library_of({"name": name, "file": file, "line": 1}, PATHS) == library
    assert focus.is_library({"name": name, "file": file, "line": 1}, PATHS) is (library is not None)


def test_builtins_of_a_site_package_go_with_it():
    prof = _known()
    prof["functions"][1]["file"] = "/site/numpy/core/numeric.py"
    prof["functions"][6]["name"] = "numpy.core._multiarray_umath.dot"
    prof["meta"]["paths"] = {"stdlib": ["/py/lib"], "site": ["/site"]}
    labels = focus.libraries(prof)
    assert labels[1] == labels[6] == "site-packages: numpy"


def test_this_interpreters_folders():
    import json as json_module
    paths = focus.library_paths()
    assert set(paths) == {"stdlib", "site", "cprof"}
    assert focus.library_of({"name": "json.dumps", "file": json_module.__file__, "line": 1}, paths) == "json"
    assert focus.library_of({"name": "x", "file": focus.__file__, "line": 1}, paths) == "cprof"
    assert focus.library_of({"name": "t.f", "file": __file__, "line": 1}, paths) is None


@pytest.mark.parametrize("pattern,name,file,hit", [
    ("mypkg", "mypkg.sub.mod.f", "/x/mypkg/sub/mod.py", True),
    ("mypkg.sub", "mypkg.sub.mod.f", "/elsewhere/m.py", True),
    ("mypkg.sub*", "mypkg.subtle.f", "/elsewhere/m.py", True),
    ("mypkg.sub", "mypkg.subtle.f", "/elsewhere/m.py", False),
    ("other", "mypkg.sub.mod.f", "/x/mypkg/sub/mod.py", False),
    ("src", "app.f", "/home/u/proj/src/app.py", True),      # a folder: the files under it
    ("src/*", "app.f", "/home/u/proj/src/app.py", True),
    ("proj/src", "app.f", "/home/u/proj/src/app.py", True),
    ("/home/u/proj", "app.f", "/home/u/proj/src/app.py", True),
    ("/home/u/other", "app.f", "/home/u/proj/src/app.py", False),
    ("app.py", "app.f", "/home/u/proj/src/app.py", True),
    ("*.py", "app.f", "/home/u/proj/src/app.py", True),
    ("mymod", "__main__.f", "/tmp/mymod.py", True),          # cprof -m mymod: still mymod
    ("time", "time.sleep", "~", True),
    ("tim", "time.sleep", "~", False),
])
def test_focus_patterns(pattern, name, file, hit):
    assert focus.matches({"name": name, "file": file, "line": 1}, focus.parse_patterns(pattern)) is hit


# ---------------------------------------------------------------- a real run

@pytest.fixture(scope="module")
def run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("focus")
    script = folder / "jsonwork.py"
    script.write_text(PROGRAM)
    out = folder / "prof.json"
    r = cprof("-c", "cpu,wall,ctxsw", "-o", out, script)
    assert r.returncode == 0, r.stderr
    with open(out) as f:
        return out, json.load(f)


def _ids(profile: dict, prefix: str) -> set:
    return {f["id"] for f in profile["functions"] if f["name"].startswith(prefix) and f["file"] != "~"}


def test_run_records_the_folders(run):
    _, prof = run
    paths = prof["meta"]["paths"]
    assert set(paths) == {"stdlib", "site", "cprof"}
    json_file = next(f["file"] for f in prof["functions"] if f["name"] == "json.dumps")
    assert any(json_file.startswith(p + os.sep) for p in paths["stdlib"])


def test_run_default_report_folds_libraries(run):
    path, prof = run
    r = cprof("report", path, "--limit", "0")
    assert r.returncode == 0, r.stderr
    rows = rows_of(r.stdout)
    names = [n for n, _, _ in rows]
    for own in ("__main__.encode", "__main__.decode", "__main__.work", "__main__.main",
                "__main__.<module>"):
        assert own in names
    assert "[json]" in names and "[threading]" in names
    # no function of json or threading on a line of its own
    assert not [n for n in names if n.startswith(("json.", "threading.", "_json.", "_thread."))], names
    libs = focus.libraries(prof)
    calls_by_user = {e["callee"] for e in prof["edges"] if libs[e["caller"]] is None}
    for name, where, _ in rows:
        if name.startswith("["):
            assert where.endswith("folded")
            continue
        f = next(f for f in prof["functions"] if f["name"] == name and
                 (where == "built-in") == (f["file"] == "~"))
        # the program's own code, or a built-in it called (or that no profiled function called)
        assert libs[f["id"]] is None or (f["file"] == "~" and (
            f["id"] in calls_by_user or f["id"] not in {e["callee"] for e in prof["edges"]}))
    n_json = sum(1 for label in libs if label == "json")
    assert (f"{n_json} functions folded") in [w for n, w, _ in rows if n == "[json]"]


def test_run_totals_are_conserved(run):
    _, prof = run
    rows = focus.select(prof)
    check_conserved(prof, rows)
    by = _by_name(rows)
    fns = {f["name"]: f for f in prof["functions"] if f["file"] != "~"}
    # the program's `import json` runs json's module bodies in the run unless something
    # imported json before (cprof no longer does at start-up): json.<module> holds the
    # others, each entered once from importlib
    mods = [f for n, f in fns.items() if n.startswith("json") and n.endswith(".<module>")]
    top = [fns[n] for n in ("json.dumps", "json.loads", "json.<module>") if n in fns]
    for c in ("cpu", "wall", "ctxsw"):
        # json is entered only through dumps and loads (and its import), which never run
        # inside each other: its line's total is theirs, its calls are their calls
        assert by["[json]"]["total"][c] == sum(f["total"][c] for f in top)
        for r in rows:
            if "folded" in r:
                assert r["total"][c] == group_total_by_ancestors(prof, set(r["folded"]), c)[0], r["name"]
                assert r["self"][c] <= r["total"][c], r["name"]
    assert fns["json.dumps"]["calls"] + fns["json.loads"]["calls"] == 1800
    # and the entries from outside json during its import (module and class bodies)
    assert by["[json]"]["calls"] >= 1800 + sum(f["calls"] for f in mods)
    for r in rows:
        if "folded" in r:
            _, calls, prim = group_total_by_ancestors(prof, set(r["folded"]), "cpu")
            assert (r["calls"], r["primitive_calls"]) == (calls, prim), r["name"]


def test_run_all_lists_every_function(run):
    path, prof = run
    r = cprof("report", path, "--all", "--limit", "0")
    assert r.returncode == 0, r.stderr
    names = [n for n, _, _ in rows_of(r.stdout)]
    assert sorted(names) == sorted(f["name"] for f in prof["functions"])
    assert RAW_DECODE in names and "json.dumps" in names
    assert not [n for n in names if n.startswith("[")]
    # a function shown either way shows the same numbers
    default = {row for row in cells_of(cprof("report", path, "--limit", "0").stdout)
               if not row[0].startswith("[")}
    assert len(default) > 5 and default <= set(cells_of(r.stdout))


def test_run_focus(run):
    path, prof = run
    r = cprof("report", path, "--focus=json.decoder", "--limit", "0")
    assert r.returncode == 0, r.stderr
    rows = rows_of(r.stdout)
    python_rows = [n for n, w, _ in rows if w != "built-in" and not n.startswith("[")]
    decoder = {f["name"] for f in prof["functions"] if f["name"].startswith("json.decoder.")}
    assert set(python_rows) == decoder and decoder
    assert [n for n, _, _ in rows if n.startswith("[")] == ["[other]"]
    assert not [n for n in python_rows if n.startswith("__main__")]
    rows = focus.select(prof, focus="json.decoder")
    check_conserved(prof, rows)
    # the same by file
    by_file = cprof("report", path, "--focus", "json/decoder.py", "--limit", "0")
    assert rows_of(by_file.stdout) == rows_of(r.stdout)
    # several patterns
    both = {n for n, _, _ in rows_of(cprof("report", path, "--focus=json.decoder,__main__",
                                          "--limit", "0").stdout)}
    assert decoder | {"__main__.encode", "__main__.main", "[other]"} <= both


def _moved(prof: dict) -> dict:
    """The profile as if the Python that made it had lived elsewhere: every file under a
    recorded folder, and the recorded folders, moved to /moved/..."""
    out = copy.deepcopy(prof)
    roots = [(root, f"/moved/{kind}{i}") for kind in ("cprof", "site", "stdlib")
             for i, root in enumerate(prof["meta"]["paths"][kind])]
    roots.sort(key=lambda r: len(r[0]), reverse=True)  # site-packages inside the stdlib folder
    for f in out["functions"]:
        for old, new in roots:
            if f["file"].startswith(old + os.sep):
                f["file"] = new + f["file"][len(old):]
                break
    out["meta"]["paths"] = {kind: [f"/moved/{kind}{i}" for i in range(len(prof["meta"]["paths"][kind]))]
                            for kind in ("stdlib", "site", "cprof")}
    return out


def test_saved_profile_folds_by_its_recorded_folders(run, tmp_path):
    path, prof = run
    moved = _moved(prof)
    assert not [f for f in moved["functions"] if f["name"] == "json.dumps"][0]["file"].startswith(sys.prefix)
    moved_path = tmp_path / "moved.json"
    moved_path.write_text(json.dumps(moved))
    before = cprof("report", path, "--limit", "0").stdout.splitlines()
    after = cprof("report", moved_path, "--limit", "0").stdout.splitlines()
    assert before[1:] == after[1:] and "[json]" in "\n".join(after)
    # a version-1 file without meta.paths is read with this Python's folders: /moved/...
    # is nobody's library, so json's functions are listed one by one
    del moved["meta"]["paths"]
    moved["meta"].update(moved["meta"].pop("health"))
    del moved["meta"]["out_of_memory"], moved["meta"]["backwards_first"], moved["meta"]["counter_failures"]
    moved["version"] = 1
    moved_path.write_text(json.dumps(moved))
    names = [n for n, _, _ in rows_of(cprof("report", moved_path, "--limit", "0").stdout)]
    assert RAW_DECODE in names and "[json]" not in names


def test_live_report_folds_too(tmp_path):
    script = tmp_path / "jsonwork.py"
    script.write_text(PROGRAM)
    r = cprof("--limit", "0", script, cwd=tmp_path)
    assert r.returncode == 0 and r.stdout.strip().startswith("[")
    names = [n for n, _, _ in rows_of(r.stderr)]
    assert "[json]" in names and "__main__.encode" in names and "json.dumps" not in names
    # every function: the program's imports (re, enum: cprof no longer imports them for
    # it) can fill the first 25 lines
    r = cprof("--all", "--limit", "0", script)
    assert "json.dumps" in r.stderr
    r = cprof("--focus", "jsonwork", "--limit", "0", script)  # the file's module name
    names = {n for n, w, _ in rows_of(r.stderr) if w != "built-in"}
    assert {"__main__.encode", "[other]"} <= names and "[json]" not in names


def test_print_stats_all_and_focus():
    import cprof as cprof_module

    def work():
        return [json.loads(json.dumps({"k": i})) for i in range(50)]

    with cprof_module.Profile(counters=["wall"]) as prof:
        work()
    folded, every, focused = io.StringIO(), io.StringIO(), io.StringIO()
    prof.print_stats(file=folded, limit=0)
    prof.print_stats(file=every, limit=0, all=True)
    prof.print_stats(file=focused, limit=0, focus="json.decoder")
    names = [n for n, _, _ in rows_of(folded.getvalue())]
    assert "[json]" in names and "json.dumps" not in names
    assert any(n.endswith("work") for n in names)
    assert "json.dumps" in [n for n, _, _ in rows_of(every.getvalue())]
    names = [n for n, w, _ in rows_of(focused.getvalue()) if w != "built-in"]
    assert "[other]" in names and all(n.startswith("json.decoder.") for n in names if n != "[other]")


@pytest.mark.parametrize("args,needle", [
    (["--focus", ","], "--focus needs a pattern"),
    (["--all", "--focus", "x"], "not allowed with"),
])
def test_bad_focus_is_one_sentence(run, tmp_path, args, needle):
    path, _ = run
    for cmd in (["report", path, *args], [*args, tmp_path / "never_run.py"]):
        if cmd[0] != "report":
            (tmp_path / "never_run.py").write_text("print('ran')\n")
        r = cprof(*cmd)
        assert r.returncode == 2 and r.stdout == "", r
        assert r.stderr.startswith("cprof: error:") and needle in r.stderr and len(r.stderr.splitlines()) == 1


def test_html_report_folds_by_the_same_rule(run, tmp_path):
    path, prof = run
    out = tmp_path / "r.html"
    r = cprof("report", path, "--html", "-o", out)
    assert r.returncode == 0, r.stderr
    data = json.loads(re.search(r'<script id="cprof-data" type="application/json">(.*?)</script>',
                                out.read_text(), re.S).group(1))
    assert [f["lib"] for f in data["functions"]] == focus.libraries(prof)
    assert data["functions"][next(iter(_ids(prof, "json.dumps")))]["lib"] == "json"
    assert data["functions"][next(iter(_ids(prof, "__main__.encode")))]["lib"] is None
