"""Threads' call trees merged into one (core/merge.c, Profiler.stats()): the thread with
the most nodes is read in place and the others' nodes added to it or after it; when two
of its functions merge under one identity its tree is copied and merged as the others'.
Either way a path of the same functions is one node with every thread's calls."""
from __future__ import annotations

import threading

import cprof
from cprof import build


def g():
    pass


def f():
    g()


def h():
    pass


def work(n, extra):
    for _ in range(n):
        f()
    for _ in range(extra):
        h()


def _run():
    p = cprof.Profile(["wall"])
    with p:
        a = threading.Thread(target=work, args=(5, 2))  # the most nodes: the base
        b = threading.Thread(target=work, args=(3, 0))
        a.start()
        a.join()
        b.start()
        b.join()
        f()
    return p


def _paths(raw) -> dict:
    """Each node's path of function names from the root, to (calls, self, total)."""
    tree = raw["tree"]
    parent, function, calls = (memoryview(tree[k]).cast("q") for k in ("parent", "function", "calls"))
    self_, total = memoryview(tree["self"][0]).cast("q"), memoryview(tree["total"][0]).cast("q")
    names = [fn.identity[0] for fn in raw["functions"]]
    paths: list[tuple] = []
    out: dict = {}
    for i in range(len(parent)):
        assert parent[i] < i, (i, parent[i])
        path = () if i == 0 else paths[parent[i]] + (names[function[i]].rsplit(".", 1)[-1],)
        paths.append(path)
        assert path not in out, path  # one node per path
        out[path] = (calls[i], self_[i], total[i])
    return out


def _ending(paths: dict, *suffix) -> list:
    return [v for k, v in paths.items() if k[-len(suffix):] == suffix and "work" in k]


def test_threads_paths_merge_into_one_node():
    p = _run()
    paths = _paths(p._profiler.stats(build.identity))
    assert [c for c, _, _ in _ending(paths, "work", "f")] == [8]
    assert [c for c, _, _ in _ending(paths, "work", "f", "g")] == [8]
    assert [c for c, _, _ in _ending(paths, "work", "h")] == [2]
    (work,) = _ending(paths, "work")
    assert work[0] == 2
    mains = [v for k, v in paths.items() if k[-1:] == ("f",) and "work" not in k]
    assert [c for c, _, _ in mains] == [1]
    for path, (calls, self_, total) in paths.items():  # a total holds its children's
        if path:
            kids = sum(t for k, (_, _, t) in paths.items() if len(k) == len(path) + 1
                       and k[:-1] == path)
            assert total == self_ + kids, path


def test_two_functions_of_the_biggest_thread_merged_copy_its_tree():
    p = _run()

    def identify(key, entry):
        ident = build.identity(key, entry)
        return (ident[0].replace(".h", ".f"), ident[1], 0) if ident[0].endswith((".h", ".f")) else ident

    paths = _paths(p._profiler.stats(identify))
    assert [c for c, _, _ in _ending(paths, "work", "f")] == [10]   # 5 + 2 (h) + 3
    assert [c for c, _, _ in _ending(paths, "work", "f", "g")] == [8]
