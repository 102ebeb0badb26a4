"""cprof attach PID: profile a running Python 3.14+ process for a while, through
sys.remote_exec (PEP 768), and leave it as it was (README "Attach to a running
process").

How it goes.  The attaching process (the *attacher*) makes a private folder and writes
a small script there; sys.remote_exec asks the target to run it, which its main thread
does at its next safe point (between two bytecodes, like a signal handler).  The
script imports cprof from the target's own environment and calls _remote() below,
which starts a profile of every thread and reports back in a status file, written
atomically (a temporary file renamed), that the attacher polls.  After the window,
a second script stops the profile and writes it as a JSON profile in the same
folder; the attacher reads it, prints the report or writes -o, and removes the
folder.  Nothing is printed in the target: every outcome, errors included, goes to
the status file.

Each request is a file named STEP.request that the target renames to STEP.claimed
before it acts.  An attacher that gives up (the main thread did not reach a safe
point in time, or Ctrl-C) renames it to STEP.cancelled instead: one of the two
renames fails, so exactly one side decides.  A script that finds its request
cancelled removes the folder itself when it finally runs (CPython reads the script
only then, so the attacher must leave it there), after stopping the profile if it
was the stop request.

Audit events (sys.audit, PEP 578), so the target can see and mark the window:
"cprof.attach" with ("starting",) just before profiling starts and ("started",) just
after, ("stopping",) just before it stops and ("stopped",) just after.  They run in
the target's main thread, between nothing else of cprof's: what a hook does at
"starting"/"stopping" (take a lock, read a counter) is exactly at the window's edge.
"""
from __future__ import annotations

import os
import sys

from ._cprof import CprofError

TYPE_CHECKING = False
if TYPE_CHECKING:
    import argparse
    from types import FrameType
    from typing import Any

AUDIT_EVENT = "cprof.attach"
POLL_S = 0.02   # how often the attacher looks at the status file
DEFAULT_TIMEOUT_S = 5.0   # for the main thread to reach a safe point
ANSWER_S = 120.0          # for the target to answer a request it took


# ------------------------------------------------------------------ in the target
#
# The script's code; it runs in a fresh namespace, in the target's main thread.  It
# must never raise (CPython would print the exception on the target's stderr), and
# prints nothing.
_SCRIPT = '''\
def _cprof_attach(folder={folder!r}, step={step!r}, options={options!r}):
    import os
    def tell(**status):
        temp = os.path.join(folder, step + ".status.tmp")
        with open(temp, "w") as f:
            f.write(repr(status))
        os.replace(temp, os.path.join(folder, step + ".status"))
    try:
        os.rename(os.path.join(folder, step + ".request"), os.path.join(folder, step + ".claimed"))
        claimed = True
    except OSError:
        claimed = False
    try:
        try:
            from cprof import attach
        except BaseException as e:
            import sys
            if claimed:
                tell(error="import", message=f"{{type(e).__name__}}: {{e}}",
                     executable=sys.executable, path=list(sys.path))
            else:
                import shutil
                shutil.rmtree(folder, ignore_errors=True)
            return
        attach._remote(folder, step, options, claimed)
    except BaseException as e:
        try:
            tell(error="internal", message=f"{{type(e).__name__}}: {{e}}")
        except BaseException:
            pass
_cprof_attach()
del _cprof_attach
'''

# The target's one attach session: (Profile, stop switch, start time), between the
# start and the stop request.
_session: tuple | None = None


def _tell(folder: str, step: str, status: dict) -> None:
    """Write the status of `step` atomically, for the attacher's poll."""
    temp = os.path.join(folder, step + ".status.tmp")
    with open(temp, "w") as f:
        f.write(repr(status))
    os.replace(temp, os.path.join(folder, step + ".status"))


