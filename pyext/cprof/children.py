"""--follow-children: profile the program's Python child processes with the same
counters, each writing its own profile beside the parent's, and merge them back.

How a child gets profiled:

- fork (os.fork, multiprocessing's fork and forkserver workers): an at-fork hook
  (os.register_at_fork) stops the profile the child inherited (the parent's numbers
  up to the fork are the parent's) and starts a fresh one with the same options, for
  the child's own file.  A multiprocessing worker ends by os._exit, past atexit: a
  multiprocessing finalizer (registered through util.register_after_fork, which the
  worker runs once its own registry is cleared) writes the profile as the worker's
  bootstrap finishes.
- a new interpreter (multiprocessing's spawn, subprocess running Python): the parent
  puts a private folder first on PYTHONPATH holding a sitecustomize.py, and names the
  folder in CPROF_FOLLOW_CHILDREN.  A Python that is the parent's (same version and
  build) starts profiling there and then runs the sitecustomize the user had, if any;
  any other Python (another version, Python 2) takes the folder and the variable out
  of its environment, so its own children inherit neither, and runs unprofiled.  -I,
  -E and -S children never read the folder: they run unprofiled.  atexit writes the
  profile.
- SIGTERM and SIGHUP with the default action (Pool.terminate() ends idle workers so)
  write the profile, then end the process by the same signal.  SIGKILL or os._exit
  outside multiprocessing lose the process's profile.

Every profiled process writes a marker in the folder as it starts; the parent lists
them in its meta (`children`) when it ends, so a merge knows which processes ran and
can say which profiles are missing.  multiprocessing's helper processes (its resource
tracker, the forkserver itself) are not profiled: they are machinery, and outlive
the parent.

Reading: load(path) returns the parent's profile with every child's merged into it
(functions, edges and call tree summed by identity; `processes` lists each process
and its own profile); format_processes() is `cprof report --by-process`."""
from __future__ import annotations

import os
import sys

from .forkmask import ForkMask

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from .model import Profile as ProfileData

ENV = "CPROF_FOLLOW_CHILDREN"   # the private folder, in every followed process's environment
_HELPERS = ("multiprocessing.resource_tracker import main", "multiprocessing.forkserver import main")


class _State:
    """What this process knows of the run it belongs to."""

    def __init__(self) -> None:
        self.folder: str | None = None    # the private folder
        self.config: dict[str, Any] = {}  # the parent's options, output, run token
        self.profile: Any = None          # the Profile running in this process
        self.pid = 0                      # the process it runs in (a fork inherits it)
        self.parent_pid: int | None = None
        self.started = 0.0
        self.written = False
        self.root = False                 # the parent (the CLI's own process)
        self.forked = False               # this profile started in an at-fork hook
        self.fork_pid = 0                 # os.getpid() just before a fork
        self.user_pythonpath: str | None = None
        self.pending: int | None = None   # a signal that came while the profile was written
        self.guarded = False              # the ending signals come again until handled
        self.deferred = 0                 # times the handler waited for cprof's hook to return
        self.starting = False             # _begin runs: an ending signal waits for its end
        self.writing = False              # end() writes the profile: the same


_state = _State()
_hooks = False


# ---------------------------------------------------------------- the parent

_SITECUSTOMIZE = '''\
# cprof --follow-children: starts cprof in a child process running the same Python
# as the profiled program, then runs the sitecustomize the user had, if any.
import os, sys

def _cprof_follow():
    here = os.path.dirname(os.path.abspath(__file__))
    while here in sys.path:
        sys.path.remove(here)
    same = (sys.version == %(version)r and getattr(sys, "abiflags", "") == %(abiflags)r
            and getattr(getattr(sys, "implementation", None), "cache_tag", None) == %(tag)r
            and os.environ.get(%(env)r) == here)
    if not same:
        # another Python: leave no trace for its own children
        if os.environ.get(%(env)r) == here:
            del os.environ[%(env)r]
        kept = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p and p != here]
        if kept:
            os.environ["PYTHONPATH"] = os.pathsep.join(kept)
        elif %(user_path)r is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = %(user_path)r
    mine = sys.modules.pop("sitecustomize", None)
    try:
        try:
            import sitecustomize
        except ImportError as e:
            if getattr(e, "name", None) != "sitecustomize":
                raise
            sys.modules["sitecustomize"] = mine
    finally:
        if same:
            sys.path.insert(0, %(pkg)r)
            try:
                from cprof import children
            except ImportError:
                children = None
            finally:
                sys.path.remove(%(pkg)r)
            if children is not None:
                children._child_main(here, %(config)r)

_cprof_follow()
del _cprof_follow
'''


