"""The Python API: Profile (a context manager, enable()/disable(), or a decorator),
counters defined in Python (Counter, UserCounter), and calibration.

`import cprof` imports this module: it imports only what is loaded at start-up anyway
and the extension; the rest (the profile's builder, the report, warnings, functools)
is imported where it is used, so that importing cprof costs about a millisecond
(tests/py/test_startup.py checks which modules it imports)."""
from __future__ import annotations

import os
import sys

from . import calibration
from ._cprof import MAX_SLOW_CALLS, Counter, CprofError, Profiler, UserCounter, builtin_counters

TYPE_CHECKING = False   # typing.TYPE_CHECKING without importing typing (PEP 781)
if TYPE_CHECKING:  # annotations only: no runtime dependency
    from collections.abc import Callable, Iterable
    from typing import Any, TextIO, TypeAlias

    from typing_extensions import Self

    from .model import Profile as ProfileData

    CounterLike: TypeAlias = str | Counter | UserCounter

ENTRY_POINT_GROUP = "cprof.counters"


def get_include() -> str:
    """The folder holding cprof's public C header, cprof/counter.h, for building
    counter plugins (as numpy.get_include() does for numpy)."""
    return os.path.join(os.path.dirname(os.path.abspath(__file__)), "include")


_entry_points: dict | None = None


def _entry_point(name: str):
    """A counter that an installed package exposes in the cprof.counters entry-point
    group (`name = "pkg.module:obj"`): a Counter/UserCounter object, or the path of
    a plugin library (a str).  None if no package names it."""
    global _entry_points
    if _entry_points is None:
        from importlib.metadata import entry_points
        _entry_points = {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}
    ep = _entry_points.get(name)
    if ep is None:
        return None
    try:
        obj = ep.load()
    except Exception as e:
        raise CprofError(f"counter '{name}' from entry point {ep.value} cannot be loaded "
                         f"({type(e).__name__}: {e}); fix or uninstall that package") from None
    if isinstance(obj, (Counter, UserCounter)):
        return obj
    if isinstance(obj, str):
        return "plugin:" + obj
    raise CprofError(f"entry point '{name}' ({ep.value}) is not a cprof Counter, UserCounter "
                     "or plugin path; fix that package")


BUILTIN = tuple(c["name"] for c in builtin_counters())   # the registry's names


def resolve_counters(counters: str | Iterable[CounterLike]) -> list:
    """Names, counter objects, and names of counters that installed packages expose
    (entry points), turned into what Profiler takes."""
    items = counters.split(",") if isinstance(counters, str) else list(counters)
    out = []
    for c in items:
        if isinstance(c, str) and c not in BUILTIN and ":" not in c:
            c = _entry_point(c) or c
        out.append(c)
    return out


def _stand_ins(counters: list) -> tuple[list, tuple]:
    """For calibration: counter objects replaced by stand-ins of the same kind (the
    user's read() is not called 280,000 times), and a cache key."""
    zero = lambda: 0
    items: list[Any] = []
    key: list[Any] = []
    for c in counters:
        if isinstance(c, Counter):
            items.append(Counter(f"_cal{len(items)}", read=zero))
            key.append("<Counter>")
        elif isinstance(c, UserCounter):
            items.append(UserCounter(f"_cal{len(items)}"))
            key.append("<UserCounter>")
        else:
            items.append(c)
            key.append(c)
    return items, tuple(key)


def calibrate(counters: str | list, all_call_sites: bool = False, calls: int = calibration.CALLS,
              reps: int = calibration.REPS, distributions: bool = False, slow_calls: int = 0,
              recalibrate: bool = False) -> list:
    """The tracer's own cost per event, per counter, on this machine and interpreter:
    the growth of each counter over `calls` calls of a one-line function with
    profiling on, minus the same without, over the events profiling handled (two per
    call).  Kept per process, and across runs in a cache file that a short
    measurement confirms before it is used (cprof.calibration; recalibrate=True
    measures afresh, CPROF_NO_CACHE=1 leaves the cache alone).

    Only counters that the tracer's own work raises are calibrated (their descriptor
    says so: time, perf's CPU clocks and hardware events); the rest get 0, since the
    tracer causes none of the allocations, switches or faults they count, and
    subtracting a share would remove the program's own.

    Robust on a busy machine: each repetition measures the loop without and then with
    profiling, back to back, and the estimate is a low quantile of those paired
    differences.  The time counters (cpu, wall, task-clock, cpu-clock) share ONE
    estimate, taken from this thread's CPU time (time.thread_time_ns) whichever time
    counters were chosen: the tracer's cost is the same nanoseconds on every clock,
    preemption by other processes does not reach a thread's CPU time (on a loaded
    machine a wall-clock estimate came out 0 or inflated, as the other process ran
    during one half of a pair or the other), and with one share taken from every
    interval, a thread's cpu can never come out above its wall."""
    items, names = _stand_ins(resolve_counters(counters))
    # the same work per event as the real profile (histograms, the slow-call test);
    # no argument capture: its cost is measured and excluded where it happens
    options = {"all_call_sites": all_call_sites, "distributions": distributions,
               "slow_calls": slow_calls}
    return calibration.calibrated(items, names, options, recalibrate, calls, reps)


