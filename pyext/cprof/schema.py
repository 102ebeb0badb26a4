"""The profile file's format (version 3, README "The profile file"; the TypedDicts
of model.py), checked once when a profile is loaded, so that the readers (report,
compare, the exports, the HTML report) can trust what they read and never meet a
missing key, a wrong type, a number outside int64, NaN or an id of no function.
A version-1 file is checked against the version-1 rules, then upgraded
(profile_file.upgrade).

check(data) returns nothing or raises Damaged(where, what): the first place in the
file that departs from the format (a path such as functions[3].self.cpu) and what
is wrong there.  The rules:

- counters: a non-empty list of {name, unit, description, read_path}, strings,
  names not empty and distinct.
- functions[i].id == i (the readers index functions by id); name and file strings;
  line, calls and primitive_calls integers >= 0; self and total hold exactly the
  profile's counters.  Optional: dist (per counter: count, p50, p90, p99, max and
  buckets [low, high, count] with low <= high) and slow_calls (values per counter,
  args and thread a string or null).
- edges: caller and callee ids of functions, calls, primitive_calls, total.
- tree (version 2: required): parent, function and calls, and per counter self and
  total, columns of one length; node 0 is the root (parent and function -1), every
  other node's parent comes before it and its function exists.  Version 3 may pack
  each column into a string (profile_file.pack_column; then tree.nodes gives the
  length): check unpacks those (in C, checking each value as it goes) and leaves the
  tree with memoryviews of int64 in their place.
- meta: an object.  Version 2 requires meta.health (exactly its keys: the counts,
  backwards_first null or {counter, function id or null}, counter_failures
  [{counter, message}]) and meta.paths; the other fields cprof writes are optional
  (a Profile's meta holds fewer than a run's) but when present they are well-formed;
  fields it does not know are left alone.  Version 1 had the health counts at the
  top of meta, and tree and meta.paths optional.
- Counter values, calls, counts and lines are integers from 0 to 2^63 - 1 (never a
  bool, a float, NaN or infinity); the few real numbers (meta.started, duration_s,
  tracer_share.per_event) are finite.  Strings may hold any character, a lone surrogate
  included: a file name that was not UTF-8 comes as surrogate escapes (PEP 383), and
  the writers cope (printable, JSON's \\u escapes, pprof's backslash escapes).

Large columns are checked with C-speed builtins (set(map(type, ...)), min, max) and
only walked one by one to find the culprit once something is wrong.
"""
from __future__ import annotations

TYPE_CHECKING = False   # typing.TYPE_CHECKING without importing typing (PEP 781)
if TYPE_CHECKING:
    from typing import Any

from operator import itemgetter

from .model import HEALTH_COUNTS, READS, VERSION

INT_LIMIT = 1 << 63  # counter values and counts are int64 (pprof, pstats and the engine's own)
_INT_ONLY = {int}


def printable(s: str) -> str:
    """s with its control and other unprintable characters (newline, carriage return,
    tab, NUL, U+2028 ...) written as escapes (\\n, \\x00, \\u2028), so that a name from
    the profiled program can never break or forge a line of a text output."""
    if s.isprintable():
        return s
    return "".join(c if c.isprintable() else c.encode("unicode_escape", "backslashreplace").decode("ascii")
                   for c in s)


class Damaged(Exception):
    """Where a profile departs from the format, and what is wrong there."""

    def __init__(self, where: str, what: str) -> None:
        super().__init__(f"{where} {what}")
        self.where, self.what = where, what


def _finite(v: float) -> bool:
    """Not infinite nor NaN, without importing math (a shared library on some builds:
    up to 1.5 ms of a run's start-up): inf - inf and NaN - x are NaN."""
    return v - v == 0.0


def _kind(v: Any) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "true/false"
    if isinstance(v, float) and not _finite(v):
        return "NaN" if v != v else "infinite"  # noqa: PLR0124 (NaN alone is unequal to itself)
    return {int: "an integer", float: "a real number", str: "a string", list: "a list",
            dict: "an object"}.get(type(v), type(v).__name__)