def start(profile: Any, out: str | None, counter: str, options: dict[str, Any]) -> None:
    """In the parent, before the program runs: the private folder, the environment
    that leads the program's Python children to it, and the at-fork hook.  `out` is
    the parent's -o (absolute), or None: the children's profiles then go to the
    folder and the parent's report merges them."""
    import tempfile
    folder = tempfile.mkdtemp(prefix="cprof-children-")
    try:
        _prepare(folder, profile, out, counter, options)
    except BaseException:   # nothing of the run left behind (the environment is set last)
        import shutil
        _state.folder = None
        shutil.rmtree(folder, ignore_errors=True)
        raise


def _prepare(folder: str, profile: Any, out: str | None, counter: str, options: dict[str, Any]) -> None:
    """start()'s work in its private folder."""
    import secrets
    os.mkdir(os.path.join(folder, "started"))
    pkg = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    user_path = os.environ.get("PYTHONPATH")
    from . import calibration, exporters, profile_file
    where = out or os.path.join(folder, "profile.json")
    config = {"out": where, "counter": counter,
              # cprof's cost per event, measured in this process moments ago (same machine,
              # Python and options): a new interpreter uses it instead of measuring again
              # (a fork inherits it): most of what starting a child cost
              "calibrated": dict(calibration._calibrated),
              # out.json -> (out, .json): a child names its file without the exporters
              "split": profile_file.split_ending(where),
              # decided here: a child writing JSON does not import the exporters
              "format": exporters.format_for_path(out) if out else None,
              "options": options, "run": secrets.token_hex(8), "root": os.getpid()}
    # the options as a literal in the child's sitecustomize: no json to import there
    with open(os.path.join(folder, "sitecustomize.py"), "w") as f:
        f.write(_SITECUSTOMIZE % {"version": sys.version, "abiflags": getattr(sys, "abiflags", ""),
                                  "tag": sys.implementation.cache_tag, "env": ENV, "pkg": pkg,
                                  "user_path": user_path, "config": config})
    _state.folder, _state.config, _state.profile = folder, config, profile
    _state.pid, _state.root, _state.user_pythonpath = os.getpid(), True, user_path
    _preload()   # here, not in each forked child (nor in a child forked during an import)
    os.environ[ENV] = folder
    os.environ["PYTHONPATH"] = folder + (os.pathsep + user_path if user_path else "")
    _install_fork_hook()


def finish() -> dict[str, Any]:
    """In the parent, once the program ended: the environment as the user had it,
    the meta that lists the children that started profiling, and (without -o) their
    profiles, loaded; the private folder is removed."""
    import shutil
    folder = _state.folder
    if folder is None or os.getpid() != _state.pid:
        return {}
    if os.environ.get(ENV) == folder:
        del os.environ[ENV]
    kept = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p and p != folder]
    if kept:
        os.environ["PYTHONPATH"] = os.pathsep.join(kept)
    elif _state.user_pythonpath is None:
        os.environ.pop("PYTHONPATH", None)
    else:
        os.environ["PYTHONPATH"] = _state.user_pythonpath
    started = _markers(folder)
    meta = {"run": _state.config["run"], "children": started}
    _state.folder = None
    if _state.config["out"].startswith(folder + os.sep):   # no -o: read them before they go
        # children still writing (a signal to the process group ends them with the parent)
        # get a moment, bounded, before their folder goes
        _wait_for_writers(_state.config["out"], started, _WAIT_S)
        meta["_loaded"] = _gather(_state.config["out"], meta)
    shutil.rmtree(folder, ignore_errors=True)
    return meta


_WAIT_S = 2.0   # without -o: how long the report waits for children still running


