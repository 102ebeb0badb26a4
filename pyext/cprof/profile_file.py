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

import errno
import json
import os
import re
import stat
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


# ---------------------------------------------------------------- writing
#
# cprof never damages a file it did not create.  The rules (README, "Use"):
# - a new file is created atomically (a temporary file in the same folder, flushed,
#   then renamed), with open()'s mode, or 0600 when it holds argument reprs;
# - an existing regular file is replaced atomically and keeps its mode and owner;
#   one that cannot be replaced so (owned by another user, hard-linked, or in a
#   folder closed to us) is rewritten in place, so it keeps its identity too;
# - anything else (a device such as /dev/null, a FIFO, a socket) and the process's
#   own streams (/dev/stdout, /dev/fd/N, /proc/self/fd/N) are written in place,
#   never replaced;
# - a symbolic link is written through: the file it points to gets the profile,
#   the link stays (as open(path, "w") would do).

# Endings of two parts, kept whole when a name gets a tag (out.123.pb.gz)
_COMPOUND_ENDINGS = (".speedscope.json", ".gprof2dot.json", ".pb.gz")


def _chain(path: str):
    """The path, then each symbolic link it leads through (last component only)."""
    p = os.path.abspath(path)
    for _ in range(40):  # the kernel's own limit on links in a row
        yield p
        try:
            link = os.readlink(p)
        except OSError:
            return
        p = os.path.normpath(os.path.join(os.path.dirname(p), link))


_STREAM = re.compile(r"/dev/std(?:out|err)|/dev/fd/(\d+)|/proc/(self|thread-self|\d+)/fd/(\d+)")


def _stream_fd(path: str) -> int | None:
    """The descriptor of this process that `path` names (/dev/stdout, /dev/fd/2,
    /proc/self/fd/1, or a link to one of them), else None."""
    for p in _chain(path):
        m = _STREAM.fullmatch(p)
        if m is None:
            continue
        if p.startswith("/dev/std"):
            return 1 if p.endswith("out") else 2
        if m.group(1) is not None:
            return int(m.group(1))
        if m.group(2) in ("self", "thread-self") or int(m.group(2)) == os.getpid():
            return int(m.group(3))
    return None


def _special(path: str) -> bool:
    """The path is, or leads to, something under /dev or /proc: never replaced."""
    return any(p.startswith(("/dev/", "/proc/")) for p in _chain(path))


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _write_in_place(path: str, data: bytes, regular: bool) -> None:
    # no O_CREAT: the file exists (a device or FIFO must not be made a file)
    fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC | (os.O_TRUNC if regular else 0))
    try:
        _write_all(fd, data)
        if regular:
            os.fsync(fd)
    finally:
        os.close(fd)


def _create_temp(folder: str, mode: int) -> tuple[int, str]:
    """A new file beside the target, created with `mode` less the umask, as open()
    creates files (reading the umask would mean setting it, racing other threads)."""
    for _ in range(100):
        tmp = os.path.join(folder, f".cprof-{os.urandom(6).hex()}.tmp")
        try:
            return os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode), tmp
        except FileExistsError:
            continue
    raise FileExistsError(errno.EEXIST, "no free temporary name", folder)


def _replace(target: str, data: bytes, st: os.stat_result | None, private: bool) -> None:
    fd, tmp = _create_temp(os.path.dirname(target), 0o600 if private or st is not None else 0o666)
    try:
        if st is not None:  # the file it replaces: its owner (root can give it), then its mode
            if (st.st_uid, st.st_gid) != (os.geteuid(), os.getegid()):
                try:
                    os.fchown(fd, st.st_uid, st.st_gid)
                except OSError:
                    pass
            os.fchmod(fd, stat.S_IMODE(st.st_mode))  # after fchown, which clears set-id bits
        _write_all(fd, data)
        os.fsync(fd)
        os.close(fd)
        fd = -1
        os.replace(tmp, target)
    except BaseException:
        if fd >= 0:
            os.close(fd)
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def _write(path: str, data: bytes, private: bool) -> None:
    fd = _stream_fd(path)
    if fd is not None:  # -o /dev/stdout: after what the program wrote there, not over it
        _write_all(fd, data)
        return
    target = os.path.realpath(path)  # through symbolic links
    try:
        st = os.stat(target)
    except FileNotFoundError:
        st = None
    if st is not None and (not stat.S_ISREG(st.st_mode) or _special(path)):
        _write_in_place(path, data, regular=stat.S_ISREG(st.st_mode))
        return
    if st is not None and (st.st_nlink > 1 or (os.geteuid() != 0 and st.st_uid != os.geteuid())):
        _write_in_place(target, data, regular=True)  # keeps its links and its owner
        return
    try:
        _replace(target, data, st, private)
    except PermissionError:
        if st is None:
            raise
        _write_in_place(target, data, regular=True)  # the folder is closed to us, the file is not


