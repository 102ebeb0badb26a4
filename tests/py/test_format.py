"""The profile file's versions: a version-1 file, written by cprof before the format
had a version 2 (tests/py/data/v1/v1.json, made by the cprof of commit f771713), is
read through the one upgrade step and reports and exports exactly as it did then
(the expected outputs beside it were written by that cprof)."""
from __future__ import annotations

import gzip
import marshal
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

DATA = Path(__file__).resolve().parent / "data" / "v1"


def cprof(*args, cwd):
    return subprocess.run([sys.executable, "-m", "cprof", *map(str, args)], cwd=cwd,
                          capture_output=True, timeout=60)


@pytest.fixture
def here(tmp_path) -> Path:
    for name in ("v1.json", "v1-old.json"):
        shutil.copy(DATA / name, tmp_path / name)
    return tmp_path


@pytest.mark.parametrize("args, expected", [
    (["report", "v1.json"], "v1.report.txt"),
    (["report", "v1.json", "--all"], "v1.report-all.txt"),
    (["report", "v1.json", "--focus", "json*", "--sort", "wall.total", "--limit", "5"], "v1.report-focus.txt"),
    (["report", "v1.json", "--hist", "leaf"], "v1.hist.txt"),
    (["compare", "v1.json", "v1.json"], "v1.compare.txt"),
    (["report", "v1-old.json", "--all"], "v1-old.report-all.txt"),
    (["compare", "v1-old.json", "v1-old.json"], "v1-old.compare.txt"),
], ids=lambda x: " ".join(x) if isinstance(x, list) else None)
def test_a_version_1_file_reports_as_before(here, args, expected):
    r = cprof(*args, cwd=here)
    assert r.returncode == 0, r.stderr
    assert r.stdout.decode() == (DATA / expected).read_text()


@pytest.mark.parametrize("fmt", ["pstats", "speedscope", "collapsed", "pprof", "gprof2dot"])
def test_a_version_1_file_exports_as_before(here, fmt):
    r = cprof("export", "v1.json", "-f", fmt, "-c", "wall", "-o", f"out.{fmt}", cwd=here)
    assert r.returncode == 0, r.stderr
    assert _content(here / f"out.{fmt}", fmt) == _content(DATA / f"v1.out.{fmt}", fmt)


def _content(path: Path, fmt: str):
    """What a file holds: pstats' dict, pprof's protobuf (gzip's header and marshal's
    bytes differ between Pythons), the text formats' bytes."""
    data = path.read_bytes()
    if fmt == "pstats":
        return marshal.loads(data)
    if fmt == "pprof":
        return gzip.decompress(data)
    return data


def test_a_version_1_file_makes_the_same_html(here):
    r = cprof("report", "v1.json", "--html", "-o", "out.html", "-c", "wall", cwd=here)
    assert r.returncode == 0, r.stderr
    assert (here / "out.html").read_bytes() == (DATA / "v1.html").read_bytes()


def test_an_old_version_1_file_without_tree_exports_its_counter_as_before(here):
    # written before cprof kept the call tree, distributions and meta.paths
    r = cprof("export", "v1-old.json", "-f", "pstats", "-c", "wall", "-o", "out.prof", cwd=here)
    assert r.returncode == 0, r.stderr
    assert _content(here / "out.prof", "pstats") == _content(DATA / "v1-old.out.pstats", "pstats")


# ---------------------------------------------------------------- version 2: meta.health

def _v2(health: dict | None = None) -> dict:
    """A small version-2 profile made by hand: main calls work."""
    clean = {"out_of_memory": 0, "backwards_readings": 0, "backwards_first": None,
             "counter_failures": [], "tree_folded": 0, "distribution_values_lost": 0,
             "unmatched_exits": 0}
    counters = [{"name": n, "unit": u, "description": n, "read_path": "test"}
                for n, u in (("cpu", "ns"), ("malloc-bytes", "B"))]
    fns = [{"id": 0, "name": "mod.main", "file": "/x/mod.py", "line": 1, "calls": 1, "primitive_calls": 1,
            "self": {"cpu": 10, "malloc-bytes": 0}, "total": {"cpu": 30, "malloc-bytes": 64}},
           {"id": 1, "name": "mod.work", "file": "/x/mod.py", "line": 5, "calls": 2, "primitive_calls": 2,
            "self": {"cpu": 20, "malloc-bytes": 64}, "total": {"cpu": 20, "malloc-bytes": 64}}]
    return {"version": 2, "tool": "cprof 0.1.0", "counters": counters, "functions": fns,
            "edges": [{"caller": 0, "callee": 1, "calls": 2, "primitive_calls": 2,
                       "total": {"cpu": 20, "malloc-bytes": 64}}],
            "tree": {"parent": [-1, 0, 1], "function": [-1, 0, 1], "calls": [0, 1, 2],
                     "self": {"cpu": [0, 10, 20], "malloc-bytes": [0, 0, 64]},
                     "total": {"cpu": [30, 30, 20], "malloc-bytes": [64, 64, 64]}},
            "meta": {"python": "3.x", "hook": "test", "threads": 1,
                     "region": {"cpu": 30, "malloc-bytes": 64}, "unattributed": {"cpu": 0, "malloc-bytes": 0},
                     "health": {**clean, **(health or {})},
                     "paths": {"stdlib": [], "site": [], "cprof": []}}}


