"""A profile with a big call tree (a hundred thousand distinct paths through two
exec'd functions): the run's compact profile (tree columns as memoryviews) writes, loads back
and exports exactly as the JSON-ready one does, and writing it costs memory bounded by
a fraction of what it writes, not a multiple (the whole text built at once took about
ten times the file)."""
from __future__ import annotations

import json
import marshal
import os
import pstats
import shutil
import subprocess
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


def test_compact_profile_round_trips_exactly(big, tmp_path):
    compact, plain = big._compact_profile(), big.profile()
    assert isinstance(plain["tree"]["parent"], list)
    out = tmp_path / "big.json"
    profile_file.write(compact, str(out))
    loaded = profile_file.load(str(out))
    assert loaded == plain
    assert json.loads(out.read_text()) == plain  # plain JSON, as any reader sees it
    again = tmp_path / "again.json"
    profile_file.write(loaded, str(again))      # lists write the same bytes as memoryviews
    assert again.read_bytes() == out.read_bytes()


FORMATS = [("pstats", "prof"), ("speedscope", "speedscope.json"), ("collapsed", "folded"),
           ("pprof", "pb.gz"), ("gprof2dot", "gprof2dot.json")]


@pytest.mark.parametrize("fmt,ending", FORMATS)
def test_each_export_is_the_same_from_the_run_and_from_the_file(big, tmp_path, fmt, ending):
    src = tmp_path / "big.json"
    profile_file.write(big._compact_profile(), str(src))
    a, b = tmp_path / f"run.{ending}", tmp_path / f"file.{ending}"
    exporters.export(big._compact_profile(), fmt, str(a))
    exporters.export(profile_file.load(str(src)), fmt, str(b))
    if fmt == "pstats":  # marshal's bytes depend on which strings are one object
        assert marshal.loads(a.read_bytes()) == marshal.loads(b.read_bytes())
        st = pstats.Stats(str(a))
        assert {k[2] for k in st.stats} >= {"left", "right"}
    else:
        assert a.read_bytes() == b.read_bytes()
    if fmt == "pprof" and shutil.which("go"):
        r = subprocess.run(["go", "tool", "pprof", "-raw", str(a)], capture_output=True, text=True,
                           timeout=300)
        assert r.returncode == 0, r.stderr
        assert "left" in r.stdout


def test_html_is_the_same_from_the_run_and_from_the_file(big, tmp_path):
    src = tmp_path / "big.json"
    profile_file.write(big._compact_profile(), str(src))
    a, b = tmp_path / "run.html", tmp_path / "file.html"
    html.write(big._compact_profile(), str(a), "cpu", title="big")
    html.write(profile_file.load(str(src)), str(b), "cpu", title="big")
    assert a.read_bytes() == b.read_bytes()


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


def test_writing_holds_a_fraction_of_the_file(big, tmp_path):
    for prof in (big._compact_profile(), big.profile()):
        out = tmp_path / "big.json"
        peak = _peak(lambda: profile_file.write(prof, str(out)))
        size = os.path.getsize(out)
        assert size > 2 << 20, size
        # a quarter-MB buffer and its bytes, and a slice of a column: not the text
        assert peak < size / 2, (peak, size)


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
