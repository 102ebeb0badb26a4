"""asyncio mode (cprof --async, Profile(async_mode=True)): what the profile gets from
it (each coroutine function's resumes, the per-task view, meta.async) and the
report's tasks section (cprof report --by-task).

The C side (pyext/async.c) counts a coroutine's calls once, keeps its resumes apart,
and charges the time it was suspended to it, as an [await] child; this module names
what Profiler.async_stats() returns and lays out the tasks."""
from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


def add(profile: dict, raw: dict) -> None:
    """Into `profile` (build.build's, before it is written): "resumes" on each coroutine
    function that was resumed, the "tasks" list, and meta.async."""
    from . import build
    ids = {(f["name"], f["file"], f["line"]): f for f in profile["functions"]}
    for entry, count in raw["resumes"]:
        if entry is None:
            continue
        f = ids.get(build.describe(*entry))
        if f is not None:
            f["resumes"] = f.get("resumes", 0) + count
    end = raw["end"]
    tasks = []
    for t in sorted(raw["tasks"], key=lambda t: t["created"] or 0):
        coro = build.describe(*t["coroutine"]) if t["coroutine"] is not None else None
        f = ids.get(coro) if coro is not None else None
        done = t["done"]
        wall = (done if done is not None else end) - t["created"]
        running = min(t["running"], wall)
        tasks.append({"name": t["name"], "coroutine": coro[0] if coro else None,
                      "function": f["id"] if f is not None else None,
                      "thread": t["thread"], "created": t["created"], "started": t["started"],
                      "done": done, "wall": wall, "running": running,
                      "awaiting": wall - running, "outcome": t["outcome"],
                      "exception": t["exception"]})
    profile["tasks"] = tasks
    profile["meta"]["async"] = True


def _ms(ns: int) -> str:
    from .report import human
    return human(ns, "ns")


def format_tasks(profile: Any, limit: int = 25) -> str:
    """The tasks section: one line per task (longest wall first; limit 0: all), with
    its coroutine, wall from creation to done, time running and awaiting, and how it
    ended; then the tasks per coroutine when there are more tasks than lines."""
    from .schema import printable as _p
    tasks = profile.get("tasks") or []
    if not tasks:
        if profile.get("meta", {}).get("async"):
            return "tasks: none (no asyncio task was created while profiling)\n"
        return ("tasks: none; this profile was not made in asyncio mode (profile with "
                "cprof --async, or Profile(async_mode=True))\n")
    ordered = sorted(tasks, key=lambda t: t["wall"], reverse=True)
    shown = ordered[:limit] if limit > 0 else ordered
    pending = sum(t["outcome"] == "pending" for t in tasks)
    lines = [(f"tasks: {len(tasks):,} ({pending} not done when profiling stopped); "
              f"top {len(shown)} by wall, created to done")]
    cols = ["wall", "running", "awaiting", "ended"]
    rows = []
    for t in shown:
        ended = t["outcome"] + (f" ({t['exception']})" if t.get("exception") and t["outcome"] != "cancelled" else "")
        rows.append(([_ms(t["wall"]), _ms(t["running"]), _ms(t["awaiting"]), ended],
                     f"{_p(t['name'])}  {_p(t['coroutine'] or '?')}"))
    widths = [max(len(cols[i]), *(len(r[0][i]) for r in rows)) for i in range(len(cols))]
    lines.append("  ".join(cols[i].rjust(widths[i]) for i in range(len(cols))) + "  task  coroutine")
    for row, name in rows:
        lines.append("  ".join(row[i].rjust(widths[i]) for i in range(len(cols))) + "  " + name)
    if len(shown) < len(tasks):
        by: dict[str, list] = {}
        for t in tasks:
            by.setdefault(t["coroutine"] or "?", []).append(t)
        lines.append("")
        lines.append("per coroutine: tasks, mean wall, mean running, mean awaiting")
        for name, ts in sorted(by.items(), key=lambda kv: -sum(t["wall"] for t in kv[1])):
            n = len(ts)
            lines.append(f"  {n:>6,}  {_ms(sum(t['wall'] for t in ts) // n):>9}  "
                         f"{_ms(sum(t['running'] for t in ts) // n):>9}  "
                         f"{_ms(sum(t['awaiting'] for t in ts) // n):>9}  {_p(name)}")
    return "\n".join(lines) + "\n"
