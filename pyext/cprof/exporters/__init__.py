"""Exports of a cprof profile to the formats other viewers read, one module per format.

    export(profile, "pstats", "out.prof", counter="cpu")

Each format module has `write(profile, path, counter)` (the counter is a name the
profile has: single-counter formats write it, multi-counter ones write every
counter and show it first).  What the rest of cprof knows of a format is its line in
REGISTRY below, and nowhere else: `cprof export --format` offers the registered
names, a run's -o picks one by its file endings, and the help says them.  Adding a
format is its module, one line here, its tests and its README row.

The call-path formats (speedscope, collapsed, pprof, gprof2dot) are built from the
profile's `tree`: one stack per tree node, weighted by the node's self value.  The
root's self (meta.unattributed: growth outside any function) is on no stack, so a
format's total for a counter is meta.region minus meta.unattributed, which is also
the sum of the functions' self.
"""
from __future__ import annotations

import os
import sys

# a run's -o imports this package (its registry says which format a name asks for):
# nothing here imports typing, re or importlib (4-10 ms of an empty run's start-up)
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from types import ModuleType

from .._cprof import CprofError
from ..model import Function, Profile, Tree
from ..profile_file import check_writable, write_atomic  # noqa: F401  (the exporters write through it)
from ..schema import printable


class Format:
    __slots__ = ("endings", "multi_counter", "name", "words")

    def __init__(self, name: str, endings: tuple[str, ...], multi_counter: bool, words: str):
        self.name = name                # the module of this package that writes it, and --format's word
        self.endings = endings          # file endings (lower case): the first is the one `cprof export` writes
        self.multi_counter = multi_counter  # every counter in one file (the chosen one first), or one counter
        self.words = words              # what -o's help calls it


REGISTRY = (
    Format("pstats", (".prof", ".pstats"), False, "pstats"),
    Format("speedscope", (".speedscope.json",), True, "speedscope"),
    Format("collapsed", (".folded", ".collapsed"), False, "folded stacks"),
    Format("pprof", (".pb.gz", ".pprof"), True, "pprof"),
    Format("gprof2dot", (".gprof2dot.json",), True, "gprof2dot"),
)
# the HTML report: written by `cprof report --html` and by a run's -o out.html, not by export
HTML = Format("html", (".html",), True, "HTML")

FORMATS = tuple(f.name for f in REGISTRY)
_BY_NAME = {f.name: f for f in REGISTRY + (HTML,)}
# The profiling run's -o picks the format by the file name's ending (longest first);
# any other name gets the cprof JSON profile.
_ENDINGS = sorted(((e, f.name) for f in REGISTRY + (HTML,) for e in f.endings),
                  key=lambda x: -len(x[0]))
# endings of two parts (out.pb.gz), kept whole when a file name gets a tag (out.123.pb.gz)
COMPOUND_ENDINGS = tuple(e for e, _ in _ENDINGS if e.count(".") > 1)


def _safe(text: str) -> str:
    """`text` with every character but word characters (letters, digits, _) and .:+=@-
    replaced by _: a name from the profile made fit for a file name (no folder
    separator, control character or space)."""
    return "".join(c if c.isalnum() or c in "_.:+=@-" else "_" for c in text)


def format_for_path(path: str) -> str | None:
    """The export format a file name asks for, or None for the cprof JSON profile."""
    low = path.lower()
    for ending, fmt in _ENDINGS:
        if low.endswith(ending):
            return fmt
    return None


def endings_help() -> str:
    """The endings -o knows, for its help: pstats (.prof), ..., HTML (.html)."""
    return ", ".join(f"{f.words} ({f.endings[0]})" for f in REGISTRY + (HTML,))


def _format(fmt: str) -> Format:
    f = _BY_NAME.get(fmt)
    if f is None:
        raise CprofError(f"unknown export format '{fmt}'; choose one of {', '.join(FORMATS)}")
    return f


def _module(fmt: str) -> ModuleType:
    name = f"{__name__}.{_format(fmt).name}"
    __import__(name)
    return sys.modules[name]


def check_counter(profile: Profile, counter: str | None, source: str = "the profile") -> str:
    """The counter to export: `counter` if the profile has it, else its first one."""
    names = [c["name"] for c in profile["counters"]]
    if counter is None:
        return names[0]
    if counter not in names:
        raise CprofError(f"{printable(source)} has no counter '{printable(counter)}'; its counters are "
                         f"{printable(', '.join(names))}")
    return counter


def unit_of(profile: Profile, counter: str) -> str:
    return next(c["unit"] for c in profile["counters"] if c["name"] == counter)


