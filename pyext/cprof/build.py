"""The profile, built from the C profiler's raw stats (Profiler.stats()): functions
named and merged by (name, file, line), edges, the call tree and meta.  The format
is described in profile_file.py and the README ("The profile file")."""
from __future__ import annotations

import sys
import types
from typing import Any

from . import focus
from .profile_file import VERSION


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


def build(raw: dict, meta: dict | None = None) -> dict:
    """The version-1 profile from Profiler.stats().  Functions with the same
    (name, file, line) merge, as pstats does."""
    counters = [c["name"] for c in raw["counters"]]
    n = len(counters)
    index: dict[tuple, int] = {}
    functions: list[dict] = []
    key_to_id: dict[int, int] = {}
    for key, entry, calls, prim, self_v, total_v, *ext in raw["functions"]:
        obj, module = entry if entry is not None else (None, None)
        name, file, line = describe(obj, module) if obj is not None else (f"<unknown {key:#x}>", "~", 0)
        ident = (name, file, line)
        if ident not in index:
            index[ident] = len(functions)
            functions.append({"id": len(functions), "name": name, "file": file, "line": line,
                              "calls": 0, "primitive_calls": 0,
                              "self": dict.fromkeys(counters, 0), "total": dict.fromkeys(counters, 0)})
        f = functions[index[ident]]
        key_to_id[key] = f["id"]
        f["calls"] += calls
        f["primitive_calls"] += prim
        for i in range(n):
            f["self"][counters[i]] += self_v[i]
            f["total"][counters[i]] += total_v[i]
        if ext and ext[0]:
            _add_ext(f, ext[0], counters)
    edges: dict[tuple, dict] = {}
    for caller, callee, calls, prim, total_v in raw["edges"]:
        if caller == 0 or caller not in key_to_id or callee not in key_to_id:
            continue  # entries made at the root of a thread have no caller
        k = (key_to_id[caller], key_to_id[callee])
        e = edges.setdefault(k, {"caller": k[0], "callee": k[1], "calls": 0, "primitive_calls": 0,
                                 "total": dict.fromkeys(counters, 0)})
        e["calls"] += calls
        e["primitive_calls"] += prim
        for i in range(n):
            e["total"][counters[i]] += total_v[i]
    tree = _build_tree(raw.get("tree", []), key_to_id, counters)
    rm = raw["meta"]
    out_meta = {
        "python": sys.version.split()[0],
        "hook": rm["hook"],
        "threads": rm["threads"],
        "events": rm["events"],
        "region": dict(zip(counters, rm["region"])),
        "unattributed": dict(zip(counters, rm["unattributed"])),
        "unmatched_exits": rm["unmatched_exits"],
        "backwards_readings": rm["backwards"],
        "corrections": {c["name"]: {"count": c["corrections"], "total": c["corrections_total"]}
                        for c in raw["counters"]},
        # cprof's own cost taken out of the numbers: per event (calibrated) and in all
        "tracer_share": {"per_event": dict(zip(counters, rm.get("compensation_per_event", [0] * n))),
                         "compensated": dict(zip(counters, rm.get("compensated", [0] * n)))},
        "tree_folded": rm.get("tree_folded", 0),
        # where the stdlib and site-packages were, so a report made later folds the same code
        "paths": focus.library_paths(),
        "distribution_values_lost": rm.get("dist_lost", 0),
        # threads whose profile hook the program took (sys.setprofile, cProfile; < 3.12)
        "hook_replaced": hook_replaced(rm.get("hook_replaced", []), counters),
    }
    out_meta.update(meta or {})
    return {
        "version": VERSION,
        "tool": "cprof 0.1.0",
        "counters": [{k: c[k] for k in ("name", "unit", "description", "read_path")}
                     for c in raw["counters"]],
        "functions": functions,
        "edges": sorted(edges.values(), key=lambda e: (e["caller"], e["callee"])),
        "tree": tree,
        "meta": out_meta,
    }


def quantile(buckets: list, count: int, maxv: int, q: float) -> int:
    """As the engine computes it: the midpoint of the bucket holding the value of
    rank ceil(q * count), never above max; q = 1 gives max."""
    if count == 0:
        return 0
    if q >= 1:
        return maxv
    rank = max(1, -(-q * count // 1))
    seen = 0
    for lo, hi, c in buckets:
        seen += c
        if seen >= rank:
            return min(lo + (hi - lo) // 2, maxv)
    return maxv


def _add_ext(f: dict, ext: dict, counters: list) -> None:
    """A function's distributions (per counter: count, p50, p90, p99, max, buckets
    [low, high, count]) and slowest calls (largest first: values per counter, the
    arguments' repr and the thread, or null where they could not be seen).  Two
    code objects of one (name, file, line) merge: buckets add, quantiles recomputed."""
    if ext.get("dist"):
        dist = f.setdefault("dist", {})
        for c, h in zip(counters, ext["dist"]):
            old = dist.get(c)
            if old:
                merged: dict = {}
                for lo, hi, k in old["buckets"] + [list(b) for b in h["buckets"]]:
                    merged[(lo, hi)] = merged.get((lo, hi), 0) + k
                h = {"count": old["count"] + h["count"], "max": max(old["max"], h["max"]),
                     "buckets": [[lo, hi, k] for (lo, hi), k in sorted(merged.items())]}
                for name, q in (("p50", .5), ("p90", .9), ("p99", .99)):
                    h[name] = quantile(h["buckets"], h["count"], h["max"], q)
            dist[c] = {k: h[k] for k in ("count", "p50", "p90", "p99", "max")}
            dist[c]["buckets"] = [list(b) for b in h["buckets"]]
    if ext.get("slow") is not None:
        slow = f.setdefault("slow_calls", [])
        for cap in ext["slow"]:
            info, values = cap if cap is not None else (None, None)
            if values is None:
                continue
            args, thread = info if info is not None else (None, None)
            slow.append({"values": dict(zip(counters, values)), "args": args, "thread": thread})
        slow.sort(key=lambda e: e["values"][counters[0]], reverse=True)


def _build_tree(raw_nodes: list, key_to_id: dict, counters: list) -> dict:
    """The call tree, columnar: node i has parent[i] (-1 for the root, node 0),
    function[i] (a function id, -1 for the root), calls[i], self[c][i], total[c][i].
    A parent always comes before its children.  Nodes whose paths become equal when
    functions merge by (name, file, line) merge too."""
    cols = {"parent": [], "function": [], "calls": [],
            "self": {c: [] for c in counters}, "total": {c: [] for c in counters}}
    index: dict[tuple, int] = {}
    remap: list[int] = []
    for parent, key, calls, self_v, total_v in raw_nodes:
        if parent < 0:
            ident = (-1, -1)
        else:
            ident = (remap[parent], key_to_id.get(key, -1))
        i = index.get(ident)
        if i is None:
            i = index[ident] = len(cols["parent"])
            cols["parent"].append(ident[0])
            cols["function"].append(ident[1])
            cols["calls"].append(0)
            for c in counters:
                cols["self"][c].append(0)
                cols["total"][c].append(0)
        remap.append(i)
        cols["calls"][i] += calls
        for j, c in enumerate(counters):
            cols["self"][c][i] += self_v[j]
            cols["total"][c][i] += total_v[j]
    return cols
