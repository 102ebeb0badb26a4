"""cprof: a deterministic profiler that attributes any monotonic counter to each function.

    import cprof
    with cprof.Profile(counters=["cpu", "wall", "ctxsw"]) as prof:
        work()
    prof.print_stats()
    prof.dump("profile.json")
"""
from ._cprof import Counter, CprofError, UserCounter, list_counters
from .api import Profile, get_include

__version__ = "0.1.0"
__all__ = ["Counter", "CprofError", "Profile", "UserCounter", "get_include", "list_counters",
           "__version__"]
