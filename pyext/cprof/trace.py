"""--trace=PATTERN / Profile(trace=...): profile only the code the pattern names, and
what "your own code" is when the program is installed.

The pattern is --focus's (focus.matches: modules, packages, files, folders, fnmatch
globs, comma-separated), matched on a code object's module and file, plus `app`: the
application, i.e. every function the report does not fold into a library
(focus.library_of), which includes the installed program's own packages (app_folders).

Each code object is classified once (C: trace.c keeps the answer in the code object);
code outside the pattern called directly from traced code is recorded as one call of
that function, named "NAME [untraced]", whose self is everything it ran except the
traced code it called back; the rest of the untraced code is not seen at all.
meta.trace says what was traced: {"patterns", "untraced": [function ids], "restarts",
"not_pushed"}.

Kept light: importlib.metadata only when the program is a console script or a module
installed in site-packages (app_folders)."""
from __future__ import annotations

TYPE_CHECKING = False   # typing.TYPE_CHECKING without importing typing (PEP 781)
if TYPE_CHECKING:
    from collections.abc import Iterable
    from typing import Any

import os
import sys

from ._cprof import CprofError

SUFFIX = " [untraced]"


def parse(trace: str | None) -> list[str]:
    """--trace=PATTERN[,PATTERN...] as a list, or a one-sentence error."""
    pats = [p.strip() for p in (trace or "").split(",") if p.strip()]
    if not pats:
        raise CprofError("--trace needs a pattern: app (the program's own code), a module "
                         "(mypkg, mypkg.sub*) or a file or folder (src/*, app.py), several "
                         "separated by commas")
    return pats


class Classifier:
    """classify(module, file) -> whether a code object is traced, cached per (module,
    file); `decided` keeps every answer, for the profile's labels."""

    def __init__(self, patterns: list[str], app: list[str] | None = None) -> None:
        from . import focus
        self.patterns = patterns
        self.others = [p for p in patterns if p != "app"]
        self.app = "app" in patterns
        self.paths = focus.library_paths()
        self.paths["app"] = list(app or [])
        self.decided: dict[tuple[str | None, str], bool] = {}

    def __call__(self, module: str | None, file: str) -> bool:
        key = (module, file)
        got = self.decided.get(key)
        if got is None:
            got = self.decided[key] = self._decide(module, file)
        return got

    def _decide(self, module: str | None, file: str) -> bool:
        from . import focus
        f = {"name": module or "", "file": file}
        if self.app and focus.library_of(f, self.paths) is None:
            return True
        return bool(self.others) and focus.matches(f, self.others)

    def untraced(self, f: dict) -> bool:
        """Whether a profile's function record was classified untraced."""
        file = f["file"]
        if file == "~":
            return False
        name = f["name"]
        parts = name.split(".")
        for i in range(len(parts) - 1, 0, -1):
            got = self.decided.get((".".join(parts[:i]), file))
            if got is not None:
                return not got
        got = self.decided.get((None, file))
        return got is False


def start(profiler: Any, classifier: Classifier) -> None:
    from . import _cprof
    _cprof.trace_set(profiler, classifier)


def stop() -> None:
    from . import _cprof
    _cprof.trace_set(None, None)


def label(profile: dict, classifier: Classifier | None, app: list[str] | None) -> None:
    """The profile's untraced functions named "NAME [untraced]", meta.trace, and the
    application's folders in meta.paths.app (the report counts them as your code)."""
    meta = profile["meta"]
    if app:
        meta["paths"]["app"] = list(app)
    if classifier is None:
        return
    from . import _cprof
    ids = []
    for f in profile["functions"]:
        if classifier.untraced(f):
            if not f["name"].endswith(SUFFIX):
                f["name"] += SUFFIX
            ids.append(f["id"])
    meta["trace"] = {"patterns": list(classifier.patterns), "untraced": ids,
                     **_cprof.trace_stats()}


def untraced_ids(profile: dict) -> set[int]:
    return set(profile["meta"].get("trace", {}).get("untraced", ()))


# ---- the application of an installed program --------------------------------------

def _package_root(path: str) -> str:
    """The outermost package folder holding the file `path` (its folder's chain of
    __init__.py), or the file itself when it is in no package."""
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.exists(os.path.join(folder, "__init__.py")):
        return os.path.abspath(path)
    while os.path.exists(os.path.join(os.path.dirname(folder), "__init__.py")):
        folder = os.path.dirname(folder)
    return folder


def _in_library(path: str) -> bool:
    from . import focus
    return focus.library_of({"name": "", "file": path}, focus.library_paths()) is not None


