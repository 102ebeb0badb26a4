"""Profiling windows: a long-running program runs unprofiled, and profiles itself only
during windows, each written to its own file (out.json -> out.1.json, out.2.json ...),
opened and closed by a signal (`cprof --on-signal=USR2`, Windows(on_signal="USR2")) or
by a timer (`--window=SECONDS [--every=SECONDS] [--keep=N]`, Windows(window=...)).

How a window switches (README "Windows").  Every window is a fresh Profile, so each file
is a complete profile of its own: every thread, its functions named, its meta.  The
windows never overlap and cprof's own work is in none of them:

- One daemon thread, the switcher, opens and closes the windows and writes the files.
  It opens a window, waits and closes it in ONE call made from C:
  deque(map(results.append, map(methodcaller("__call__"),
  (clock, enable, clock, wait, clock, disable, clock))), 0): calls from C to C are no
  events, so the switcher is never seen by the profile it switches (no thread, no wall
  time of its waiting in the window's root).  It writes a window after closing it, so its
  writing (building the profile, JSON, gzip) is in no window either.
- A call that is running when a window opens is open in it (its time from then on is
  counted, not its call); one still running when the window closes is closed at that
  moment.  So a call is counted in exactly one window (the one it started in), and its
  time is split at the switch: nothing is counted twice.
- Consecutive windows (--window without --every, or --every equal to it) are apart by
  the time it takes to write the previous one: that gap is in no window, and each
  file's meta.window gives its start and end (epoch seconds), so the gaps are visible
  rather than hidden.
- The signal handler only writes one byte to a pipe, which the switcher reads (its wait
  in the window is that read): a signal that arrives while the previous window is being
  written is not lost (the next window
  opens as soon as the file is written; a closing signal that follows before then
  closes it at once, and the empty window is written, so there is one file per
  closing signal).
- Python runs signal handlers in the main thread: a signal sent to the process, or
  by the program's own threads (os.kill, signal.pthread_kill), reaches it there, as
  soon as the main thread runs Python code again.
"""
from __future__ import annotations

import os
import signal
import threading
import time
from collections import deque
from functools import partial
from operator import methodcaller

from ._cprof import CprofError
from .api import Profile
from .cli import _tell  # cprof's own stderr lines, lost rather than failing the program

TYPE_CHECKING = False   # typing.TYPE_CHECKING without importing typing (PEP 781)
if TYPE_CHECKING:
    from collections.abc import Iterable
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
    from .profile_file import check_writable, tagged_path
    found = existing_windows(output)
    if found:
        raise CprofError(f"-o {output}: {found[0]} exists (windows are written to "
                         f"{tagged_path(output, '1')}, {tagged_path(output, '2')}, ...); "
                         "move those files away or give another -o")
    check_writable(tagged_path(output, "1"))


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


