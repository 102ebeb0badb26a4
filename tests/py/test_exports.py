"""Exports, checked by their real consumers: pstats.Stats loads the .prof and its
numbers equal the JSON profile's; the speedscope file satisfies speedscope's
file-format schema; folded stacks and pprof samples (decoded by a hand-written
protobuf reader of profile.proto) add up to the profile's totals; gprof2dot parses
its JSON and the .prof (when the gprof2dot package is installed).  Also: the run's
-o by file name, and one sentence for bad input."""
from __future__ import annotations

import gzip
import io
import json
import marshal
import os
import pstats
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import SCRIPTS, load, run_cprof

COUNTERS = ("cpu", "wall", "ctxsw")
RECURSIVE = os.path.join(SCRIPTS, "recursive.py")


@pytest.fixture(scope="module")
def saved(tmp_path_factory) -> tuple[Path, dict]:
    """A profile of recursive.py with three counters: (path, profile)."""
    folder = tmp_path_factory.mktemp("exports")
    path = folder / "rec.json"
    run_cprof(["-c", ",".join(COUNTERS), "-o", str(path), RECURSIVE], check_rc=0)
    return path, load(path)


def export(src: Path, fmt: str, *extra: str, check_rc: int = 0) -> subprocess.CompletedProcess:
    return run_cprof(["export", str(src), "--format", fmt, *extra], check_rc=check_rc)


def one_sentence(r: subprocess.CompletedProcess, *needles: str) -> None:
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert "Traceback" not in r.stderr, r.stderr
    lines = r.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("cprof: error: "), r.stderr
    for n in needles:
        assert n in lines[0], (n, lines[0])


def by_key(profile: dict) -> dict:
    return {(f["file"], f["line"], f["name"]): f for f in profile["functions"]}


def attributed(profile: dict, counter: str) -> int:
    """What the call-path exports carry: the region less what is outside any function."""
    return profile["meta"]["region"][counter] - profile["meta"]["unattributed"][counter]


def edge_self(profile: dict, counter: str) -> dict:
    """(caller id, callee id) -> the callee's self when called from that caller, from the tree."""
    t = profile["tree"]
    out: dict = {}
    for i in range(1, len(t["parent"])):
        p = t["parent"][i]
        if p > 0:
            k = (t["function"][p], t["function"][i])
            out[k] = out.get(k, 0) + t["self"][counter][i]
    return out


def label(f: dict) -> str:
    return f["name"] if f["file"] == "~" else f"{f['name']} ({os.path.basename(f['file'])}:{f['line']})"


def test_the_profile_has_a_consistent_tree(saved):
    _, prof = saved
    t = prof["tree"]
    assert t["parent"][0] == -1
    for c in COUNTERS:
        fn_self = sum(f["self"][c] for f in prof["functions"])
        assert sum(t["self"][c][1:]) == fn_self == attributed(prof, c)
        # per function: its tree nodes' self adds up to its own self (nothing folded here)
        per_fn: dict = {}
        for i in range(1, len(t["parent"])):
            per_fn[t["function"][i]] = per_fn.get(t["function"][i], 0) + t["self"][c][i]
        assert prof["meta"]["health"]["tree_folded"] == 0
        for f in prof["functions"]:
            assert per_fn.get(f["id"], 0) == f["self"][c], (f["name"], c)


# ---------------------------------------------------------------- pstats

@pytest.mark.parametrize("counter", COUNTERS)
def test_pstats_loads_and_equals_the_profile(saved, counter):
    src, prof = saved
    out = src.parent / f"rec-{counter}.prof"
    r = export(src, "pstats", "--counter", counter, "-o", str(out))
    scale = 1e-9 if counter != "ctxsw" else 1
    assert ("in seconds" if counter != "ctxsw" else "in switches") in r.stderr
    st = pstats.Stats(str(out))
    fns = by_key(prof)
    ids = {f["id"]: k for k, f in fns.items()}
    assert set(st.stats) == set(fns)
    es = edge_self(prof, counter)
    for key, (cc, nc, tt, ct, callers) in st.stats.items():
        f = fns[key]
        assert (cc, nc) == (f["primitive_calls"], f["calls"]), key
        assert tt == pytest.approx(f["self"][counter] * scale, rel=1e-12, abs=0), key
        assert ct == pytest.approx(f["total"][counter] * scale, rel=1e-12, abs=0), key
        edges = [e for e in prof["edges"] if e["callee"] == f["id"]]
        assert set(callers) == {ids[e["caller"]] for e in edges}, key
        for e in edges:
            # cProfile's callers tuple: (calls, primitive calls, self, total)
            e_nc, e_cc, e_tt, e_ct = callers[ids[e["caller"]]]
            assert (e_nc, e_cc) == (e["calls"], e["primitive_calls"])
            assert e_tt == pytest.approx(es.get((e["caller"], e["callee"]), 0) * scale, rel=1e-12, abs=0)
            assert e_ct == pytest.approx(e["total"][counter] * scale, rel=1e-12, abs=0)
        # a function's self splits over its callers, plus the calls made at a thread's root
        at_root = sum(prof["tree"]["self"][counter][i] for i, p in enumerate(prof["tree"]["parent"])
                      if p == 0 and prof["tree"]["function"][i] == f["id"])
        assert sum(v[2] for v in callers.values()) + at_root * scale == \
            pytest.approx(tt, rel=1e-9, abs=1e-15), key
    assert st.total_calls == sum(f["calls"] for f in prof["functions"])
    assert st.prim_calls == sum(f["primitive_calls"] for f in prof["functions"])
    assert st.total_tt == pytest.approx(attributed(prof, counter) * scale, rel=1e-9)
    # what pstats users do with it
    text = io.StringIO()
    st.stream = text
    st.sort_stats("tottime").print_stats(5)
    st.print_callers("fib")
    assert "__main__.fib" in text.getvalue() and "__main__.main" in text.getvalue()