def _running(pid: int) -> bool:
    """Process pid exists and has not ended (a zombie has)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rpartition(")")[2].split()[:1] != ["Z"]
    except OSError:
        return True


def _wait_for_writers(out: str, started: list[dict[str, Any]], seconds: float) -> None:
    """Until each listed child has its profile or has ended, at most `seconds`."""
    import time

    from . import profile_file
    end = time.monotonic() + seconds
    waiting = [m["pid"] for m in started]
    while waiting and time.monotonic() < end:
        waiting = [pid for pid in waiting if _running(pid)
                   and not os.path.exists(profile_file.tagged_path(out, str(pid)))]
        if waiting:
            time.sleep(0.01)


def _markers(folder: str) -> list[dict[str, Any]]:
    import ast
    out = []
    where = os.path.join(folder, "started")
    for name in os.listdir(where):
        try:
            with open(os.path.join(where, name), encoding="utf-8", errors="surrogateescape") as f:
                out.append(ast.literal_eval(f.read()))
        except (OSError, ValueError, SyntaxError):  # a child killed while writing it: the name is its pid
            if name.isdigit():
                out.append({"pid": int(name), "parent_pid": None, "command": []})
    out.sort(key=lambda m: m["pid"])
    return out


# ---------------------------------------------------------------- every profiled process

def _install_fork_hook() -> None:
    global _hooks
    if not _hooks:  # inherited by forks: once per line of processes
        os.register_at_fork(before=_before_fork, after_in_parent=_after_fork_in_parent,
                            after_in_child=_after_fork_in_child)
        _hooks = True


_fork_mask = ForkMask()


def _before_fork() -> None:
    _state.fork_pid = os.getpid()
    # A fork's interpreter clears, as it starts, the signals whose handlers have not
    # run (CPython's _PySignal_AfterFork): an ending signal that reaches the child
    # before that trips _on_signal's flag and is lost (the guard's timer is this
    # process's, not the child's).  Blocked in the forking thread, it waits in the
    # kernel until the child's own handler and guard are set (the CLI does the same
    # for its own handler in cprof's process)
    import _signal as signal
    _fork_mask.block(s for s in _SIGNAL_NAMES if signal.getsignal(s) is _on_signal)


def _after_fork_in_parent() -> None:
    _fork_mask.restore()


def _after_fork_in_child() -> None:
    try:
        if _state.folder is None or not os.path.isdir(_state.folder):
            return   # the run is over (the parent removed the folder): nothing to write to
        _state.root = False
        _begin(_state.fork_pid or os.getppid(), forked=True, inherited=_state.profile)
        util = sys.modules.get("multiprocessing.util")
        if util is not None:
            # a multiprocessing worker ends by os._exit after its bootstrap runs the
            # finalizers; its registry is cleared after the fork, and after-fork
            # callbacks run once it is: register there
            util.register_after_fork(_ANCHOR, _register_finalizer)
    finally:   # a signal sent meanwhile acts now: the profile is written, then it ends the child
        _after_fork_in_parent()


class _Anchor:
    """A weak-referenceable object for multiprocessing's after-fork registry."""


_ANCHOR = _Anchor()


def _register_finalizer(_: Any) -> None:
    util = sys.modules["multiprocessing.util"]
    util.Finalize(None, end, exitpriority=-(1 << 30))   # last: after the worker's own


def _child_main(folder: str, config: dict[str, Any]) -> None:
    """In a new interpreter, from the private sitecustomize: start profiling."""
    _state.folder, _state.config = folder, config
    argv = getattr(sys, "orig_argv", [])
    helper = any(h in a for a in argv for h in _HELPERS)
    _install_fork_hook()   # forkserver: the workers it forks are profiled
    from . import calibration
    calibration._calibrated.update(config.get("calibrated", {}))
    if helper:
        if any("forkserver" in a for a in argv):
            from . import api  # noqa: F401  (imported once here, not in each worker it forks)
            _preload()
        return
    _begin(os.getppid(), forked=False)


def _begin(parent_pid: int, forked: bool, inherited: Any = None) -> None:
    """Start a fresh profile in this process (a fork stops the one it `inherited`
    first: the parent's numbers up to the fork are the parent's), say so in the
    folder, and arrange for it to be written when the process ends."""
    # An ending signal that comes from here on (Pool.terminate() ending a worker that
    # is still starting) waits until the profile has started: its handler would
    # otherwise run inside enable() (3.10 and 3.11 call threading.setprofile there)
    # and find the profile busy: a listed child with no profile
    _state.pid, _state.parent_pid, _state.written = os.getpid(), parent_pid, False
    _state.forked, _state.pending, _state.starting = forked, None, True
    _state.profile, _state.deferred = None, 0
    try:
        _catch_signals()   # first: from here an ending signal waits for the profile, then writes it
        if inherited is not None and inherited._profiler.enabled:
            try:
                inherited._profiler.disable(strict=False)
            except Exception:
                pass
        _start_profile()
    finally:
        _state.starting = False
    if _state.pending is not None:   # the profile so far is written, then the signal ends it
        signum = _state.pending
        end(signal=signum)
        _die_by(signum)


