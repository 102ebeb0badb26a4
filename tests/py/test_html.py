"""The HTML report: one self-contained page, checked in a real headless browser
(Debian's chromium): it loads with no console error, shows the heaviest function of
a known profile first, and clicks (on a table row, on a box of the call tree) show
the function's callers; the counter switcher, search, fold toggle and sorting work.
The browser test skips, saying why, where no chromium is installed."""
from __future__ import annotations

import html
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import SCRIPTS, load, run_cprof

RECURSIVE = os.path.join(SCRIPTS, "recursive.py")


@pytest.fixture(scope="module")
def saved(tmp_path_factory) -> tuple[Path, dict]:
    folder = tmp_path_factory.mktemp("html")
    path = folder / "rec.json"
    run_cprof(["-c", "cpu,wall,ctxsw", "-o", str(path), RECURSIVE], check_rc=0)
    return path, load(path)


def report(src: Path, *extra: str, check_rc: int | None = 0):
    return run_cprof(["report", str(src), "--html", *extra], check_rc=check_rc)


def page_data(text: str) -> dict:
    m = re.search(r'<script id="cprof-data" type="application/json">(.*?)</script>', text, re.S)
    assert m, "no data element"
    return json.loads(m.group(1))


# ---------------------------------------------------------------- the file

def test_page_is_self_contained(saved):
    src, prof = saved
    out = src.parent / "self.html"
    r = report(src, "-o", str(out))
    assert f"cprof: wrote {out}" in r.stderr
    text = out.read_text()
    assert text.startswith("<!DOCTYPE html>")
    # nothing to fetch: no src/href attribute, no stylesheet link, no import, no URL
    assert not re.search(r"\s(src|href)\s*=", text)
    assert "<link" not in text and "@import" not in text and "fetch(" not in text
    assert "http://" not in text and "https://" not in text
    data = page_data(text)
    assert [f["name"] for f in data["functions"]] == [f["name"] for f in prof["functions"]]
    assert data["tree"]["parent"] == prof["tree"]["parent"]


def test_default_name_and_counter_choice(saved, tmp_path):
    src, _ = saved
    copy = tmp_path / "p.json"
    shutil.copy(src, copy)
    report(copy, "--counter", "wall")
    data = page_data((tmp_path / "p.html").read_text())
    assert data["counter"] == 1 and [c["name"] for c in data["counters"]] == ["cpu", "wall", "ctxsw"]


def test_names_cannot_break_out_of_the_page(saved, tmp_path):
    src, prof = saved
    prof = json.loads(json.dumps(prof))
    evil = "</script><script>alert(1)</script><!--"
    prof["functions"][1]["name"] = evil
    bad = tmp_path / "evil.json"
    bad.write_text(json.dumps(prof))
    out = tmp_path / "evil.html"
    report(bad, "-o", str(out))
    text = out.read_text()
    assert text.count("</script>") == 2 and "alert(1)</script>" not in text
    assert page_data(text)["functions"][1]["name"] == evil


@pytest.mark.parametrize("path,lib", [
    ("~", True),
    ("<frozen importlib._bootstrap>", True),
    ("/usr/lib/python3.11/json/decoder.py", True),
    ("/root/.pyenv/versions/3.12.1/lib/python3.12/threading.py", True),
    ("/home/u/venv/lib/python3.12/site-packages/requests/api.py", True),
    ("/usr/lib/python3/dist-packages/yaml/__init__.py", True),
    ("C:\\Python312\\Lib\\site-packages\\x.py", True),
    ("/home/u/project/app.py", False),
    ("/work/main/tests/py/scripts/recursive.py", False),
    ("<string>", False),
])
def test_what_counts_as_library(path, lib):
    # the classification the text report folds by (tests/py/test_focus.py has more)
    from cprof.focus import is_library
    paths = {"stdlib": ["/opt/python-prefix/lib"], "site": ["/opt/python-prefix/lib/site-packages"]}
    assert is_library({"name": "mod.f", "file": path, "line": 1}, paths) is lib


def test_library_under_this_pythons_prefix():
    import sysconfig
    import threading
    from cprof.focus import is_library
    assert is_library({"name": "threading.Thread.run", "file": threading.__file__, "line": 1})
    stdlib = sysconfig.get_paths()["stdlib"]
    assert is_library({"name": "anything.f", "file": os.path.join(stdlib, "anything.py"), "line": 1})
    # the prefix itself is not: it is /usr or /usr/local, which hold programs too (/usr/src/app)
    assert not is_library({"name": "main.f", "file": os.path.join(sys.prefix, "src", "app", "main.py"),
                           "line": 1})