def _obj(v: Any, where: str) -> dict:
    if type(v) is not dict:
        raise Damaged(where, f"is {_kind(v)}, not an object")
    return v


def _list(v: Any, where: str) -> list:
    if type(v) is not list:
        raise Damaged(where, f"is {_kind(v)}, not a list")
    return v


def _key(d: dict, k: str, where: str) -> Any:
    if k not in d:
        raise Damaged(f"{where}.{k}" if where else k, "is missing")
    return d[k]


def _str(v: Any, where: str, nullable: bool = False) -> None:
    if v is None and nullable:
        return
    if type(v) is not str:
        raise Damaged(where, f"is {_kind(v)}, not a string")


def _int(v: Any, where: str, lo: int = 0, hi: int = INT_LIMIT) -> None:
    if type(v) is not int:
        raise Damaged(where, f"is {_kind(v)}, not an integer")
    if not lo <= v < hi:
        raise Damaged(where, f"is out of range ({_range(lo, hi)})")


def _range(lo: int, hi: int) -> str:
    top = "2^63 - 1" if hi == INT_LIMIT else str(hi - 1)
    bottom = "-2^63" if lo == -INT_LIMIT else str(lo)
    return f"an integer from {bottom} to {top}"


def _real(v: Any, where: str, lo: float = 0.0, hi: float = 1e15) -> None:
    if type(v) is not int and type(v) is not float:
        raise Damaged(where, f"is {_kind(v)}, not a number")
    if type(v) is float and not _finite(v):
        raise Damaged(where, f"is {_kind(v)}, not a finite number")
    if not lo <= v <= hi:
        raise Damaged(where, f"is out of range (from {lo:g} to {hi:g})")


def _ints(col: Any, where: str, length: int | None = None, lo: int = 0, hi: int = INT_LIMIT) -> Any:
    """A list of integers in [lo, hi), of the given length: checked at C speed, walked
    only to name the first bad entry.  A memoryview is a column unpacked (and checked)
    by _unpacked: only its length is checked here."""
    if type(col) is memoryview:
        if length is not None and len(col) != length:
            raise Damaged(where, f"has {len(col)} entries, not {length}")
        return col
    _list(col, where)
    if length is not None and len(col) != length:
        raise Damaged(where, f"has {len(col)} entries, not {length}")
    if not col:
        return col
    i = _first_bad(col, lo, hi)
    if i < 0:
        return col
    _int(col[i], f"{where}[{i}]", lo, hi)
    raise AssertionError("unreachable")  # pragma: no cover


def _first_bad(col: list, lo: int = 0, hi: int = INT_LIMIT, below_index: bool = False) -> int:
    """The index of col's first entry that is not an int in [lo, hi) (nor, below_index,
    in [0, its index) past entry 0), or -1: in C, one pass (black's tree columns took
    1.4 s as set(map(type)), min and max)."""
    from cprof._cprof import first_bad_int
    return first_bad_int(col, lo, hi, below_index)


def _values(d: Any, names: list[str], where: str) -> None:
    """One integer per counter: exactly the profile's counters."""
    _obj(d, where)
    try:
        if len(d) == len(names) and all(type(d[n]) is int and 0 <= d[n] < INT_LIMIT for n in names):
            return
    except KeyError:
        pass
    for n in names:
        _int(_key(d, n, where), f"{where}.{n}")
    extra = next(k for k in d if k not in names)
    raise Damaged(where, f"has a counter '{printable(extra)}' that the profile's counters do not list")


def _some_values(d: Any, names: set, where: str, check) -> None:
    """An object whose keys are some of the profile's counters."""
    _obj(d, where)
    for k, v in d.items():
        if k not in names:
            raise Damaged(where, f"has a counter '{printable(k)}' that the profile's counters do not list")
        check(v, f"{where}.{k}")


# ---------------------------------------------------------------- fast paths
# Column by column at C speed: True only if the column is well-formed (then the entry by
# entry walk, which names the first bad place, is skipped).

