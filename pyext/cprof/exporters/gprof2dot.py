"""gprof2dot's JSON format (`gprof2dot -f json`): functions, and one event per call
path of the tree (callee first, as the format wants) with a cost per counter.  The
costs are in the order of the profile's counters with the chosen one moved first:
gprof2dot itself draws the first cost; the others are in the file for other
readers of the format.  Time costs are in nanoseconds."""
from __future__ import annotations

TYPE_CHECKING = False   # typing.TYPE_CHECKING without importing typing (PEP 781)
if TYPE_CHECKING:
    from typing import Any

import json
import os

from ..model import Profile
from . import folded_note, stacks, unit_of, warn_folded, write_atomic


def document(profile: Profile, counter: str) -> dict:
    tree = profile["tree"]
    names = [c["name"] for c in profile["counters"]]
    order = [counter] + [n for n in names if n != counter]
    selfs = [tree["self"][n] for n in order]
    functions = []
    for f in profile["functions"]:
        fn = {"name": f["name"]}
        if f["file"] != "~":
            fn["module"] = os.path.basename(f["file"])
        functions.append(fn)
    events = []
    for node, path in stacks(tree, lambda node: any(col[node] for col in selfs)):
        events.append({"callchain": path[::-1], "cost": [col[node] for col in selfs]})
    doc = {"version": 0,
           "costs": [{"description": n, "unit": unit_of(profile, n)} for n in order],
           "functions": functions, "events": events}
    note = folded_note(profile, counter)
    if note:  # the format has no comment field; gprof2dot ignores keys it does not know
        doc["comment"] = note
    return doc


def write(profile: Profile, path: str, counter: str) -> None:
    """document()'s JSON text, its events made in C (stats.c tree_stacks): black's 17
    million frames took 13 s as dicts and json.dumps.  The same bytes."""
    from .._cprof import tree_stacks
    tree = profile["tree"]
    names = [c["name"] for c in profile["counters"]]
    order = [counter] + [n for n in names if n != counter]
    mark = f"@cprof-{os.urandom(8).hex()}"
    stub: Any = {"parent": [-1], "function": [-1], "calls": [0], "self": {n: [0] for n in names}}
    doc = document({**profile, "tree": stub}, counter)  # every field but the events
    doc["events"] = mark
    if "comment" in doc:  # the note names the nodes the tree's paths folded into
        doc["comment"] = folded_note(profile, counter)
    head, _, tail = json.dumps(doc, separators=(",", ":")).encode("utf-8").partition(f'"{mark}"'.encode())
    events = tree_stacks(tree["parent"], tree["function"], [tree["self"][n] for n in order], 1)
    write_atomic(path, [head, b"[", events, b"]", tail])
    warn_folded(profile, counter, path)  # once written: a failure is one sentence alone
