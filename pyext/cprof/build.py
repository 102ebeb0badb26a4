"""The profile, built from the C profiler's stats (Profiler.stats(), named records
merged in C by function identity): functions named by (name, file, line), edges,
the call tree and meta.  The format is described in profile_file.py and the
README ("The profile file")."""
from __future__ import annotations

TYPE_CHECKING = False   # typing.TYPE_CHECKING without importing typing (PEP 781)
if TYPE_CHECKING:
    from typing import Any

import sys
import types

from . import focus
from ._version import version
from .model import VERSION


def _typename(t: type) -> str:
    mod = getattr(t, "__module__", None)
    if not mod or mod == "builtins":
        return t.__qualname__
    return f"{mod}.{t.__qualname__}"


_C_METHODS = (types.MethodDescriptorType, types.ClassMethodDescriptorType, types.BuiltinFunctionType)


def _defining_class(method: types.BuiltinFunctionType, owner: Any, name: str) -> type:
    """The class whose __dict__ holds the C method that `method` is bound to: the first in
    the MRO of owner (a class) or of its type (an instance) whose entry for `name`, bound
    to owner, is `method` (same C function, same self).  Only C method entries are bound
    (a property's getter would run code)."""
    start = owner if isinstance(owner, type) else type(owner)
    for cls in getattr(start, "__mro__", (start,)):
        entry = cls.__dict__.get(name)
        if not isinstance(entry, _C_METHODS):
            continue
        try:
            if isinstance(entry, types.BuiltinFunctionType):
                bound = entry   # a type's __new__: already bound to its type
            elif isinstance(entry, types.ClassMethodDescriptorType):
                bound = entry.__get__(None, owner if isinstance(owner, type) else type(owner))
            else:  # with the type: a METH_METHOD descriptor without it crashes 3.11
                bound = entry.__get__(owner, type(owner))
        except Exception:
            continue
        if bound == method:
            return cls
    return start


def describe(obj: Any, module: str | None) -> tuple[str, str, int]:
    """(qualified name, file, first line) of a code object or a C callable."""
    if isinstance(obj, str):  # a name of cprof's own: "[await]" (asyncio mode)
        return obj, "~", 0
    if isinstance(obj, types.CodeType):
        qual = getattr(obj, "co_qualname", obj.co_name)
        return (f"{module}.{qual}" if module else qual), obj.co_filename, obj.co_firstlineno
    name = getattr(obj, "__name__", None) or repr(obj)
    if isinstance(obj, types.BuiltinFunctionType):
        owner = obj.__self__
        if owner is None or isinstance(owner, types.ModuleType):
            mod = obj.__module__ or (owner.__name__ if owner is not None else None)
            return (f"{mod}.{name}" if mod else name), "~", 0
        # a method bound to a class (dict.fromkeys, a type's __new__) or to an instance
        # (f.__exit__): named after the class that defines it, whichever caller came first
        return f"{_typename(_defining_class(obj, owner, name))}.{name}", "~", 0
    objclass = getattr(obj, "__objclass__", None)
    if objclass is not None:
        return f"{_typename(objclass)}.{name}", "~", 0
    return name, "~", 0


def hook_replaced(entries: list, counters: list) -> list:
    """Profiler.hook_replaced()'s entries for meta: the thread (name, ident, whether it
    still ran at the end, whether the program put cprof's hook back: then only the time
    in between is missing), the C function that took the hook ("by", when it was the
    innermost call), the Python function running then ("in"), what holds the hook now,
    each counter's growth in that thread until then, the stack (innermost first) and
    the sentence cprof printed."""
    out = []
    for e in entries:
        stack = [describe(*x)[0] if x is not None else None for x in e["stack"]]
        first = e["stack"][0] if e["stack"] else None
        by = stack[0] if first is not None and not isinstance(first[0], types.CodeType) else None
        running = next((name for x, name in zip(e["stack"], stack)
                        if x is not None and isinstance(x[0], types.CodeType)), None)
        holder = e["holder"]
        out.append({"thread": e["thread"], "ident": e["ident"], "alive": e["alive"],
                    "restored": e.get("restored", False), "by": by,
                    "in": running, "holder": None if holder is None else _holder_name(holder),
                    "after": dict(zip(counters, e["after"])), "stack": stack,
                    "message": e["message"]})
    return out


def _holder_name(obj: Any) -> str:
    """What holds a thread's profile hook: a function by its name, another object
    (cProfile's profiler) by its type."""
    if isinstance(obj, (types.FunctionType, types.BuiltinFunctionType, types.MethodType)):
        return f"{getattr(obj, '__module__', None) or '?'}.{obj.__qualname__}"
    return f"{_typename(type(obj))} object"


def identity(key: int, entry: tuple | None) -> tuple[str, str, int]:
    """The identity a function key merges under (Profiler.stats() merges threads and
    keys of one identity in C): (name, file, line), as pstats does."""
    if entry is None:
        return f"<unknown {key:#x}>", "~", 0
    return describe(*entry)


def _health(h: Any, counters: list) -> dict:
    """meta.health from the engine's merged health record and the counters that
    failed (README, "The profile file")."""
    first = None
    if h.backwards_readings:
        first = {"counter": h.backwards_counter, "function": h.backwards_function}
    failures = []
    for name, where, reason in h.counter_failures:
        fn = describe(*where)[0] if where else "the top level"
        failures.append({"counter": name, "message": f"stopped in {fn}: {reason}"})
    return {"out_of_memory": h.out_of_memory, "backwards_readings": h.backwards_readings,
            "backwards_first": first, "counter_failures": failures,
            "tree_folded": h.tree_folded, "distribution_values_lost": h.distribution_values_lost,
            "unmatched_exits": h.unmatched_exits}


