"""Profiling windows: a long-running program runs unprofiled, and profiles itself only
during windows, each written to its own file (out.json -> out.1.json, out.2.json ...),
opened and closed by a signal (`cprof --on-signal=USR2`, Windows(on_signal="USR2")) or
by a timer (`--window=SECONDS [--every=SECONDS] [--keep=N]`, Windows(window=...)).

How a window switches (README "Windows").  Every window is a fresh Profile, so each file
is a complete profile of its own: every thread, its functions named, its meta.  The
windows never overlap and cprof's own work is in none of them:

- Windows open and close in the main thread, in a signal handler: the user's signal
  (--on-signal), or for timer windows a real-time signal that a POSIX timer of cprof's
  sends to the main thread when a window is due (wintimer.c).  Python runs signal
  handlers in the main thread between two bytecodes, and a signal interrupts a
  blocking system call there, so a switch is prompt whatever the program does.  (A
  thread of cprof's own, the first design, had to win the GIL from the program's main
  thread at every step, and a main thread that releases it very often, making many
  short system calls, wins nearly every race for it: CI saw such a thread wait 30 s.)
- The handler is _cprof.run_steps over a list of steps, called from C: calls from C
  to C are no events, so enabling and disabling leave no frame of cprof's in the
  profile.  Closing is (clock, disable, clock, clock, _closed): _closed runs in Python
  while no window is open, writes the file and prepares the next window's steps
  (clock, enable, clock, then the closing steps set for the next signal), so writing
  is in no window either, and the program's main thread waits while a file is
  written (as it would for the GIL).
- A call that is running when a window opens is open in it (its time from then on is
  counted, not its call); one still running when the window closes is closed at that
  moment.  So a call is counted in exactly one window (the one it started in), and its
  time is split at the switch: nothing is counted twice.
- Consecutive windows (--window without --every, or --every equal to it) are apart by
  the time it takes to write the previous one: that gap is in no window, and each
  file's meta.window gives its start and end (epoch seconds), so the gaps are visible
  rather than hidden.
- A signal that arrives while a window is being written is not lost: the next window
  opens as soon as the file is written.
- A signal sent to the process, or by the program's own threads (os.kill,
  signal.pthread_kill), reaches the handler in the main thread.
"""
from __future__ import annotations

import os
import signal
import threading
import time
from collections import deque
from functools import partial

from . import _cprof
from ._cprof import CprofError
from .api import Profile
from .cli import _shown, _tell  # cprof's own stderr lines (paths escaped), lost rather than failing the program

TYPE_CHECKING = False   # typing.TYPE_CHECKING without importing typing (PEP 781)
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable
    from typing import Any

    from typing_extensions import Self

# signals that cannot be caught, or that already mean something to cprof or Python
_REFUSED = {"SIGKILL", "SIGSTOP", "SIGTERM", "SIGHUP", "SIGINT"}


def parse_signal(text: str | int) -> signal.Signals:
    """USR2, SIGUSR2, 12 or signal.SIGUSR2 -> signal.SIGUSR2; anything else is a
    CprofError in one sentence."""
    if isinstance(text, int):
        try:
            sig = signal.Signals(text)
        except ValueError:
            sig = None
    else:
        name = str(text).strip().upper()
        if name.isdigit():
            return parse_signal(int(name))
        if not name.startswith("SIG"):
            name = "SIG" + name
        sig = getattr(signal.Signals, name, None)
    if sig is None:
        raise CprofError(f"--on-signal={text}: no such signal; give a name such as USR2 or USR1")
    if sig.name in _REFUSED:
        raise CprofError(f"--on-signal={text}: {sig.name} cannot open windows (it stops the "
                         "program or cprof already uses it); give USR1 or USR2")
    return sig


def _window_names(output: str) -> tuple[str, str, str]:
    """(folder, stem, ending) of `output`: window k goes to folder/stem.k.ending."""
    from .profile_file import split_ending
    stem, ending = split_ending(output)
    folder = os.path.dirname(stem) or "."
    return folder, os.path.basename(stem), ending


