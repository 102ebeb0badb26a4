"""The HTML report: one self-contained page (inline CSS and JS, the profile's data
inline, nothing fetched), with a counter switcher, an icicle of the call tree, a
sortable function table with self/total per counter, the callers and callees of a
selected function, a search box, and a toggle that folds library code.

Library code is what the text report folds (focus.library_of): built-ins (file '~'),
frozen modules, cprof's own package, and files under the standard library and
site-packages folders the profile recorded (meta.paths) or under any
site-packages/dist-packages or lib/pythonX.Y folder."""
from __future__ import annotations

import html
import json
import os
import re

from .. import focus
from ..model import Profile
from ..schema import printable
from . import folded_note, warn_folded, write_atomic

_TEMPLATE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "html_template.html")


def data(profile: Profile, counter: str, title: str | None = None) -> dict:
    """What the page's script reads: the profile, column-wise where it is big.  A function's
    "lib" is its library's name (focus.libraries), null for the program's own code."""
    tree = profile["tree"]
    names = [c["name"] for c in profile["counters"]]
    libs = focus.libraries(profile)
    meta = profile["meta"]
    if title is None:
        title = " ".join(meta.get("command") or []) or "profile"
    d = {
        "title": title,
        "counter": names.index(counter),
        "counters": [{k: c.get(k, "") for k in ("name", "unit", "description")} for c in profile["counters"]],
        "functions": [{"name": f["name"], "file": f["file"], "line": f["line"], "calls": f["calls"],
                       "prim": f["primitive_calls"], "self": [f["self"][n] for n in names],
                       "total": [f["total"][n] for n in names], "lib": libs[f["id"]]}
                      for f in profile["functions"]],
        "edges": [[e["caller"], e["callee"], e["calls"], e["primitive_calls"], [e["total"][n] for n in names]]
                  for e in profile["edges"]],
        "tree": {"parent": list(tree["parent"]), "function": list(tree["function"]),
                 "calls": list(tree["calls"]),  # lists: a run's own tree has memoryviews
                 "self": [list(tree["self"][n]) for n in names]},
        "meta": {**{k: meta.get(k) for k in ("python", "hook", "threads", "events", "region")},
                 "tree_folded": meta["health"]["tree_folded"]},
        "warning": folded_note(profile, counter),  # shown as a banner over the page
    } | _tasks(profile)
    if profile.get("processes"):  # --follow-children: the sum, and each process's own (a switcher)
        from ..children import html_processes
        d["processes"] = html_processes(profile, lambda p: data(p, counter, title))
    return d


MAX_TASKS = 1000    # the page lists the longest tasks; the text report has them all


def _tasks(profile: Profile) -> dict:
    """asyncio mode's tasks for the page (cprof.asyncmode): the longest MAX_TASKS by wall."""
    tasks = profile.get("tasks") or []  # type: ignore[attr-defined]
    if not tasks:
        return {}
    longest = sorted(tasks, key=lambda t: t["wall"], reverse=True)[:MAX_TASKS]
    return {"tasks": [[t["name"], t["coroutine"], t["function"], t["wall"], t["running"],
                       t["awaiting"], t["outcome"], t["exception"]] for t in longest],
            "tasks_total": len(tasks)}


def page(profile: Profile, counter: str, title: str | None = None) -> str:
    with open(_TEMPLATE, encoding="utf-8") as f:
        template = f.read()
    d = data(profile, counter, title)
    # '<' escaped so that no string in the data can close the <script> element
    payload = json.dumps(d, separators=(",", ":")).replace("<", "\\u003c")
    fill = {"TITLE": html.escape(printable(d["title"])), "DATA": payload}
    if "tasks" in d:
        template = _with_tasks(template)
    return re.sub(r"__CPROF_(TITLE|DATA)__", lambda m: fill[m.group(1)], template)


_TASKS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "html_tasks.html")
# where the tasks section and its script go (the page without tasks stays as it was)
_TASKS_AT = ("\n</main>", "\n  tree = buildTree(state.fold);\n")


def _with_tasks(template: str) -> str:
    """The page with the asyncio tasks table (html_tasks.html: its section at the end of
    <main>, its script inside the page's, before the first render)."""
    with open(_TASKS, encoding="utf-8") as f:
        section, script = f.read().split("<!--cprof-tasks-script-->\n")
    for at, add in zip(_TASKS_AT, (section, script)):
        if template.count(at) != 1:
            raise AssertionError(f"html_template.html has no single {at.strip()!r} for the tasks")
        i = template.index(at) + 1
        template = template[:i] + add + template[i:]
    return template


def write(profile: Profile, path: str, counter: str, title: str | None = None) -> None:
    write_atomic(path, page(profile, counter, title).encode("utf-8"))
    warn_folded(profile, counter, path)  # once written: a failure is one sentence alone