def _own_depth() -> int:
    """How many of the calling thread's innermost frames are the attach script's
    (up to its <module>, run by CPython from "<string>"), _remote's caller's included."""
    f: FrameType | None = sys._getframe(1)
    n = 0
    while f is not None:
        n += 1
        if f.f_code.co_filename == "<string>" and f.f_code.co_name == "<module>":
            return n
        f = f.f_back
    return 0


def _stop_session() -> tuple:
    """Stop the session's profile: (its Profile, when it started)."""
    global _session
    assert _session is not None
    prof, stop, started = _session
    _session = None
    sys.audit(AUDIT_EVENT, "stopping")
    try:
        stop(strict=False)   # a replaced hook (3.10-3.11) is in the profile's meta.hook_replaced
    finally:
        sys.audit(AUDIT_EVENT, "stopped")
    return prof, started


def _remote(folder: str, step: str, options: dict, claimed: bool) -> None:
    """The target's side of a request (start or stop), run by the script above.  Its
    status is written from here, so that what runs inside the profile is cprof's own
    code (the report folds it into [cprof]), not the script's."""
    global _session

    def tell(**status: Any) -> None:
        _tell(folder, step, status)
    if not claimed:  # the attacher gave up on this request: clean up after it
        if step == "stop" and _session is not None:
            _stop_session()
        import shutil
        shutil.rmtree(folder, ignore_errors=True)
        return
    if step == "start":
        if _session is not None:
            tell(error="busy")
            return
        from .api import Profile
        try:
            prof = Profile(options["counters"], compensate=options["compensate"],
                           distributions=options["distributions"],
                           async_mode=options.get("async_mode", False))
            start, stop = prof.switches()  # calibrated now, before the window
        except CprofError as e:
            tell(error="cprof", message=str(e))
            return
        import time
        skip = _own_depth()
        sys.audit(AUDIT_EVENT, "starting")
        try:
            start(push_existing=True, skip=skip)
        except CprofError as e:
            sys.audit(AUDIT_EVENT, "started")
            tell(error="cprof", message=str(e))
            return
        sys.audit(AUDIT_EVENT, "started")
        _session = (prof, stop, time.time())
        tell(state="started", pid=os.getpid())
        return
    # stop
    if _session is None:
        tell(error="not started")
        return
    prof, started = _stop_session()
    import time

    from . import profile_file
    meta = {"command": list(sys.argv), "started": started,
            "duration_s": round(time.time() - started, 6), "pid": os.getpid(),
            "attached": True}
    path = os.path.join(folder, "profile.json")
    profile_file.write(prof._compact_profile(**meta), path)
    tell(state="written", profile=path)


# ------------------------------------------------------------------ in the attacher

def _read(path: str) -> str | None:
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return None


def _alive(pid: int, since: str | None) -> bool:
    """Process `pid` is still the one we attached to (same start time: not a reuse),
    and has not exited (a zombie, not yet waited for by its parent, has)."""
    stat = _read(f"/proc/{pid}/stat")
    if stat is None:
        return False
    fields = stat.rpartition(")")[2].split()
    return fields[0] not in ("Z", "X") and (since is None or fields[19] == since)


def _start_time(pid: int) -> str | None:
    stat = _read(f"/proc/{pid}/stat")
    if stat is None:
        return None
    return stat.rpartition(")")[2].split()[19]  # field 22, starttime


def _python_version(pid: int) -> tuple[tuple[int, int] | None, str]:
    """((major, minor), file) of the Python the target runs, from the files it maps
    (the interpreter or its libpython), or (None, its executable) if none looks like one.
    The file's name ends in t for a free-threaded build (python3.14t, libpython3.14t.so)."""
    import re
    name = re.compile(r"(?:lib)?python(\d+)\.(\d+)[a-z]*(?:\.so[.\d]*)?")
    try:
        exe = os.readlink(f"/proc/{pid}/exe")
    except OSError:
        exe = ""
    maps = _read(f"/proc/{pid}/maps") or ""
    files = [exe] + [line.split(None, 5)[5] for line in maps.splitlines()
                     if len(line.split(None, 5)) == 6]
    for path in files:
        m = name.fullmatch(os.path.basename(path.strip()))
        if m:
            return (int(m.group(1)), int(m.group(2))), path.strip()
    return None, exe