def existing_windows(output: str) -> list[str]:
    """The files named as this output's windows (stem.N.ending) already in its folder."""
    folder, stem, ending = _window_names(output)
    try:
        names = os.listdir(folder)
    except OSError:
        return []
    found = []
    for name in names:
        if name.startswith(stem + ".") and name.endswith(ending):
            middle = name[len(stem) + 1:len(name) - len(ending)]
            if middle.isdigit():
                found.append(os.path.join(folder, name))
    return sorted(found)


def check_output(output: str) -> None:
    """Before the program runs: the windows' files can be written and none of their
    names is taken (cprof never writes over a file it did not make)."""
    from .profile_file import beside_path, check_writable, tagged_path
    if beside_path(output, 1) is None:   # never a file made under /dev
        raise CprofError(f"windows are written one file each beside -o's (NAME.1.EXT, NAME.2.EXT, ...), "
                         f"and '{_shown(output)}' is a device or a stream; give -o a file name")
    found = existing_windows(output)
    if found:
        raise CprofError(f"-o {_shown(output)}: {_shown(found[0])} exists (windows are written to "
                         f"{_shown(tagged_path(output, '1'))}, {_shown(tagged_path(output, '2'))}, ...); "
                         "move those files away or give another -o")
    check_writable(tagged_path(output, "1"))


def preload(output: str) -> None:
    """Import now what writing a window to `output` needs (its format's module and what
    that imports, json's C encoder, the report's note on a full tree): a window is
    written while the program runs, after it may have changed sys.path or put a module
    of the same name beside itself (gzip.py, json.py)."""
    from . import exporters, profile_file, report  # noqa: F401  (report: exporters.folded_note)
    profile_file._dumps()
    fmt = exporters.format_for_path(output)
    if fmt is not None:
        exporters._module(fmt)


def write_profile(profile: Any, path: str) -> str:
    """The JSON profile, or the export that the name's ending asks for (as -o does);
    returns what was written, for the 'wrote' line."""
    from . import exporters, profile_file
    fmt = exporters.format_for_path(path)
    if fmt is None:
        profile_file.write(profile, path)  # type: ignore[arg-type]
        return f"{len(profile['functions'])} functions"
    counter = exporters.export(profile, fmt, path)  # type: ignore[arg-type]
    return exporters.describe(fmt, profile, counter)  # type: ignore[arg-type]


def _free_signal() -> signal.Signals | int:
    """A real-time signal that nothing handles: the timer windows' own."""
    for sig in range(signal.SIGRTMAX - 1, signal.SIGRTMIN, -1):
        if signal.getsignal(sig) == signal.SIG_DFL:
            return sig
    raise CprofError("every real-time signal has a handler, and timer windows need one; "
                     "use --on-signal instead")


