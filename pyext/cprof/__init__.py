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

__all__ = ["Counter", "CprofError", "Profile", "UserCounter", "Windows", "get_include",
           "list_counters", "__version__"]


def __getattr__(name: str):
    if name == "Windows":   # profiling windows (windows.py): imported when first used
        from .windows import Windows
        return Windows
    raise AttributeError(f"module 'cprof' has no attribute '{name}'")
