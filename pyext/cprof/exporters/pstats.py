"""pstats: the marshal'd dict that pstats.Stats loads (snakeviz, tuna, gprof2dot -f pstats):

    {(file, line, name): (primitive calls, calls, self, total, callers)}
    callers = {(file, line, name): (calls, primitive calls, self, total)}

the same layout cProfile writes (note the callers tuple starts with all calls, as
cProfile's does).  One counter per file: a time counter (unit ns) is written in
seconds, as pstats expects; any other counter in its own unit.  Caller entries come
from the profile's edges; their self (the callee's self when called from that
caller) from the call tree, summed over the tree nodes of that caller->callee pair.
"""
from __future__ import annotations

import marshal

from ..model import Profile
from . import unit_of, warn_folded, write_atomic


def stats(profile: Profile, counter: str) -> dict:
    scale = 1e-9 if unit_of(profile, counter) == "ns" else 1

    def v(x):
        return x * scale if scale != 1 else x

    fns = profile["functions"]
    keys = [(f["file"], f["line"], f["name"]) for f in fns]
    edge_self: dict[tuple[int, int], int] = {}
    tree = profile["tree"]
    parent, function, node_self = tree["parent"], tree["function"], tree["self"][counter]
    for i in range(1, len(parent)):
        p = parent[i]
        if p > 0:  # the root's children have no caller
            pair = (function[p], function[i])
            edge_self[pair] = edge_self.get(pair, 0) + node_self[i]
    callers: list[dict] = [{} for _ in fns]
    for e in profile["edges"]:
        pair = (e["caller"], e["callee"])
        callers[e["callee"]][keys[e["caller"]]] = (
            e["calls"], e["primitive_calls"], v(edge_self.get(pair, 0)), v(e["total"][counter]))
    return {keys[i]: (f["primitive_calls"], f["calls"], v(f["self"][counter]), v(f["total"][counter]),
                      callers[i])
            for i, f in enumerate(fns)}


def write(profile: Profile, path: str, counter: str) -> None:
    write_atomic(path, marshal.dumps(stats(profile, counter)))
    warn_folded(profile, counter, path)  # the callers' self comes from the tree; the format has no comment