def _dist_folders(dist: Any) -> list[str]:
    """The first-party top-level packages and modules a distribution installed, as
    paths: top_level.txt, else its RECORD's top-level entries (not its .dist-info,
    scripts or data outside site-packages)."""
    tops: list[str] = []
    text = dist.read_text("top_level.txt")
    if text:
        tops = [t.strip() for t in text.splitlines() if t.strip()]
    else:
        for f in dist.files or ():
            parts = f.parts
            if not parts or parts[0] in ("..", "__pycache__") or parts[0].endswith(
                    (".dist-info", ".egg-info", ".data", ".pth")):
                continue
            top = parts[0] if len(parts) > 1 else parts[0].split(".", 1)[0]
            if top not in tops and (len(parts) > 1 or parts[0].endswith((".py", ".so", ".pyd"))):
                tops.append(top)
    out = []
    for top in tops:
        base = str(dist.locate_file(top))
        for cand in (base, base + ".py"):
            if os.path.exists(cand):
                out.append(os.path.abspath(cand))
        if os.path.isdir(os.path.dirname(base)):   # an extension module: top.cpython-...so
            for name in os.listdir(os.path.dirname(base)):
                if name.startswith(top + ".") and name.endswith((".so", ".pyd")):
                    out.append(os.path.join(os.path.dirname(os.path.abspath(base)), name))
    return out


def _console_script(path: str) -> str | None:
    """The module a console script named like `path` runs (its entry point), or None."""
    name = os.path.basename(path)
    if name.endswith(".py"):
        return None
    if name.lower().endswith((".exe", "-script.pyw", "-script.py")):
        name = name.rsplit(".", 1)[0].removesuffix("-script")
    from importlib.metadata import entry_points
    for ep in entry_points(group="console_scripts"):
        if ep.name == name:
            return ep.value.split(":", 1)[0].strip()
    return None


def _module_dist_folders(module: str) -> list[str]:
    """The folders of every distribution that ships the top-level package of `module`."""
    from importlib.metadata import distribution, distributions, packages_distributions
    top = module.split(".", 1)[0]
    out: list[str] = []
    names = packages_distributions().get(top, ())
    dists = []
    for dist_name in names:
        try:
            dists.append(distribution(dist_name))
        except Exception:   # a broken install: its package alone
            pass
    if not names:   # 3.10's packages_distributions reads top_level.txt only: the RECORDs
        for dist in distributions():
            files = dist.files or ()
            if any(f.parts and f.parts[0] in (top, top + ".py") for f in files):
                dists.append(dist)
                break
    for dist in dists:
        out += _dist_folders(dist)
    return out


def _module_folder(module: str) -> str | None:
    import importlib.util
    try:
        spec = importlib.util.find_spec(module.split(".", 1)[0])
    except (ImportError, ValueError):
        return None
    if spec is None:
        return None
    if spec.submodule_search_locations:
        return os.path.abspath(next(iter(spec.submodule_search_locations)))
    return os.path.abspath(spec.origin) if spec.origin and os.path.exists(spec.origin) else None


def app_folders(script: str | None = None, module: str | None = None) -> list[str]:
    """Where the program being run lives, when that is in a library folder (an installed
    program): the -m module's top-level package, a script's outermost package, or a
    console script's entry-point module's, each with the first-party packages of the
    distribution that installed it.  Empty for a program outside every library folder
    (it is the user's code already)."""
    folders: list[str] = []
    try:
        if script is not None:
            root = _package_root(script)
            if _in_library(root):
                folders.append(root)
                module = None
            else:
                module = _console_script(script)
        if module is not None:
            folder = _module_folder(module)
            if folder is not None and _in_library(folder):
                folders.append(folder)
                folders += _module_dist_folders(module)
    except Exception:   # metadata that cannot be read: the program's own package alone
        pass
    seen: list[str] = []
    for f in folders:
        if f not in seen:
            seen.append(f)
    return seen


def make(trace: str | Iterable[str] | None, app: list[str] | None = None) -> Classifier | None:
    """The classifier for Profile(trace=...): a pattern string or list, or None."""
    if trace is None:
        return None
    pats = parse(trace) if isinstance(trace, str) else parse(",".join(trace))
    return Classifier(pats, app)


def main_app_folders() -> list[str]:
    """app_folders of the program running now (Profile(trace=...) without the CLI):
    __main__'s module when it was run with -m, else its file."""
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    if spec is not None and getattr(spec, "name", None) not in (None, "__main__"):
        return app_folders(module=spec.name)
    file = getattr(main, "__file__", None)
    return app_folders(script=file) if isinstance(file, str) else []