def _fine_ints(col, lo: int = 0, hi: int = INT_LIMIT) -> bool:
    if type(col) is list:
        return _first_bad(col, lo, hi) < 0
    return not col or (set(map(type, col)) == _INT_ONLY and lo <= min(col) and max(col) < hi)


def _fine_strs(col) -> bool:
    return not col or set(map(type, col)) == {str}


def _columns(items, keys: list[str]) -> list | None:
    """The values of `keys` in each of `items` (dicts), column by column (map and
    itemgetter run in C), or None if an item is not a dict or lacks a key."""
    if set(map(type, items)) != {dict}:
        return None
    try:
        return [list(map(itemgetter(k), items)) for k in keys]
    except KeyError:
        return None


def _fine_values(dicts, names: list[str]) -> bool:
    """Each of dicts holds exactly the counters, with int64 values >= 0."""
    if not dicts:
        return True
    cols = _columns(dicts, names)
    return cols is not None and set(map(len, dicts)) == {len(names)} and all(map(_fine_ints, cols))


def _fine_functions(functions: list, names: list[str]) -> bool:
    if not functions:
        return True
    cols = _columns(functions, ["id", "name", "file", "line", "calls", "primitive_calls", "self", "total"])
    if cols is None:
        return False
    ids, name, file, line, calls, prim, self_, total = cols
    return (set(map(type, ids)) == _INT_ONLY and list(ids) == list(range(len(functions)))
            and _fine_strs(name) and _fine_strs(file) and all(map(_fine_ints, (line, calls, prim)))
            and _fine_values(self_, names) and _fine_values(total, names))


def _fine_edges(edges: list, names: list[str], nfn: int) -> bool:
    if not edges:
        return True
    cols = _columns(edges, ["caller", "callee", "calls", "primitive_calls", "total"])
    if cols is None:
        return False
    caller, callee, calls, prim, total = cols
    return (_fine_ints(caller, 0, nfn) and _fine_ints(callee, 0, nfn) and _fine_ints(calls)
            and _fine_ints(prim) and _fine_values(total, names))


# ---------------------------------------------------------------- the walk

def check(data: Any) -> None:
    """Raise Damaged at the first departure from the format of the file's version
    (2, or 1 before profile_file.upgrade)."""
    _obj(data, "the file")
    version = _key(data, "version", "")
    if type(version) is not int or version not in READS:
        raise Damaged("version", f"is {printable(str(version))[:40]}, not 1, 2 or {VERSION}")
    if "tool" in data:
        _str(data["tool"], "tool")
    names = _counters(_key(data, "counters", ""))
    functions = _list(_key(data, "functions", ""), "functions")
    if not _fine_functions(functions, names):
        for i, f in enumerate(functions):
            _function(f, i, names)
    for i, f in enumerate(functions):
        if "dist" in f or "slow_calls" in f:
            _extras(f, f"functions[{i}]", names)
        if "resumes" in f:  # asyncio mode
            _int(f["resumes"], f"functions[{i}].resumes")
    nfn = len(functions)
    edges = _list(_key(data, "edges", ""), "edges")
    if not _fine_edges(edges, names, nfn):
        _edges(edges, names, nfn)
    if "tree" in data or version >= 2:
        data["tree"] = _tree(_key(data, "tree", ""), names, nfn, version)
    _meta(_key(data, "meta", ""), names, version, nfn)
    if "tasks" in data:
        _tasks(data["tasks"], nfn)


TASK_OUTCOMES = ("returned", "raised", "cancelled", "pending")


