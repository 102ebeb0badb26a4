"""cprof: a deterministic profiler that attributes any monotonic counter to each function.

    import cprof
    with cprof.Profile(counters=["cpu", "wall", "ctxsw"]) as prof:
        work()
    prof.print_stats()
    prof.dump("profile.json")
"""
from ._cprof import CprofError, list_counters
from .api import Profile

__version__ = "0.1.0"
__all__ = ["CprofError", "Profile", "list_counters", "__version__"]
