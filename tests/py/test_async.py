"""asyncio mode (Profile(async_mode=True), cprof --async) against what the program
measured itself (scripts/async_gt.py): calls are calls, not resumes; a coroutine's
total holds the time it was suspended, as an [await] child, in the counters that grow
while it waits (wall, ctxsw) and not in the thread's cpu; the per-task view."""
import json
import os
import subprocess
import sys

import pytest

from conftest import SCRIPTS, fn, load, run_cprof

GT = os.path.join(SCRIPTS, "async_gt.py")
NS = 1e9
# The wall counter reads the TSC at a rate cprof calibrated against CLOCK_MONOTONIC (the
# clock the program reads, time.perf_counter): a profile's wall against the program's
# clock is good to that calibration (0.02% seen here), so those bounds allow 0.1%.
# The per-task view reads CLOCK_MONOTONIC itself: its bounds are exact.
LO, HI = 1 - 1e-3, 1 + 1e-3


def _run(tmp_path, scenario, mode="async"):
    out = str(tmp_path / f"{scenario}.json")
    r = subprocess.run([sys.executable, GT, scenario, out, mode], capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    with open(out + ".truth.json") as f:
        return load(out), json.load(f)


def _tasks(prof, coroutine):
    return [t for t in prof["tasks"] if t["coroutine"] == coroutine]


def _children(prof, parent_fn, child_name):
    """The tree nodes of `child_name` whose parent node is one of function parent_fn's."""
    tree, fns = prof["tree"], prof["functions"]
    out = []
    for i in range(1, len(tree["parent"])):
        p = tree["parent"][i]
        if fns[tree["function"][i]]["name"] == child_name and p > 0 and tree["function"][p] == parent_fn["id"]:
            out.append(i)
    return out


def test_gather_sleepers(tmp_path):
    prof, truth = _run(tmp_path, "gather")
    worker, sleep = fn(prof, "__main__.worker"), fn(prof, "asyncio.tasks.sleep")
    # calls, not resumes: each coroutine ran once, resumed once
    assert worker["calls"] == 100 and worker["resumes"] == 100
    assert sleep["calls"] == 100 and sleep["resumes"] == 100
    t0, t1 = truth["t0"], truth["t1"]
    marks = truth["marks"]
    measured = sum(end - start for start, end in marks.values())
    # a worker's total is its life, which holds what it measured of itself (start to end)
    # and lies inside the gather (t0 to t1)
    assert measured * NS * LO <= worker["total"]["wall"] <= 100 * (t1 - t0) * NS * HI
    assert worker["total"]["wall"] >= 100 * 0.1 * NS * LO
    # the waiting is an [await] child of the coroutine that awaited (sleep), holding
    # the wall and ctxsw of the wait but none of the thread's cpu (it ran other tasks)
    aw = fn(prof, "[await]")
    nodes = _children(prof, sleep, "[await]")
    assert nodes and sum(prof["tree"]["calls"][i] for i in nodes) == 100
    aw_wall = sum(prof["tree"]["total"]["wall"][i] for i in nodes)
    running = sleep["total"]["wall"] - aw_wall      # the sleeps' own running time
    assert 100 * 0.1 * NS * LO - running <= aw_wall <= measured * NS * HI
    assert aw["total"]["cpu"] == 0 and aw["self"]["cpu"] == 0
    poll = [f for f in prof["functions"] if f["name"] == "select.epoll.poll"]
    if poll and poll[0]["total"]["ctxsw"]:
        assert aw["total"]["ctxsw"] >= poll[0]["total"]["ctxsw"]
    # the loop's poll keeps only the time the loop was idle: at most the gather's time
    # less what the tasks ran; the waiting is the coroutines' (100 x 0.1 s), not its
    tasks = _tasks(prof, "__main__.worker")
    assert len(tasks) == 100
    if poll:
        assert poll[0]["total"]["wall"] + sum(t["running"] for t in tasks) <= (t1 - t0) * NS + 5e6
        assert poll[0]["total"]["wall"] < aw_wall / 50
    # per task: wall from creation (after t0) to done (before t1) holds its own start
    # to end; running + awaiting = wall; every one waited its sleep, bounded by what
    # the program measured of it (minus its own running time)
    for t in tasks:
        assert t["outcome"] == "returned" and t["exception"] is None
        assert t["running"] + t["awaiting"] == t["wall"]
        assert t["wall"] <= (t1 - t0) * NS
        assert 0.1 * NS - t["running"] <= t["awaiting"] <= (t1 - t0) * NS
    # conservation, [await] aside (task time, overlapping the thread's): exact
    for c in ("cpu", "wall", "ctxsw"):
        assert (sum(f["self"][c] for f in prof["functions"] if f["name"] != "[await]")
                + prof["meta"]["unattributed"][c]) == prof["meta"]["region"][c]
    starts_ends = sorted(end - start for start, end in marks.values())
    walls = sorted(t["wall"] for t in tasks)
    assert all(w >= m * NS for w, m in zip(walls, starts_ends))


def test_default_mode_counts_resumes(tmp_path):
    """Without async_mode, cProfile's semantics stay: each resume is a call, no tasks."""
    prof, _ = _run(tmp_path, "gather", "default")
    assert fn(prof, "__main__.worker")["calls"] == 200
    assert "tasks" not in prof and "resumes" not in fn(prof, "__main__.worker")
    assert not [f for f in prof["functions"] if f["name"] == "[await]"]


def test_cpu_bound_coroutine_total_is_its_cpu(tmp_path):
    prof, truth = _run(tmp_path, "cpu")
    spinner = fn(prof, "__main__.spinner")
    assert spinner["calls"] == 2 and spinner["resumes"] == 8
    spent = sum(truth["spent"]) * NS
    # its cpu is what it spent itself, not the other spinner's (run while it waited):
    # the [await] children take no cpu
    assert spent * 0.98 - 1e6 <= spinner["total"]["cpu"] <= spent * 1.02 + 2e6
    assert fn(prof, "[await]")["total"]["cpu"] == 0
    # its wall is its life: both spinners' work interleaved, so more than its own half
    assert spinner["total"]["wall"] >= spinner["total"]["cpu"]
    for t in _tasks(prof, "__main__.spinner"):
        assert t["running"] + t["awaiting"] == t["wall"] and t["outcome"] == "returned"


def test_wait_for_timeout_cancels(tmp_path):
    prof, truth = _run(tmp_path, "wait_for")
    assert truth["timed_out"]
    slow = fn(prof, "__main__.slow")
    assert slow["calls"] == 1
    (task,) = _tasks(prof, "__main__.slow")
    # cancelled at the timeout: its life is at least the 0.05 s timeout, at most the
    # wait_for's
    assert 0.05 * NS - task["running"] <= task["awaiting"]
    assert task["wall"] <= truth["elapsed"] * NS
    assert task["outcome"] == ("cancelled" if sys.version_info >= (3, 12) else "raised")
    # slow() runs from its start until the timeout cancels it: the timer starts after
    # the task's creation, so its life is at least the timeout less its wait to start
    start_delay = task["started"] - task["created"]
    assert (0.05 * NS - start_delay) * LO <= slow["total"]["wall"] <= truth["elapsed"] * NS * HI


def test_task_raising(tmp_path):
    prof, truth = _run(tmp_path, "raising")
    assert truth["results"] == ["ValueError", "NoneType"]
    (bad,) = [t for t in prof["tasks"] if t["name"] == "bad"]
    assert bad["coroutine"] == "__main__.raiser" and bad["outcome"] == "raised"
    assert bad["exception"] == ("ValueError" if sys.version_info >= (3, 12) else None)
    assert fn(prof, "__main__.raiser")["calls"] == 1
    assert bad["wall"] >= 0.01 * NS


@pytest.mark.skipif(sys.version_info < (3, 11), reason="asyncio.TaskGroup is 3.11+")
def test_task_group(tmp_path):
    prof, truth = _run(tmp_path, "taskgroup")
    assert truth["raised"]
    by_name = {t["name"]: t for t in prof["tasks"]}
    assert by_name["raiser"]["outcome"] == "raised"
    for name in ("long-1", "long-2"):   # cancelled when the raiser failed, long before 5 s
        t = by_name[name]
        assert t["coroutine"] == "__main__.sleeper"
        assert t["outcome"] == ("cancelled" if sys.version_info >= (3, 12) else "raised")
        assert 0.01 * NS - t["running"] <= t["awaiting"] and t["wall"] <= truth["elapsed"] * NS
    assert fn(prof, "__main__.sleeper")["calls"] == 2
    assert fn(prof, "__main__.raiser")["calls"] == 1


def test_loops_in_threads(tmp_path):
    """Two event loops in two threads (and the main thread's, waiting for them): each
    thread keeps its own coroutines and tasks."""
    prof, truth = _run(tmp_path, "threads")
    assert truth["done"] == [10, 10] and truth["alive"] == [False, False]
    worker = fn(prof, "__main__.worker")
    assert worker["calls"] == 20 and worker["resumes"] == 20
    tasks = _tasks(prof, "__main__.worker")
    assert len(tasks) == 20 and len({t["thread"] for t in tasks}) == 2
    for t in tasks:
        assert t["outcome"] == "returned" and t["running"] + t["awaiting"] == t["wall"]
        assert t["awaiting"] >= 0.1 * NS - t["running"]


def test_cli_async_and_report_by_task(tmp_path):
    script = tmp_path / "prog.py"
    script.write_text("import asyncio, sys\n"
                      "async def job(i):\n    await asyncio.sleep(0.01)\n\n"
                      "async def main():\n"
                      "    await asyncio.gather(*(asyncio.create_task(job(i), name=f'job-{i}') "
                      "for i in range(3)))\n"
                      "asyncio.run(main())\nprint('done')\nsys.exit(3)\n")
    out = tmp_path / "p.json"
    r = run_cprof(["--async", "-o", str(out), str(script)], cwd=str(tmp_path))
    assert r.returncode == 3 and r.stdout == "done\n", r.stderr
    prof = load(str(out))
    assert prof["meta"]["async"] is True
    assert fn(prof, "__main__.job")["calls"] == 3
    r = run_cprof(["report", str(out), "--by-task"], check_rc=0)
    # asyncio.run's own shutdown tasks are tasks too
    assert r.stdout.startswith("tasks: ") and "returned" in r.stdout
    for i in range(3):
        assert f"job-{i}  __main__.job" in r.stdout
    r = run_cprof(["report", str(out), "--sort=wall"], check_rc=0)
    assert "job-0  __main__.job" in r.stdout and "[await]" in r.stdout
    # a profile made without --async: the report says how to get tasks
    plain = tmp_path / "plain.json"
    run_cprof(["-o", str(plain), str(script)], cwd=str(tmp_path), check_rc=3)
    r = run_cprof(["report", str(plain), "--by-task"], check_rc=0)
    assert "not made in asyncio mode" in r.stdout


def test_async_with_trace_refused(tmp_path):
    script = tmp_path / "prog.py"
    script.write_text("pass\n")
    r = run_cprof(["--async", "--trace=app", str(script)])
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.count("\n") == 1 and "--async" in r.stderr and "--trace" in r.stderr


TASKS_DRIVER = r"""
<script>
(function () {
  var out = {};
  try {
    out.hidden = document.getElementById("tasks").hidden;
    out.rows = Array.from(document.querySelectorAll("#task-table tbody tr")).map(function (r) {
      return Array.from(r.cells).map(function (c) { return c.textContent; });
    });
    var row = Array.from(document.querySelectorAll("#task-table tbody tr")).filter(function (r) {
      return r.cells[1].textContent === "__main__.job";
    })[0];
    row.click();
    out.selected = document.querySelector("#selected .fname").textContent;
  } catch (e) { out.exception = String(e); }
  out.errors = document.getElementById("errors").textContent;
  var pre = document.createElement("pre");
  pre.id = "cprof-test";
  pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
})();
</script>
"""


def test_html_report_lists_tasks(tmp_path):
    import html
    import re

    from test_html import chromium, console_lines, run_browser
    chromium()
    script = tmp_path / "prog.py"
    script.write_text("import asyncio\n"
                      "async def job(i):\n    await asyncio.sleep(0.01)\n\n"
                      "async def main():\n"
                      "    await asyncio.gather(*(asyncio.create_task(job(i), name=f'job-{i}') "
                      "for i in range(3)))\nasyncio.run(main())\n")
    out = tmp_path / "p.json"
    run_cprof(["--async", "-o", str(out), str(script)], cwd=str(tmp_path), check_rc=0)
    page = tmp_path / "p.html"
    run_cprof(["report", str(out), "--html", "-o", str(page)], check_rc=0)
    driven = tmp_path / "driven.html"
    driven.write_text(page.read_text().replace("</body>", TASKS_DRIVER + "</body>"))
    r = run_browser(driven, tmp_path, "--dump-dom")
    assert r.returncode == 0, r.stderr[-3000:]
    assert console_lines(r.stderr) == [], console_lines(r.stderr)
    seen = json.loads(html.unescape(re.search(r'<pre id="cprof-test">(.*?)</pre>', r.stdout, re.S).group(1)))
    assert "exception" not in seen, seen["exception"]
    assert seen["errors"] == "" and seen["hidden"] is False
    jobs = sorted(row[0] for row in seen["rows"] if row[1] == "__main__.job")
    assert jobs == ["job-0", "job-1", "job-2"]
    assert all(row[5] == "returned" for row in seen["rows"])
    assert seen["selected"] == "__main__.job"     # a task's row selects its coroutine
    # a profile without tasks: the page as it was (test_format's v1.html holds it byte
    # for byte), without the section
    plain = tmp_path / "plain.json"
    run_cprof(["-o", str(plain), str(script)], cwd=str(tmp_path), check_rc=0)
    run_cprof(["report", str(plain), "--html", "-o", str(tmp_path / "plain.html")], check_rc=0)
    text = (tmp_path / "plain.html").read_text()
    assert 'id="tasks"' not in text and '"tasks"' not in text