def test_pstats_recursion_counts_like_cprofile(saved):
    src, prof = saved
    out = src.parent / "rec-recursion.prof"
    export(src, "pstats", "-o", str(out))
    st = pstats.Stats(str(out))
    fib = next(v for k, v in st.stats.items() if k[2] == "__main__.fib")
    assert fib[:2] == (1, 8361)  # fib(18): one primitive call, 8361 in all, as cProfile counts
    callers = {k[2]: v for k, v in fib[4].items()}
    assert set(callers) == {"__main__.main", "__main__.fib"}
    assert callers["__main__.main"][:2] == (1, 1)
    assert callers["__main__.fib"][0] == 8360


def test_pstats_default_names_say_counter_and_unit(saved, tmp_path):
    src, prof = saved
    copy = tmp_path / "p.json"
    shutil.copy(src, copy)
    r = export(copy, "pstats")
    assert (tmp_path / "p.cpu.prof").exists(), r.stderr  # time: seconds, as pstats expects
    r = export(copy, "pstats", "--counter", "ctxsw")
    assert (tmp_path / "p.ctxsw-switches.prof").exists(), r.stderr
    st = marshal.loads((tmp_path / "p.ctxsw-switches.prof").read_bytes())
    assert all(type(v[2]) is int and type(v[3]) is int for v in st.values())  # counts stay integers
    r = export(copy, "collapsed", "--counter", "wall")
    assert (tmp_path / "p.wall-ns.folded").exists(), r.stderr
    for fmt, name in (("speedscope", "p.speedscope.json"), ("pprof", "p.pb.gz"),
                      ("gprof2dot", "p.gprof2dot.json")):
        export(copy, fmt)
        assert (tmp_path / name).exists(), fmt
    assert sorted(p.name for p in tmp_path.glob(".cprof-*")) == []
    assert (tmp_path / "p.cpu.prof").stat().st_mode & 0o044  # readable like any file, not mkstemp's 0600


# ---------------------------------------------------------------- speedscope

SPEEDSCOPE_UNITS = {"bytes", "microseconds", "milliseconds", "nanoseconds", "none", "seconds"}


def check_speedscope_schema(doc) -> None:
    """speedscope's file-format schema (https://www.speedscope.app/file-format-schema.json,
    FileFormat.File), written out: required fields, types and enums."""
    def number(v):
        return isinstance(v, (int, float)) and not isinstance(v, bool)
    assert isinstance(doc, dict)
    assert {"$schema", "profiles", "shared"} <= doc.keys()
    assert doc["$schema"] == "https://www.speedscope.app/file-format-schema.json"
    assert isinstance(doc["shared"], dict) and isinstance(doc["shared"].get("frames"), list)
    for fr in doc["shared"]["frames"]:
        assert isinstance(fr, dict) and isinstance(fr.get("name"), str), fr
        assert isinstance(fr.get("file", ""), str) and number(fr.get("line", 0)) and number(fr.get("col", 0)), fr
    if "name" in doc:
        assert isinstance(doc["name"], str)
    if "activeProfileIndex" in doc:
        assert number(doc["activeProfileIndex"])
    if "exporter" in doc:
        assert isinstance(doc["exporter"], str)
    assert isinstance(doc["profiles"], list)
    for p in doc["profiles"]:
        assert isinstance(p, dict) and p.get("type") in ("evented", "sampled"), p.get("type")
        assert isinstance(p.get("name"), str) and p.get("unit") in SPEEDSCOPE_UNITS
        assert number(p.get("startValue")) and number(p.get("endValue"))
        if p["type"] == "sampled":
            assert isinstance(p.get("samples"), list) and isinstance(p.get("weights"), list)
            assert all(isinstance(s, list) and all(map(number, s)) for s in p["samples"])
            assert all(map(number, p["weights"]))
        else:
            assert isinstance(p.get("events"), list)
            for e in p["events"]:
                assert e.get("type") in ("O", "C") and number(e.get("at")) and number(e.get("frame"))


