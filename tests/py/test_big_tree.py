"""A profile with a big call tree (a hundred thousand distinct paths through two
exec'd functions): the run's compact profile (tree columns as memoryviews) writes, loads back
and exports exactly as the JSON-ready one does, and writing it costs memory bounded by
a fraction of what it writes, not a multiple (the whole text built at once took about
ten times the file)."""
from __future__ import annotations

import ast
import json
import marshal
import os
import pstats
import shutil
import subprocess
import sys
import tracemalloc

import pytest

import cprof
from cprof import exporters, profile_file
from cprof.exporters import html

DEPTH = 16  # a full binary tree of calls: 2^(DEPTH+1) - 1 distinct paths


SOURCE = """
def left(d):
    if d:
        left(d - 1)
        right(d - 1)

def right(d):
    if d:
        left(d - 1)
        right(d - 1)
"""


def _program() -> dict:
    """Two exec'd functions calling each other: one tree node per path, five edges."""
    ns: dict = {}
    exec(compile(SOURCE, "bigtree.py", "exec"), ns)
    return ns


@pytest.fixture(scope="module")
def big():
    ns = _program()
    p = cprof.Profile(["cpu", "wall"])
    with p:
        ns["left"](DEPTH)
    return p


def test_the_tree_is_big_and_whole(big):
    prof = big._compact_profile()
    assert isinstance(prof["tree"]["parent"], memoryview)
    assert len(prof["tree"]["parent"]) > 2 ** (DEPTH + 1)
    assert len(prof["edges"]) < 50  # with the test runner's frames
    assert prof["meta"]["health"]["tree_folded"] == 0


def _listed(prof: dict) -> dict:
    """prof with its tree's columns as lists (a loaded version-3 file has memoryviews)."""
    t = prof["tree"]
    tree = {k: (list(t[k]) if k not in ("self", "total") else {c: list(v) for c, v in t[k].items()})
            for k in t}
    return {**prof, "tree": tree}


def test_compact_profile_round_trips_exactly(big, tmp_path):
    compact, plain = big._compact_profile(), big.profile()
    assert isinstance(plain["tree"]["parent"], list)
    out = tmp_path / "big.json"
    profile_file.write(compact, str(out))
    loaded = profile_file.load(str(out))
    assert isinstance(loaded["tree"]["parent"], memoryview)   # unpacked in C, no int per value
    assert _listed(loaded) == plain
    raw = json.loads(out.read_text())                          # plain JSON, as any reader sees it
    assert raw["version"] == 3 and raw["tree"]["nodes"] == len(plain["tree"]["parent"])
    assert raw["tree"]["encoding"] == "leb128-base64" and isinstance(raw["tree"]["parent"], str)
    assert {k: v for k, v in raw.items() if k != "tree"} == {k: v for k, v in plain.items() if k != "tree"}
    again = tmp_path / "again.json"
    profile_file.write(loaded, str(again))      # memoryviews write the same bytes as the run's
    assert again.read_bytes() == out.read_bytes()
    lists = tmp_path / "lists.json"
    profile_file.write(plain, str(lists))       # and so do lists
    assert lists.read_bytes() == out.read_bytes()


def _leb128(values) -> bytes:
    out = bytearray()
    for v in values:
        while v >= 0x80:
            out.append(v & 0x7F | 0x80)
            v >>= 7
        out.append(v)
    return bytes(out)


def test_the_packed_columns_are_as_the_readme_says(big):
    """base64 of LEB128 varints: parent as the distance back to it, function as id + 1."""
    import base64
    tree = big.profile()["tree"]
    n = len(tree["parent"])
    assert profile_file.pack_column(tree["parent"], 1) == \
        base64.b64encode(_leb128(i - p for i, p in enumerate(tree["parent"]))).decode()
    assert profile_file.pack_column(tree["function"], 2) == \
        base64.b64encode(_leb128(f + 1 for f in tree["function"])).decode()
    assert profile_file.pack_column(tree["self"]["cpu"]) == base64.b64encode(_leb128(tree["self"]["cpu"])).decode()
    assert n > 2 ** (DEPTH + 1)
    for col in ([], [0], [1, 2], [2 ** 63 - 1, 0, 127, 128, 16383, 16384]):  # every padding, 10-byte varints
        text = profile_file.pack_column(col)
        assert text == base64.b64encode(_leb128(col)).decode()
        from cprof import _cprof
        assert list(memoryview(_cprof.column_unpack(text, len(col), 0, 2 ** 63)).cast("q")) == col


