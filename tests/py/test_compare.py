"""cprof compare: known deltas on hand-made profiles, functions only on one side,
sorting, --counter, --fail-above exit codes, and one sentence for bad input."""
from __future__ import annotations

import json
import os
import re

import pytest

from conftest import SCRIPTS, run_cprof


def make_profile(functions: dict, region: dict | None = None, counters=("cpu", "ctxsw")) -> dict:
    """A version-1 profile: functions {name: (calls, {counter: self}, {counter: total})},
    all in main.py (built-ins when the name has no dot prefix '__main__.')."""
    units = {"cpu": "ns", "wall": "ns", "ctxsw": "switches"}
    fns = []
    for i, (name, (calls, self_v, total_v)) in enumerate(functions.items()):
        builtin = not name.startswith("__main__.")
        fns.append({"id": i, "name": name, "file": "~" if builtin else "/src/main.py", "line": 0 if builtin else 10 * i,
                    "calls": calls, "primitive_calls": calls,
                    "self": {c: self_v.get(c, 0) for c in counters}, "total": {c: total_v.get(c, 0) for c in counters}})
    if region is None:
        region = {c: sum(f["self"][c] for f in fns) for c in counters}
    n = len(fns) + 1
    return {"version": 1, "tool": "cprof 0.1.0",
            "counters": [{"name": c, "unit": units[c], "description": c, "read_path": "test"} for c in counters],
            "functions": fns, "edges": [],
            "tree": {"parent": [-1] + [0] * len(fns), "function": [-1] + list(range(len(fns))),
                     "calls": [0] + [f["calls"] for f in fns],
                     "self": {c: [0] + [f["self"][c] for f in fns] for c in counters},
                     "total": {c: [0] + [f["total"][c] for f in fns] for c in counters}},
            "meta": {"python": "3.12.1", "hook": "sys.monitoring", "threads": 1, "events": 2 * n,
                     "region": region, "unattributed": {c: 0 for c in counters}}}


BEFORE = {
    "__main__.main": (1, {"cpu": 1_000_000}, {"cpu": 10_000_000, "ctxsw": 3}),
    "__main__.slow": (10, {"cpu": 5_000_000}, {"cpu": 5_000_000}),
    "__main__.fast": (4, {"cpu": 2_000_000}, {"cpu": 2_000_000}),
    "time.sleep": (3, {"cpu": 2_000_000, "ctxsw": 3}, {"cpu": 2_000_000, "ctxsw": 3}),
    "__main__.removed": (1, {"cpu": 0}, {"cpu": 0}),
}
AFTER = {
    "__main__.main": (1, {"cpu": 1_000_000}, {"cpu": 12_000_000, "ctxsw": 2}),
    "__main__.slow": (10, {"cpu": 8_000_000}, {"cpu": 8_000_000}),          # +3 ms, +60%
    "__main__.fast": (4, {"cpu": 1_500_000}, {"cpu": 1_500_000}),          # -0.5 ms, -25%
    "time.sleep": (2, {"cpu": 1_000_000, "ctxsw": 2}, {"cpu": 1_000_000, "ctxsw": 2}),  # -1 ms, -50%
    "__main__.added": (7, {"cpu": 500_000}, {"cpu": 500_000}),             # only after
}


@pytest.fixture
def pair(tmp_path):
    b, a = tmp_path / "before.json", tmp_path / "after.json"
    b.write_text(json.dumps(make_profile(BEFORE)))
    a.write_text(json.dumps(make_profile(AFTER)))
    return b, a


def rows(stdout: str) -> dict:
    """function name -> (mark, cells) from the compare table."""
    lines = stdout.splitlines()
    head = next(i for i, line in enumerate(lines) if line.lstrip().startswith("calls "))
    at = lines[head].index("function") - 2
    out = {}
    for line in lines[head + 1:]:
        if not line.strip():
            break
        mark, rest = line[at], line[at + 2:]
        name = rest.rsplit("  (", 1)[0]
        out[name] = (mark, re.split(r"\s{2,}", line[:at].strip()))
    return out


def one_sentence(r, *needles):
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert "Traceback" not in r.stderr
    lines = r.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("cprof: error: "), r.stderr
    for n in needles:
        assert n in lines[0], (n, lines[0])