_call = methodcaller("__call__")


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
        self._pipe = (-1, -1)             # requests to the switcher (see _send)
        self._exit_meta: dict = {}
        self._thread: threading.Thread | None = None     # the switcher, while started
        self._switcher: threading.Thread | None = None   # the switcher, once stopped
        # the next window's Profile, made while no window is open (the first one's is
        # calibrated at start()), and the one open or just closed, with its span
        self._next: Profile | None = Profile(counters, **options)
        self._current: Profile | None = None
        self._span: tuple = (0.0, 0.0, 0.0, None, 0.0, 0.0)
        self._index = 0
        self._written: deque = deque()    # (path, (st_dev, st_ino)) of the files kept
        self.files: list[str] = []        # every window file written, in order
        self._previous_handler: Any = None
        self._replaced_said = False
        self._pid = os.getpid()

    # ---- the program's side ------------------------------------------------------
    # The program talks to the switcher through a pipe, one byte per request: a toggle
    # (b"t", from the signal handler or toggle()) or stop (b"s").  A byte is the news and
    # its count in one atomic write: none is lost or read twice, whichever thread runs.
    def _send(self, byte: bytes) -> None:
        try:
            os.write(self._pipe[1], byte)
        except OSError:   # 64 KiB of requests not yet read (or closed): this one adds nothing
            pass

    def _on_signal(self, signum: int, frame: Any) -> None:
        self._send(b"t")

    def toggle(self) -> None:
        """Open a window if none is open, else close it (what the signal does)."""
        if self.signal is None:
            raise CprofError("toggle() opens and closes windows made with on_signal; these "
                             "open by the clock (window=)")
        self._send(b"t")

    def start(self) -> Self:
        if self._thread is not None:
            raise CprofError("these Windows are already started")
        if self._next is not None:
            self._next.switches()   # calibrated now, not at the first window
        self._pipe = os.pipe()
        os.set_blocking(self._pipe[1], False)   # the handler never blocks
        if self.signal is not None:
            self._previous_handler = signal.getsignal(self.signal)
            signal.signal(self.signal, self._on_signal)   # the main thread only: ValueError else
        self._thread = threading.Thread(target=self._run, name="cprof-windows", daemon=True)
        self._thread.start()
        _started(self)
        return self

    def stop(self, **meta: Any) -> list[str]:
        """Close the open window, if any, and write it (with `meta` added to its meta,
        such as the program's exit code); stop the switcher.  Returns the files kept."""
        if self._thread is None:
            return self.kept
        self._exit_meta = meta
        if os.getpid() == self._pid:
            self._send(b"s")
            self._thread.join(timeout=600)   # a big profile takes seconds to write, not minutes
        self._switcher, self._thread = self._thread, None
        if self.signal is not None:
            current = signal.getsignal(self.signal)
            if current == self._on_signal:
                signal.signal(self.signal, self._previous_handler
                              if self._previous_handler is not None else signal.SIG_DFL)
            elif not self._replaced_said:
                self._replaced_said = True
                _tell(f"cprof: warning: the program installed its own {self.signal.name} handler "
                      "(signal.signal), which replaced cprof's: from then on that signal went to "
                      "the program and opened or closed no window; give --on-signal another "
                      "signal (USR1, USR2) that the program does not use")
        if self in _active:
            _active.remove(self)
        if not self._thread_alive():   # a switcher still writing keeps its pipe
            for fd in self._pipe:
                os.close(fd)
            self._pipe = (-1, -1)
        return self.kept

    def _thread_alive(self) -> bool:
        return self._switcher is not None and self._switcher.is_alive()

    @property
    def kept(self) -> list[str]:
        return [path for path, _ in self._written]

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ---- the switcher ----------------------------------------------------------------
    def _run(self) -> None:
        try:
            if self.signal is not None:
                self._run_signals()
            else:
                self._run_timer()
        except BaseException as e:  # never into the program; say it once
            _tell(f"cprof: error: the windows stopped: {type(e).__name__}: {e}")

    def _run_signals(self) -> None:
        read = partial(os.read, self._pipe[0], 1)
        while read() == b"t":            # opens (b"s": stop, with no window open)
            closed_by = self._window(read)
            if closed_by is None:        # could not open (said why): still closed
                continue
            self._finish_window("signal" if closed_by == b"t" else "exit")
            if closed_by != b"t":
                return

    def _run_timer(self) -> None:
        import select
        assert self.window is not None
        period = self.every or self.window
        r = self._pipe[0]
        next_open = time.monotonic()
        while True:
            ready = (self._window(partial(select.select, [r], [], [], self.window)) or [[]])[0]
            self._finish_window("exit" if ready else "timer")
            if ready:
                return
            next_open = max(next_open + period, time.monotonic())  # late: open at once
            if select.select([r], [], [], max(0.0, next_open - time.monotonic()))[0]:
                return   # stopped between windows: nothing open, nothing to write

    def _window(self, wait: Any) -> Any:
        """Open a window, wait(), close it; returns what wait() returned.  Opening,
        waiting and closing are one call from C (see the module's doc): this thread
        makes no event inside the window."""
        prof, self._next = self._next, None
        if prof is None:
            prof = Profile(self._counters, **self._options)
        enable, disable = prof.switches()
        # the clocks read around each switch: start and end bound every counted event; the
        # switches' own time is kept too (3.14t: disable stops the world, which takes
        # hundreds of ms while other threads run)
        steps = (time.time, time.monotonic, partial(enable, push_existing=False), time.monotonic,
                 wait, time.monotonic, partial(disable, strict=False), time.monotonic, time.time)
        results: list = []   # each step's result, appended from C too
        error = None
        try:
            deque(map(results.append, map(_call, steps)), 0)
        except Exception as e:   # enable: another profile runs; disable: a hook's error
            error = str(e) if isinstance(e, CprofError) else f"{type(e).__name__}: {e}"
        if len(results) < 4:      # not opened
            self._current = None
            _tell(f"cprof: warning: no window opened: {error}")
            return None
        if prof._profiler.enabled:   # the wait failed (its pipe closed): close it here
            try:
                disable(strict=False)
            except CprofError as e:
                error = str(e)
        if len(results) < 9:      # closed here or with an error to tell
            now = time.monotonic()
            results[4:] = [results[4] if len(results) > 4 else None,
                           results[5] if len(results) > 5 else now, None, now, time.time()]
        start_wall, start_mono, _, opened, woke, closing, _, end_mono, end_wall = results
        self._current = prof
        self._span = (start_wall, end_wall, end_mono - start_mono, error,
                      round(opened - start_mono, 6), round(end_mono - closing, 6))
        return woke

    def _finish_window(self, trigger: str) -> None:
        prof = self._current
        self._current = None
        if prof is None:
            return
        start_wall, end_wall, duration, error, enable_s, disable_s = self._span
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
            _tell(f"cprof: wrote {path} (window {self._index}, {duration:.3f} s, {what})")
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
        self._next = Profile(self._counters, **self._options)  # made while no window is open


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
# signal back to what it was and closes the pipe, so a signal sent to the child (or to
# the process group) does not toggle the parent's windows, which have no switcher here.
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
        if w._thread is None:
            continue
        w._thread = None
        if w.signal is not None and signal.getsignal(w.signal) == w._on_signal:
            try:
                signal.signal(w.signal, w._previous_handler if w._previous_handler is not None
                              else signal.SIG_DFL)
            except ValueError:   # forked from another thread than the main one
                pass
        for fd in w._pipe:
            try:
                os.close(fd)
            except OSError:
                pass
        w._pipe = (-1, -1)
    _active.clear()
