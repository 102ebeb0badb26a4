"""The Python API: Profile, usable as a context manager or with enable()/disable()."""
from __future__ import annotations

import sys
from typing import Iterable, TextIO

from . import profile_file, report
from ._cprof import CprofError, Profiler


class Profile:
    """Profile every thread with the given counters (names, in order).

        with cprof.Profile(counters=["cpu", "wall", "ctxsw"]) as prof:
            work()
        prof.print_stats(sort="cpu")
        prof.dump("profile.json")
    """

    def __init__(self, counters: str | Iterable[str] = ("cpu", "wall"), *,
                 all_call_sites: bool = False) -> None:
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