def test_speedscope_is_valid_and_adds_up(saved):
    src, prof = saved
    out = src.parent / "rec.speedscope.json"
    export(src, "speedscope", "--counter", "wall", "-o", str(out))
    doc = json.loads(out.read_text())
    check_speedscope_schema(doc)
    frames = doc["shared"]["frames"]
    assert [fr["name"] for fr in frames] == [f["name"] for f in prof["functions"]]
    assert [p["name"].rsplit(" — ", 1)[1] for p in doc["profiles"]] == ["cpu", "wall", "ctxsw (switches)"]
    assert [p["unit"] for p in doc["profiles"]] == ["nanoseconds", "nanoseconds", "none"]
    assert doc["activeProfileIndex"] == 1
    for p, c in zip(doc["profiles"], COUNTERS):
        # what speedscope itself checks on import: one weight per sample, frames that exist
        assert len(p["samples"]) == len(p["weights"])
        assert all(0 <= i < len(frames) for s in p["samples"] for i in s)
        assert p["startValue"] == 0 and p["endValue"] == sum(p["weights"]) == attributed(prof, c)
        leaf: dict = {}
        for s, w in zip(p["samples"], p["weights"]):
            leaf[s[-1]] = leaf.get(s[-1], 0) + w
        assert leaf == {f["id"]: f["self"][c] for f in prof["functions"] if f["self"][c]}
    # every call path with cpu of its own is a sample, the deepest ones included: fib(18)'s
    # leaf path is 18 fib frames deep, but its own cpu can be 0 once cprof's per-event share
    # is taken out, so the expected depth comes from the tree itself
    tree = prof["tree"]
    depth = [0] * len(tree["parent"])
    for i, parent in enumerate(tree["parent"]):
        depth[i] = depth[parent] + 1 if parent >= 0 else 0
    want = max(d for d, v in zip(depth, tree["self"]["cpu"]) if v)
    fib = next(f["id"] for f in prof["functions"] if f["name"] == "__main__.fib")
    samples = doc["profiles"][0]["samples"]
    assert max(len(s) for s in samples) == want
    assert max(s.count(fib) for s in samples) >= 12   # fib(18) recursing, not folded


# ---------------------------------------------------------------- collapsed stacks

@pytest.mark.parametrize("counter", COUNTERS)
def test_collapsed_stacks_add_up(saved, counter):
    src, prof = saved
    out = src.parent / f"rec-{counter}.folded"
    export(src, "collapsed", "--counter", counter, "-o", str(out))
    lines = out.read_text().splitlines()
    total, leaf, seen = 0, {}, set()
    for line in lines:
        stack, n = line.rsplit(" ", 1)
        assert n.isdigit() and int(n) > 0, line
        assert stack not in seen, "a stack appears twice"
        seen.add(stack)
        total += int(n)
        frames = stack.split(";")
        leaf[frames[-1]] = leaf.get(frames[-1], 0) + int(n)
    assert total == attributed(prof, counter) == sum(prof["tree"]["self"][counter][1:])
    assert leaf == {label(f): f["self"][counter] for f in prof["functions"] if f["self"][counter]}
    if counter == "cpu":
        assert any(line.startswith("builtins.exec;__main__.<module> (recursive.py:1);__main__.main "
                                   "(recursive.py:47);__main__.fib (recursive.py:4);__main__.fib ")
                   for line in lines)


# ---------------------------------------------------------------- pprof

def _uvarint(buf: bytes, i: int) -> tuple[int, int]:
    shift = result = 0
    while True:
        b = buf[i]
        i += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, i
        shift += 7


def _fields(buf: bytes):
    """(field number, wire type, value) of one protobuf message."""
    i = 0
    while i < len(buf):
        key, i = _uvarint(buf, i)
        field, wire = key >> 3, key & 7
        if wire == 0:
            v, i = _uvarint(buf, i)
        elif wire == 2:
            n, i = _uvarint(buf, i)
            v, i = buf[i:i + n], i + n
            assert len(v) == n, "truncated field"
        elif wire == 1:
            v, i = buf[i:i + 8], i + 8
        elif wire == 5:
            v, i = buf[i:i + 4], i + 4
        else:
            raise AssertionError(f"wire type {wire}")
        yield field, wire, v


def _ints(wire: int, v, signed=False) -> list[int]:
    """A repeated integer field: packed (wire type 2) or one value."""
    if wire == 0:
        vals = [v]
    else:
        vals, i = [], 0
        while i < len(v):
            x, i = _uvarint(v, i)
            vals.append(x)
    return [x - (1 << 64) if signed and x >= 1 << 63 else x for x in vals]