def make_profiler(counters: list, all_call_sites: bool = False, distributions: bool = False,
                  slow_calls: int = 0, recalibrate: bool = False, async_mode: bool = False) -> Profiler:
    """The C Profiler for these options (the CLI and Profile share it)."""
    if slow_calls < 0 or slow_calls > MAX_SLOW_CALLS:
        raise CprofError(f"--slow-calls={slow_calls}: give a number of calls from 1 to "
                         f"{MAX_SLOW_CALLS}")
    hook: Callable[[Any], tuple] | None = None
    if slow_calls:
        from .capture import capture as hook
    calibration.seed_clock(recalibrate)  # the cheap clock's ratio, from an earlier run
    prof = Profiler(counters, all_call_sites=all_call_sites, distributions=distributions,
                    slow_calls=slow_calls, capture=hook, async_mode=async_mode)
    calibration.keep_clock()
    return prof


class Profile:
    """Profile every thread with the given counters: names ("cpu", "wall", "ctxsw",
    perf events, "plugin:/path/lib.so"), Counter and UserCounter objects, in order.

        with cprof.Profile(counters=["cpu", "wall", "ctxsw"]) as prof:
            work()
        prof.print_stats(sort="cpu")
        prof.dump("profile.json")

    Also prof.enable()/prof.disable(), or @prof on a function.  One profile runs at
    a time in a process: enabling a second while one runs is a CprofError.
    """

    _pid: int   # the process this Profile was made in (set by __new__, for dump())

    def __init__(self, counters: str | Iterable[CounterLike] = ("cpu", "wall"), *,
                 all_call_sites: bool = False, compensate: bool = True,
                 distributions: bool = False, slow_calls: int = 0,
                 recalibrate: bool = False, sample: float | None = None,
                 sample_seed: int | None = None,
                 trace: str | Iterable[str] | None = None, async_mode: bool = False) -> None:
        # sample=p: as a decorator or context manager, profile each call (each `with`)
        # with probability p, exactly and in every thread; the rest run unprofiled at the
        # cost of one random number.  Chosen calls are merged into this one profile, and
        # meta.sample says how many of how many were profiled.  sample_seed: the same
        # calls are chosen on every run (tests).  Enabling per chosen call is the cheap
        # side: monitoring left on would cost an event on every unchosen call's every
        # call, while enable()+disable() costs ~140 us (3.12, 3.14: re-instrumentation),
        # 1.4 us per call at sample=0.01.
        self._choose: Callable[[], bool] | None = None
        if sample is not None:
            if not (isinstance(sample, (int, float)) and 0 < sample <= 1):
                raise CprofError(f"sample={sample!r}: give the fraction of calls to profile, "
                                 "above 0 and at most 1 (0.01: one call in a hundred)")
            import random
            draw = random.Random(sample_seed).random
            self._choose = lambda: draw() < sample
        elif sample_seed is not None:
            raise CprofError("sample_seed goes with sample=FRACTION")
        self._sample = sample
        self._sampled = [0, 0]      # [calls profiled, calls made] under sample=
        self._chosen: list[bool] = []  # per open `with`: was it chosen
        self._counters = resolve_counters(counters)
        # trace="app" or "mypkg,src/*": profile only that code; the rest is charged to the
        # traced function that called it, as "NAME [untraced]" calls (cprof.trace)
        self._trace = trace
        self._classifier: Any = None
        self._app: list[str] | None = None  # the installed program's folders (the CLI's)
        if trace is not None:
            from . import trace as trace_mod
            trace_mod.make(trace)  # a bad pattern is refused here
        # all_call_sites (3.12+): see Profiler's doc; True never misses a C call at a site
        # that also calls Python functions, at the cost of a CALL event at every call.
        self._all_call_sites = all_call_sites
        # distributions: a histogram of every call's inclusive value, per function and
        # counter; slow_calls=K: the K largest calls per function (first counter), with
        # the repr of their arguments
        self._options: dict[str, Any] = {"distributions": distributions, "slow_calls": slow_calls}
        # async_mode: asyncio-aware (README "asyncio"): a coroutine's calls are calls, not
        # resumes; its total holds the time it was suspended, as an [await] child; and
        # the profile gets the per-task view ("tasks")
        if async_mode and trace is not None:
            raise CprofError("--async (async_mode=True) and --trace (trace=) do not go together "
                             "yet; profile the asyncio program without --trace")
        self._profiler = make_profiler(self._counters, all_call_sites, distributions, slow_calls,
                                       recalibrate, async_mode=bool(async_mode))
        # compensate: take cprof's own per-event cost (calibrated at the first enable:
        # once per process, a cached figure confirmed by a short measurement when there
        # is one; recalibrate=True measures afresh) out of every measured interval, so
        # call-heavy code is not inflated
        self._compensate = compensate
        self._recalibrate = recalibrate
        self._depth = 0             # nested enables through the decorator
        self._warned = 0            # counter failures already warned about
        self._hooks_warned = 0      # replaced profile hooks already warned about
        self._meta: dict = {}
        if sample is not None:
            self._calibrate()   # now, not inside the first chosen call (a request's latency)

    @property
    def counters(self) -> tuple[str, ...]:
        return self._profiler.counters

    def _calibrate(self) -> None:
        if self._compensate:
            self._profiler.set_compensation(calibrate(self._counters, self._all_call_sites,
                                                      recalibrate=self._recalibrate,
                                                      **self._options))
            self._compensate = False  # once

    def _start(self, skip: int) -> None:
        self._calibrate()
        self._trace_on()
        try:
            self._profiler.enable(push_existing=True, skip=skip)
        except BaseException:
            self._trace_off()
            raise

    def _trace_on(self) -> None:
        """Before enable: the classifier of trace= in place (cprof.trace)."""
        if self._trace is None:
            return
        from . import trace
        if self._classifier is None:
            app = self._app if self._app is not None else trace.main_app_folders()
            self._classifier = trace.make(self._trace, app)
        trace.start(self._profiler, self._classifier)

    def _trace_off(self) -> None:
        """After disable: no profile traces."""
        if self._trace is not None:
            from . import trace
            trace.stop()

    def _stop(self) -> None:
        try:
            self._profiler.disable(strict=False)  # a replaced hook is warned about below
        finally:
            self._trace_off()
        replaced = self.replaced_hooks()
        failures = self._profiler.counter_failures()
        if not (replaced or failures[self._warned:]):
            return
        import warnings

        from . import build
        for name, where, reason in failures[self._warned:]:
            fn = build.describe(*where)[0] if where else "the top level"
            warnings.warn(f"cprof: counter '{name}' stopped in {fn}: {reason}; "
                          "its numbers hold from there on", RuntimeWarning, stacklevel=3)
        self._warned = len(failures)
        for message in replaced:
            warnings.warn("cprof: " + message, RuntimeWarning, stacklevel=3)

    def enable(self) -> None:
        """Start profiling every thread.  Enabling a Profile that is already enabled is
        a CprofError (profiles do not nest; @prof nests calls of a function)."""
        if self._profiler.enabled:
            raise CprofError("this Profile is already enabled; call disable() before enabling "
                             "it again (profiles do not nest)")
        # skip=2: this method's and _start's frames are not part of the profiled program
        self._start(skip=2)

    def disable(self) -> None:
        """Stop profiling.  Disabling a Profile that is not enabled is a CprofError."""
        if not self._profiler.enabled:
            raise CprofError("this Profile is not enabled; call enable() before disable()")
        self._stop()

    def switches(self) -> tuple[Callable[..., None], Callable[..., None]]:
        """(enable, disable) of the C profiler, calibrated now, for a caller that starts
        and stops profiling in its own frame and runs the program from there (the CLI):
        enable(push_existing=False) leaves the frames running then out of the profile,
        disable(strict=False) stops (a hook's failure is a CprofError), and
        replaced_hooks() says afterwards what disable() would have warned.  Being C
        methods, they are not seen by the profile they start and stop; through
        enable()/disable(), their own Python frames would return inside the profile
        (at an empty stack: a function that ran since before the region)."""
        self._calibrate()
        return self._profiler.enable, self._profiler.disable

    def replaced_hooks(self) -> list[str]:
        """The sentences saying which threads' profile hook the program replaced
        (3.10-3.11) since the last call, which disable() warns."""
        replaced = self._profiler.hook_replaced()
        said, self._hooks_warned = self._hooks_warned, len(replaced)
        return [entry["message"] for entry in replaced[said:]]

    def __del__(self) -> None:
        # A Profile dropped while enabled stops profiling: on 3.10-3.11 the threads'
        # hooks hold the C profiler, which would stay installed for good and make
        # every later Profile find one running.
        prof = getattr(self, "_profiler", None)
        if prof is None or not prof.enabled:
            return
        try:
            prof.disable(strict=False)
            import warnings
            warnings.warn("cprof: a Profile was dropped while enabled; it stopped profiling "
                          "(call disable(), or use `with`)", ResourceWarning, stacklevel=2)
        except Exception:  # at interpreter exit, or a hook's failure: nothing left to tell
            pass

    def _sampled_call(self) -> bool:
        """Under sample=: count a call and say whether to profile it."""
        self._sampled[1] += 1
        if self._choose is not None and self._choose():
            self._sampled[0] += 1
            return True
        return False

    def __enter__(self) -> Self:
        if self._sample is not None:
            chosen = self._sampled_call() and not self._profiler.enabled
            self._chosen.append(chosen)
            if chosen:
                self._start(skip=2)
            return self
        if self._profiler.enabled:
            raise CprofError("this Profile is already enabled; call disable() before enabling "
                             "it again (profiles do not nest)")
        self._start(skip=2)
        return self

    def __exit__(self, *exc) -> None:
        if self._sample is not None:
            if self._chosen.pop():
                self._stop()
            return
        self._stop()

    def __call__(self, func: Callable) -> Callable:
        """@prof: profile every call of func (calls nest: the outermost one counts)."""
        import functools

        if self._sample is not None:
            @functools.wraps(func)
            def sampled(*args: Any, **kwargs: Any) -> Any:
                if self._depth or not self._sampled_call():
                    return func(*args, **kwargs)   # not chosen, or inside a chosen call
                self._start(skip=2)
                self._depth += 1
                try:
                    return func(*args, **kwargs)
                finally:
                    self._depth -= 1
                    self._stop()
            return sampled

        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            if self._depth == 0:
                self._start(skip=2)
            self._depth += 1
            try:
                return func(*args, **kwargs)
            finally:
                self._depth -= 1
                if self._depth == 0:
                    self._stop()
        return wrapper

    def profile(self, **meta: Any) -> ProfileData:
        """The profile as the JSON-ready dict that dump() writes (format version 2,
        typed by cprof.model.Profile)."""
        from . import build
        profile = build.build(self._profiler, {**self._meta, **self._sample_meta(), **meta})
        self._label(profile)
        return profile  # type: ignore[return-value]

    def _label(self, profile: Any) -> None:
        """trace=: the untraced functions' names and meta.trace; the application's folders."""
        if self._classifier is not None or self._app:
            from . import trace
            trace.label(profile, self._classifier, self._app)

    def _compact_profile(self, consume: bool = False, packed: bool = False,
                         **meta: Any) -> ProfileData:
        """profile(), with the tree's columns as memoryviews (build.build's compact):
        for writing or exporting it at once, in a fraction of the memory.  consume: the
        last profile made of it (build.build's consume: the engines' trees merged in place
        and freed; enable() and profile() refuse afterwards).  packed: the tree as the
        profile file holds it, for profile_file.write only (build.build's packed)."""
        from . import build
        profile = build.build(self._profiler, {**self._meta, **self._sample_meta(), **meta},
                              compact=True, consume=consume, packed=packed)
        self._label(profile)
        return profile  # type: ignore[return-value]

    def _sample_meta(self) -> dict:
        """meta.sample: {"fraction", "profiled", "calls"} under sample=."""
        if self._sample is None:
            return {}
        return {"sample": {"fraction": self._sample, "profiled": self._sampled[0],
                           "calls": self._sampled[1]}}

    def __new__(cls, *args: Any, **kwargs: Any) -> Self:
        self = super().__new__(cls)
        self._pid = os.getpid()  # for dump(): the process this Profile was made in
        return self

    def dump(self, path: str) -> None:
        """Write the profile as the CLI's -o does (the JSON profile, written atomically;
        an existing file keeps its mode and owner; see README "Use").  In a process
        forked after this Profile was made, it goes to PATH.<pid>.EXT beside `path`
        (out.json -> out.4242.json), so a child never overwrites its parent's file;
        meta.pid and meta.parent_pid say whose it is.  A path that cannot be written
        is a CprofError naming it."""
        from . import profile_file
        meta: dict[str, Any] = {"pid": os.getpid()}
        made_in = getattr(self, "_pid", os.getpid())
        if made_in != os.getpid():
            meta["parent_pid"] = made_in
            beside = profile_file.beside_path(path, os.getpid())
            if beside is None:
                raise CprofError(f"a forked process cannot write its profile to "
                                 f"'{profile_file.printable(path)}', a device or a stream with no "
                                 "place beside it for a second file; give a file name")
            path = beside
        profile_file.write(self._compact_profile(**meta), path)

    def print_stats(self, sort: str | None = None, limit: int = 25, file: TextIO | None = None,
                    all: bool = False, focus: str | None = None) -> None:
        """The CLI's text report (to stderr unless file is given): the program's own functions
        and one line per library; all=True lists every function, focus="mypkg,src/*" only
        those whose module or file matches (the CLI's --all and --focus)."""
        from . import report
        (file or sys.stderr).write(report.format_report(self.profile(), sort=sort, limit=limit,
                                                        all=all, focus=focus))