def _tasks(tasks: Any, nfn: int) -> None:
    """tasks (asyncio mode, optional): [{name, coroutine (str or null), function (an id
    or null), thread, created, started and done (ns from the profile's start; started
    and done null when it never started or ended), wall, running, awaiting (ns, running
    + awaiting = wall), outcome (returned, raised, cancelled, pending), exception (str
    or null)}]."""
    for i, t in enumerate(_list(tasks, "tasks")):
        where = f"tasks[{i}]"
        _obj(t, where)
        _str(_key(t, "name", where), f"{where}.name")
        _str(_key(t, "coroutine", where), f"{where}.coroutine", nullable=True)
        fid = _key(t, "function", where)
        if fid is not None:
            _int(fid, f"{where}.function", 0, nfn)
        for k in ("thread", "created", "wall", "running", "awaiting"):
            _int(_key(t, k, where), f"{where}.{k}")
        for k in ("started", "done"):
            if _key(t, k, where) is not None:
                _int(t[k], f"{where}.{k}")
        if t["running"] + t["awaiting"] != t["wall"]:
            raise Damaged(f"{where}.awaiting", "and running do not add up to wall")
        if _key(t, "outcome", where) not in TASK_OUTCOMES:
            raise Damaged(f"{where}.outcome", f"is not one of {', '.join(TASK_OUTCOMES)}")
        _str(_key(t, "exception", where), f"{where}.exception", nullable=True)


def _counters(counters: Any) -> list[str]:
    _list(counters, "counters")
    if not counters:
        raise Damaged("counters", "is empty")
    names: list[str] = []
    for i, c in enumerate(counters):
        where = f"counters[{i}]"
        _obj(c, where)
        for k in ("name", "unit", "description", "read_path"):
            _str(_key(c, k, where), f"{where}.{k}")
        if not c["name"]:
            raise Damaged(f"{where}.name", "is empty")
        if c["name"] in names:
            raise Damaged(f"{where}.name", f"repeats counter '{printable(c['name'])}'")
        names.append(c["name"])
    return names


def _function(f: Any, i: int, names: list[str]) -> None:
    where = f"functions[{i}]"
    _obj(f, where)
    ident = _key(f, "id", where)
    if ident != i or type(ident) is not int:
        _int(ident, f"{where}.id")
        raise Damaged(f"{where}.id", f"is {ident}, not {i} (a function's id is its place in the list)")
    _str(_key(f, "name", where), f"{where}.name")
    _str(_key(f, "file", where), f"{where}.file")
    for k in ("line", "calls", "primitive_calls"):
        _int(_key(f, k, where), f"{where}.{k}")
    _values(_key(f, "self", where), names, f"{where}.self")
    _values(_key(f, "total", where), names, f"{where}.total")


def _extras(f: dict, where: str, names: list[str]) -> None:
    """A function's optional per-call distributions and slowest calls."""
    if "dist" in f:
        _some_values(f["dist"], set(names), f"{where}.dist", _dist)
    if "slow_calls" in f:
        for j, s in enumerate(_list(f["slow_calls"], f"{where}.slow_calls")):
            w = f"{where}.slow_calls[{j}]"
            _obj(s, w)
            _values(_key(s, "values", w), names, f"{w}.values")
            _str(_key(s, "args", w), f"{w}.args", nullable=True)
            if "thread" in s:
                _str(s["thread"], f"{w}.thread", nullable=True)


def _dist(d: Any, where: str) -> None:
    _obj(d, where)
    for k in ("count", "p50", "p90", "p99", "max"):
        _int(_key(d, k, where), f"{where}.{k}")
    buckets = _list(_key(d, "buckets", where), f"{where}.buckets")
    if all(type(b) is list and len(b) == 3 for b in buckets) \
            and _fine_ints([x for b in buckets for x in b]) and all(b[0] <= b[1] for b in buckets):
        return
    for j, b in enumerate(buckets):
        w = f"{where}.buckets[{j}]"
        _ints(b, w, 3)
        if b[0] > b[1]:
            raise Damaged(w, "has a low bound above its high bound")


def _edges(edges: Any, names: list[str], nfn: int) -> None:
    _list(edges, "edges")
    for i, e in enumerate(edges):
        where = f"edges[{i}]"
        _obj(e, where)
        for k in ("caller", "callee"):
            v = _key(e, k, where)
            _int(v, f"{where}.{k}")
            if v >= nfn:
                raise Damaged(f"{where}.{k}", f"is {v}, the id of no function (there are {nfn})")
        for k in ("calls", "primitive_calls"):
            _int(_key(e, k, where), f"{where}.{k}")
        _values(_key(e, "total", where), names, f"{where}.total")


