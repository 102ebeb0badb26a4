"""The user's own code, and the rows of the text report.

Each function is either the user's own code or part of a library:

- a Python function is library code when its file is under cprof's own package
  (library "cprof"), a site-packages/dist-packages folder ("site-packages: NAME", NAME
  its top-level package), the standard library ("NAME", its top-level module), or is a
  frozen module (file "<frozen importlib._bootstrap>": "importlib").  The folders are
  those the profile recorded when it was made (meta.paths; a version-1 file without them
  is read with this interpreter's); any .../site-packages/, .../dist-packages/ or .../lib/pythonX.Y/
  folder counts too.  Other files, "<string>" and "<stdin>" included, are the user's.
- a built-in (C) function (file "~") belongs to the library of its module: time.sleep to
  "time", _json.scanstring to "json" (an accelerator module `_x` goes with `x`), the
  _thread module's locks to "threading", list.sort and len to "builtins".

The report (select) shows the user's functions and folds each library into one line,
except that a built-in called directly by a shown function, or only from outside any
profiled function (the CLI's exec of the script), stays on its own line, with all its
calls: calling time.sleep or list.sort is the user's doing, while the list.append calls
inside json belong to json.  With --focus the shown
functions are those matching the patterns, and the rest fold into one "[other]" line.

Totals are conserved: every function is on exactly one line, so a folded line's self is
the sum of its functions' self, and the lines' self plus meta.unattributed is
meta.region.  A folded line's total counts each maximal subtree of its functions in the
call tree once (the total of the tree nodes of the group that have no ancestor in it),
so calls nested within the same library are not counted twice."""
from __future__ import annotations

TYPE_CHECKING = False   # typing.TYPE_CHECKING without importing typing (PEP 781)
if TYPE_CHECKING:
    from collections.abc import Callable, Collection, Iterable, Mapping
    from typing import Any

import builtins
import os
import site
import sys

from ._cprof import CprofError
from .model import FoldedRow, Paths, Profile, Row

# C modules whose functions belong to another module's library
_C_ALIASES = {"_thread": "threading", "thread": "threading", "posix": "os", "nt": "os", "_sre": "re"}
_CPROF_DIR = os.path.dirname(os.path.abspath(__file__))


def library_paths() -> Paths:
    """Where this interpreter's standard library and site-packages are, and cprof's own
    package: what meta.paths records when a profile is built."""
    stdlib: set[str] = set()
    sites: set[str] = set()

    def add(into: set[str], path: str | None) -> None:
        if path:
            into.add(os.path.normpath(path))
            into.add(os.path.realpath(path))

    # sysconfig's stdlib, platstdlib, purelib and platlib of each prefix, without importing
    # sysconfig (and threading, which it imports): its site-packages folders are site's, and
    # the folders that hold them are the standard library's
    prefixes = [sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix]
    for path in site.getsitepackages(prefixes):
        add(sites, path)
        add(stdlib, os.path.dirname(path))
    add(stdlib, os.path.dirname(os.__file__))
    try:
        for p in site.getsitepackages():
            add(sites, p)
    except AttributeError:  # old virtualenv's site module
        pass
    try:
        add(sites, site.getusersitepackages())
    except AttributeError:
        pass
    cprof: set[str] = set()
    add(cprof, _CPROF_DIR)
    return {"stdlib": sorted(stdlib), "site": sorted(sites), "cprof": sorted(cprof)}


def paths_of(profile: Profile) -> Paths:
    """The folders recorded in the profile (meta.paths; a version-1 file without them
    was given this interpreter's when it was read)."""
    return profile["meta"]["paths"]


def _under(file: str, roots: Iterable[str]) -> str | None:
    """The path of file below the longest root that holds it, or None."""
    best = None
    for root in roots:
        root = root.rstrip("/\\")
        if (root and file.startswith(root) and file[len(root):len(root) + 1] in ("/", "\\")
                and (best is None or len(root) > len(best))):
            best = root
    return None if best is None else file[len(best) + 1:]


def _top(relative: str) -> str:
    """The top-level module or package of a path below a library folder."""
    parts = relative.replace("\\", "/").split("/", 1)
    if len(parts) == 1:  # a module file: six.py, _cffi_backend.cpython-312-x86_64-linux-gnu.so
        return parts[0].split(".", 1)[0]
    return parts[0]


def _below(file: str, folder_at: Callable[[str, int], int]) -> str | None:
    """The path below the first library folder in file (any case, / or \\ separators),
    where folder_at(path, i) is the length of such a folder's name at path[i:] (after a
    separator, before one), or -1; None when there is none with a name after it."""
    path = file.replace("\\", "/").lower()
    i = path.find("/")
    while i >= 0:
        n = folder_at(path, i + 1)
        end = i + 1 + n
        if n > 0 and path[end:end + 1] == "/" and path[end + 1:end + 2] not in ("", "/"):
            return file[end + 1:]
        i = path.find("/", i + 1)
    return None


