"""A seeded, bounded mutation fuzzer over every reader of a profile: `cprof report`
(text, --all, --focus, --sort, --hist, --html), `cprof compare` (both sides) and the
five exports, run in-process (cli.main) on damaged copies of real profiles.

A mutation deletes a key or a list entry, changes a value's type, puts in a huge,
negative, NaN or infinite number, a wrong id, a truncated or duplicated list, a
string with control characters or a lone surrogate, or damages the JSON text itself.
Every call must end with cprof's own answer: exit 0 (or 1 for compare --fail-above)
with no traceback, or exit 2 with exactly one `cprof: error:` line; and within
CALL_SECONDS.  Failures are listed by kind (exception and where it was raised) with a
case that reproduces each: rerun with CPROF_FUZZ_SEED and CPROF_FUZZ_CASES.

CPROF_FUZZ_CASES (default 250 damaged profiles, each through the 15 readers: 3,750
calls, 15-40 s on a shared 2-core machine) and CPROF_FUZZ_SEED (default 12) choose
the run."""
from __future__ import annotations

import contextlib
import copy
import io
import json
import os
import random
import re
import signal
import time
import traceback
from pathlib import Path

import pytest

from conftest import SCRIPTS, load, run_cprof
from cprof import cli

CASES = int(os.environ.get("CPROF_FUZZ_CASES", "250"))
SEED = int(os.environ.get("CPROF_FUZZ_SEED", "12"))
CALL_SECONDS = 10.0  # far above any honest call on these small profiles, even on a loaded machine

WEIRD = [None, True, False, 0, -1, 1, 2, 7, 2**31, 2**63 - 1, 2**63, 2**64, -2**63, -2**63 - 1,
         -2**64 - 5, 10**400, -10**400, 0.5, -0.0, 1e308, float("nan"), float("inf"), float("-inf"),
         "", "x", "cpu", "wall", "~", "a\nb", "a;b c 12", "\r\x00\x1b[2J", "\u2028", "\ud800",
         "<script>alert(1)</script>", "x" * 5000, [], [0], [-1, -1], [None], [[0, 1, 2]], {},
         {"cpu": 1}, {"cpu": None}, {"x": {}}]


def _paths(doc, at=()):
    """A random walk from the root to some node: the path of keys and indices."""
    path = list(at)
    node = doc
    rng = _paths.rng
    while True:
        if isinstance(node, dict) and node and rng.random() < 0.85:
            k = rng.choice(list(node))
        elif isinstance(node, list) and node and rng.random() < 0.85:
            # lists are long (functions, tree columns): favour both ends and a random middle
            k = rng.choice([0, len(node) - 1, rng.randrange(len(node))])
        else:
            return path
        path.append(k)
        node = node[k]


def _mutate_value(v, rng: random.Random):
    choice = rng.random()
    if choice < 0.45:
        return copy.deepcopy(rng.choice(WEIRD))
    if isinstance(v, bool):
        return not v
    if isinstance(v, int):
        as_float = float(v) if abs(v) < 2**1000 else 1e300
        return rng.choice([v + 1, v - 1, -v, -v - 1, v * 2**40, v + 2**63, str(v), as_float, [v]])
    if isinstance(v, float):
        return rng.choice([int(v) if v == v and abs(v) != float("inf") else 0, -v, v * 1e300, str(v)])
    if isinstance(v, str):
        return rng.choice([v + "\n" + v, v[: len(v) // 2], v + ";x 1",
                           v.encode("utf-8", "surrogatepass").hex(), 5, None])
    if isinstance(v, list):
        if not v:
            return [rng.choice(WEIRD)]
        return rng.choice([v[: rng.randrange(len(v))], v + v[:1], v[::-1], v[1:], {"0": v[0]},
                           [rng.choice(WEIRD)] + v[1:]])
    if isinstance(v, dict):
        keys = list(v)
        if not keys:
            return {"x": 1}
        k = rng.choice(keys)
        out = dict(v)
        op = rng.random()
        if op < 0.4:
            del out[k]
        elif op < 0.7:
            out[k + "x"] = out.pop(k)
        else:
            out[k] = rng.choice(WEIRD)
        return out
    return rng.choice(WEIRD)


def mutate(profile: dict, rng: random.Random) -> tuple[str, str]:
    """A damaged copy of the profile as JSON text, and what was done to it."""
    doc = copy.deepcopy(profile)
    done = []
    for _ in range(rng.choice([1, 1, 1, 2, 3])):
        _paths.rng = rng
        path = _paths(doc)
        if not path:
            continue
        holder = doc
        for k in path[:-1]:
            holder = holder[k]
        k = path[-1]
        if rng.random() < 0.2:  # remove the key or entry
            del holder[k]
            done.append(f"del {path}")
        else:
            holder[k] = _mutate_value(holder[k], rng)
            done.append(f"set {path} = {_short(holder[k])}")
    text = json.dumps(doc)  # NaN and Infinity as Python writes them, which json.load reads
    if rng.random() < 0.05:
        cut = rng.randrange(len(text))
        text = text[:cut]
        done.append(f"text cut at {cut}")
    elif rng.random() < 0.05:
        at = rng.randrange(len(text))
        text = text[:at] + rng.choice(["\x00", "9", "]", "\\", "{"]) + text[at + 1:]
        done.append(f"text byte {at} changed")
    return text, "; ".join(done) or "unchanged"


def _short(v) -> str:
    r = repr(v)
    return r if len(r) < 60 else r[:57] + "..."


# what a name from the profile must never put into a line-based output: control
# characters (a newline only as cprof's own line end) and Unicode line separators
_CONTROL = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u2028\u2029]")


