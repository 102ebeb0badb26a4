"""The Python API: Profile, usable as a context manager or with enable()/disable()."""
from __future__ import annotations

import sys
from typing import Iterable, TextIO

from . import profile_file, report
from ._cprof import CprofError, Profiler

_calibrated: dict = {}


def calibrate(spec: str, all_call_sites: bool = False, calls: int = 20_000, reps: int = 7) -> list:
    """The tracer's own cost per event, per counter of `spec`, on this machine and
    interpreter: the growth of each counter over `calls` calls of an empty function
    with profiling on, minus the same without, over the events that profiling
    handled (two per call).  Best of `reps` each way; cached per process."""
    key = (spec, all_call_sites)
    if key in _calibrated:
        return _calibrated[key]
    probe = Profiler(spec, all_call_sites=all_call_sites)

    def leaf():
        pass

    def loop(n):
        for _ in range(n):
            leaf()

    plain = profiled = None
    for _ in range(reps):
        r0 = probe.read()
        loop(calls)
        r1 = probe.read()
        probe.enable(push_existing=False)
        r2 = probe.read()
        loop(calls)
        r3 = probe.read()
        probe.disable()
        d_plain = [b - a for a, b in zip(r0, r1)]
        d_prof = [b - a for a, b in zip(r2, r3)]
        plain = d_plain if plain is None else [min(x, y) for x, y in zip(plain, d_plain)]
        profiled = d_prof if profiled is None else [min(x, y) for x, y in zip(profiled, d_prof)]
    events = 2 * calls + 4  # leaf's start and return per call, loop's, range's
    per_event = [max(0, (b - a) // events) for a, b in zip(plain, profiled)]
    _calibrated[key] = per_event
    return per_event


class Profile:
    """Profile every thread with the given counters (names, in order).

        with cprof.Profile(counters=["cpu", "wall", "ctxsw"]) as prof:
            work()
        prof.print_stats(sort="cpu")
        prof.dump("profile.json")
    """

    def __init__(self, counters: str | Iterable[str] = ("cpu", "wall"), *,
                 all_call_sites: bool = False, compensate: bool = True) -> None:
        if isinstance(counters, str):
            spec = counters
        else:
            names = list(counters)
            for c in names:
                if not isinstance(c, str):
                    raise CprofError(f"counter {c!r} is not a counter name; give names such as 'cpu'")
            spec = ",".join(names)
        # all_call_sites (3.12+): see Profiler's doc; True never misses a C call at a site
        # that also calls Python functions, at the cost of a CALL event at every call.
        self._profiler = Profiler(spec, all_call_sites=all_call_sites)
        # compensate: take cprof's own per-event cost (calibrated once per process)
        # out of every measured interval, so call-heavy code is not inflated
        if compensate:
            self._profiler.set_compensation(calibrate(spec, all_call_sites))
        self._meta: dict = {}

    @property
    def counters(self) -> tuple[str, ...]:
        return self._profiler.counters

    def enable(self) -> None:
        # skip=1: this method's own frame is not part of the profiled program
        self._profiler.enable(push_existing=True, skip=1)

    def disable(self) -> None:
        self._profiler.disable()

    def __enter__(self) -> "Profile":
        self._profiler.enable(push_existing=True, skip=1)
        return self

    def __exit__(self, *exc) -> None:
        self._profiler.disable()

    def profile(self, **meta) -> dict:
        """The profile as the JSON-ready dict that dump() writes (format version 1)."""
        return profile_file.build(self._profiler.stats(), {**self._meta, **meta})

    def dump(self, path: str) -> None:
        profile_file.write(self.profile(), path)

    def print_stats(self, sort: str | None = None, limit: int = 25, file: TextIO | None = None) -> None:
        (file or sys.stderr).write(report.format_report(self.profile(), sort=sort, limit=limit))