def _site_folder(path: str, i: int) -> int:
    """site-packages, dist-packages"""
    return 13 if path.startswith(("site-packages", "dist-packages"), i) else -1


def _stdlib_folder(path: str, i: int) -> int:
    """lib/pythonN, lib/pythonN.M, with t after a free-threaded build's"""
    if not path.startswith("lib/python", i):
        return -1
    j = i + len("lib/python")

    def digits(k: int) -> int:
        while k < len(path) and path[k].isdigit() and path[k].isascii():
            k += 1
        return k

    k = digits(j)
    if k == j:
        return -1
    if path[k:k + 1] == ".":
        m = digits(k + 1)
        k = m if m > k + 1 else k
    if path[k:k + 1] == "t":
        k += 1
    return k - i


def _c_module(name: str) -> str:
    """The library of a built-in function from its qualified name."""
    first = name.split(".", 1)[0]
    if "." not in name or first == "builtins" or hasattr(builtins, first) or first.startswith("<"):
        return "builtins"  # len, list.sort, dict.fromkeys, <unknown ...>
    if first in _C_ALIASES:
        return _C_ALIASES[first]
    return first[1:] if first.startswith("_") and len(first) > 1 else first


def library_of(f: Mapping[str, Any], paths: Paths, site_names: Collection[str] = ()) -> str | None:
    """The library a function belongs to ("json", "site-packages: requests", "cprof",
    "builtins"), or None for the user's own code.  site_names: top-level packages seen
    under site-packages, so that their C functions go with them."""
    file = f["file"]
    if file == "~":
        module = _c_module(f["name"])
        if module == "cprof":
            return "cprof"
        return f"site-packages: {module}" if module in site_names else module
    if file.startswith("<frozen ") and file.endswith(">"):
        return file[len("<frozen "):-1].split(".", 1)[0] or "frozen"
    if file.startswith("<"):
        return None  # <string>, <stdin>, generated code
    if _under(file, paths.get("cprof", ())) is not None:
        return "cprof"
    rel = _under(file, paths.get("site", ()))
    if rel is None:
        rel = _below(file, _site_folder)
    if rel is not None:
        top = _top(rel)
        return "cprof" if top == "cprof" else f"site-packages: {top}"
    rel = _under(file, paths.get("stdlib", ()))
    if rel is None:
        rel = _below(file, _stdlib_folder)
    return None if rel is None else _top(rel)


def is_library(f: Mapping[str, Any], paths: Paths | None = None) -> bool:
    """Library code (not the user's), by library_of; paths: meta.paths or this interpreter's."""
    return library_of(f, library_paths() if paths is None else paths) is not None


def libraries(profile: Profile, paths: Paths | None = None) -> list[str | None]:
    """library_of for each function of the profile, by id."""
    if paths is None:
        paths = paths_of(profile)
    fns = profile["functions"]
    labels: list[str | None] = [None] * len(fns)
    site_names: set[str] = set()
    for f in fns:
        if f["file"] != "~":
            labels[f["id"]] = lab = library_of(f, paths)
            if lab and lab.startswith("site-packages: "):
                site_names.add(lab[len("site-packages: "):])
    for f in fns:
        if f["file"] == "~":
            labels[f["id"]] = library_of(f, paths, site_names)
    return labels


def parse_patterns(focus: str | None) -> list[str]:
    """--focus=PATTERN[,PATTERN...] as a list, or a one-sentence error."""
    if focus is None:
        return []
    pats = [p.strip() for p in focus.split(",") if p.strip()]
    if not pats:
        raise CprofError("--focus needs a pattern: a module (mypkg, mypkg.sub*) or a file or "
                         "folder (src/*, app.py), several separated by commas")
    return pats


def matches(f: Mapping[str, Any], patterns: list[str]) -> bool:
    """Whether a function's module or file matches one of the fnmatch patterns.  The module
    part is tried at every dot of the qualified name (mypkg, mypkg.sub, ...) and as the
    file's name without .py (a module run as __main__); the file at every folder of its
    path (/home/u/proj/src/app.py, ..., src/app.py, app.py), and a pattern naming a folder
    matches the files under it."""
    import fnmatch
    name, file = f["name"], f["file"]
    parts = name.split(".")
    modules = [".".join(parts[:i]) for i in range(1, len(parts) + 1)]
    files = []
    if file != "~":
        files.append(file)
        norm = file.replace("\\", "/")
        files += [norm[i + 1:] for i, ch in enumerate(norm) if ch == "/"]
        stem = os.path.splitext(os.path.basename(norm))[0]
        if not file.startswith("<"):
            modules.append(stem)  # a module run as __main__ (cprof -m mymod) is still mymod
    for p in patterns:
        if any(fnmatch.fnmatchcase(m, p) for m in modules):
            return True
        folder = p.rstrip("/") + "/*"
        if any(fnmatch.fnmatchcase(s, p) or fnmatch.fnmatchcase(s, folder) for s in files):
            return True
    return False


