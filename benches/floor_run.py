"""Run a script with an empty C callback registered on sys.monitoring (3.12+): the floor.

    python floor_run.py {py|cprof} script.py [args...]

  py     PY_START and PY_RETURN only: the least any sys.monitoring profiler pays.
  cprof  the events cprof registers (PY_START/RESUME/THROW, PY_RETURN/YIELD/UNWIND, and
         CALL with its C_RETURN/C_RAISE), so C functions such as time.sleep are seen.

The callback is _benchfloor.noop, a METH_FASTCALL C function that returns None, built by
compare.py from floor/_benchfloor.c (on PYTHONPATH).  No C builtin stands in if it could not
be built: the cheapest candidates that accept these arguments (``slice``, a type) allocate
per call and measured at more than cProfile's cost, which is no floor.
"""
import os
import runpy
import sys

from _benchfloor import noop as callback

mon = sys.monitoring
E = mon.events
sets = {"py": ["PY_START", "PY_RETURN"],
        "cprof": ["PY_START", "PY_RESUME", "PY_THROW", "PY_RETURN", "PY_YIELD", "PY_UNWIND",
                  "CALL", "C_RETURN", "C_RAISE"]}
which, script = sys.argv[1], sys.argv[2]
tool = next(t for t in range(6) if mon.get_tool(t) is None)
mon.use_tool_id(tool, "benchfloor")
mask = 0
for name in sets[which]:
    mon.register_callback(tool, getattr(E, name), callback)
    if name not in ("C_RETURN", "C_RAISE"):  # these follow CALL, they cannot be set alone
        mask |= getattr(E, name)
sys.argv = sys.argv[2:]
sys.path[0] = os.path.dirname(os.path.abspath(script))
mon.set_events(tool, mask)
try:
    runpy.run_path(script, run_name="__main__")
finally:
    mon.set_events(tool, 0)