def _status_of(pid: int) -> dict:
    out = {}
    for line in (_read(f"/proc/{pid}/status") or "").splitlines():
        key, _, value = line.partition(":")
        out[key] = value.split()
    return out


def _user(uid: int) -> str:
    try:
        import pwd
        return f"{pwd.getpwuid(uid).pw_name} (uid {uid})"
    except (ImportError, KeyError):
        return f"uid {uid}"


def _ptrace_problem(pid: int) -> str:
    """Why this process may not trace `pid`: the sentence naming the cause and the fix."""
    target = _status_of(pid).get("Uid", [])
    me = _status_of(os.getpid())
    cap = int((me.get("CapEff") or ["0"])[0], 16) >> 19 & 1   # CAP_SYS_PTRACE is bit 19
    scope = (_read("/proc/sys/kernel/yama/ptrace_scope") or "").strip()
    euid = os.geteuid()
    if target and int(target[1]) != euid and not cap:
        return (f"process {pid} belongs to user {_user(int(target[1]))} and cprof runs as "
                f"{_user(euid)} without CAP_SYS_PTRACE; run cprof attach as that user (or as root)")
    if scope in ("1", "2") and not cap:
        why = ("only a process's parent may trace it" if scope == "1"
               else "only a process with CAP_SYS_PTRACE may trace another")
        return (f"kernel.yama.ptrace_scope is {scope} ({why}); run cprof attach as root (or "
                "with CAP_SYS_PTRACE), or allow it with: sudo sysctl kernel.yama.ptrace_scope=0")
    if scope == "3":
        return ("kernel.yama.ptrace_scope is 3 (no process may trace another until the machine "
                "restarts); restart it with the setting at 0, 1 or 2")
    if not cap:
        return (f"the system does not let cprof read process {pid}'s memory (ptrace; the process "
                "is not dumpable, or a container or security policy forbids it) and cprof lacks "
                "CAP_SYS_PTRACE; run cprof attach as root, or give the container CAP_SYS_PTRACE "
                "(docker run --cap-add=SYS_PTRACE)")
    return (f"the system does not let cprof read process {pid}'s memory (ptrace) even with "
            "CAP_SYS_PTRACE (the process is not dumpable, or a security module such as SELinux or "
            "AppArmor forbids it); allow it there, or profile it under cprof from its start")


def _closed_folder(path: str, uid: int, groups: set) -> str | None:
    """The first folder on `path` that user `uid` (in `groups`) cannot enter, or None."""
    if uid == 0:
        return None
    import stat
    while True:
        try:
            st = os.stat(path)
        except OSError:
            return path
        bit = (stat.S_IXUSR if st.st_uid == uid else
               stat.S_IXGRP if st.st_gid in groups else stat.S_IXOTH)
        if not st.st_mode & bit:
            return path
        parent = os.path.dirname(path)
        if parent == path:
            return None
        path = parent


def _disabled_why(pid: int) -> str:
    environ = (_read(f"/proc/{pid}/environ") or "").split("\0")
    cmdline = (_read(f"/proc/{pid}/cmdline") or "").split("\0")
    if any(e.startswith("PYTHON_DISABLE_REMOTE_DEBUG=") for e in environ):
        how = "it was started with PYTHON_DISABLE_REMOTE_DEBUG set; restart it without"
    elif "disable-remote-debug" in cmdline or "-Xdisable-remote-debug" in cmdline:
        how = "it was started with -X disable-remote-debug; restart it without"
    else:
        how = ("by PYTHON_DISABLE_REMOTE_DEBUG or -X disable-remote-debug, or its Python was built "
               "--without-remote-debug; restart it without")
    return f"remote debugging is disabled in process {pid} ({how} to attach)"