def decode_pprof(data: bytes) -> dict:
    """profile.proto's Profile, the fields cprof writes and pprof reads."""
    raw = gzip.decompress(data)
    p = {"sample_type": [], "sample": [], "mapping": [], "location": {}, "function": {}, "strings": [],
         "comment": [], "default_sample_type": 0, "period_type": None, "period": 0}

    def value_type(b):
        d = {f: v for f, _, v in _fields(b)}
        return d.get(1, 0), d.get(2, 0)

    for field, wire, v in _fields(raw):
        if field == 1:
            p["sample_type"].append(value_type(v))
        elif field == 2:
            s = {"location_id": [], "value": []}
            for f, w, x in _fields(v):
                if f == 1:
                    s["location_id"] += _ints(w, x)
                elif f == 2:
                    s["value"] += _ints(w, x, signed=True)
            p["sample"].append(s)
        elif field == 3:
            p["mapping"].append({f: x for f, _, x in _fields(v)})
        elif field == 4:
            loc = {"id": 0, "mapping_id": 0, "line": []}
            for f, w, x in _fields(v):
                if f == 1:
                    loc["id"] = x
                elif f == 2:
                    loc["mapping_id"] = x
                elif f == 4:
                    loc["line"].append({ff: xx for ff, _, xx in _fields(x)})
            p["location"][loc["id"]] = loc
        elif field == 5:
            fn = {f: x for f, _, x in _fields(v)}
            p["function"][fn[1]] = fn
        elif field == 6:
            p["strings"].append(v.decode("utf-8"))
        elif field == 11:
            p["period_type"] = value_type(v)
        elif field == 12:
            p["period"] = v
        elif field == 13:
            p["comment"].append(v)
        elif field == 14:
            p["default_sample_type"] = v
    return p


def test_pprof_decodes_and_adds_up(saved):
    src, prof = saved
    out = src.parent / "rec.pb.gz"
    export(src, "pprof", "--counter", "wall", "-o", str(out))
    p = decode_pprof(out.read_bytes())
    S = p["strings"]
    assert S[0] == ""
    assert [(S[t], S[u]) for t, u in p["sample_type"]] == [("cpu", "nanoseconds"), ("wall", "nanoseconds"),
                                                           ("ctxsw", "switches")]
    assert S[p["default_sample_type"]] == "wall" and S[p["period_type"][0]] == "wall"
    assert any("deterministic" in S[c] for c in p["comment"])
    def ident(location_id):
        """(name, file, line) of a location's function: names alone repeat before 3.11."""
        fn = p["function"][p["location"][location_id]["line"][0][1]]
        return S[fn[2]], S[fn[4]], fn.get(5, 0)

    fns = {(f["name"], f["file"] if f["file"] != "~" else "<built-in>", f["line"]): f for f in prof["functions"]}
    assert len(fns) == len(prof["functions"])
    for loc_id, loc in p["location"].items():
        assert len(loc["line"]) == 1
        assert ident(loc_id) in fns
    for k, c in enumerate(COUNTERS):
        assert sum(s["value"][k] for s in p["sample"]) == attributed(prof, c)
        leaf: dict = {}
        for s in p["sample"]:
            assert len(s["value"]) == len(COUNTERS)
            key = ident(s["location_id"][0])
            leaf[key] = leaf.get(key, 0) + s["value"][k]
        assert {n: v for n, v in leaf.items() if v} == {n: f["self"][c] for n, f in fns.items() if f["self"][c]}
    # leaf first: the outermost frame of every stack is last
    outer = {fns[ident(s["location_id"][-1])]["id"] for s in p["sample"]}
    roots = {prof["tree"]["function"][i] for i, par in enumerate(prof["tree"]["parent"]) if par == 0}
    assert outer <= roots