class Windows:
    """Profiling windows, each written to its own file (see the module's doc).

        w = cprof.Windows("out.json", on_signal="USR2")           # each USR2 opens/closes
        w = cprof.Windows("out.pb.gz", window=1, every=60, keep=10)  # 1 s every minute
        w.start(); serve(); w.stop()        # or: with w: serve()

    `output` names the files: out.json -> out.1.json, out.2.json, ...; its ending picks
    the format, as the CLI's -o.  `keep=N` keeps only the last N files (deleting only
    files this object wrote).  `counters` and the keyword options are Profile's.
    toggle() opens or closes a window from the program itself (an admin endpoint)."""

    def __init__(self, output: str, counters: str | Iterable[Any] = ("cpu", "wall"), *,
                 on_signal: str | int | None = None, window: float | None = None,
                 every: float | None = None, keep: int | None = None,
                 meta: dict | None = None, quiet: bool = False, **options: Any) -> None:
        if (on_signal is None) == (window is None):
            raise CprofError("give one of on_signal (windows opened and closed by a signal) "
                             "and window (consecutive windows of that many seconds)")
        if window is not None and not window > 0:
            raise CprofError(f"--window={window}: give a number of seconds above 0")
        if every is not None and (window is None or not every >= window):
            raise CprofError(f"--every={every}: give a period of at least the window's "
                             "length, with --window")
        if keep is not None and (window is None or keep < 1):
            raise CprofError(f"--keep={keep}: give 1 or more, with --window")
        self.signal = parse_signal(on_signal) if on_signal is not None else None
        self.window, self.every, self.keep = window, every, keep
        self.output = os.path.abspath(output)   # the program may change folder
        check_output(self.output)
        self._counters = counters
        self._options = options
        self._meta = dict(meta or {})
        self._quiet = quiet
        self.failed = False   # the windows stopped on an error (said once)
        preload(self.output)
        self._exit_meta: dict = {}
        self._timer: int | None = None    # the POSIX timer (wintimer.c), while started
        self._sig: Any = None             # the signal its handler switches windows on
        self._handler: Any = None
        self._steps: list = []            # what the next signal runs (_prepare, _closed)
        self._results: list = []          # what the steps returned, since the last opening
        self._opened_at = 0
        self._trigger = "timer"
        self._stopping = self._again = False
        self._writing = False
        self._after_writing: list = []   # what waits for the window being written
        self._next_open = 0.0
        self._rearm = [0.0]               # when the next switch is due, set by _closed
        # the next window's Profile, made and calibrated at start(); the one the steps open
        self._next: Profile | None = Profile(counters, **options)
        self._pending: Profile | None = None
        self._index = 0
        self._written: deque = deque()    # (path, (st_dev, st_ino)) of the files kept
        self.files: list[str] = []        # every window file written, in order
        self._previous_handler: Any = None
        self._replaced_said = False

    # ---- the program's side ------------------------------------------------------
    def toggle(self) -> None:
        """Open a window if none is open, else close it (what the signal does).  Once
        started, this is a C call that sends the signal to the main thread (no frame of
        cprof's enters the window); two toggles sent before the main thread handles the
        first may merge into one, as two signals do."""
        if self.signal is None:
            raise CprofError("toggle() opens and closes windows made with on_signal; these "
                             "open by the clock (window=)")
        raise CprofError("these Windows are not started; call start() first")

    def start(self) -> Self:
        if self._timer is not None:
            raise CprofError("these Windows are already started")
        if threading.current_thread() is not threading.main_thread():
            raise CprofError("start windows from the main thread: they open and close in a "
                             "signal handler, which Python runs there")
        if self._next is not None:
            self._next.switches()   # calibrated now, not at the first window
        sig = self.signal if self.signal is not None else _free_signal()
        self._sig = sig
        self._previous_handler = signal.getsignal(sig)
        self._timer = _cprof.window_timer(int(sig))
        avoid = None
        if self._options.get("slow_calls"):   # a signal inside the hook's argument capture
            from .capture import capture
            avoid = capture.__code__
        self._handler = partial(_cprof.run_steps, self._steps, self._results, avoid,
                                partial(_cprof.window_timer_arm, self._timer, 0.01))
        self._stopping = False
        self._prepare()
        signal.signal(sig, self._handler)
        _started(self)
        if self.signal is not None:
            main = threading.get_ident()   # start() runs in the main thread
            self.toggle = partial(signal.pthread_kill, main, sig)  # type: ignore[method-assign]
        else:   # the first window opens at once (last: only this frame's return is in it)
            self._next_open = time.monotonic()
            _cprof.window_timer_arm(self._timer, 1e-6)
        return self

    def stop(self, **meta: Any) -> list[str]:
        """Close the open window, if any, and write it (with `meta` added to its meta,
        such as the program's exit code).  Returns the files kept."""
        if self._timer is None:
            return self.kept
        self._exit_meta = meta
        timer, self._timer = self._timer, None
        self._stopping = True
        self.__dict__.pop("toggle", None)
        try:
            _cprof.window_timer_delete(timer)   # no signal is sent from here on
        except OSError:
            pass
        if self._closed in self._steps:   # a window is open (its closing steps are set): close it
            self._trigger = "exit"
            _cprof.run_steps(self._steps, self._results, None, None)
        self._pending = None
        self._steps[:] = []
        current = signal.getsignal(self._sig)
        if current == self._handler:
            try:
                signal.signal(self._sig, self._previous_handler
                              if self._previous_handler is not None else signal.SIG_DFL)
            except ValueError:   # stopped from another thread: the handler stays, idle
                pass
        elif self.signal is not None and not self._replaced_said:
            self._replaced_said = True
            _tell(f"cprof: warning: the program installed its own {self.signal.name} handler "
                  "(signal.signal), which replaced cprof's: from then on that signal went to "
                  "the program and opened or closed no window; give --on-signal another "
                  "signal (USR1, USR2) that the program does not use")
        if self in _active:
            _active.remove(self)
        return self.kept

    @property
    def kept(self) -> list[str]:
        return [path for path, _ in self._written]

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ---- the switching, in the main thread's signal handler ---------------------------
    def _prepare(self) -> None:
        """The next window's Profile and the steps that open it at the next signal: the
        clocks around enable, then the steps that close it set for the signal after."""
        prof, self._next = self._next, None
        if prof is None:
            prof = Profile(self._counters, **self._options)
        enable, disable = prof.switches()
        self._pending = prof
        # the timer is armed for the next switch after _closed returned: armed inside it,
        # the signal could be handled before it returned (a frame of cprof's in the window)
        closing = [time.monotonic, partial(disable, strict=False), time.monotonic, time.time,
                   self._closed, partial(_cprof.window_timer_arm, self._timer, self._rearm)]
        opening: list = [self._results.clear]
        if self.window is not None:   # the close is due `window` seconds after the open
            opening.append(partial(_cprof.window_timer_arm, self._timer, self.window))
        opening += [time.time, time.monotonic, partial(enable, push_existing=False),
                    time.monotonic, partial(self._steps.__setitem__, slice(None), closing)]
        self._opened_at = len(opening) - 5   # results[k:k+4]: wall, mono, enable's, mono
        self._trigger = "signal" if self.signal is not None else "timer"
        self._steps[:] = opening

    def _deferred(self) -> None:
        """A signal that came while a window was being written: it comes again after."""
        self._again = True

    def after_writing(self, then: Callable[[], Any]) -> bool:
        """While a window is being written (in the signal handler that closed it), `then`
        runs once it is, and this returns True; otherwise False.  The CLI's ending
        signals wait so: a SIGTERM in the middle of the writing would lose that window
        and leave its temporary file."""
        if not self._writing:
            return False
        self._after_writing.append(then)
        return True

    def _closed(self) -> None:
        self._writing = True
        try:
            self._write_closed()
        finally:
            self._writing = False
            waiting, self._after_writing = self._after_writing, []
            for then in waiting:
                then()

    def _write_closed(self) -> None:
        """The last closing step: no window is open.  Writes the window and prepares the
        next; never raises into the program (an Exception is told, once)."""
        res = list(self._results)
        prof, self._pending = self._pending, None
        self._steps[:] = [self._deferred]   # a signal during the writing waits for it
        self._again = False
        self._rearm[0] = 0.0
        try:
            k = self._opened_at
            start_wall, start_mono, enabled, opened = res[k:k + 4]
            closing, disabled, end_mono, end_wall = res[k + 5:k + 9]
            if prof is None or isinstance(enabled, BaseException):
                error = str(enabled) if isinstance(enabled, CprofError) else \
                    f"{type(enabled).__name__}: {enabled}"
                _tell(f"cprof: warning: no window opened: {error}")
            else:
                error = None
                if isinstance(disabled, BaseException):
                    error = str(disabled) if isinstance(disabled, CprofError) else \
                        f"{type(disabled).__name__}: {disabled}"
                span = (start_wall, end_wall, end_mono - start_mono, error,
                        round(opened - start_mono, 6), round(end_mono - closing, 6))
                self._finish_window(prof, span, self._trigger)
            if self._stopping:
                return
            self._prepare()
            if self.window is not None:
                period = self.every or self.window
                self._next_open = max(self._next_open + period, time.monotonic())  # late: at once
                self._rearm[0] = max(self._next_open - time.monotonic(), 1e-6)
            elif self._again:
                self._rearm[0] = 1e-6
        except Exception as e:  # never into the program; say it once
            self._steps[:] = []
            self.failed = True
            _tell(f"cprof: error: the windows stopped: {type(e).__name__}: {_shown(str(e))}")
    def _finish_window(self, prof: Profile, span: tuple, trigger: str) -> None:
        start_wall, end_wall, duration, error, enable_s, disable_s = span
        self._index += 1
        meta = dict(self._meta)
        meta.update(started=start_wall, duration_s=round(duration, 6), pid=os.getpid(),
                    window={"index": self._index, "start": start_wall, "end": end_wall,
                            "trigger": trigger, "enable_s": enable_s, "disable_s": disable_s})
        if trigger == "exit":
            meta.update(self._exit_meta)
        if error:
            _tell(f"cprof: warning: {error}")
        from .profile_file import tagged_path
        path = tagged_path(self.output, str(self._index))
        while os.path.lexists(path):   # made by someone else since the start: never over it
            self._index += 1
            path = tagged_path(self.output, str(self._index))
        meta["window"]["index"] = self._index
        try:
            what = write_profile(prof._compact_profile(**meta), path)
            st = os.stat(path)
        except (CprofError, OSError) as e:
            _tell(f"cprof: error: window {self._index} was not written: {e}")
            return
        if not self._quiet:
            _tell(f"cprof: wrote {_shown(path)} (window {self._index}, {duration:.3f} s, {what})")
        self.files.append(path)
        self._written.append((path, (st.st_dev, st.st_ino)))
        while self.keep is not None and len(self._written) > self.keep:
            old, ident = self._written.popleft()
            try:
                st = os.stat(old)
                if (st.st_dev, st.st_ino) == ident:   # still the file this run wrote
                    os.unlink(old)
            except OSError:
                pass