def _start_profile() -> None:
    import time

    from . import api
    from ._cprof import CprofError
    _state.started = time.time()
    o = _state.config["options"]
    try:
        prof = api.Profile(_state.config["counter"], **o)
        enable, _ = prof.switches()
    except (CprofError, OSError):
        _state.profile = None
        return  # this process runs unprofiled, and is not listed
    _preload()
    _state.profile = prof
    import atexit
    atexit.unregister(end)
    atexit.register(end)
    try:
        _write_marker()
    except OSError:  # the parent's run is over (its folder is gone)
        _state.profile = None
        return
    try:
        enable(push_existing=_state.forked)
    except CprofError:  # another profiler holds the hook: listed, its profile missing
        _state.profile = None


def _preload() -> None:
    """Import what writing the profile needs, before an ending signal can ask for it:
    its handler then imports nothing.  A signal comes at any moment, also while the
    program imports a module (a half-imported module that the writer needs fails it:
    seen with 3.14's annotationlib), and a process forked while another thread
    imported inherits that module's lock held by a thread it does not have (an import
    of it would wait forever).  In the parent before the program runs, so that forks
    inherit them; once in each new interpreter."""
    import atexit  # noqa: F401  (what _begin needs in a forked child)

    from . import _children, build, profile_file  # noqa: F401  (build: the names, at _compact_profile)
    profile_file._dumps()  # the JSON encoder the writing uses (json's C one, or json)
    fmt = _state.config.get("format")
    if fmt is not None:
        from . import exporters
        exporters._module(fmt)


def _write_marker() -> None:
    path = os.path.join(_state.folder or "", "started", str(os.getpid()))
    # a new interpreter's own command line; a fork's is its parent's program
    command = sys.argv if _state.forked else getattr(sys, "orig_argv", sys.argv)
    data = repr({"pid": os.getpid(), "parent_pid": _state.parent_pid,   # read by ast.literal_eval
                 "command": list(command), "fork": _state.forked})
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, data.encode("utf-8", "surrogateescape"))
    finally:
        os.close(fd)


_ENDING = ("SIGTERM", "SIGHUP")
_SIGNAL_NAMES = {15: "SIGTERM", 1: "SIGHUP"}   # signal's enums would be an import in the handler


def _catch_signals() -> None:
    import _signal as signal  # the C part: the module's enums cost a child's start-up 30M instructions

    from ._children import guard
    for name in _ENDING:
        signum = getattr(signal, name, None)
        if signum is None:
            continue
        try:
            if signal.getsignal(signum) in (signal.SIG_DFL, _on_signal):
                signal.signal(signum, _on_signal)
                # Python runs the handler at its next check: a signal that comes just
                # before a blocking call (a pool worker going back to its queue's lock
                # as Pool.terminate() sends SIGTERM) would wait for that call to end,
                # forever; the guard sends it again until the handler runs
                _state.guarded = guard(signum)
        except ValueError:  # not the main thread
            return


_DEFER_MAX = 50   # times 20 ms: how long an ending signal waits for cprof's hook to return


def _in_hook(frame: Any) -> bool:
    """The signal came while cprof's hook runs Python code (the repr of a slow call's
    arguments): stopping the profile there would leave that call half-counted."""
    capture = sys.modules.get("cprof.capture")
    code = getattr(getattr(capture, "capture", None), "__code__", None)
    while frame is not None and code is not None:
        if frame.f_code is code:
            return True
        frame = frame.f_back
    return False


def _on_signal(signum: int, frame: Any) -> None:
    if _state.guarded and _state.deferred < _DEFER_MAX and _in_hook(frame):
        # the guard sends the signal again in 20 ms, out of the hook (bounded)
        _state.deferred += 1
        return
    from ._children import handled
    handled(signum)
    mine = _state.pid == os.getpid()
    if mine and (_state.starting or _state.writing):
        # cprof is starting this process's profile (_begin acts on it at its end),
        # or writing it (a pool's worker, between the end of its last task and
        # os._exit, gets Pool.terminate()'s SIGTERM): end() acts on it once written
        _state.pending = signum
        return
    if not (mine and _state.written):   # written already: the process ends at once, as it would
        end(signal=signum)
    _die_by(signum)