def _tree(tree: Any, names: list[str], nfn: int, version: int = VERSION) -> dict:
    """The tree checked; returned with its packed columns (version 3) unpacked."""
    _obj(tree, "tree")
    if version >= 3 and any(type(tree.get(k)) is str for k in ("parent", "function", "calls")) \
            or "nodes" in tree or "encoding" in tree:
        tree = _unpacked(tree, names, nfn, version)
    parent = _ints(_key(tree, "parent", "tree"), "tree.parent", lo=-1)
    n = len(parent)
    if not n:
        raise Damaged("tree.parent", "is empty (node 0 is the root)")
    function = _ints(_key(tree, "function", "tree"), "tree.function", n, lo=-1, hi=nfn)
    _ints(_key(tree, "calls", "tree"), "tree.calls", n)
    if parent[0] != -1 or function[0] != -1:
        raise Damaged("tree", "does not start with the root (node 0: parent and function -1)")
    # every other node's parent comes before it, and it is a function's node
    i = _first_bad(parent, -1, INT_LIMIT, below_index=True) if type(parent) is list else -1
    if i >= 0:
        raise Damaged(f"tree.parent[{i}]", f"is {parent[i]}, not a node before {i}")
    if type(function) is list and -1 in function[1:]:
        i = function.index(-1, 1)
        raise Damaged(f"tree.function[{i}]", "is -1, but only the root (node 0) has no function")
    for k in ("self", "total"):
        cols = _obj(_key(tree, k, "tree"), f"tree.{k}")
        for c in names:
            _ints(_key(cols, c, f"tree.{k}"), f"tree.{k}.{c}", n)
        if len(cols) != len(names):
            extra = next(x for x in cols if x not in names)
            raise Damaged(f"tree.{k}", f"has a counter '{printable(extra)}' that the profile's "
                          "counters do not list")
    return tree


def _unpacked(tree: dict, names: list[str], nfn: int, version: int) -> dict:
    """A version-3 tree with its packed columns (strings: profile_file.pack_column)
    unpacked into read-only memoryviews of int64, each checked in C as it is read (a
    parent before its node, a function id of a function, only the root without one,
    values from 0 to 2^63 - 1); list columns are left to _tree's checks."""
    if version < 3:
        raise Damaged("tree", f"has packed columns, which version {version} does not know")
    from cprof._cprof import column_unpack

    from .profile_file import ENCODING
    if "encoding" in tree and tree["encoding"] != ENCODING:
        raise Damaged("tree.encoding", f"is {printable(str(tree['encoding']))[:40]}, not {ENCODING}")
    nodes = _key(tree, "nodes", "tree")
    _int(nodes, "tree.nodes")
    if not nodes:
        raise Damaged("tree.nodes", "is 0 (node 0 is the root)")

    def column(v: Any, where: str, kind: int, hi: int) -> Any:
        if type(v) is not str:
            return v
        try:
            return memoryview(column_unpack(v, nodes, kind, hi)).cast("q")
        except ValueError as e:
            raise Damaged(where, str(e)) from None

    out: dict = {k: v for k, v in tree.items() if k not in ("nodes", "encoding")}
    out["parent"] = column(_key(tree, "parent", "tree"), "tree.parent", 1, INT_LIMIT)
    out["function"] = column(_key(tree, "function", "tree"), "tree.function", 2, nfn)
    out["calls"] = column(_key(tree, "calls", "tree"), "tree.calls", 0, INT_LIMIT)
    for k in ("self", "total"):
        cols = _obj(_key(tree, k, "tree"), f"tree.{k}")
        out[k] = {c: column(v, f"tree.{k}.{printable(c)}", 0, INT_LIMIT) for c, v in cols.items()}
    for k in ("parent", "function", "calls"):  # anything else than a column: _tree says so
        if type(out[k]) in (list, memoryview) and len(out[k]) != nodes:
            raise Damaged(f"tree.{k}", f"has {len(out[k])} entries, not {nodes} (tree.nodes)")
    return out