def test_bad_input_is_one_sentence(saved, tmp_path):
    src, _ = saved
    for args, needle in ((["--counter", "instructions"], "no counter 'instructions'"),
                         (["-o", str(tmp_path / "no" / "x.html")], "does not exist")):
        r = report(src, *args, check_rc=2)
        assert "Traceback" not in r.stderr and len(r.stderr.splitlines()) == 1, r.stderr
        assert needle in r.stderr
    junk = tmp_path / "junk.json"
    junk.write_text("[]")
    r = report(junk, check_rc=2)
    assert "not a cprof profile" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "junk.html").exists()


def test_open_without_a_browser(saved, tmp_path):
    src, _ = saved
    out = tmp_path / "o.html"
    r = run_cprof(["report", str(src), "--open", "-o", str(out)], env={"BROWSER": "true"}, check_rc=0)
    assert out.exists() and "cprof: wrote" in r.stderr


# ---------------------------------------------------------------- in a real browser

def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    pytest.skip("no chromium on this machine (Debian: apt-get install chromium; tests/run.sh installs it)")


def run_browser(page: Path, tmp_path: Path, *extra: str) -> subprocess.CompletedProcess:
    cmd = [chromium(), "--headless", "--disable-gpu", "--no-sandbox", "--disable-dev-shm-usage",
           "--no-first-run", "--hide-scrollbars", f"--user-data-dir={tmp_path / 'chromium-profile'}",
           "--enable-logging=stderr", "--v=0", *extra, page.as_uri()]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=180)


def console_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if ":CONSOLE" in line]


# Drives the page as a user would (click, change, input events through the page's own
# handlers), then writes what it saw into <pre id="cprof-test"> for --dump-dom.
DRIVER = r"""
<script>
(function () {
  var out = {};
  function names(sel) { return Array.from(document.querySelectorAll(sel)).map(function (e) { return e.textContent; }); }
  try {
    out.rows = names("#functions tbody tr .fname");
    out.flame = names("#flame .box");
    out.title = document.getElementById("title").textContent;
    document.querySelector('#functions tbody tr[data-fn="FIB"]').click();
    out.selected = document.querySelector("#selected .fname").textContent;
    out.callers = names("#callers tbody tr .fname");
    out.callees = names("#callees tbody tr .fname");
    out.selectedRow = names("#functions tbody tr.selected .fname");
    out.selectedBoxes = document.querySelectorAll("#flame .box.selected").length;
    var box = Array.from(document.querySelectorAll("#flame .box")).filter(function (b) {
      return b.textContent === "__main__.even"; })[0];
    box.click();
    out.boxSelected = document.querySelector("#selected .fname").textContent;
    out.boxCallers = names("#callers tbody tr .fname");
    out.zoom = document.getElementById("flame-info").textContent;
    out.zoomedRoot = document.querySelectorAll("#flame .box.ancestor").length;
    document.getElementById("reset").click();
    out.afterReset = document.getElementById("flame-info").textContent;
    var sel = document.getElementById("counter");
    sel.value = "1"; sel.dispatchEvent(new Event("change"));
    out.current = names("#functions thead th.current");
    out.sorted = names("#functions thead th.sorted");
    var s = document.getElementById("search");
    s.value = "ODD"; s.dispatchEvent(new Event("input"));
    out.searchRows = names("#functions tbody tr .fname");
    out.dimmed = document.querySelectorAll("#flame .box.dim").length;
    out.undimmed = names("#flame .box:not(.dim)");
    s.value = ""; s.dispatchEvent(new Event("input"));
    out.foldedRows = names("#functions tbody tr .fname");
    document.getElementById("fold").click();
    out.unfoldedRows = names("#functions tbody tr .fname");
    document.querySelector('#functions thead th[data-kind="calls"]').click();
    out.byCalls = names("#functions tbody tr .fname")[0];
  } catch (e) { out.exception = String(e && e.stack || e); }
  out.errors = document.getElementById("errors").textContent;
  out.errorsHidden = document.getElementById("errors").hidden;
  var pre = document.createElement("pre");
  pre.id = "cprof-test";
  pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
})();
</script>
"""