def _die_by(signum: int) -> None:
    import _signal as signal
    signal.signal(signum, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signum})
    os.kill(os.getpid(), signum)
    os._exit(128 + signum)   # not reached


def end(exit_code: int | None = None, signal: int | None = None) -> None:
    """Stop this child's profile and write it beside the parent's, once."""
    if _state.root or _state.profile is None or _state.written or _state.pid != os.getpid():
        return
    _state.written = _state.writing = True
    held = _hold_interrupt()
    try:
        _write(exit_code, signal)
    finally:
        _state.writing = False
        _release_interrupt(held, again=signal is None and _state.pending is None)
    if _state.pending is not None and signal is None:
        _die_by(_state.pending)


def _hold_interrupt() -> Any:
    """While the profile is written, a SIGINT (Ctrl-C reaches the whole process group:
    a pool's workers too, as they write at Pool.terminate()'s SIGTERM) is held instead
    of raising KeyboardInterrupt inside cprof's writer, which lost the profile.  Returns
    what _release_interrupt needs, or None (not the main thread, or not Python's)."""
    import _signal as signal
    try:
        previous = signal.getsignal(signal.SIGINT)
        if not callable(previous):
            return None   # ignored or the default: no exception to keep out
        came: list[int] = []
        signal.signal(signal.SIGINT, lambda signum, frame: came.append(signum))
    except (ValueError, AttributeError):
        return None
    return previous, came


def _release_interrupt(held: Any, again: bool) -> None:
    """The SIGINT handler put back; one that came meanwhile is sent again (`again`:
    the process goes on, as it would have after it) or dropped (an ending signal is
    about to end the process first)."""
    if held is None:
        return
    import _signal as signal
    previous, came = held
    signal.signal(signal.SIGINT, previous)
    if came and again:
        os.kill(os.getpid(), signal.SIGINT)


def _write(exit_code: int | None, signal: int | None) -> None:
    import time
    prof = _state.profile
    try:
        prof._profiler.disable(strict=False)
    except Exception:
        pass
    meta: dict[str, Any] = {"command": list(sys.argv), "started": _state.started,
                            "duration_s": round(time.time() - _state.started, 6),
                            "pid": os.getpid(), "run": _state.config["run"]}
    if _state.parent_pid is not None:
        meta["parent_pid"] = _state.parent_pid
    if exit_code is not None:
        meta["exit_code"] = exit_code
    if signal is not None:
        meta["signal"] = _SIGNAL_NAMES.get(signal, str(signal))
    from . import profile_file
    stem, ending = _state.config["split"]
    out = f"{stem}.{os.getpid()}{ending}"   # profile_file.tagged_path's, without importing the exporters
    if _state.folder and out.startswith(_state.folder + os.sep) and not os.path.isdir(_state.folder):
        return  # no -o, and the parent's report is made: a child that outlived it has no place
    try:
        profile = prof._compact_profile(**meta)
        health = profile["meta"]["health"]
        if _state.forked and health["unmatched_exits"]:
            # started inside os.fork() (its at-fork hook), the profile sees os.fork
            # return without having seen it called: that one is not the program's
            health["unmatched_exits"] -= 1
        fmt = _state.config["format"]
        if fmt is None:
            profile_file.write(profile, out)
        else:
            from . import exporters
            exporters.export(profile, fmt, out)
    except Exception as e:  # the process's own ending goes on
        try:
            sys.stderr.write(f"cprof: error: process {os.getpid()}'s profile was not written: {e}\n")
        except Exception:
            pass


# ---------------------------------------------------------------- reading: the merge

def _gather(path: str, meta: Any) -> list[tuple[dict[str, Any], Any]]:
    """(marker, its profile or None) for each child listed in meta."""
    from . import profile_file
    from ._cprof import CprofError
    out = []
    for m in meta.get("children", []):
        child = profile_file.tagged_path(path, str(m["pid"]))
        prof = None
        if os.path.exists(child):
            try:
                prof = profile_file.load(child)
            except CprofError as e:
                m = dict(m, unreadable=str(e))   # there, but not a profile: said so
                prof = None
            if prof is not None and prof["meta"].get("run") != meta.get("run"):
                prof = None   # another run's file with the same pid
        out.append((m, prof))
    return out


