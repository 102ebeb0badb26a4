"""Folded stacks (Brendan Gregg's flamegraph.pl input, also read by inferno,
speedscope and others): one line per call path, `outer;inner;leaf N`, N the path's
self value of one counter in the counter's unit (ns for time).  Frames are
`name (file.py:line)` for Python functions and the bare name for C functions, control
characters escaped (\\n) so that a name cannot start a line of its own.  The format has
no place for a comment: a full call tree (meta.tree_folded) is said on stderr only."""
from __future__ import annotations

from collections.abc import Iterator

from ..model import Profile
from . import label, preorder, warn_folded, write_atomic


def lines(profile: Profile, counter: str) -> Iterator[str]:
    """The file's lines, one per distinct printed path with self in `counter`, in the
    order of the tree's depth-first walk.  Paths are interned as (path id of the parent
    path, name) pairs, so memory grows with the tree's nodes, not with the text of
    every path (a deep tree's paths once took 1.7 GB for a 5.8 MB profile); each line's
    text is made only when it is written."""
    tree = profile["tree"]
    # ';' separates frames and the last space the count: keep them out of names
    name_ix: dict[str, int] = {}
    fn_name = [name_ix.setdefault(label(f).replace(";", ":"), len(name_ix))
               for f in profile["functions"]]
    function, node_self = tree["function"], tree["self"][counter]
    ids: dict[tuple[int, int], int] = {}
    up: list[int] = []      # a path id's parent path (-1: from the root)
    leaf: list[int] = []    # its last frame's name
    total: list[int] = []   # the self of every node that prints as this path
    along: list[int] = []   # path ids down to the node the walk is at
    for node, depth in preorder(tree):
        del along[max(depth - 1, 0):]
        if depth == 0:
            continue
        key = (along[-1] if along else -1, fn_name[function[node]])
        pid = ids.get(key)
        if pid is None:
            pid = ids[key] = len(up)
            up.append(key[0])
            leaf.append(key[1])
            total.append(0)
        total[pid] += node_self[node]
        along.append(pid)
    del ids
    names = list(name_ix)
    for pid, n in enumerate(total):
        if n:
            frames = []
            p = pid
            while p != -1:
                frames.append(names[leaf[p]])
                p = up[p]
            yield f"{';'.join(reversed(frames))} {n}"


def chunks(profile: Profile, counter: str, size: int = 1 << 18) -> Iterator[bytes]:
    """lines()' text as UTF-8, about `size` bytes at a time, made in C (stats.c
    collapsed_paths, collapsed_lines): black's 335,000 paths, 854 MB of text, took 6-10 s
    a frame at a time in Python."""
    from .._cprof import collapsed_lines, collapsed_paths
    tree = profile["tree"]
    name_ix: dict[str, int] = {}
    fn_name = [name_ix.setdefault(label(f).replace(";", ":"), len(name_ix)) for f in profile["functions"]]
    up, leaf, total = collapsed_paths(tree["parent"], tree["function"], tree["self"][counter], fn_name)
    names = [n.encode("utf-8") for n in name_ix]
    start = 0
    while start >= 0:
        text, start = collapsed_lines(up, leaf, total, names, start, size)
        yield text


def write(profile: Profile, path: str, counter: str) -> None:
    write_atomic(path, chunks(profile, counter))
    warn_folded(profile, counter, path)  # once written: a failure is one sentence alone
