"""Instructions per profiled call, counted by callgrind: the per-call cost without the noise
of a shared machine.

    python3 benches/callgrind_percall.py --python VENV_PYTHON [--configs PATTERNS] [--smoke]

VENV_PYTHON is a bench venv's interpreter (compare.py sets one up: cprof installed, and the
empty callback built in VENV/floor).  Each configuration runs a naive recursive fib(n) under
`valgrind --tool=callgrind` twice, for two n; the difference of the two runs' instruction
counts over the difference of their numbers of calls is what one call costs, everything
else (start-up, imports, writing the profile) the same in both runs and so cancelled:

    per call = (I(fib(N2)) - I(fib(N1))) / (calls(N2) - calls(N1)),  calls(n) = 2 F(n+1) - 1

Printed: instructions per call, the profiler's share above the unprofiled call, and that
share over the empty callback's (floor py: PY_START/PY_RETURN; floor cprof-events: the
events cprof registers).  What callgrind cannot see: time in the kernel (ctxsw's getrusage,
a clock_gettime that leaves the vDSO) and cache misses; so these are the user-space
instructions of one thread, not times.  Threads are serialized under valgrind: one thread.
"""
from __future__ import annotations

import argparse
import fnmatch
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent

FIB = """import sys
def fib(n):
    return n if n < 2 else fib(n - 1) + fib(n - 2)
fib(int(sys.argv[1]))
"""


def fib_calls(n: int) -> int:
    a, b = 0, 1  # F(0), F(1)
    for _ in range(n + 1):
        a, b = b, a + b
    return 2 * a - 1  # a = F(n+1)


def configs(py: str, floor_dir: Path) -> dict[str, tuple[list[str], dict]]:
    floor_env = {"PYTHONPATH": str(floor_dir)}
    return {
        "plain": ([py], {}),
        "floor py": ([py, str(HERE / "floor_run.py"), "py"], floor_env),
        "floor cprof-events": ([py, str(HERE / "floor_run.py"), "cprof"], floor_env),
        "cProfile": ([py, "-m", "cProfile", "-o", "{out}"], {}),
        "profiling.tracing": ([py, "-m", "profiling.tracing", "-o", "{out}"], {}),
        "cprof wall": ([py, "-m", "cprof", "--counter=wall", "-o", "{out}"], {}),
        "cprof cpu": ([py, "-m", "cprof", "--counter=cpu", "-o", "{out}"], {}),
        "cprof cpu,wall,ctxsw": ([py, "-m", "cprof", "--counter=cpu,wall,ctxsw", "-o", "{out}"], {}),
    }


def instructions(argv: list[str], env_extra: dict, scratch: str) -> int:
    env = dict(os.environ, PYTHONHASHSEED="0", **env_extra)
    p = subprocess.run(["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", *argv],
                       capture_output=True, text=True, env=env, cwd=scratch)
    m = re.search(r"Collected\s*:\s*(\d+)", p.stderr)
    if p.returncode != 0 or not m:
        last = [ln for ln in p.stderr.splitlines() if ln.strip() and not ln.startswith("==")]
        raise RuntimeError(f"exit {p.returncode}: {(last or p.stderr.splitlines() or ['?'])[-1][:200]}")
    return int(m.group(1))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog="\n".join(__doc__.splitlines()[2:]))
    ap.add_argument("--python", required=True, help="a bench venv's python (cprof installed, VENV/floor built)")
    ap.add_argument("--configs", help="comma-separated shell patterns of configurations; default: all")
    ap.add_argument("--n", default="16,20", help="the two fib sizes (default 16,20)")
    ap.add_argument("--smoke", action="store_true", help="fib(10) and fib(12): checks it runs, not a figure")
    a = ap.parse_args()
    if subprocess.run(["sh", "-c", "command -v valgrind"], capture_output=True).returncode:
        print("callgrind_percall.py: error: valgrind is not installed.", file=sys.stderr)
        return 2
    n1, n2 = (10, 12) if a.smoke else map(int, a.n.split(","))
    venv = Path(a.python).parent.parent  # VENV/bin/python -> VENV (not resolved: the venv, not its base)
    table = configs(a.python, venv / "floor")
    pats = [p.strip() for p in (a.configs or "*").split(",")]
    names = [n for n in table if any(fnmatch.fnmatchcase(n, p) for p in pats)]
    if "plain" not in names:
        names.insert(0, "plain")
    if subprocess.run([a.python, "-c", "import profiling.tracing"], capture_output=True).returncode:
        names = [n for n in names if n != "profiling.tracing"]  # 3.15+
    version = subprocess.run([a.python, "-c", "import sys, sysconfig; print(sys.version.split()[0] + "
                              "('t' if sysconfig.get_config_var('Py_GIL_DISABLED') else ''))"],
                             capture_output=True, text=True).stdout.strip()
    dcalls = fib_calls(n2) - fib_calls(n1)
    print(f"Python {version}: instructions per call of fib (callgrind, fib({n2}) - fib({n1}): {dcalls:,} calls)"
          + ("  SMOKE: not a measurement" if a.smoke else ""))
    per: dict[str, float] = {}
    failed = 0
    with tempfile.TemporaryDirectory(prefix="cprof-callgrind-") as scratch:
        script = os.path.join(scratch, "fib.py")
        Path(script).write_text(FIB)
        for name in names:
            argv, env = table[name]
            argv = [x.replace("{out}", os.path.join(scratch, "profile.out")) for x in argv]
            try:
                i1 = instructions([*argv, script, str(n1)], env, scratch)
                i2 = instructions([*argv, script, str(n2)], env, scratch)
            except RuntimeError as e:
                print(f"  {name:<22} FAILED: {e}")
                failed += name == "plain" or name.startswith("cprof")
                continue
            per[name] = (i2 - i1) / dcalls
    base = per.get("plain")
    print(f"  {'':<22}{'instr/call':>11}{'added':>9}{'/ floor py':>12}{'/ floor cprof-ev':>18}")
    for name, x in per.items():
        added = x - base if base is not None else None
        cols = [f"{x:11.0f}", f"{added:9.0f}" if added is not None else f"{'—':>9}"]
        for floor, w in (("floor py", 12), ("floor cprof-events", 18)):
            f = per.get(floor)
            ok = added is not None and f is not None and f - base > 0 and not name.startswith("floor") and name != "plain"
            cols.append(f"{added / (f - base):{w}.1f}" if ok else f"{'':>{w}}")
        print(f"  {name:<22}" + "".join(cols))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