def _check_children(meta: Any, path: str) -> list[dict[str, Any]]:
    from ._cprof import CprofError
    from .schema import printable
    kids = meta.get("children")
    if not isinstance(kids, list) or not all(
            isinstance(k, dict) and isinstance(k.get("pid"), int) and not isinstance(k["pid"], bool)
            for k in kids) or not isinstance(meta.get("run"), str):
        raise CprofError(f"profile '{printable(path)}': meta.children must be a list of "
                         "{\"pid\": int, ...} and meta.run a string")
    return kids


def load(path: str) -> ProfileData:
    """The profile at `path`; when it is the parent of a --follow-children run, with
    the profiles of its children (NAME.<pid>.json beside it) merged in."""
    from . import profile_file
    profile = profile_file.load(path)
    if "children" not in profile["meta"]:
        return profile
    _check_children(profile["meta"], path)
    return merged(profile, _gather(path, profile["meta"]))


def merged(parent: ProfileData, children: list[tuple[dict[str, Any], Any]]) -> ProfileData:
    """The parent's profile with its children's summed in; `processes` lists every
    process: pid, parent_pid, command, status ("ok", "missing": no profile, "unreadable", "other
    counters"), and its own profile."""
    names = [c["name"] for c in parent["counters"]]
    procs: list[dict[str, Any]] = [{"pid": parent["meta"].get("pid"), "parent_pid": None,
                                    "command": parent["meta"].get("command", []),
                                    "status": "ok", "profile": parent}]
    for marker, prof in children:
        status = "ok"
        if prof is None:
            status = "unreadable" if marker.get("unreadable") else "missing"
        elif [c["name"] for c in prof["counters"]] != names:
            status, prof = "other counters", None
        procs.append({"pid": marker["pid"], "parent_pid": marker.get("parent_pid"),
                      "command": marker.get("command") or [], "fork": bool(marker.get("fork")),
                      "status": status, "profile": prof})
        if status == "unreadable":
            procs[-1]["problem"] = marker["unreadable"]
    out = _sum([p["profile"] for p in procs if p["profile"] is not None], names)
    out["processes"] = procs   # type: ignore[typeddict-unknown-key]
    return out


def _identity(f: Any) -> tuple[str, str, int]:
    """A function's identity across processes: (name, file, line), the main script's
    functions named as the parent names them (a spawn or forkserver child imports the
    script as __mp_main__, where a fork and the parent run it as __main__)."""
    name = f["name"]
    if name.startswith("__mp_main__."):
        name = "__main__." + name[len("__mp_main__."):]
    return name, f["file"], f["line"]


