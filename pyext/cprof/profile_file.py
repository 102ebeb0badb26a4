"""The profile file: building it from the C profiler's raw stats, writing it
atomically, and loading it back with clear errors.  Format version 1:

    {"version": 1, "tool": "cprof 0.1.0",
     "counters": [{"name", "unit", "description", "read_path"}],
     "functions": [{"id", "name", "file", "line", "calls", "primitive_calls",
                    "self": {counter: n}, "total": {counter: n}}],
     "edges": [{"caller": id, "callee": id, "calls", "primitive_calls", "total": {counter: n}}],
     "meta": {...}}
"""
from __future__ import annotations

import json
import os
import sys
import tempfile
import types
from typing import Any

from . import focus, schema
from ._cprof import CprofError
from .schema import printable

VERSION = 1


def _typename(t: type) -> str:
    mod = getattr(t, "__module__", None)
    if not mod or mod == "builtins":
        return t.__qualname__
    return f"{mod}.{t.__qualname__}"


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
        if isinstance(owner, type):  # classmethod such as dict.fromkeys
            return f"{_typename(owner)}.{name}", "~", 0
        return f"{_typename(type(owner))}.{name}", "~", 0
    objclass = getattr(obj, "__objclass__", None)
    if objclass is not None:
        return f"{_typename(objclass)}.{name}", "~", 0
    return name, "~", 0


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


def write_atomic(path: str, data: bytes) -> None:
    """Write atomically: a temporary file in the same folder, flushed to disk, then a
    rename, so an interrupted run never leaves a half-written file (profiles and
    exports alike).  The file gets the mode open() would give it."""
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".cprof-", suffix=".tmp", dir=folder)
    try:
        mask = os.umask(0)
        os.umask(mask)
        os.fchmod(fd, 0o666 & ~mask)  # mkstemp's file is private
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def write(profile: dict, path: str) -> None:
    """The JSON profile, written atomically."""
    write_atomic(path, (json.dumps(profile, indent=1) + "\n").encode("utf-8"))


def load(path: str) -> dict:
    """Read a profile, checked once against the format (schema.check), or raise
    CprofError with one sentence naming the file and what is wrong."""
    shown = printable(path)
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except FileNotFoundError:
        raise CprofError(f"profile '{shown}' does not exist; check the path") from None
    except IsADirectoryError:
        raise CprofError(f"'{shown}' is a folder, not a profile; give a .json file written by cprof -o") from None
    except OSError as e:
        raise CprofError(f"cannot read profile '{shown}' ({e.strerror or e}); check the path and its "
                         "permissions") from None
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as e:  # JSONDecodeError, and ints of over 4300 digits
        raise CprofError(f"'{shown}' is not a cprof profile (not valid JSON: {printable(str(e))[:200]}); "
                         "give a file written by cprof -o") from None
    except RecursionError:
        raise CprofError(f"'{shown}' is not a cprof profile (JSON nested too deep); "
                         "give a file written by cprof -o") from None
    if not isinstance(data, dict) or "version" not in data or "functions" not in data:
        raise CprofError(f"'{shown}' is JSON but not a cprof profile; give a file written by cprof -o")
    version = data["version"]
    if type(version) is int and version != VERSION:
        raise CprofError(f"'{shown}' is a version {printable(str(version))[:40]} profile and this cprof "
                         f"reads version {VERSION}; use the cprof that wrote it")
    try:
        schema.check(data)
    except schema.Damaged as e:
        raise CprofError(f"'{shown}' is a damaged cprof profile: {printable(str(e))}; "
                         "give a file written by cprof -o") from None
    return data