def _reason(e: OSError) -> str:
    return (e.strerror or str(e)).lower() if e.errno != errno.ENOENT else "its folder does not exist"


def write_atomic(path: str, data: bytes, private: bool = False) -> None:
    """Write `data` to `path` by the rules above (profiles and exports alike): an
    interrupted run never leaves a half-written file, and nothing that is not a
    regular file is ever replaced.  private: a new file is 0600 (it holds argument
    reprs).  A failure is a CprofError naming `path`."""
    try:
        _write(path, data, private)
    except OSError as e:
        raise CprofError(f"cannot write '{path}' ({_reason(e)})") from None


def write(profile: dict, path: str) -> None:
    """The JSON profile, written atomically; 0600 if it holds argument reprs (--slow-calls)."""
    private = any(f.get("slow_calls") for f in profile.get("functions", ()))
    write_atomic(path, (json.dumps(profile, indent=1) + "\n").encode("utf-8"), private)


def check_writable(path: str) -> None:
    """Before any work: a CprofError (one sentence) if `path` cannot be written."""
    fd = _stream_fd(path)
    if fd is not None:
        try:
            os.fstat(fd)
        except OSError:
            raise CprofError(f"cannot write '{path}': descriptor {fd} is not open in cprof") from None
        return
    try:
        st = os.stat(path)
    except FileNotFoundError:
        st = None
    except OSError as e:  # a file used as a folder, a loop of links, a folder closed to us
        raise CprofError(f"cannot write '{path}' ({_reason(e)}); give another path") from None
    if st is not None and stat.S_ISDIR(st.st_mode):
        raise CprofError(f"'{path}' is a folder; give a file name, such as "
                         f"{os.path.join(path, 'profile.json')}")
    if st is not None:
        if not os.access(path, os.W_OK):
            raise CprofError(f"cannot write '{path}': you have no permission to write that file; "
                             "give another path or change its mode")
        return
    if path.endswith(os.sep):
        raise CprofError(f"'{path}' names a folder that does not exist; give a file name")
    folder = os.path.dirname(os.path.realpath(path))
    if not os.path.isdir(folder):
        if os.path.exists(folder):
            raise CprofError(f"cannot write '{path}': '{folder}' is not a folder")
        raise CprofError(f"cannot write '{path}': folder '{folder}' does not exist")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise CprofError(f"cannot write '{path}': you have no permission to create files in "
                         f"folder '{folder}'; give a path in a folder you can write to")


def split_ending(path: str) -> tuple[str, str]:
    """(stem, ending): out.json -> (out, .json), out.pb.gz -> (out, .pb.gz), out -> (out, '')."""
    low = path.lower()
    for ending in _COMPOUND_ENDINGS:
        if low.endswith(ending) and len(path) > len(ending):
            return path[:-len(ending)], path[-len(ending):]
    stem, ext = os.path.splitext(path)
    return stem, ext


def tagged_path(path: str, tag: str) -> str:
    """`path` with `.tag` before its ending, in the same folder: out.json -> out.TAG.json."""
    stem, ending = split_ending(path)
    return f"{stem}.{tag}{ending}"


def spare_path(path: str) -> str:
    """A new, private (0600) file in the temporary folder, named after `path` (same
    ending, so the same format): where a run's profile goes if `path` fails."""
    stem, ending = split_ending(os.path.basename(path))
    fd, spare = tempfile.mkstemp(prefix=f"{stem or 'cprof'}.", suffix=ending)
    os.close(fd)
    return spare


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