def _report(tmp_path, profile: dict) -> subprocess.CompletedProcess:
    import json
    path = tmp_path / "p.json"
    path.write_text(json.dumps(profile))
    return cprof("report", path, cwd=tmp_path)


def test_a_clean_health_record_says_nothing(tmp_path):
    r = _report(tmp_path, _v2())
    assert r.returncode == 0, r.stderr
    assert "warning" not in r.stdout.decode()


def test_each_health_problem_is_one_line_in_the_report_header(tmp_path):
    r = _report(tmp_path, _v2({
        "out_of_memory": 2, "backwards_readings": 3,
        "backwards_first": {"counter": "malloc-bytes", "function": 1},
        "counter_failures": [{"counter": "malloc-bytes", "message": "the interposer went away"}],
        "tree_folded": 4, "distribution_values_lost": 5, "unmatched_exits": 1}))
    assert r.returncode == 0, r.stderr
    text = r.stdout.decode()
    header = text[:text.index("\n\n")].splitlines()
    assert [line for line in header if line.startswith("warning: ")] == [
        "warning: cprof ran out of memory: 2 events or records dropped, so some numbers are low",
        "warning: 3 counter readings went backwards (first: malloc-bytes in mod.work): "
        "each was taken as no change",
        "warning: counter 'malloc-bytes' failed: the interposer went away",
        "warning: 4 call paths folded into their parent node (the call tree was full): "
        "call-path exports are approximate there",
        "warning: 5 per-call values missing from the distributions",
        "warning: 1 return of calls never seen starting were ignored",
    ]


def test_a_backwards_reading_outside_any_function(tmp_path):
    r = _report(tmp_path, _v2({"backwards_readings": 1,
                               "backwards_first": {"counter": "cpu", "function": None}}))
    assert "warning: 1 counter reading went backwards (first: cpu in no function): " in r.stdout.decode()


@pytest.mark.parametrize("change, says", [
    (lambda h: h.pop("unmatched_exits"), "meta.health.unmatched_exits is missing"),
    (lambda h: h.update(surprise=1), "meta.health has a field 'surprise' that the format does not know"),
    (lambda h: h.update(backwards_first={"counter": "cpu", "function": 7}),
     "meta.health.backwards_first.function is 7, the id of no function (there are 2)"),
    (lambda h: h.update(backwards_first={"counter": "ctxsw", "function": 0}),
     "meta.health.backwards_first.counter is 'ctxsw', which the profile's counters do not list"),
    (lambda h: h.update(counter_failures=[{"counter": "cpu"}]),
     "meta.health.counter_failures[0].message is missing"),
    (lambda h: h.update(tree_folded=-1), "meta.health.tree_folded is out of range"),
], ids=["missing", "unknown", "no-function", "no-counter", "failure-message", "negative"])
def test_a_damaged_health_record_is_one_sentence(tmp_path, change, says):
    prof = _v2()
    change(prof["meta"]["health"])
    r = _report(tmp_path, prof)
    assert r.returncode == 2 and r.stdout == b""
    err = r.stderr.decode()
    assert err.count("\n") == 1 and err.startswith("cprof: error: ") and says in err, err


@pytest.mark.parametrize("missing", ["tree", "health", "paths"])
def test_version_2_requires_the_tree_the_health_record_and_the_paths(tmp_path, missing):
    prof = _v2()
    (prof if missing == "tree" else prof["meta"]).pop(missing)
    r = _report(tmp_path, prof)
    assert r.returncode == 2
    assert f"{'' if missing == 'tree' else 'meta.'}{missing} is missing" in r.stderr.decode()


def test_the_upgrade_moves_the_version_1_counts_into_health():
    from cprof import profile_file
    v1 = _v2()
    del v1["meta"]["health"], v1["meta"]["paths"], v1["tree"]
    v1.update(version=1)
    v1["meta"].update(unmatched_exits=1, backwards_readings=2, tree_folded=3, distribution_values_lost=4)
    up = profile_file.upgrade(v1)
    assert up["version"] == 3
    assert up["meta"]["health"] == {"out_of_memory": 0, "backwards_readings": 2, "backwards_first": None,
                                    "counter_failures": [], "tree_folded": 3, "distribution_values_lost": 4,
                                    "unmatched_exits": 1}
    assert not {"unmatched_exits", "backwards_readings", "tree_folded", "distribution_values_lost"} & set(up["meta"])
    assert set(up["meta"]["paths"]) == {"stdlib", "site", "cprof"}
    # the flat tree: each function under the root, with its calls and self; total = self
    assert up["tree"] == {"parent": [-1, 0, 0], "function": [-1, 0, 1], "calls": [0, 1, 2],
                          "self": {"cpu": [0, 10, 20], "malloc-bytes": [0, 0, 64]},
                          "total": {"cpu": [30, 10, 20], "malloc-bytes": [64, 0, 64]}}