def _sum(profiles: list[Any], names: list[str]) -> Any:
    """Functions, edges and call trees of several profiles added by identity: a
    function by (name, file, line), an edge by its two functions, a tree node by its
    path of functions."""
    first = profiles[0]
    fids: dict[tuple, int] = {}
    functions: list[dict[str, Any]] = []
    edges: dict[tuple, dict[str, Any]] = {}
    tree: dict[str, Any] = {"parent": [-1], "function": [-1], "calls": [0],
            "self": {n: [0] for n in names}, "total": {n: [0] for n in names}}
    nodes: dict[tuple, int] = {}
    meta = dict(first["meta"])
    health = {k: (list(v) if isinstance(v, list) else v) for k, v in first["meta"]["health"].items()}
    for k in ("region", "unattributed"):
        meta[k] = {n: 0 for n in names}
    meta["threads"] = meta["events"] = 0
    for i, prof in enumerate(profiles):
        m = prof["meta"]
        for k in ("region", "unattributed"):
            for n in names:
                meta[k][n] += m.get(k, {}).get(n, 0)
        for k in ("threads", "events"):
            meta[k] += m.get(k, 0) or 0
        if i:
            h = m["health"]
            for k in ("out_of_memory", "backwards_readings", "tree_folded",
                      "distribution_values_lost", "unmatched_exits"):
                health[k] += h[k]
            health["counter_failures"] += h["counter_failures"]
            if health["backwards_first"] is None and h["backwards_first"] is not None:
                health["backwards_first"] = None   # a function id of another process: not kept
            meta.setdefault("hook_replaced", [])
            meta["hook_replaced"] = list(meta["hook_replaced"]) + list(m.get("hook_replaced", []))
        remap = []
        for f in prof["functions"]:
            fkey = _identity(f)
            j = fids.get(fkey)
            if j is None:
                j = fids[fkey] = len(functions)
                functions.append({"id": j, "name": fkey[0], "file": f["file"], "line": f["line"],
                                  "calls": 0, "primitive_calls": 0,
                                  "self": {n: 0 for n in names}, "total": {n: 0 for n in names}})
            g = functions[j]
            g["calls"] += f["calls"]
            g["primitive_calls"] += f["primitive_calls"]
            for n in names:
                g["self"][n] += f["self"][n]
                g["total"][n] += f["total"][n]
            remap.append(j)
        for e in prof["edges"]:
            ekey = (remap[e["caller"]], remap[e["callee"]])
            d = edges.get(ekey)
            if d is None:
                d = edges[ekey] = {"caller": ekey[0], "callee": ekey[1], "calls": 0, "primitive_calls": 0,
                                  "total": {n: 0 for n in names}}
            d["calls"] += e["calls"]
            d["primitive_calls"] += e["primitive_calls"]
            for n in names:
                d["total"][n] += e["total"][n]
        t = prof["tree"]
        here = [0] * len(t["parent"])   # this profile's node -> the merged one
        cols_self = [t["self"][n] for n in names]
        cols_total = [t["total"][n] for n in names]
        for node in range(len(t["parent"])):
            target = 0
            if node:
                nkey = (here[t["parent"][node]], remap[t["function"][node]])
                found = nodes.get(nkey)
                if found is None:
                    found = nodes[nkey] = len(tree["parent"])
                    tree["parent"].append(nkey[0])
                    tree["function"].append(nkey[1])
                    tree["calls"].append(0)
                    for n in names:
                        tree["self"][n].append(0)
                        tree["total"][n].append(0)
                target = found
            here[node] = target
            tree["calls"][target] += t["calls"][node]
            for n, cs, ct in zip(names, cols_self, cols_total):
                tree["self"][n][target] += cs[node]
                tree["total"][n][target] += ct[node]
    meta["health"] = health
    meta["processes"] = len(profiles)
    out = {k: v for k, v in first.items() if k not in ("functions", "edges", "tree", "meta")}
    out.update(functions=functions, edges=list(edges.values()), tree=tree, meta=meta)
    return out


# ---------------------------------------------------------------- reports

def _command(cmd: Any) -> str:
    from .schema import printable
    words = [str(w) for w in (cmd or [])]
    if words:
        words[0] = os.path.basename(words[0]) if words[0] == sys.executable else words[0]
    text = " ".join(words).replace("from multiprocessing.spawn import spawn_main; ", "")
    return printable(text if len(text) <= 60 else text[:57] + "...")


def missing_lines(profile: Any) -> list[str]:
    """One line per process whose profile is not there, for the merged report."""
    out = []
    for p in profile.get("processes", []):
        if p["status"] == "ok":
            continue
        whose = f" (child of {p['parent_pid']})" if p.get("parent_pid") else ""
        why = {"missing": "wrote no profile (it was killed, ended by os._exit outside "
                          "multiprocessing's workers, or still ran when the report was made)",
               "unreadable": f"its profile could not be read: {p.get('problem')}"}.get(
            p["status"], "has other counters than the parent: left out")
        out.append(f"warning: process {p['pid']}{whose}, {_command(p['command'])}: {why}")
    return out


def header(profile: Any) -> str:
    """The merged report's first lines: how many processes it sums, and what is missing."""
    procs = profile.get("processes")
    if not procs:
        return ""
    first = f"cprof: {_summed(procs)}; cprof report FILE --by-process for each"
    return "\n".join([first, *missing_lines(profile)]) + "\n"


def _summed(procs: list[dict[str, Any]]) -> str:
    ok = sum(p["status"] == "ok" for p in procs)
    return f"{ok} process{'es' if ok != 1 else ''} summed ({len(procs) - ok} missing)"