def test_in_a_headless_browser(saved, tmp_path):
    chromium()
    src, prof = saved
    out = tmp_path / "rec.html"
    report(src, "-o", str(out))
    fns = {f["name"]: f for f in prof["functions"]}
    fib = fns["__main__.fib"]
    driven = tmp_path / "driven.html"
    driven.write_text(out.read_text().replace("</body>", DRIVER.replace("FIB", str(fib["id"])) + "</body>"))

    r = run_browser(driven, tmp_path, "--dump-dom")
    assert r.returncode == 0, r.stderr[-3000:]
    assert console_lines(r.stderr) == [], console_lines(r.stderr)  # no console error (nor any message)
    m = re.search(r'<pre id="cprof-test">(.*?)</pre>', r.stdout, re.S)
    assert m, r.stdout[-2000:]
    seen = json.loads(html.unescape(m.group(1)))
    assert "exception" not in seen, seen["exception"]
    assert seen["errors"] == "" and seen["errorsHidden"] is True

    # the heaviest function (cpu self) is the table's first row, and in the call tree;
    # which one it is (fib, or Tree.__init__ close behind) varies with the machine's load
    heaviest = max(prof["functions"], key=lambda f: f["self"]["cpu"])
    assert heaviest["name"] in ("__main__.fib", "__main__.Tree.__init__", "__main__.__init__")
    assert seen["rows"][0] == heaviest["name"]
    assert "__main__.fib" in seen["flame"] and "__main__.main" in seen["flame"]
    assert seen["title"] == "rec.json"

    # a click on its row shows its callers and callees (from the edges)
    callers = {prof["functions"][e["caller"]]["name"] for e in prof["edges"] if e["callee"] == fib["id"]}
    assert callers == {"__main__.fib", "__main__.main"}
    assert seen["selected"] == "__main__.fib"
    assert set(seen["callers"]) == callers
    assert seen["callees"] == ["__main__.fib"]
    assert seen["selectedRow"] == ["__main__.fib"] and seen["selectedBoxes"] >= 1

    # a click on a box of the call tree selects that function and zooms on it
    assert seen["boxSelected"] == "__main__.even"
    assert set(seen["boxCallers"]) == {"__main__.main", "__main__.odd"}
    assert "zoomed on __main__.even" in seen["zoom"] and seen["zoomedRoot"] >= 3
    assert "zoomed" not in seen["afterReset"]

    # the counter switcher re-sorts by the new counter
    assert seen["current"] == ["wall self", "wall total"] and seen["sorted"] == ["wall self"]

    # search (case-insensitive) filters the table and dims the rest of the tree
    assert seen["searchRows"] == ["__main__.odd"]
    assert seen["dimmed"] > 0 and set(seen["undimmed"]) <= {"all", "__main__.odd"}

    # folding: library functions called only from library code are left out of the table
    from cprof.focus import libraries
    lib = {i: label is not None for i, label in enumerate(libraries(prof))}
    from_program = {e["callee"] for e in prof["edges"] if not lib[e["caller"]]}
    at_root = {prof["tree"]["function"][i] for i, p in enumerate(prof["tree"]["parent"]) if p == 0}
    shown = {f["name"] for f in prof["functions"]
             if not lib[f["id"]] or f["id"] in from_program or f["id"] in at_root}
    assert set(seen["foldedRows"]) == shown and len(shown) < len(prof["functions"])
    assert "threading.enumerate" not in seen["foldedRows"]  # called by cprof's own code at exit
    assert sorted(seen["unfoldedRows"]) == sorted(f["name"] for f in prof["functions"])
    assert seen["byCalls"] == "__main__.fib"


def test_screenshot(saved, tmp_path):
    """A picture of the page as a person sees it (copied to $CPROF_KEEP_SCREENSHOT,
    when set, to look at)."""
    chromium()
    src, _ = saved
    out = tmp_path / "rec.html"
    report(src, "-o", str(out))
    png = tmp_path / "report.png"
    r = run_browser(out, tmp_path, f"--screenshot={png}", "--window-size=1400,1000")
    assert r.returncode == 0, r.stderr[-3000:]
    assert console_lines(r.stderr) == []
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000  # a drawn page, not a blank one
    keep = os.environ.get("CPROF_KEEP_SCREENSHOT")
    if keep:
        shutil.copy(png, keep)


def test_a_full_call_tree_shows_a_banner(saved, tmp_path):
    """When the call tree filled up, the page says so above everything, in words; and
    says nothing when it did not."""
    chromium()
    src, prof = saved
    prof = json.loads(json.dumps(prof))
    prof["meta"]["health"]["tree_folded"] = 5
    full = tmp_path / "full.json"
    full.write_text(json.dumps(prof))
    for source, expected in ((full, "Note: the call tree is full: 5 call paths folded into their parent node"),
                             (src, None)):
        out = tmp_path / (source.stem + ".html")
        report(source, "-o", str(out))
        r = run_browser(out, tmp_path, "--dump-dom")
        assert r.returncode == 0 and console_lines(r.stderr) == [], r.stderr[-3000:]
        m = re.search(r'<div id="warning" class="warning"( hidden(?:="")?)?>(.*?)</div>', r.stdout, re.S)
        assert m, r.stdout[-2000:]
        if expected is None:
            assert m.group(1) and m.group(2) == ""
        else:
            assert not m.group(1) and m.group(2).startswith(expected), m.group(0)