def default_path(source: str, fmt: str, profile: Profile, counter: str) -> str:
    """Where `cprof export` writes without -o: beside the profile, named after it.  A
    single-counter file names its counter, and its unit unless it is time (pstats
    time is in seconds, as pstats expects): prof.cpu.prof, prof.ctxsw-switches.prof."""
    stem = source[:-5] if source.lower().endswith(".json") else source
    f = _format(fmt)
    if f.multi_counter:
        return stem + f.endings[0]
    unit = unit_of(profile, counter)
    tag = counter if (fmt == "pstats" and unit == "ns") else f"{counter}-{unit}"
    tag = _safe(tag)
    return f"{stem}.{tag}{f.endings[0]}"


def describe(fmt: str, profile: Profile, counter: str) -> str:
    """What was written, for the 'cprof: wrote ...' line."""
    if _format(fmt).multi_counter:
        names = [c["name"] for c in profile["counters"]]
        said = f"{fmt}, counters {', '.join(names)}, {counter} first" if len(names) > 1 else f"{fmt} of {counter}"
        return printable(said)
    unit = unit_of(profile, counter)
    shown = "seconds" if (fmt == "pstats" and unit == "ns") else unit
    return printable(f"{fmt} of {counter}, in {shown}")


def export(profile: Profile, fmt: str, path: str, counter: str | None = None) -> str:
    """Write `profile` to `path` in format `fmt`; returns the counter written (first)."""
    m = _module(fmt)
    counter = check_counter(profile, counter)
    check_writable(path)  # one sentence before the work; a late failure is one too (write_atomic)
    m.write(profile, path, counter)
    return counter


# ---------------------------------------------------------------- the call tree

FOLDED_SHOWN = 3  # functions named in the full-tree note


def folded_note(profile: Profile, counter: str) -> str | None:
    """None, or when the call tree filled up (meta.tree_folded > 0: past 2^20 nodes per
    thread new call paths fold into their parent node) one sentence saying so and where:
    the functions whose tree nodes took in folded paths, with how much more `counter`
    the call paths give them than their exact self.  Functions and edges stay exact, so
    the text report's rows and pstats' own numbers do; call paths do not."""
    n = profile["meta"]["health"]["tree_folded"]
    if not n:
        return None
    where = ""
    tree = profile["tree"]
    from ..report import human
    fns = profile["functions"]
    from .._cprof import function_sums
    on_tree = function_sums(tree["function"], tree["self"][counter], len(fns))  # in C (stats.c)
    extra = sorted(((on_tree[f["id"]] - f["self"][counter], f["id"]) for f in fns), reverse=True)
    extra = [(x, i) for x, i in extra[:FOLDED_SHOWN] if x > 0]
    if extra:
        unit = unit_of(profile, counter)
        where = (f"; the call paths give {printable(counter)} to the nodes they folded into: "
                 + ", ".join(f"{printable(fns[i]['name'])} +{human(x, unit)} over its exact self"
                             for x, i in extra))
    return (f"the call tree is full: {n:,} call path{'s' if n != 1 else ''} folded into their parent "
            f"node{where} (the text report's functions are exact)")


def warn_folded(profile: Profile, counter: str, path: str) -> str | None:
    """Say folded_note on stderr for an output written from the call tree; returns it."""
    note = folded_note(profile, counter)
    if note:
        print(f"cprof: warning: {printable(path)}: {note}", file=sys.stderr)
    return note


def label(f: Function) -> str:
    """A function as one frame of a text format: its name, and where it is for Python
    functions, control characters escaped (a newline in a name must not start a line)."""
    if f["file"] == "~":
        return printable(f["name"])
    return printable(f"{f['name']} ({os.path.basename(f['file'])}:{f['line']})")


def children_of(tree: Tree) -> list[list[int]]:
    kids: list[list[int]] = [[] for _ in tree["parent"]]
    for i, p in enumerate(tree["parent"]):
        if p >= 0:
            kids[p].append(i)
    return kids


def preorder(tree: Tree) -> Iterator[tuple[int, int]]:
    """(node, depth) in depth-first order from the root (depth 0), children in
    index order: a flame chart of this order draws the tree.  Iterative: recursion
    in the profiled program can make the tree deeper than Python's own stack."""
    kids = children_of(tree)
    stack = [(0, 0)]
    while stack:
        node, depth = stack.pop()
        yield node, depth
        stack.extend((k, depth + 1) for k in reversed(kids[node]))


def stacks(tree: Tree, keep: Callable[[int], object]) -> Iterator[tuple[int, list[int]]]:
    """(node, function ids from the outermost call to the node) for each non-root
    node that keep(node) is true for, in depth-first order."""
    path: list[int] = []
    for node, depth in preorder(tree):
        del path[max(depth - 1, 0):]
        if depth == 0:
            continue
        path.append(tree["function"][node])
        if keep(node):
            yield node, list(path)