def test_pprof_is_read_by_go_tool_pprof(saved):
    go = shutil.which("go")
    if not go:
        pytest.skip("go is not installed (apt-get install golang-go): go tool pprof not checked")
    src, prof = saved
    out = src.parent / "rec-go.pb.gz"
    export(src, "pprof", "-o", str(out))
    r = subprocess.run([go, "tool", "pprof", "-raw", str(out)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "PeriodType: cpu nanoseconds" in r.stdout
    assert "__main__.fib" in r.stdout
    r = subprocess.run([go, "tool", "pprof", "-top", "-sample_index=cpu", str(out)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    top = [line for line in r.stdout.splitlines() if line.strip().endswith("__main__.fib")]
    assert top, r.stdout


# ---------------------------------------------------------------- gprof2dot

def test_gprof2dot_json_adds_up(saved):
    src, prof = saved
    out = src.parent / "rec.gprof2dot.json"
    export(src, "gprof2dot", "--counter", "wall", "-o", str(out))
    doc = json.loads(out.read_text())
    # gprof2dot's schema.json: these keys only, version 0, a cost array per event
    assert set(doc) == {"version", "costs", "functions", "events"} and doc["version"] == 0
    assert [c["description"] for c in doc["costs"]] == ["wall", "cpu", "ctxsw"]  # the chosen one first
    assert all(set(c) <= {"description", "unit"} for c in doc["costs"])
    assert all(set(f) <= {"name", "module", "process"} and isinstance(f["name"], str) for f in doc["functions"])
    for k, c in enumerate(("wall", "cpu", "ctxsw")):
        assert sum(e["cost"][k] for e in doc["events"]) == attributed(prof, c)
    for e in doc["events"]:
        assert set(e) == {"callchain", "cost"} and e["callchain"] and len(e["cost"]) == 3
        assert all(0 <= i < len(doc["functions"]) for i in e["callchain"])


def test_gprof2dot_parses_json_and_pstats(saved):
    gprof2dot = pytest.importorskip("gprof2dot", reason="the gprof2dot package is not installed (pip install "
                                    "gprof2dot, in the test extra)")
    src, prof = saved
    out = src.parent / "rec-g.gprof2dot.json"
    export(src, "gprof2dot", "-o", str(out))
    with open(out) as f:
        g = gprof2dot.JsonParser(f).parse()
    names = {fn.name for fn in g.functions.values()}
    assert "__main__.fib" in names
    assert g[gprof2dot.SAMPLES] == attributed(prof, "cpu")
    prof_file = src.parent / "rec-g.prof"
    export(src, "pstats", "-o", str(prof_file))
    g = gprof2dot.PstatsParser(str(prof_file)).parse()
    fib = next(fn for fn in g.functions.values() if fn.name.endswith(":__main__.fib"))
    assert fib.called == 8361
    # and the dot it writes for both
    for fmt, path in (("json", out), ("pstats", prof_file)):
        r = subprocess.run([sys.executable, "-m", "gprof2dot", "-f", fmt, str(path)],
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 0 and "digraph" in r.stdout and "__main__.fib" in r.stdout, r.stderr


# ---------------------------------------------------------------- the run's -o by file name

@pytest.mark.parametrize("name,check", [
    ("out.prof", lambda p: pstats.Stats(str(p)).total_calls > 0),
    ("out.speedscope.json", lambda p: json.loads(p.read_text())["$schema"].endswith("file-format-schema.json")),
    ("out.folded", lambda p: ";__main__.fib (recursive.py:4) " in p.read_text()),
    ("out.pb.gz", lambda p: decode_pprof(p.read_bytes())["sample"]),
    ("out.gprof2dot.json", lambda p: json.loads(p.read_text())["version"] == 0),
    ("out.html", lambda p: "<script" in p.read_text() and "__main__.fib" in p.read_text()),
    ("out.json", lambda p: json.loads(p.read_text())["version"] == 3),
    ("out.data", lambda p: json.loads(p.read_text())["version"] == 3),  # any other name: the JSON profile
])
def test_run_output_format_follows_the_name(tmp_path, name, check):
    out = tmp_path / name
    r = run_cprof(["-c", "cpu,ctxsw", "-o", str(out), RECURSIVE], check_rc=0)
    assert f"cprof: wrote {out}" in r.stderr
    assert check(out)
    assert list(tmp_path.glob(".cprof-*")) == []
    if name == "out.prof":
        assert "pstats of cpu, in seconds" in r.stderr


# ---------------------------------------------------------------- bad input: one sentence, exit 2

def test_unknown_format(saved):
    src, _ = saved
    one_sentence(export(src, "chrome", check_rc=None), "invalid choice", "chrome", "pstats")


def test_missing_format(saved):
    src, _ = saved
    one_sentence(run_cprof(["export", str(src)]), "--format")


def test_counter_the_profile_does_not_have(saved):
    src, _ = saved
    one_sentence(export(src, "pstats", "--counter", "instructions", check_rc=None),
                 "no counter 'instructions'", "cpu, wall, ctxsw")


@pytest.mark.parametrize("content", [b"", b"\x00\x01 not json", b"[1, 2]", b'{"version": 1, "func',
                                     b"[" * 200_000, b'{"version": 1, "functions": ' + b"9" * 5000 + b"}",
                                     b'{"version": 1e400, "functions": []}'],
                         ids=["empty", "binary", "list", "cut", "nested", "5000 digits", "version 1e400"])
def test_not_a_profile(tmp_path, content):
    bad = tmp_path / "bad.json"
    bad.write_bytes(content)
    one_sentence(export(bad, "pprof", check_rc=None), "bad.json")
    assert not list(tmp_path.glob("bad*.pb.gz"))


def test_a_pstats_file_given_as_the_profile(saved, tmp_path):
    src, _ = saved
    out = tmp_path / "x.prof"
    export(src, "pstats", "-o", str(out))
    one_sentence(export(out, "speedscope", check_rc=None), "is not a cprof profile")


@pytest.mark.parametrize("fraction", [0.3, 0.7, 0.95])
def test_truncated_profile(saved, tmp_path, fraction):
    src, _ = saved
    data = src.read_bytes()
    bad = tmp_path / "cut.json"
    bad.write_bytes(data[:int(len(data) * fraction)])
    one_sentence(export(bad, "collapsed", check_rc=None), "cut.json")


@pytest.mark.parametrize("damage,says", [
    ("parent after child", "tree.parent[3] is {last}, not a node before 3"),
    ("function out of range", "tree.function[2] is out of range (an integer from -1 to {maxid})"),
    ("short column", "tree.self.wall has {short} entries, not {n}"),
    ("edge to nowhere", "edges[0].callee is 10000, the id of no function (there are {nfn})")])
def test_damaged_tree_or_edges(saved, tmp_path, damage, says):
    src, prof = saved
    prof = json.loads(json.dumps(prof))
    t = prof["tree"]
    n, nfn = len(t["parent"]), len(prof["functions"])
    if damage == "parent after child":
        t["parent"][3] = n - 1
    elif damage == "function out of range":
        t["function"][2] = nfn
    elif damage == "short column":
        t["self"]["wall"].pop()
    else:
        prof["edges"][0]["callee"] = 10_000
    bad = tmp_path / "damaged.json"
    bad.write_text(json.dumps(prof))
    one_sentence(export(bad, "speedscope", check_rc=None), "/damaged.json' is a damaged cprof profile: ",
                 says.format(last=n - 1, maxid=nfn - 1, short=n - 1, n=n, nfn=nfn), "give a file written by cprof -o")


@pytest.mark.parametrize("folded", [0, 3])
def test_profile_without_a_tree(saved, tmp_path, folded):
    """A version-1 profile from before the call tree is read with a flat one (each
    function one node under the root, with its self): every format writes it, each
    stack one function; a version-2 profile without a tree is damaged."""
    src, prof = saved
    prof = json.loads(json.dumps(prof))
    del prof["tree"]
    health = prof["meta"].pop("health")
    for k in ("unmatched_exits", "backwards_readings", "distribution_values_lost"):
        prof["meta"][k] = health[k]
    prof["meta"]["tree_folded"] = folded
    old = tmp_path / "old.json"
    old.write_text(json.dumps({**prof, "version": 1}))
    export(old, "collapsed", "-c", "cpu", "-o", str(tmp_path / "old.folded"))
    lines = (tmp_path / "old.folded").read_text().splitlines()
    weights = {line.rsplit(" ", 1)[0]: int(line.rsplit(" ", 1)[1]) for line in lines}
    assert all(";" not in stack for stack in weights)
    assert sum(weights.values()) == sum(f["self"]["cpu"] for f in prof["functions"])
    for fmt in ("speedscope", "pprof", "gprof2dot"):
        export(old, fmt, "-o", str(tmp_path / f"old.{fmt}"))
    export(old, "pstats", "-o", str(tmp_path / "old.prof"))
    assert pstats.Stats(str(tmp_path / "old.prof")).total_calls > 0
    new = tmp_path / "new.json"
    new.write_text(json.dumps({**prof, "meta": {**prof["meta"], "health": health}}))
    one_sentence(export(new, "pstats", check_rc=None), "damaged", "tree is missing")


def test_output_folder_missing(saved, tmp_path):
    src, _ = saved
    one_sentence(export(src, "pprof", "-o", str(tmp_path / "nope" / "x.pb.gz"), check_rc=None),
                 "does not exist")


# ---------------------------------------------------------------- names that hold control characters

EVIL_NAME = "evil\nfake.frame 99"  # a newline, then what would look like a line of its own
EVIL_FILE = "odd\r\nfile.py"

NAMED = f'''
import types

def base(n):
    return sum(range(n))

code = base.__code__.replace(**{{k: {EVIL_NAME!r} for k in ("co_name", "co_qualname")
                                 if hasattr(base.__code__, k)}})
evil = types.FunctionType(code, globals())
other = {{}}
exec(compile("def odd(n):\\n    return sum(range(n))\\n", {EVIL_FILE!r}, "exec"), other)
for _ in range(3):
    evil(20000)
    other["odd"](20000)
'''


@pytest.fixture(scope="module")
def named(tmp_path_factory) -> tuple[Path, dict]:
    """A real profile of a function whose name holds a newline, and one whose file does."""
    folder = tmp_path_factory.mktemp("named")
    script = folder / "named.py"
    script.write_text(NAMED)
    path = folder / "named.json"
    run_cprof(["--distributions", "-o", str(path), str(script)], check_rc=0)
    prof = load(path)
    assert [f["name"] for f in prof["functions"] if "evil" in f["name"]] \
        in ([EVIL_NAME], ["__main__." + EVIL_NAME]), "the profiled name holds the newline"
    assert any(f["file"] == EVIL_FILE for f in prof["functions"])
    return path, prof


def test_control_characters_cannot_forge_lines(named, tmp_path):
    """Text outputs (report, --hist, compare, folded stacks, the error sentence) escape a
    newline or carriage return in a name or file; the structured formats keep the name
    exactly, their containers encode it."""
    src, prof = named
    evil = next(f["name"] for f in prof["functions"] if "evil" in f["name"])
    for text in (run_cprof(["report", str(src), "--all"], check_rc=0).stdout,
                 run_cprof(["report", str(src), "--hist", evil], check_rc=0).stdout,
                 run_cprof(["compare", str(src), str(src)], check_rc=0).stdout):
        lines = text.split("\n")
        assert not any(line.startswith("fake") or line.startswith("file.py") for line in lines), text
        assert "\r" not in text
        assert "evil\\nfake.frame 99" in text
    assert "odd\\r\\nfile.py" in run_cprof(["report", str(src), "--all"], check_rc=0).stdout

    export(src, "collapsed", "-o", str(tmp_path / "n.folded"))
    folded = (tmp_path / "n.folded").read_text()
    assert "\r" not in folded
    for line in folded.splitlines():
        assert re.fullmatch(r"[^;\n]+(;[^;\n]+)* \d+", line), line
    assert any(line.rsplit(" ", 1)[0].split(";")[-1].endswith("evil\\nfake.frame 99 (named.py:4)")
               for line in folded.splitlines())
    assert any("odd (odd\\r\\nfile.py:1)" in line for line in folded.splitlines())

    r = run_cprof(["report", str(src), "--hist", "evil\nfake"], check_rc=2)
    assert len(r.stderr.splitlines()) == 1 and "'evil\\nfake'" in r.stderr, r.stderr

    export(src, "speedscope", "-o", str(tmp_path / "n.speedscope.json"))
    frames = json.loads((tmp_path / "n.speedscope.json").read_text())["shared"]["frames"]
    assert evil in [f["name"] for f in frames] and EVIL_FILE in [f.get("file") for f in frames]
    export(src, "gprof2dot", "-o", str(tmp_path / "n.gprof2dot.json"))
    assert evil in [f["name"] for f in json.loads((tmp_path / "n.gprof2dot.json").read_text())["functions"]]
    export(src, "pprof", "-o", str(tmp_path / "n.pb.gz"))
    assert {evil, EVIL_FILE} <= set(decode_pprof((tmp_path / "n.pb.gz").read_bytes())["strings"])
    export(src, "pstats", "-o", str(tmp_path / "n.prof"))
    keys = marshal.loads((tmp_path / "n.prof").read_bytes())
    assert any(k[2] == evil for k in keys) and any(k[0] == EVIL_FILE for k in keys)


# ---------------------------------------------------------------- a full call tree

def fold_a_leaf(prof: dict) -> tuple[dict, str, int]:
    """The profile as if the engine's tree had been full when a leaf's path came: the
    leaf node's self lands on its parent node (what the engine does past 2^18 nodes), and
    meta.tree_folded counts it.  Returns (profile, the parent's function name, the wall
    moved)."""
    prof = json.loads(json.dumps(prof))
    t = prof["tree"]
    n = len(t["parent"])
    has_kids = set(t["parent"])
    leaf = max((i for i in range(1, n) if i not in has_kids and t["parent"][i] > 0
                and t["function"][t["parent"][i]] != t["function"][i]
                and prof["functions"][t["function"][t["parent"][i]]]["file"] != "~"),
               key=lambda i: t["self"]["wall"][i])
    p = t["parent"][leaf]
    moved = t["self"]["wall"][leaf]
    for c in t["self"]:
        t["self"][c][p] += t["self"][c][leaf]
        t["self"][c][leaf] = 0
    prof["meta"]["health"]["tree_folded"] = 1
    return prof, prof["functions"][t["function"][p]]["name"], moved


def test_a_full_call_tree_is_said_in_every_export(saved, tmp_path):
    """The call-path exports of a profile whose tree folded paths say so in their own
    metadata where the format has a place for it, and on stderr, naming the function
    the paths folded into; the text report says which of its lines it touches."""
    src, prof = saved
    prof, into, moved = fold_a_leaf(prof)
    assert moved > 0
    full = tmp_path / "full.json"
    full.write_text(json.dumps(prof))
    said = "1 call path folded into their parent node"
    outs = {}
    for fmt, ext in (("collapsed", "folded"), ("speedscope", "speedscope.json"), ("pprof", "pb.gz"),
                     ("gprof2dot", "gprof2dot.json"), ("pstats", "prof")):
        out = tmp_path / f"full.{ext}"
        r = export(full, fmt, "--counter", "wall", "-o", str(out))
        warn = [line for line in r.stderr.splitlines() if line.startswith("cprof: warning: ")]
        assert len(warn) == 1 and said in warn[0] and f"{into} +" in warn[0], r.stderr
        outs[fmt] = out
    doc = json.loads(outs["speedscope"].read_text())
    assert "[call tree full: 1 call paths folded into their parent]" in doc["name"]
    assert all("call tree full" in p["name"] for p in doc["profiles"])
    assert said in json.loads(outs["gprof2dot"].read_text())["comment"]
    p = decode_pprof(outs["pprof"].read_bytes())
    assert any(said in p["strings"][i] and into in p["strings"][i] for i in p["comment"])

    r = run_cprof(["report", str(full), "--html", "-o", str(tmp_path / "full.html")], check_rc=0)
    assert said in r.stderr
    page = (tmp_path / "full.html").read_text()
    data = json.loads(re.search(r'<script id="cprof-data" type="application/json">(.*?)</script>', page, re.S)[1])
    assert said in data["warning"] and f"{into} +" in data["warning"]
    assert 'id="warning"' in page

    report = run_cprof(["report", str(full)], check_rc=0).stdout
    assert "the call tree is full (1 call path folded into their parent node)" in report
    assert "call tree is full" not in run_cprof(["report", str(full), "--all"], check_rc=0).stdout

    # the unfolded profile: no note anywhere
    r = export(src, "collapsed", "-o", str(tmp_path / "plain.folded"))
    assert "warning" not in r.stderr
    export(src, "gprof2dot", "-o", str(tmp_path / "plain.gprof2dot.json"))
    assert "comment" not in json.loads((tmp_path / "plain.gprof2dot.json").read_text())


def test_pprof_varint_is_bounded():
    """A value beyond 64 bits is one sentence, not an endless loop (n >> 7 of a negative
    number never reaches 0); int64 and uint64 values encode in at most ten bytes."""
    from cprof import CprofError
    from cprof.exporters import pprof
    assert pprof._varint(-1) == b"\xff" * 9 + b"\x01" and len(pprof._varint((1 << 64) - 1)) == 10
    assert _uvarint(pprof._varint(-(1 << 63)), 0) == (1 << 63, 10)
    for n in (-(1 << 63) - 1, -(1 << 64) - 5, 1 << 64, 10**400):
        with pytest.raises(CprofError, match="64-bit integers"):
            pprof._varint(n)


def test_default_name_stays_beside_the_profile(saved, tmp_path):
    """The default export name is made from the counter and its unit, which come from
    the file: a '/' or a newline there does not lead it elsewhere."""
    src, prof = saved
    prof = json.loads(json.dumps(prof))
    prof["counters"][2]["unit"] = "../../x\ny"
    (tmp_path / "sub").mkdir()
    odd = tmp_path / "sub" / "odd.json"
    odd.write_text(json.dumps(prof))
    r = export(odd, "collapsed", "--counter", "ctxsw")
    assert [p.name for p in (tmp_path / "sub").iterdir() if p.name != "odd.json"] == ["odd.ctxsw-.._.._x_y.folded"]
    assert len(r.stderr.splitlines()) == 1 and "x\\ny" in r.stderr, r.stderr


def test_a_file_name_that_is_not_utf8(tmp_path):
    """A script under a folder whose name is not UTF-8: Python holds it with surrogate
    escapes (PEP 383) and so does the profile; cprof reads its own file back and every
    output copes (text escaped, JSON \\u escapes, pprof backslash escapes, pstats exact)."""
    folder = os.fsencode(tmp_path) + b"/caf\xe9"
    os.mkdir(folder)
    with open(folder + b"/s.py", "w") as f:
        f.write("def work():\n    return sum(range(10000))\n\nfor _ in range(3):\n    work()\n")
    prof = tmp_path / "latin.json"
    r = subprocess.run([sys.executable, "-m", "cprof", "-o", str(prof), folder + b"/s.py"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    odd = os.fsdecode(folder + b"/s.py")
    assert "\udce9" in odd and odd in [f["file"] for f in json.loads(prof.read_text())["functions"]]
    assert "s.py:1" in run_cprof(["report", str(prof), "--all"], check_rc=0).stdout
    run_cprof(["compare", str(prof), str(prof)], check_rc=0)
    run_cprof(["report", str(prof), "--html", "-o", str(tmp_path / "l.html")], check_rc=0)
    for fmt, ext in (("collapsed", "folded"), ("speedscope", "speedscope.json"), ("pprof", "pb.gz"),
                     ("gprof2dot", "gprof2dot.json"), ("pstats", "prof")):
        export(prof, fmt, "-o", str(tmp_path / f"l.{ext}"))
    assert any(s.endswith("caf\\udce9/s.py") for s in decode_pprof((tmp_path / "l.pb.gz").read_bytes())["strings"])
    assert any(k[0] == odd for k in marshal.loads((tmp_path / "l.prof").read_bytes()))
    assert odd in [f.get("file") for f in json.loads((tmp_path / "l.speedscope.json").read_text())["shared"]["frames"]]