def forged(text: str) -> bool:
    """Whether text holds a character or a line that came raw from a damaged name."""
    return bool(_CONTROL.search(text)) or "a\nb" in text


class _Timeout(Exception):
    pass


def _alarm(signum, frame):
    raise _Timeout()


def call(argv: list[str]) -> tuple[int | None, str, str, str | None]:
    """cli.main(argv) in this process: (exit code, stdout, stderr, problem or None)."""
    out, err = io.StringIO(), io.StringIO()
    problem = None
    rc = None
    old = signal.signal(signal.SIGALRM, _alarm)
    signal.setitimer(signal.ITIMER_REAL, CALL_SECONDS)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            rc = cli.main(argv)
    except _Timeout:
        problem = f"no answer in {CALL_SECONDS:g} s"
    except BaseException as e:  # noqa: B036 (SystemExit and KeyboardInterrupt are findings too)
        tb = traceback.extract_tb(e.__traceback__)[-1]
        problem = f"{type(e).__name__} at {os.path.basename(tb.filename)}:{tb.lineno} ({tb.name})"
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
    stderr = err.getvalue()
    if problem is None:
        lines = stderr.splitlines()
        if rc == 2:
            if len(lines) != 1 or not lines[0].startswith("cprof: error: "):
                problem = "exit 2 without exactly one 'cprof: error:' line"
        elif rc not in (0, 1) or (rc == 1 and argv[:1] != ["compare"]):
            problem = f"exit {rc}"
        elif not all(line.startswith("cprof: ") for line in lines) or forged(stderr):
            problem = "stderr holds a line not from cprof"
        elif forged(out.getvalue()):
            problem = "a name forged a line or a control character in the output"
    return rc, out.getvalue(), stderr, problem


def readers(path: str, good: str, out: str, hist: str) -> list[list[str]]:
    """Every reader of a profile, as command lines."""
    cmds = [["report", path], ["report", path, "--all", "--limit", "0"],
            ["report", path, "--focus", "__main__,recursive*", "--sort", "wall.total"],
            ["report", path, "--sort", "calls", "--limit", "5"],
            ["report", path, "--hist", hist], ["report", path, "--hist", hist, "--counter", "wall"],
            ["report", path, "--html", "-o", out + ".html", "--counter", "wall"],
            ["compare", good, path], ["compare", path, good, "--fail-above", "5", "--function", hist]]
    for fmt in ("pstats", "speedscope", "collapsed", "pprof", "gprof2dot"):
        cmds.append(["export", path, "--format", fmt, "-o", f"{out}.{fmt}", "--counter", "wall"])
    cmds.append(["export", path, "--format", "collapsed"])  # named after its counter and unit
    return cmds


@pytest.fixture(scope="module")
def bases(tmp_path_factory) -> list[dict]:
    """Real profiles to damage: recursive.py with per-call distributions, slowest calls
    and three counters; the same claiming a full call tree (tree_folded); and the first
    with its tree's columns as lists (version 3 reads both)."""
    folder = tmp_path_factory.mktemp("fuzz")
    path = folder / "base.json"
    run_cprof(["-c", "cpu,wall,ctxsw", "--distributions", "--slow-calls", "2", "-o", str(path),
               os.path.join(SCRIPTS, "recursive.py")], check_rc=0)
    base = json.loads(path.read_text())
    folded = copy.deepcopy(base)
    folded["meta"]["health"]["tree_folded"] = 3
    return [base, folded, load(path)]  # the last with its tree's columns as lists, not packed


def test_readers_survive_damaged_profiles(bases, tmp_path):
    good = tmp_path / "good.json"
    good.write_text(json.dumps(bases[0]))
    bad = tmp_path / "bad.json"
    out = str(tmp_path / "out")
    hist = "fib"
    rng = random.Random(SEED)
    found: dict[str, str] = {}
    calls = 0
    ok = 0
    start = time.monotonic()
    for case in range(CASES):
        text, what = mutate(bases[case % len(bases)], rng)
        bad.write_text(text)
        for argv in readers(str(bad), str(good), out, hist):
            rc, _, _, problem = call(argv)
            folded = Path(out + ".collapsed")
            if rc == 0 and argv[-3:-2] == [str(folded)] and forged(folded.read_text("utf-8")):
                problem = "a name forged a line or a control character in the folded stacks"
            calls += 1
            ok += rc == 0
            if problem and problem not in found:
                found[problem] = f"case {case} ({what}): cprof {' '.join(argv[:1] + argv[2:])}"
    spent = time.monotonic() - start
    print(f"fuzz: seed {SEED}, {CASES} damaged profiles, {calls} calls ({ok} exit 0) "
          f"in {spent:.1f} s, {len(found)} kinds of failure")
    assert not found, "\n".join(f"{p}\n    {r}" for p, r in found.items())


def test_the_fuzzer_finds_a_crash(bases, tmp_path, monkeypatch):
    """The harness itself: a reader that raises, and one that hangs, are reported."""
    good = tmp_path / "good.json"
    good.write_text(json.dumps(bases[0]))
    from cprof import report
    monkeypatch.setattr(report, "format_report", lambda *a, **k: 1 / 0)
    assert call(["report", str(good)])[3].startswith("ZeroDivisionError")
    monkeypatch.setattr(report, "format_report", lambda *a, **k: time.sleep(60))
    monkeypatch.setattr(__import__(__name__), "CALL_SECONDS", 0.2)
    assert call(["report", str(good)])[3] == "no answer in 0.2 s"
