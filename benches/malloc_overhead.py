"""What the allocation counters add to allocation-heavy Python, as ratios measured side by side.

    python3 benches/malloc_overhead.py [--reps 7] [--smoke]

Runs with this interpreter and the cprof it imports.  Each configuration runs each
workload in a fresh interpreter that times only the workload (workloads.py prints
BENCH_SECONDS), configurations interleaved and rotated, the best of --reps kept:

  plain              python workloads.py W
  preload, idle      LD_PRELOAD=libcprof_malloc.so: loaded, counting never started
  preload, counting  the same, counting started (no profiler)
  cprof wall         cprof --counter=wall (no preload)
  cprof wall+malloc  cprof --counter=wall,malloc-bytes,malloc-calls,free-bytes,free-calls
  cprof wall+pymalloc  cprof --counter=wall,pymalloc-bytes,pymalloc-calls

Workloads: workloads.py's `alloc` (many small objects: mostly pymalloc) and `mallocs`
(defined here: bytes and lists over 512 bytes, dict tables, json: mostly malloc).
Ratios: the preloads against plain, the cprof ones against cprof wall."""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))

MALLOCS = r'''
import json, sys, time
N = 20_000 if "--smoke" in sys.argv else 200_000

def mallocs(n):
    keep = []
    for i in range(n):
        b = bytes(600 + i % 4000)                   # malloc through PyObject_Malloc
        row = list(range(70 + i % 130))             # its item array: malloc
        d = dict.fromkeys(range(i % 40))            # tables over 512 bytes
        s = json.dumps({"i": i, "row": row[:20]})
        keep.append((len(b), len(d), json.loads(s)["i"]))
        if len(keep) > 1000:
            keep.clear()
    return keep

t0 = time.perf_counter()
mallocs(N)
print(f"BENCH_SECONDS {time.perf_counter() - t0:.9f}", flush=True)
'''

ACTIVATE = r'''
import ctypes, runpy, sys

class Api(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint), ("thread_counts", ctypes.c_void_p),
                ("activate", ctypes.CFUNCTYPE(None)), ("process_total", ctypes.c_void_p),
                ("unresolved", ctypes.c_char_p)]

fn = ctypes.CDLL(None).cprof_malloc_api
fn.restype = ctypes.POINTER(Api)
fn().contents.activate()
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
'''

MALLOC_COUNTERS = "malloc-bytes,malloc-calls,free-bytes,free-calls"


def configs(lib: str, out: str):
    py = sys.executable
    pre = {"LD_PRELOAD": lib}
    return [
        ("plain", lambda w: [py] + w, {}),
        ("preload, idle", lambda w: [py] + w, pre),
        ("preload, counting", lambda w: [py, os.path.join(out, "activate.py")] + w, pre),
        ("cprof wall", lambda w: [py, "-m", "cprof", "-c", "wall", "-o", os.path.join(out, "p.json")]
         + w, {}),
        ("cprof wall+malloc", lambda w: [py, "-m", "cprof", "-c", "wall," + MALLOC_COUNTERS, "-o",
                                         os.path.join(out, "p.json")] + w, {}),
        ("cprof wall+pymalloc", lambda w: [py, "-m", "cprof", "-c",
                                           "wall,pymalloc-bytes,pymalloc-calls", "-o",
                                           os.path.join(out, "p.json")] + w, {}),
    ]


def run_once(argv, env_extra) -> float:
    env = {k: v for k, v in os.environ.items() if k != "LD_PRELOAD"}
    env.update(env_extra)
    r = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=600)
    for line in r.stdout.splitlines():
        if line.startswith("BENCH_SECONDS "):
            return float(line.split()[1])
    raise RuntimeError(f"{argv}: exit {r.returncode}\n{r.stderr[-2000:]}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--smoke", action="store_true")
    opts = ap.parse_args()
    import cprof
    lib = os.path.join(os.path.dirname(os.path.abspath(cprof.__file__)), "libcprof_malloc.so")
    if not os.path.isfile(lib):
        print(f"malloc_overhead: {lib} is missing; install cprof first", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="cprof-malloc-bench-") as out:
        with open(os.path.join(out, "mallocs.py"), "w") as f:
            f.write(MALLOCS)
        with open(os.path.join(out, "activate.py"), "w") as f:
            f.write(ACTIVATE)
        smoke = ["--smoke"] if opts.smoke else []
        workloads = {"alloc": [os.path.join(HERE, "workloads.py"), "alloc"] + smoke,
                     "mallocs": [os.path.join(out, "mallocs.py")] + smoke}
        cfgs = configs(lib, out)
        best = {(c, w): float("inf") for c, _, _ in cfgs for w in workloads}
        for rep in range(opts.reps):
            order = cfgs[rep % len(cfgs):] + cfgs[:rep % len(cfgs)]   # rotated
            for w, wargv in workloads.items():
                for name, argv, env in order:
                    best[name, w] = min(best[name, w], run_once(argv(wargv), env))
        print(f"Python {sys.version.split()[0]}, best of {opts.reps}, seconds (ratio):")
        print(f"{'configuration':<22}" + "".join(f"{w:>20}" for w in workloads))
        for name, _, _ in cfgs:
            base = "cprof wall" if name.startswith("cprof") else "plain"
            cells = "".join(f"{best[name, w]:>11.4f} ({best[name, w] / best[base, w]:.3f})"
                            for w in workloads)
            print(f"{name:<22}{cells}")
        print("ratios: preloads against plain, cprof ones against cprof wall")
    return 0


if __name__ == "__main__":
    sys.exit(main())