def build(profiler: Any, meta: dict | None = None, compact: bool = False,
          consume: bool = False, packed: bool = False) -> dict:
    """The profile from a stopped Profiler: its stats merged in C (threads, and
    functions of one (name, file, line)), named and laid out here.  compact: the
    tree's columns are memoryviews (see _tree), for writing or exporting the profile
    at once without a Python int per value; else the dict is JSON-ready.  consume: the
    profiler's call trees are merged in place and freed (Profiler.stats(consume=True):
    no copy of the tree, and the profiler takes no more events), for the last profile
    a process makes of it.  packed: the tree as the profile file holds it (packed_tree),
    made from the engine's tables without int64 columns, for profile_file.write only."""
    if consume or packed:
        raw = profiler.stats(identity, consume=consume, packed=packed)
    else:
        raw = profiler.stats(identity)
    counters = [c["name"] for c in raw["counters"]]
    functions = []
    for i, f in enumerate(raw["functions"]):
        name, file, line = f.identity
        out = {"id": i, "name": name, "file": file, "line": line,
               "calls": f.calls, "primitive_calls": f.primitive_calls,
               "self": dict(zip(counters, f.self)), "total": dict(zip(counters, f.total))}
        if f.dist is not None:
            out["dist"] = {c: {"count": h.count, "p50": h.p50, "p90": h.p90, "p99": h.p99,
                               "max": h.max, "buckets": [list(b) for b in h.buckets]}
                           for c, h in zip(counters, f.dist)}
        if f.slow_calls is not None:
            out["slow_calls"] = [_slow_call(s, counters) for s in f.slow_calls if s is not None]
        functions.append(out)
    edges = [{"caller": e.caller, "callee": e.callee, "calls": e.calls,
              "primitive_calls": e.primitive_calls, "total": dict(zip(counters, e.total))}
             for e in raw["edges"]]
    rm = raw["meta"]
    out_meta = {
        "python": sys.version.split()[0],
        "hook": rm["hook"],
        "threads": rm["threads"],
        "events": rm["events"],
        "region": dict(zip(counters, rm["region"])),
        "unattributed": dict(zip(counters, rm["unattributed"])),
        "corrections": {c["name"]: {"count": c["corrections"], "total": c["corrections_total"]}
                        for c in raw["counters"]},
        # cprof's own cost taken out of the numbers: per event (calibrated) and in all
        "tracer_share": {k: dict(zip(counters, v)) for k, v in rm["tracer_share"].items()},
        # where the stdlib and site-packages were, so a report made later folds the same code
        "paths": focus.library_paths(),
        # threads whose profile hook the program took (sys.setprofile, cProfile; < 3.12)
        "hook_replaced": hook_replaced(rm["hook_replaced"], counters),
        "health": _health(raw["health"], counters),
    }
    out_meta.update(meta or {})
    profile = {
        "version": VERSION,
        "tool": f"cprof {version}",
        "counters": [{k: c[k] for k in ("name", "unit", "description", "read_path")}
                     for c in raw["counters"]],
        "functions": functions,
        "edges": sorted(edges, key=lambda e: (e["caller"], e["callee"])),
        "tree": _packed_tree(raw["tree"], counters) if packed else _tree(raw["tree"], counters, compact),
        "meta": out_meta,
    }
    if getattr(profiler, "async_mode", False):  # calls, resumes, tasks (cprof.asyncmode)
        from . import asyncmode
        asyncmode.add(profile, profiler.async_stats())
    return profile


def _slow_call(capture: tuple, counters: list) -> dict:
    """One of a function's slowest calls (largest first): its values per counter, the
    arguments' repr and the thread, or null where they could not be seen."""
    info, values = capture
    args, thread = info if info is not None else (None, None)
    return {"values": dict(zip(counters, values)), "args": args, "thread": thread}


def _tree(raw: dict, counters: list, compact: bool) -> dict:
    """The call tree, columnar: node i has parent[i] (-1 for the root, node 0),
    function[i] (a function id, -1 for the root), calls[i], self[c][i], total[c][i].
    A parent always comes before its children.  compact: each column stays a read-only
    memoryview of int64 over the bytes stats() made (8 bytes a node; a list of ints
    takes about 40), which profile_file.write and the exporters read as sequences;
    else lists, JSON-ready."""
    def col(b: bytes) -> Any:
        v = memoryview(b).cast("q")
        return v if compact else v.tolist()
    return {"parent": col(raw["parent"]), "function": col(raw["function"]),
            "calls": col(raw["calls"]),
            "self": {c: col(b) for c, b in zip(counters, raw["self"])},
            "total": {c: col(b) for c, b in zip(counters, raw["total"])}}


def _packed_tree(raw: dict, counters: list) -> dict:
    """The call tree as the profile file (version 3) holds it: "nodes", "encoding" and
    each column's packed text (profile_file.pack_column's), which profile_file.write
    writes as it is.  No column is held as int64 or as ints: writing the tree costs its
    text (about 12 bytes a node) instead of 40 bytes a node of columns beside it."""
    from .profile_file import ENCODING
    return {"nodes": raw["nodes"], "encoding": ENCODING, "parent": raw["parent"],
            "function": raw["function"], "calls": raw["calls"],
            "self": dict(zip(counters, raw["self"])), "total": dict(zip(counters, raw["total"]))}