def _check_target(pid: int, counters: str) -> None:
    """The sentences for a target cprof cannot attach to, before asking it anything."""
    if pid <= 0:
        raise CprofError(f"'{pid}' is not a process id; give the PID of a running Python process")
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        raise CprofError(f"no process {pid}; check the PID (ps, pgrep python)") from None
    except PermissionError:
        pass  # another user's: the ptrace check below says what to do
    if pid == os.getpid():
        raise CprofError("cprof attach cannot attach to itself; give another process's PID")
    if not os.path.exists(f"/proc/{pid}/maps"):
        raise CprofError("cprof attach needs Linux's /proc to inspect the target")
    try:
        with open(f"/proc/{pid}/maps") as f:
            f.read(1)
    except PermissionError:
        raise CprofError(f"cannot attach to process {pid}: " + _ptrace_problem(pid)) from None
    except OSError:
        pass
    version, exe = _python_version(pid)
    mine = sys.version_info[:2]
    if version is None:
        return  # not recognisable by name (an embedding program): remote_exec will tell
    if version < (3, 14):
        raise CprofError(f"process {pid} runs Python {version[0]}.{version[1]} ({exe}); cprof "
                         "attach needs Python 3.14 or newer in the target (sys.remote_exec); run "
                         "it under cprof (cprof script.py) or use the cprof.Profile API there")
    if version != mine:
        raise CprofError(f"process {pid} runs Python {version[0]}.{version[1]} ({exe}) and cprof "
                         f"runs on Python {mine[0]}.{mine[1]} ({sys.executable}); run cprof attach "
                         f"with Python {version[0]}.{version[1]} (python{version[0]}.{version[1]} "
                         "-m cprof attach, with cprof installed there)")
    import re
    import sysconfig
    build = re.fullmatch(r"(?:lib)?python\d+\.\d+([a-z]*)(?:\.so[.\d]*)?", os.path.basename(exe))
    theirs_ft = "t" in build.group(1) if build else None
    ours_ft = bool(sysconfig.get_config_var("Py_GIL_DISABLED"))
    if theirs_ft is not None and theirs_ft != ours_ft:
        kind = {True: "free-threaded", False: "default (with the GIL)"}
        raise CprofError(f"process {pid} runs the {kind[theirs_ft]} build of Python "
                         f"{version[0]}.{version[1]} ({exe}) and cprof runs on its {kind[ours_ft]} "
                         f"build ({sys.executable}); run cprof attach with the target's build "
                         f"(python{version[0]}.{version[1]}{'t' if theirs_ft else ''} -m cprof "
                         "attach, with cprof installed there)")
    from .cli import MALLOC_COUNTERS
    wanted = [c for c in counters.split(",") if c in MALLOC_COUNTERS]
    if wanted and "libcprof_malloc.so" not in (_read(f"/proc/{pid}/maps") or ""):
        raise CprofError(f"counter '{wanted[0]}' needs cprof's malloc interposer in the process "
                         f"from its start (LD_PRELOAD=.../libcprof_malloc.so), and process {pid} "
                         "was started without it; use pymalloc-bytes and pymalloc-calls "
                         "(Python's own allocator, no preload), or restart it with the interposer")


def _remote_exec_problem(pid: int, e: BaseException, gone: str) -> str:
    """The sentence for sys.remote_exec's exception (`gone` if the target has exited)."""
    text = str(e)
    if not _alive(pid, None):
        return gone
    if isinstance(e, PermissionError):
        return f"cannot attach to process {pid}: " + _ptrace_problem(pid)
    if "not enabled in the remote process" in text:
        return _disabled_why(pid)
    if "PyRuntime" in text or "Can't determine the Python version" in text:
        return (f"process {pid} is not a Python 3.14+ process (no CPython runtime of a known "
                "version found in its memory); give the PID of a Python 3.14+ process")
    if "free-threaded" in text:
        return (f"process {pid} and cprof run different builds of Python {sys.version_info[0]}."
                f"{sys.version_info[1]} ({text.lower()}); run cprof attach with the target's "
                "interpreter (its free-threaded build, or not, as the target)")
    if "Python" in text and ("version" in text or "process" in text):
        return (f"cannot attach to process {pid}: {text}; run cprof attach with the same Python "
                "as the target")
    return f"cannot attach to process {pid}: {text}"