def groups(profile: Profile, all: bool = False, focus: str | None = None,
           paths: Paths | None = None) -> list[str | None]:
    """Per function id: None if the function has its own line, else the label of the line it
    folds into ("json", "site-packages: requests", "other")."""
    fns = profile["functions"]
    if all:
        return [None] * len(fns)
    patterns = parse_patterns(focus)
    if patterns:
        group: list[str | None] = [None if matches(f, patterns) else "other" for f in fns]
        builtin = [f["file"] == "~" for f in fns]
    else:
        group = libraries(profile, paths)
        builtin = [f["file"] == "~" for f in fns]
    # a built-in called directly by a shown function, or only from outside any profiled
    # function (the CLI's exec of the script), stays on its own line
    called = [False] * len(fns)
    for e in profile["edges"]:
        called[e["callee"]] = True
        if group[e["caller"]] is None and not builtin[e["caller"]] and builtin[e["callee"]]:
            group[e["callee"]] = None
    for f in fns:  # called from no profiled function at all: by what started profiling
        if builtin[f["id"]] and not called[f["id"]]:
            group[f["id"]] = None
    return group


def select(profile: Profile, all: bool = False, focus: str | None = None,
           paths: Paths | None = None) -> list[Row]:
    """The report's rows: the function records shown (unchanged), and for each library (or
    [other]) one folded row {"name": "[json]", "file": "~", "line": 0, "folded": [ids],
    "calls", "primitive_calls", "self", "total"}.  Folded calls are the calls into the group
    from outside it (primitive: those made while it was not already running)."""
    fns = profile["functions"]
    group = groups(profile, all, focus, paths)
    counters = [c["name"] for c in profile["counters"]]
    rows: list[Row] = [f for f in fns if group[f["id"]] is None]
    folded: dict[str, FoldedRow] = {}
    for f in fns:
        g = group[f["id"]]
        if g is None:
            continue
        row = folded.get(g)
        if row is None:
            row = folded[g] = {"name": f"[{g}]", "file": "~", "line": 0, "group": g, "folded": [],
                               "calls": 0, "primitive_calls": 0,
                               "self": dict.fromkeys(counters, 0), "total": dict.fromkeys(counters, 0)}
        row["folded"].append(f["id"])
        for c in counters:
            row["self"][c] += f["self"][c]
    if folded:
        _group_totals(profile, group, folded, counters)
    return rows + list(folded.values())


def _group_totals(profile: Profile, group: list[str | None], folded: dict[str, FoldedRow],
                  counters: list[str]) -> None:
    """Each folded row's total and calls, from the call tree: the total of the group's tree
    nodes with no ancestor in the group (each maximal subtree once), plus the self of its
    functions' frames that are on no tree node; the calls of its nodes whose parent is not
    in it."""
    tree = profile["tree"]
    parent, function, calls = tree["parent"], tree["function"], tree["calls"]
    totals = [tree["total"][c] for c in counters]
    # in C (stats.c): on black's 333,000 nodes this walk took most of the report's time
    from ._cprof import group_totals
    names = list(folded)
    index = {g: k for k, g in enumerate(names)}
    calls_in, primitive_in, sums = group_totals(
        parent, function, calls, [index[g] if g is not None else -1 for g in group], len(names),
        totals)
    for k, g in enumerate(names):
        row = folded[g]
        row["calls"] += calls_in[k]
        row["primitive_calls"] += primitive_in[k]
        for c, col in zip(counters, sums):
            row["total"][c] += col[k]
    # Frames already running when profiling began (a thread's bootstrap before 3.12, the
    # caller of Profile.enable) have self but no tree node: their self counts in the total
    # too, so that a line's total is never below its self.
    if profile["meta"]["health"]["tree_folded"]:
        return  # paths folded into their parent node: tree self is not per function then
    fns = profile["functions"]
    for c in counters:
        on_tree = [0] * (len(fns) + 1)  # [-1]: the root, left out
        col = tree["self"][c]
        for fid, v in zip(function, col):
            on_tree[fid] += v
        for f in fns:
            owner = group[f["id"]]
            if owner is not None and f["self"][c] > on_tree[f["id"]]:
                folded[owner]["total"][c] += f["self"][c] - on_tree[f["id"]]