def test_known_deltas_sorted_and_marked(pair):
    b, a = pair
    r = run_cprof(["compare", str(b), str(a)], check_rc=0)
    table = rows(r.stdout)
    # largest absolute change of the first counter's self first
    assert list(table) == ["__main__.slow", "time.sleep", "__main__.fast", "__main__.added",
                           "__main__.main", "__main__.removed"]
    # columns: calls, then per counter: self change, %, total change, %
    assert table["__main__.slow"] == (" ", ["10", "+3 ms", "+60.0%", "+3 ms", "+60.0%", "0", "0%", "0", "0%"])
    assert table["__main__.fast"][1][1:5] == ["-500 us", "-25.0%", "-500 us", "-25.0%"]
    assert table["time.sleep"] == (" ", ["3->2", "-1 ms", "-50.0%", "-1 ms", "-50.0%", "-1", "-33.3%", "-1", "-33.3%"])
    assert table["__main__.main"][1][3:5] == ["+2 ms", "+20.0%"]
    assert table["__main__.added"] == ("+", ["0->7", "+500 us", "new", "+500 us", "new", "0", "0%", "0", "0%"])
    assert table["__main__.removed"][0] == "-" and table["__main__.removed"][1][0] == "1->0"
    assert "1 only after, marked +; 1 only before, marked -" in r.stdout
    assert "profiled: cpu 10 ms -> 12 ms (+2 ms, +20.0%), ctxsw 3 -> 2 (-1, -33.3%)" in r.stdout


def test_one_counter(pair):
    b, a = pair
    r = run_cprof(["compare", str(b), str(a), "--counter", "ctxsw"], check_rc=0)
    assert "cpu" not in r.stdout.split("\n\n", 1)[1]
    table = rows(r.stdout)
    assert list(table)[0] == "time.sleep"
    assert table["time.sleep"][1] == ["3->2", "-1", "-33.3%", "-1", "-33.3%"]


def test_limit(pair):
    b, a = pair
    r = run_cprof(["compare", str(b), str(a), "--limit", "2"], check_rc=0)
    assert list(rows(r.stdout)) == ["__main__.slow", "time.sleep"]
    assert "top 2 of 6 functions" in r.stdout


@pytest.mark.parametrize("args,code,says", [
    (["--fail-above", "25"], 0, "the profiled region's cpu went from 10 ms to 12 ms (+20.0%), not more than the 25%"),
    (["--fail-above", "20"], 0, "not more than the 20% allowed"),
    (["--fail-above", "19.9"], 1, "more than the 19.9% allowed"),
    (["--fail-above", "50", "--function", "__main__.slow"], 1, "__main__.slow's total cpu went from 5 ms to 8 ms (+60.0%)"),
    (["--fail-above", "60", "--function", "slow"], 0, "not more than the 60% allowed"),
    (["--fail-above", "0", "--function", "fast"], 0, "-25.0%"),
    (["--fail-above", "10", "--function", "time.sleep", "--counter", "ctxsw"], 0, "from 3 to 2"),
    (["--fail-above", "10", "--counter", "ctxsw"], 0, "ctxsw went from 3 to 2"),
])
def test_fail_above(pair, args, code, says):
    b, a = pair
    r = run_cprof(["compare", str(b), str(a), *args])
    assert r.returncode == code, r.stderr
    assert says in r.stderr, r.stderr
    assert r.stderr.startswith("cprof: FAIL: " if code else "cprof: ")
    assert "__main__.slow" in r.stdout  # the table is printed either way


@pytest.mark.parametrize("pct", ["-5", "nan"])
def test_fail_above_must_be_a_growth(pair, pct):
    """A negative limit failed every comparison ("went from 24.1 ms to 24.1 ms (+0.0%),
    more than the -5% allowed")."""
    b, a = pair
    r = run_cprof(["compare", str(b), str(a), "--fail-above", pct])
    assert r.returncode == 2 and r.stdout == "", r.stderr
    assert r.stderr.splitlines() == [
        f"cprof: error: --fail-above={float(pct)} is not a growth in percent; give 0 or more "
        "(--fail-above=5 fails when the region grew more than 5%)"]


def test_version():
    import cprof
    r = run_cprof(["--version"], check_rc=0)
    assert r.stdout == f"cprof {cprof.__version__}\n"