class Attacher:
    """One attach session, seen from the attaching process."""

    def __init__(self, pid: int, options: dict, timeout: float) -> None:
        self.pid = pid
        self.options = options
        self.timeout = timeout
        self.since = _start_time(pid)
        self.folder = ""          # the private folder, as this process sees it
        self.remote_folder = ""   # the same, as the target sees it
        self.keep_folder = False   # a cancelled request: the target removes it when it runs it
        self.interrupted = 0       # the signal (Ctrl-C, SIGTERM) that ends the window early

    def _make_folder(self) -> None:
        """The private folder for the requests, status and profile, and its path as
        the target sees it (through /proc/PID/root when it runs in another mount
        namespace, as in a container), readable by the target's user."""
        import tempfile
        root = f"/proc/{self.pid}/root"
        try:
            theirs, ours = os.stat(root), os.stat("/")
            inside = (theirs.st_dev, theirs.st_ino) != (ours.st_dev, ours.st_ino)
        except OSError:
            inside = False
        self.folder = tempfile.mkdtemp(prefix="cprof-attach-", dir=root + "/tmp" if inside else None)
        self.remote_folder = self.folder[len(root):] if inside else self.folder
        status = _status_of(self.pid)
        uid, gid = int(status["Uid"][1]), int(status["Gid"][1])
        if uid != os.geteuid():
            # root attaching to another user's process: the target reads the script and
            # writes its status and profile here, as its own user (the folder stays 0700)
            os.chown(self.folder, uid, gid)
        groups = {gid, *(int(g) for g in status.get("Groups", []))}
        blocked = _closed_folder(os.path.dirname(self.folder), uid, groups)
        if blocked is not None:
            os.rmdir(self.folder)
            raise CprofError(f"process {self.pid} runs as {_user(uid)}, which cannot enter "
                             f"{blocked}, where cprof puts its request; set TMPDIR to a folder "
                             "that user can reach (such as /tmp)")

    def cleanup(self) -> None:
        if self.folder and not self.keep_folder:
            import shutil
            shutil.rmtree(self.folder, ignore_errors=True)

    def _send(self, step: str, gone: str) -> None:
        script = os.path.join(self.folder, step + ".py")
        with open(script, "w") as f:
            f.write(_SCRIPT.format(folder=self.remote_folder, step=step, options=self.options))
        with open(os.path.join(self.folder, step + ".request"), "w"):
            pass
        try:
            sys.remote_exec(self.pid, os.path.join(self.remote_folder, step + ".py"))
        except (OSError, RuntimeError, ValueError) as e:
            raise CprofError(_remote_exec_problem(self.pid, e, gone)) from None

    def _cancel(self, step: str) -> bool:
        """Withdraw a request the target has not run; False if it already claimed it."""
        try:
            os.rename(os.path.join(self.folder, step + ".request"),
                      os.path.join(self.folder, step + ".cancelled"))
        except FileNotFoundError:
            return False
        self.keep_folder = True
        return True

    def _wait(self, step: str, gone: str) -> dict:
        """The status the target writes for `step`: within the timeout the request is
        claimed (or cancelled here: a CprofError), then however long the target takes."""
        import ast
        import time
        status = os.path.join(self.folder, step + ".status")
        request = os.path.join(self.folder, step + ".request")
        deadline = time.monotonic() + self.timeout
        # once it took the request: calibrating (start) or writing a big profile (stop)
        answer_by = deadline + ANSWER_S
        while True:
            text = _read(status)
            if text is not None:
                return ast.literal_eval(text)
            if not _alive(self.pid, self.since):
                raise CprofError(gone)
            if time.monotonic() > answer_by:
                raise CprofError(f"process {self.pid} took cprof's {step} request but did not "
                                 f"answer within {ANSWER_S:g} s; please report it (a profile may "
                                 "still be running there: a later attach would say so)")
            if step == "start" and self.interrupted and self._cancel(step):
                raise _Interrupted
            if os.path.exists(request) and time.monotonic() > deadline and self._cancel(step):
                what = ("no profile was started" if step == "start"
                        else "the profile will stop and be discarded when it does")
                raise CprofError(
                    f"process {self.pid}'s main thread did not reach a point where it can run "
                    f"Python code within {self.timeout:g} s (it is blocked in a long call, such "
                    f"as a sleep, a lock or a C function); {what}, and cprof's request removes "
                    f"itself then; try again when it is running Python code, or with a longer "
                    f"--timeout")
            time.sleep(POLL_S)

    def start(self) -> None:
        self._make_folder()
        self._send("start", f"process {self.pid} exited before cprof could attach")
        status = self._wait("start", f"process {self.pid} exited before cprof could attach")
        self._check(status)

    def _check(self, status: dict) -> None:
        error = status.get("error")
        if error is None:
            return
        if error == "import":
            raise CprofError(
                f"cprof cannot be imported in process {self.pid} ({status['message']}): its "
                f"interpreter {status['executable']} looks in sys.path {status['path']}; install "
                f"cprof into that interpreter's environment ({status['executable']} -m pip "
                "install cprof), then attach again")
        if error == "busy":
            raise CprofError(f"another cprof attach is already profiling process {self.pid}; "
                             "wait until it ends")
        if error == "cprof" and "already running" in status["message"]:
            raise CprofError(f"process {self.pid} is already profiled by cprof (it runs under "
                             "cprof, or a cprof.Profile is enabled in it); attach when that "
                             "profile ends, or read the one it writes")
        if error == "cprof":
            raise CprofError(f"in process {self.pid}: {status['message']}")
        raise CprofError(f"cprof failed inside process {self.pid} ({status.get('message', error)}); "
                         "please report it")

    def stop(self) -> str:
        """Stop the profile; the path of the profile the target wrote."""
        gone = f"process {self.pid} exited during the profiling window; no profile was written"
        self._send("stop", gone)
        status = self._wait("stop", gone)
        self._check(status)
        return os.path.join(self.folder, os.path.basename(status["profile"]))

    def window(self, duration: float) -> None:
        """Wait out the window: until `duration` s pass, Ctrl-C or SIGTERM, or the
        target exits (a CprofError)."""
        import time
        end = time.monotonic() + duration
        while time.monotonic() < end and not self.interrupted:
            if not _alive(self.pid, self.since):
                raise CprofError(f"process {self.pid} exited during the profiling window; "
                                 "no profile was written")
            time.sleep(min(0.05, max(0.0, end - time.monotonic())))