def _as_version_2(prof: dict, path) -> None:
    """The profile as cprof wrote it before version 3: the tree's columns as JSON lists."""
    path.write_text(json.dumps({**prof, "version": 2}))


def test_a_version_2_file_loads_as_the_version_3_one(big, tmp_path):
    plain = big.profile()
    v2, v3 = tmp_path / "v2.json", tmp_path / "v3.json"
    _as_version_2(plain, v2)
    profile_file.write(big._compact_profile(), str(v3))
    a, b = profile_file.load(str(v2)), profile_file.load(str(v3))
    assert a["version"] == b["version"] == 3
    assert a == _listed(b) == plain
    assert os.path.getsize(v3) < os.path.getsize(v2) / 2   # and it is less than half the size


FORMATS = [("pstats", "prof"), ("speedscope", "speedscope.json"), ("collapsed", "folded"),
           ("pprof", "pb.gz"), ("gprof2dot", "gprof2dot.json")]


@pytest.mark.parametrize("fmt,ending", FORMATS)
def test_each_export_is_the_same_from_the_run_and_from_the_file(big, tmp_path, fmt, ending):
    """From the run, from its version-3 file and from the same profile as version 2."""
    src, v2 = tmp_path / "big.json", tmp_path / "v2.json"
    profile_file.write(big._compact_profile(), str(src))
    _as_version_2(big.profile(), v2)
    a, b, c = tmp_path / f"run.{ending}", tmp_path / f"file.{ending}", tmp_path / f"v2.{ending}"
    exporters.export(big._compact_profile(), fmt, str(a))
    exporters.export(profile_file.load(str(src)), fmt, str(b))
    exporters.export(profile_file.load(str(v2)), fmt, str(c))
    if fmt == "pstats":  # marshal's bytes depend on which strings are one object
        assert marshal.loads(a.read_bytes()) == marshal.loads(b.read_bytes()) == marshal.loads(c.read_bytes())
        st = pstats.Stats(str(a))
        assert {k[2] for k in st.stats} >= {"left", "right"}
    else:
        assert a.read_bytes() == b.read_bytes() == c.read_bytes()
    if fmt == "pprof" and shutil.which("go"):
        r = subprocess.run(["go", "tool", "pprof", "-raw", str(a)], capture_output=True, text=True,
                           timeout=300)
        assert r.returncode == 0, r.stderr
        assert "left" in r.stdout


def test_html_is_the_same_from_the_run_and_from_the_file(big, tmp_path):
    src = tmp_path / "big.json"
    profile_file.write(big._compact_profile(), str(src))
    _as_version_2(big.profile(), tmp_path / "v2.json")
    a, b, c = tmp_path / "run.html", tmp_path / "file.html", tmp_path / "v2.html"
    html.write(big._compact_profile(), str(a), "cpu", title="big")
    html.write(profile_file.load(str(src)), str(b), "cpu", title="big")
    html.write(profile_file.load(str(tmp_path / "v2.json")), str(c), "cpu", title="big")
    assert a.read_bytes() == b.read_bytes() == c.read_bytes()


def _peak(fn) -> int:
    """The most memory fn() held at once beyond what was held before (tracemalloc)."""
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        fn()
        return tracemalloc.get_traced_memory()[1] - before
    finally:
        tracemalloc.stop()


def _write_peaks(out: str) -> list:
    """In a process of its own (tracemalloc counts every thread's allocations, and the
    test runner's other threads are none of the writing's): the big profile, compact and
    as lists, each written once, then written again under tracemalloc; per form (peak,
    widest packed column, file size)."""
    ns = _program()
    p = cprof.Profile(["cpu", "wall"])
    with p:
        ns["left"](DEPTH)
    found = []
    for prof in (p._compact_profile(), p.profile()):
        profile_file.write(prof, out)   # the modules writing imports on first use are not its memory
        peak = _peak(lambda: profile_file.write(prof, out))
        t = prof["tree"]
        columns = [t["parent"], t["function"], t["calls"], *t["self"].values(), *t["total"].values()]
        widest = max(len(profile_file.pack_column(c, k)) for c, k in zip(columns, [1, 2] + [0] * 9))
        found.append((peak, widest, os.path.getsize(out)))
    return found