def summed_note(profile: Any, name: str) -> str:
    """For compare: how many processes a merged profile sums, and which wrote no profile
    (their numbers are not in the sum); nothing for a profile of one process."""
    from .schema import printable
    procs = profile.get("processes")
    if not procs:
        return ""
    return "".join(f"cprof: {printable(name)}: {line}\n"
                   for line in [_summed(procs), *missing_lines(profile)])


def format_processes(profile: Any, sort: str | None = None, limit: int = 25, all: bool = False,
                     focus: str | None = None) -> str:
    """`cprof report FILE --by-process`: a row per process (pid, parent, calls, each
    counter's region, command), then each process's own report."""
    from . import report
    from .report import human
    counters = profile["counters"]
    procs = profile.get("processes") or [{"pid": profile["meta"].get("pid"), "parent_pid": None,
                                          "command": profile["meta"].get("command", []),
                                          "status": "ok", "profile": profile}]
    cols = ["pid", "parent", "calls"] + [c["name"] for c in counters]
    rows = []
    for p in procs:
        prof = p["profile"]
        if prof is None:
            row = [str(p["pid"]), str(p["parent_pid"] or "-"), "-"] + ["-"] * len(counters)
        else:
            region = prof["meta"].get("region", {})
            row = [str(p["pid"]), str(p["parent_pid"] or "-"),
                   f"{sum(f['calls'] for f in prof['functions']):,}"]
            row += [human(region.get(c["name"], 0), c["unit"]) for c in counters]
        cmd = ("(forked) " if p.get("fork") else "") + _command(p["command"])
        rows.append((row, cmd + ("" if p["status"] == "ok" else f"  [{p['status']}]")))
    widths = [max(len(cols[i]), *(len(r[0][i]) for r in rows)) for i in range(len(cols))]
    lines = [f"{len(procs)} process{'es' if len(procs) != 1 else ''}"]
    lines.append("  ".join(cols[i].rjust(widths[i]) for i in range(len(cols))) + "  command")
    for row, cmd in rows:
        lines.append("  ".join(row[i].rjust(widths[i]) for i in range(len(cols))) + "  " + cmd)
    lines.extend(missing_lines(profile))
    for p in procs:
        if p["profile"] is None:
            continue
        whose = f", child of {p['parent_pid']}" if p.get("parent_pid") else ""
        lines.append("")
        lines.append(report.format_report(p["profile"], sort=sort, limit=limit, all=all, focus=focus,
                                          title=f"process {p['pid']}{whose}").rstrip("\n"))
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- exports

def html_processes(profile: Any, view: Any) -> list[dict[str, Any]]:
    """The HTML report's process switcher: each process (pid, parent, command, status)
    and, where its profile is there, its own page data (`view(profile)`)."""
    return [{"pid": p["pid"], "parent_pid": p.get("parent_pid"), "command": _command(p["command"]),
             "fork": bool(p.get("fork")), "status": p["status"],
             "view": None if p["profile"] is None else view(p["profile"])}
            for p in profile["processes"]]


def pprof_samples(profile: Any, names: list[str], strings: Any) -> bytes:
    """The Sample messages of a merged profile for pprof: each process's call paths
    (function ids of the merged profile) with a `pid` label (a number), so that
    `go tool pprof -tagfocus=pid=N` or `-tags` tells the processes apart."""
    from ._cprof import pprof_samples as encode
    from .exporters.pprof import _bytes, _int
    ids = {(f["name"], f["file"], f["line"]): f["id"] for f in profile["functions"]}
    out = bytearray()
    key = strings("pid")
    for p in profile["processes"]:
        prof = p["profile"]
        if prof is None:
            continue
        remap = [ids[_identity(f)] for f in prof["functions"]]
        t = prof["tree"]
        function = [-1] + [remap[f] for f in list(t["function"])[1:]]
        label = _bytes(3, _int(1, key) + _int(3, p["pid"]))  # Label{key, num}
        data = encode(t["parent"], function, [t["self"][n] for n in names])
        i = 0
        while i < len(data):   # each Sample (field 2, length-delimited), its label added
            assert data[i] == 0x12
            n, i = _read_varint(data, i + 1)
            out += _bytes(2, data[i:i + n] + label)
            i += n
    return bytes(out)


def _read_varint(data: bytes, i: int) -> tuple[int, int]:
    n = shift = 0
    while True:
        b = data[i]
        i += 1
        n |= (b & 0x7F) << shift
        shift += 7
        if b < 0x80:
            return n, i