class _Interrupted(Exception):
    """Ctrl-C or SIGTERM before the target started the profile (the request withdrawn)."""


def _pid(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise CprofError(f"'{text}' is not a process id; give the PID of a running Python "
                         "process") from None


def add_options(p: argparse.ArgumentParser) -> None:
    """cprof attach's options (cli.py's subcommand)."""
    from . import cli
    p.add_argument("pid", type=_pid, metavar="PID", help="the process to profile")
    p.add_argument("--duration", "-d", type=float, default=10.0, metavar="SECONDS",
                   help="how long to profile (default: 10; Ctrl-C or SIGTERM stops sooner)")
    p.add_argument("--counter", "-c", default="cpu,wall",
                   help="comma-separated counters, first one sorts the report (default: cpu,wall)")
    p.add_argument("-o", "--output", help="write the profile here instead of printing a report: "
                   "the JSON profile, or by the name's ending (out.pb.gz, out.html, ...)")
    p.add_argument("--sort", help="sort by COUNTER (self), COUNTER.total, or calls")
    p.add_argument("--limit", type=cli._count, default=25, help="functions in the report (0 = all)")
    cli._focus_options(p)
    p.add_argument("--distributions", action="store_true",
                   help="keep a histogram of every call's cost per function")
    p.add_argument("--no-compensate", action="store_true",
                   help="keep cprof's own per-call cost in the numbers")
    p.add_argument("--async", dest="async_mode", action="store_true",
                   help="asyncio-aware, as cprof --async: a coroutine's time suspended is an "
                   "[await] child, and its tasks are kept (cprof report FILE --by-task); a "
                   "coroutine already suspended when the window opens counts its first resume "
                   "as a call")
    p.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_S, metavar="SECONDS",
                   help="how long the target's main thread may take to reach a point where it "
                   f"runs Python code (default: {DEFAULT_TIMEOUT_S:g})")
    p.set_defaults(run=run)