def test_writing_holds_a_fraction_of_the_file(tmp_path):
    """Writing holds a packed column or two at once (its varints, its text and that text's
    bytes), never the file's text: the whole text built at once took about ten times the
    file, and the version-2 lists a chunk of text a slice of a column at a time."""
    code = ("import sys; sys.path.insert(0, sys.argv[1]); import test_big_tree as t; "
            "print(repr(t._write_peaks(sys.argv[2])))")
    r = subprocess.run([sys.executable, "-c", code, os.path.dirname(os.path.abspath(__file__)),
                        str(tmp_path / "big.json")], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    for peak, widest, size in ast.literal_eval(r.stdout):
        bound = 4 * widest + (1 << 18)
        assert size > 1 << 20 and size > bound, (size, widest)   # less than the file
        assert peak < bound, (peak, widest, size)


def test_collapsed_holds_a_fraction_of_its_file(big, tmp_path):
    """Folded stacks are made a line at a time from interned paths: the text of every
    path at once (a dict of them, its lines, their join, its bytes) took 1.7 GB for a
    5.8 MB profile of black."""
    from cprof.exporters import collapsed
    prof = big._compact_profile()
    out = tmp_path / "big.folded"
    peak = _peak(lambda: collapsed.write(prof, str(out), "cpu"))
    size = os.path.getsize(out)
    assert size > 8 << 20, size
    assert peak < size / 2, (peak, size)


def test_collapsed_in_c_writes_what_lines_says(big, tmp_path):
    """The folded stacks written in C (collapsed.chunks) are lines(), the Python
    reference, byte for byte; a name that prints alike for two functions is one path."""
    from cprof.exporters import collapsed
    prof = big._compact_profile()
    out = tmp_path / "big.folded"
    collapsed.write(prof, str(out), "cpu")
    assert out.read_bytes() == "".join(line + "\n" for line in collapsed.lines(prof, "cpu")).encode()
    alike = {**prof, "functions": [{**f, "name": "same", "file": "~"} for f in prof["functions"]]}
    text = b"".join(collapsed.chunks(alike, "wall", size=1000))
    assert text == "".join(line + "\n" for line in collapsed.lines(alike, "wall")).encode()
    assert len(text.splitlines()) < len(out.read_bytes().splitlines())


def test_stats_hold_the_tree_in_columns(big):
    prof = big._compact_profile()
    nodes = len(prof["tree"]["parent"])
    columns = nodes * 8 * (3 + 2 * len(prof["counters"]))  # int64 parent, function, calls, self, total
    peak = _peak(big._compact_profile)
    # the columns, and a few functions and edges: a record per node in Python objects
    # took about 450 bytes each
    assert peak < columns + (2 << 20), (peak, columns)


def test_pprof_samples_refuse_a_tree_out_of_order():
    from cprof import _cprof
    good = _cprof.pprof_samples([-1, 0, 1], [-1, 0, 1], [[0, 5, 7]])
    # two samples: node 1 (ids [1]) self 5, node 2 (ids [2, 1], leaf first) self 7
    assert good == b"\x12\x06\x0a\x01\x01\x12\x01\x05" + b"\x12\x07\x0a\x02\x02\x01\x12\x01\x07"
    with pytest.raises(ValueError, match="node 1 has parent 1"):
        _cprof.pprof_samples([-1, 1], [-1, 0], [[0, 1]])
    with pytest.raises(ValueError, match="differ in length"):
        _cprof.pprof_samples([-1, 0], [-1], [[0, 1]])


def test_group_totals_count_each_outermost_subtree_once():
    from cprof import _cprof
    # root -> a(g0) -> b(g0) -> c(g1) -> d(g0); e(none) under the root
    parent, function = [-1, 0, 1, 2, 3, 0], [-1, 0, 1, 2, 3, 4]
    calls, total = [0, 1, 2, 3, 4, 5], [0, 100, 50, 20, 5, 7]
    groups = [0, 0, 1, 0, -1]
    c, prim, sums = _cprof.group_totals(parent, function, calls, groups, 2, [total])
    assert c == [1 + 4, 3]        # entries from outside the group: a (root), d (under c)
    assert prim == [1, 3]         # entries with no ancestor in it: a; c
    assert sums == [[100, 20]]    # their totals: d is inside a's subtree
    with pytest.raises(ValueError, match="node 1 has parent 1"):
        _cprof.group_totals([-1, 1], [-1, 0], [0, 1], [0], 1, [[0, 1]])


def test_the_column_check_names_the_first_bad_entry():
    """schema's tree column check in C (_cprof.first_bad_int): the same entries fail as
    Python's type(v) is int and lo <= v < hi did, and a parent not before its node."""
    from cprof import _cprof, schema
    first = _cprof.first_bad_int
    top = schema.INT_LIMIT
    assert first([], 0, top) == -1
    assert first([0, 5, top - 1], 0, top) == -1
    assert first([0, True], 0, top) == 1           # bool is not an int here
    assert first([0, 1.0], 0, top) == 1
    assert first([0, top], 0, top) == 1            # 2^63 does not fit
    assert first([0, -1], 0, top) == 1
    assert first([-top, top - 1], -top, top) == -1
    assert first([3, 4], 0, 4) == 1                # hi is excluded
    assert first([0, 1 << 70], 0, 1 << 80) == 1    # past int64 whatever hi says
    assert first([-1, 0, 1, 1], -1, top, True) == -1
    assert first([-1, 0, 2], -1, top, True) == 2   # parent 2 of node 2
    assert first([-1, 0, -1], -1, top, True) == 2  # only the root has none
    with pytest.raises(schema.Damaged, match=r"tree.parent\[2\] is 2, not a node before 2"):
        schema._tree({"parent": [-1, 0, 2], "function": [-1, 0, 0], "calls": [0, 1, 1],
                      "self": {"cpu": [0, 0, 0]}, "total": {"cpu": [0, 0, 0]}}, ["cpu"], 1)


def test_the_last_profile_merges_the_tree_in_place_to_the_same_numbers(tmp_path):
    """_compact_profile(consume=True), what the CLI writes at exit: the largest thread's tree
    merged in place instead of copied (stats(consume=True)) gives the same profile, number
    for number, as the copying merge of the same run, with functions of one identity (code
    objects exec'd alike, as dataclasses make them) merging and a second thread's tree
    added; afterwards the profiler says, in one sentence, that it has nothing left."""
    import threading

    ns = _program()
    twins = [{} for _ in range(3)]  # three code objects of one (name, file, line)
    for t in twins:
        exec(compile("def twin(f, d):\n    f(d)\n", "twins.py", "exec"), t)
    p = cprof.Profile(["wall"])

    def other():
        ns["right"](8)
        for t in twins:
            t["twin"](ns["left"], 3)

    with p:
        th = threading.Thread(target=other)
        th.start()
        th.join()
        ns["left"](10)
        for t in twins:
            t["twin"](ns["right"], 4)
    copied = p._compact_profile()
    moved = p._compact_profile(consume=True)
    tree_a, tree_b = copied.pop("tree"), moved.pop("tree")
    assert copied == moved
    assert [f["name"] for f in moved["functions"]].count("twin") == 1
    assert moved["meta"]["threads"] == 2
    for key in ("parent", "function", "calls"):
        assert tree_a[key].tolist() == tree_b[key].tolist()
    for key in ("self", "total"):
        assert {c: v.tolist() for c, v in tree_a[key].items()} == \
            {c: v.tolist() for c, v in tree_b[key].items()}
    assert len(tree_b["parent"]) > 2 ** 11
    with pytest.raises(cprof.CprofError, match="stats\\(consume=True\\)"):
        p._compact_profile()
    with pytest.raises(cprof.CprofError, match="stats\\(consume=True\\)"):
        p._compact_profile(consume=True, packed=True)
    with pytest.raises(cprof.CprofError, match="make a new Profiler"):
        p.enable()


def test_the_packed_tree_writes_the_file_the_columns_write(tmp_path):
    """_compact_profile(consume=True, packed=True), what `cprof -o FILE.json` writes at exit:
    the tree packed in C from the engine's tables (no int64 columns made) writes the very
    bytes the run's columns write, and loads back to the same profile."""
    import threading

    ns = _program()
    p = cprof.Profile(["wall", "cpu"])
    with p:
        th = threading.Thread(target=ns["right"], args=(9,))
        th.start()
        th.join()
        ns["left"](11)
    columns, packed = tmp_path / "columns.json", tmp_path / "packed.json"
    profile_file.write(p._compact_profile(), str(columns))
    prof = p._compact_profile(consume=True, packed=True)
    assert set(prof["tree"]) == {"nodes", "encoding", "parent", "function", "calls", "self",
                                 "total"}
    assert isinstance(prof["tree"]["parent"], str) and prof["tree"]["nodes"] > 2 ** 12
    profile_file.write(prof, str(packed))
    assert packed.read_bytes() == columns.read_bytes()
    assert len(profile_file.load(str(packed))["tree"]["parent"]) == prof["tree"]["nodes"]