# ---------------------------------------------------------------- version 3: packed tree columns

def _v3() -> dict:
    """_v2() as cprof writes version 3: the tree's columns packed."""
    from cprof.profile_file import pack_column
    prof = _v2()
    t = prof["tree"]
    prof["version"] = 3
    prof["tree"] = {"nodes": 3, "encoding": "leb128-base64", "parent": pack_column(t["parent"], 1),
                    "function": pack_column(t["function"], 2), "calls": pack_column(t["calls"]),
                    "self": {c: pack_column(v) for c, v in t["self"].items()},
                    "total": {c: pack_column(v) for c, v in t["total"].items()}}
    return prof


def test_the_readme_example_tree_unpacks_as_it_says():
    from cprof import schema
    tree = {"nodes": 3, "encoding": "leb128-base64", "parent": "AQEB", "function": "AAQB",
            "calls": "AAEB", "self": {"cpu": "/HXo8gag9J8I"}, "total": {"cpu": "AIjnpgig9J8I"}}
    out = schema._tree(tree, ["cpu"], 4, 3)
    assert [list(out[k]) for k in ("parent", "function", "calls")] == [[-1, 0, 1], [-1, 3, 0], [0, 1, 1]]
    assert list(out["self"]["cpu"]) == [15100, 113000, 17300000]
    assert list(out["total"]["cpu"]) == [0, 17413000, 17300000]
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    assert '"tree": {"nodes": 3, "encoding": "leb128-base64", "parent": "AQEB", "function": "AAQB",' in readme


def test_a_version_3_file_reports_as_its_version_2_twin(tmp_path):
    a, b = _report(tmp_path, _v2()), _report(tmp_path, _v3())
    assert a.returncode == b.returncode == 0, (a.stderr, b.stderr)
    assert a.stdout == b.stdout


def _damage(path: str, value):
    def change(prof):
        *keys, last = path.split(".")
        d = prof["tree"]
        for k in keys:
            d = d[k]
        d[last] = value(d[last]) if callable(value) else value
    return change


@pytest.mark.parametrize("change, says", [
    (_damage("self.cpu", "AAGC"), "tree.self.cpu ends inside entry 2 (cut short?)"),
    (_damage("self.cpu", lambda s: s[:-1]), "tree.self.cpu is 3 characters of base64, not a multiple of 4"),
    (_damage("calls", "AAE="), "tree.calls has 2 entries, not 3 (cut short?)"),
    (_damage("calls", "AAEBAQ=="), "tree.calls holds more than its 3 entries"),
    (_damage("calls", "AA*B"), "tree.calls holds a character that is not base64 at offset 2"),
    (_damage("calls", "AAH/////////////fw=="), "tree.calls entry 2 does not fit in 64 bits"),
    (_damage("parent", "AQED"), "tree.parent entry 2 is not a node before 2"),
    (_damage("parent", "AgEB"), "tree.parent entry 0 (the root) has a parent, not -1"),
    (_damage("function", "AAEE"), "tree.function entry 2 is the id of no function"),
    (_damage("function", "AAEA"), "tree.function entry 2 is -1, but only the root (node 0) has no function"),
    (_damage("nodes", 4), "tree.parent has 3 entries, not 4 (cut short?)"),
    (_damage("nodes", -1), "tree.nodes is out of range"),
    (_damage("encoding", "zstd"), "tree.encoding is zstd, not leb128-base64"),
], ids=["cut-varint", "cut-base64", "fewer", "more", "not-base64", "past-64-bits", "parent-after",
        "root-parent", "no-function", "function-minus-1", "nodes", "negative-nodes", "encoding"])
def test_a_damaged_packed_column_is_one_sentence(tmp_path, change, says):
    prof = _v3()
    change(prof)
    r = _report(tmp_path, prof)
    assert r.returncode == 2 and r.stdout == b""
    err = r.stderr.decode()
    assert err.count("\n") == 1 and err.startswith("cprof: error: ") and says in err, err


def test_a_truncated_version_3_file_is_one_sentence(tmp_path):
    import json
    path = tmp_path / "p.json"
    text = json.dumps(_v3())
    path.write_text(text[:text.index('"self"') + 20])
    r = cprof("report", path, cwd=tmp_path)
    assert r.returncode == 2 and r.stderr.decode().count("\n") == 1
    assert "is not a cprof profile (not valid JSON" in r.stderr.decode()


def test_packed_columns_are_not_version_2(tmp_path):
    prof = _v3()
    prof["version"] = 2
    r = _report(tmp_path, prof)
    assert r.returncode == 2
    assert "tree has packed columns, which version 2 does not know" in r.stderr.decode()
