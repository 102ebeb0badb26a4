"""The profile file's versions: a version-1 file, written by cprof before the format
had a version 2 (tests/py/data/v1/v1.json, made by the cprof of commit f771713), is
read through the one upgrade step and reports and exports exactly as it did then
(the expected outputs beside it were written by that cprof)."""
from __future__ import annotations

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
    assert (here / f"out.{fmt}").read_bytes() == (DATA / f"v1.out.{fmt}").read_bytes()


def test_a_version_1_file_makes_the_same_html(here):
    r = cprof("report", "v1.json", "--html", "-o", "out.html", "-c", "wall", cwd=here)
    assert r.returncode == 0, r.stderr
    assert (here / "out.html").read_bytes() == (DATA / "v1.html").read_bytes()


def test_an_old_version_1_file_without_tree_exports_its_counter_as_before(here):
    # written before cprof kept the call tree, distributions and meta.paths
    r = cprof("export", "v1-old.json", "-f", "pstats", "-c", "wall", "-o", "out.prof", cwd=here)
    assert r.returncode == 0, r.stderr
    assert (here / "out.prof").read_bytes() == (DATA / "v1-old.out.pstats").read_bytes()