def run(opts: argparse.Namespace) -> int:
    """cprof attach: the subcommand (cli.py parses the options)."""
    if not hasattr(sys, "remote_exec"):
        raise CprofError(f"cprof attach needs Python 3.14 or newer (sys.remote_exec, PEP 768) and "
                         f"this cprof runs on Python {sys.version_info[0]}.{sys.version_info[1]} "
                         f"({sys.executable}); run it with the target's Python 3.14+ "
                         "(python3.14 -m cprof attach PID)")
    if not sys.is_remote_debug_enabled():
        raise CprofError("remote debugging is disabled in the Python that runs cprof "
                         "(PYTHON_DISABLE_REMOTE_DEBUG or -X disable-remote-debug); run cprof "
                         "attach without them")
    if not opts.duration > 0:
        raise CprofError(f"--duration={opts.duration} is not a length of time; give seconds "
                         "above 0 (--duration=10)")
    if not opts.timeout > 0:
        raise CprofError(f"--timeout={opts.timeout} is not a length of time; give seconds above 0")
    from . import cli
    if opts.output:
        cli._check_output(opts.output, "", "")
    if opts.sort is not None:
        from . import report
        report.sort_key(opts.counter.split(","), opts.sort)
    if opts.focus is not None:
        from . import focus
        focus.parse_patterns(opts.focus)
    _check_target(opts.pid, opts.counter)
    options = {"counters": opts.counter, "compensate": not opts.no_compensate,
               "distributions": opts.distributions, "async_mode": opts.async_mode}
    session = Attacher(opts.pid, options, opts.timeout)
    import signal

    def on_signal(signum: int, frame: Any) -> None:
        # from here on Ctrl-C and SIGTERM end the window (or withdraw the request not
        # yet run) rather than the attacher: a profile is never left running
        session.interrupted = signum

    old = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        try:
            session.start()
        except _Interrupted:
            cli._tell(f"cprof: interrupted before process {opts.pid} started profiling; no "
                      "profile was started (the withdrawn request removes itself when its main "
                      "thread next runs Python code)")
            return 128 + session.interrupted
        cli._tell(f"cprof: attached to process {opts.pid}; profiling for {opts.duration:g} s "
                  "(Ctrl-C stops sooner)")
        session.window(opts.duration)
        path = session.stop()
        from . import profile_file
        profile = profile_file.load(path)
    finally:
        session.cleanup()
        for signum, handler in old.items():
            signal.signal(signum, handler)
    if opts.output:
        cli._save(profile, opts.output)
    else:
        from . import report
        title = f"process {opts.pid} ({' '.join(profile.get('meta', {}).get('command') or [])})"
        sys.stdout.write(report.format_report(profile, sort=opts.sort, limit=opts.limit,
                                              title=title, all=opts.all, focus=opts.focus))
    return 0