def test_fail_above_for_a_function_that_appeared(pair):
    b, a = pair
    r = run_cprof(["compare", str(b), str(a), "--fail-above", "10", "--function", "added"])
    one_sentence(r, "before.json", "no function named 'added'")


def test_fail_above_grown_from_zero(tmp_path):
    b, a = tmp_path / "b.json", tmp_path / "a.json"
    b.write_text(json.dumps(make_profile({"__main__.f": (1, {"cpu": 0}, {"cpu": 0})})))
    a.write_text(json.dumps(make_profile({"__main__.f": (1, {"cpu": 5}, {"cpu": 5})})))
    r = run_cprof(["compare", str(b), str(a), "--fail-above", "1000", "--function", "f"])
    assert r.returncode == 1 and "from zero" in r.stderr, r.stderr


def test_same_name_different_line_still_matches(tmp_path):
    """An edit above a function moves its line; it is still the same function."""
    before = make_profile({"__main__.f": (1, {"cpu": 100}, {"cpu": 100})})
    after = json.loads(json.dumps(before))
    after["functions"][0]["line"] += 7
    after["functions"][0]["file"] = "/elsewhere/main.py"
    after["functions"][0]["self"]["cpu"] = after["functions"][0]["total"]["cpu"] = 150
    b, a = tmp_path / "b.json", tmp_path / "a.json"
    b.write_text(json.dumps(before))
    a.write_text(json.dumps(after))
    r = run_cprof(["compare", str(b), str(a)], check_rc=0)
    assert rows(r.stdout) == {"__main__.f": (" ", ["1", "+50 ns", "+50.0%", "+50 ns", "+50.0%", "0", "0%", "0", "0%"])}


def test_two_real_runs(tmp_path):
    b, a = tmp_path / "b.json", tmp_path / "a.json"
    script = os.path.join(SCRIPTS, "recursive.py")
    for out in (b, a):
        run_cprof(["-c", "cpu,wall", "-o", str(out), script], check_rc=0)
    r = run_cprof(["compare", str(b), str(a), "--limit", "0"], check_rc=0)
    table = rows(r.stdout)
    assert "__main__.fib" in table and table["__main__.fib"][1][0] == "8361"
    assert all(mark == " " for mark, _ in table.values())  # the same functions on both sides


# ---------------------------------------------------------------- bad input

def test_counter_missing_on_one_side(tmp_path, pair):
    b, _ = pair
    other = tmp_path / "wall.json"
    other.write_text(json.dumps(make_profile({"__main__.f": (1, {"wall": 5}, {"wall": 5})}, counters=("wall",))))
    one_sentence(run_cprof(["compare", str(b), str(other)]), "no counter in common")
    one_sentence(run_cprof(["compare", str(b), str(other), "--counter", "cpu"]), "wall.json", "no counter 'cpu'",
                 "its counters are wall")


def test_not_a_profile(tmp_path, pair):
    b, _ = pair
    junk = tmp_path / "junk.json"
    junk.write_text("{not json")
    one_sentence(run_cprof(["compare", str(b), str(junk)]), "junk.json", "not a cprof profile")
    cut = tmp_path / "cut.json"
    cut.write_text(b.read_text()[:200])
    one_sentence(run_cprof(["compare", str(cut), str(b)]), "cut.json")
    one_sentence(run_cprof(["compare", str(b), str(tmp_path / "missing.json")]), "does not exist")


def test_function_without_fail_above(pair):
    b, a = pair
    one_sentence(run_cprof(["compare", str(b), str(a), "--function", "slow"]), "--fail-above")


def test_ambiguous_function(tmp_path):
    prof = make_profile({"__main__.A.run": (1, {"cpu": 1}, {"cpu": 1}), "__main__.B.run": (1, {"cpu": 1}, {"cpu": 1})})
    b = tmp_path / "b.json"
    b.write_text(json.dumps(prof))
    one_sentence(run_cprof(["compare", str(b), str(b), "--fail-above", "1", "--function", "run"]),
                 "matches several functions", "__main__.A.run, __main__.B.run")


def test_missing_second_file(pair):
    b, _ = pair
    one_sentence(run_cprof(["compare", str(b)]), "after")
