"""cprof: a deterministic profiler that attributes any monotonic counter to each function.

    import cprof
    with cprof.Profile(counters=["cpu", "wall", "ctxsw"]) as prof:
        work()
    prof.print_stats()
    prof.dump("profile.json")
"""
from ._cprof import Counter, CprofError, UserCounter, list_counters
from ._version import version as __version__
from .api import Profile, get_include

__all__ = ["Counter", "CprofError", "Profile", "UserCounter", "get_include", "list_counters",
           "__version__"]