def from_options(opts: Any, meta: dict) -> Windows:
    """The CLI's windows (--on-signal, or --window [--every] [--keep]), checked before the
    program runs."""
    if not opts.output:
        raise CprofError("windows are written to files: give -o NAME.json (window 1 goes to "
                         "NAME.1.json, window 2 to NAME.2.json, ...) or another ending's format")
    if opts.on_signal is not None and opts.window is not None:
        raise CprofError("--on-signal and --window are two ways to open windows; give one")
    if opts.on_signal is None and opts.window is None:
        raise CprofError("--every and --keep go with --window SECONDS")
    return Windows(opts.output, opts.counter, on_signal=opts.on_signal, window=opts.window,
                   every=opts.every, keep=opts.keep, meta=meta,
                   all_call_sites=opts.all_call_sites, compensate=not opts.no_compensate,
                   distributions=opts.distributions, slow_calls=opts.slow_calls,
                   trace=opts.trace, async_mode=opts.async_mode)


# Windows started in this process: a forked child (a worker of the program) gives the
# signal back to what it was, so a signal sent to the child (or to the process group)
# does not toggle the parent's windows, whose timer the child does not have.
_active: list = []
_fork_hook = False


def _started(w: Windows) -> None:
    global _fork_hook
    _active.append(w)
    if not _fork_hook:
        os.register_at_fork(after_in_child=_in_child)
        _fork_hook = True


def _in_child() -> None:
    for w in _active:
        if w._timer is None:
            continue
        w._timer = None   # a forked child has no POSIX timers
        w._steps[:] = []
        w.__dict__.pop("toggle", None)
        if signal.getsignal(w._sig) == w._handler:
            try:
                signal.signal(w._sig, w._previous_handler if w._previous_handler is not None
                              else signal.SIG_DFL)
            except ValueError:   # forked from another thread than the main one
                pass
    _active.clear()
