"""Folded stacks (Brendan Gregg's flamegraph.pl input, also read by inferno,
speedscope and others): one line per call path, `outer;inner;leaf N`, N the path's
self value of one counter in the counter's unit (ns for time).  Frames are
`name (file.py:line)` for Python functions and the bare name for C functions, control
characters escaped (\\n) so that a name cannot start a line of its own.  The format has
no place for a comment: a full call tree (meta.tree_folded) is said on stderr only."""
from __future__ import annotations

from ..model import Profile
from . import label, stacks, warn_folded, write_atomic


def lines(profile: Profile, counter: str) -> list[str]:
    tree = profile["tree"]
    # ';' separates frames and the last space the count: keep them out of names
    names = [label(f).replace(";", ":") for f in profile["functions"]]
    node_self = tree["self"][counter]
    folded: dict[str, int] = {}
    for node, path in stacks(tree, node_self.__getitem__):
        key = ";".join(names[i] for i in path)
        folded[key] = folded.get(key, 0) + node_self[node]
    return [f"{k} {n}" for k, n in folded.items()]


def write(profile: Profile, path: str, counter: str) -> None:
    out = lines(profile, counter)
    write_atomic(path, ("\n".join(out) + ("\n" if out else "")).encode("utf-8"))
    warn_folded(profile, counter, path)  # once written: a failure is one sentence alone