def _health(health: Any, names: list[str], nfn: int) -> None:
    where = "meta.health"
    _obj(health, where)
    for k in HEALTH_COUNTS:
        _int(_key(health, k, where), f"{where}.{k}")
    first = _key(health, "backwards_first", where)
    if first is not None:
        w = f"{where}.backwards_first"
        _obj(first, w)
        counter = _key(first, "counter", w)
        _str(counter, f"{w}.counter")
        if counter not in names:
            raise Damaged(f"{w}.counter", f"is '{printable(counter)}', which the profile's counters "
                          "do not list")
        fid = _key(first, "function", w)
        if fid is not None:
            _int(fid, f"{w}.function")
            if fid >= nfn:
                raise Damaged(f"{w}.function", f"is {fid}, the id of no function (there are {nfn})")
    for j, e in enumerate(_list(_key(health, "counter_failures", where), f"{where}.counter_failures")):
        w = f"{where}.counter_failures[{j}]"
        _obj(e, w)
        for k in ("counter", "message"):
            _str(_key(e, k, w), f"{w}.{k}")
    extra = [k for k in health if k not in HEALTH_COUNTS + ("backwards_first", "counter_failures")]
    if extra:
        raise Damaged(where, f"has a field '{printable(extra[0])}' that the format does not know")


def _meta(meta: Any, names: list[str], version: int = VERSION, nfn: int = 0) -> None:
    _obj(meta, "meta")
    known = set(names)
    if version >= 2:
        _health(_key(meta, "health", "meta"), names, nfn)
        _key(meta, "paths", "meta")
    for k in ("python", "hook"):
        if k in meta:
            _str(meta[k], f"meta.{k}")
    for k in ("threads", "events") + (HEALTH_COUNTS[1:] if version == 1 else ()):
        if k in meta:
            _int(meta[k], f"meta.{k}")
    for k in ("region", "unattributed"):
        if k in meta:
            _some_values(meta[k], known, f"meta.{k}", _int)
    if "corrections" in meta:
        def correction(v: Any, where: str) -> None:
            _obj(v, where)
            for x in ("count", "total"):
                _int(_key(v, x, where), f"{where}.{x}")
        _some_values(meta["corrections"], known, "meta.corrections", correction)
    if "tracer_share" in meta:
        share = _obj(meta["tracer_share"], "meta.tracer_share")
        if "per_event" in share:
            _some_values(share["per_event"], known, "meta.tracer_share.per_event", _real)
        if "compensated" in share:
            _some_values(share["compensated"], known, "meta.tracer_share.compensated", _int)
    if "paths" in meta:
        paths = _obj(meta["paths"], "meta.paths")
        for k in ("stdlib", "site", "cprof"):
            if k in paths or k != "cprof" or version >= 2:
                for j, p in enumerate(_list(_key(paths, k, "meta.paths"), f"meta.paths.{k}")):
                    _str(p, f"meta.paths.{k}[{j}]")
    if "command" in meta:
        for j, a in enumerate(_list(meta["command"], "meta.command")):
            _str(a, f"meta.command[{j}]")
    if "started" in meta:  # seconds since the epoch: pprof writes it in int64 nanoseconds
        _real(meta["started"], "meta.started", 0.0, 9e9)
    if "duration_s" in meta:
        _real(meta["duration_s"], "meta.duration_s", 0.0, 9e9)
    if "exit_code" in meta and type(meta["exit_code"]) not in (int, bool):
        # what the program gave sys.exit(), as cprof wrote it (True and 2**70 included)
        raise Damaged("meta.exit_code", f"is {_kind(meta['exit_code'])}, not an integer")
    for k in ("pid", "parent_pid"):             # a forked child's
        if k in meta:
            _int(meta[k], f"meta.{k}")
    if "signal" in meta:                         # the signal that ended the run ("SIGTERM")
        _str(meta["signal"], "meta.signal")
    if "hook_replaced" in meta:  # threads whose profile hook the program took (3.10-3.11)
        for j, e in enumerate(_list(meta["hook_replaced"], "meta.hook_replaced")):
            _obj(e, f"meta.hook_replaced[{j}]")
            _str(_key(e, "message", f"meta.hook_replaced[{j}]"), f"meta.hook_replaced[{j}].message")
