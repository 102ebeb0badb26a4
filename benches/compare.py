"""Overhead of cprof next to cProfile, measured side by side in one run.

    python benches/compare.py [--reps 5] [--n 25] [--python python3.12] [--smoke]

Each configuration runs fib(N) in a fresh interpreter that times only the
workload (perf_counter around the call, profiler enabled just before); the
configurations are interleaved and the best of --reps is kept, because these
machines are shared and noisy.  Prints times and ratios to cProfile and to the
unprofiled run.  (The full peer comparison -- yappi, pyinstrument, py-spy, the
bias workload -- is the harness's next step.)
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys

CONFIGS = ["plain", "cProfile", "cprof:wall", "cprof:cpu", "cprof:cpu,ctxsw", "cprof:cpu,wall,ctxsw"]

WORKER = r"""
import sys, time
config, n = sys.argv[1], int(sys.argv[2])
def fib(n):
    return n if n < 2 else fib(n - 1) + fib(n - 2)
if config == "plain":
    start, stop = (lambda: None), (lambda: None)
elif config == "cProfile":
    import cProfile
    p = cProfile.Profile()
    start, stop = p.enable, p.disable
else:
    import cprof._cprof as c
    p = c.Profiler(config.split(":", 1)[1])
    start, stop = (lambda: p.enable(push_existing=False)), p.disable
start()
t0 = time.perf_counter()
fib(n)
t1 = time.perf_counter()
stop()
print(t1 - t0)
"""


def run_once(python: str, config: str, n: int) -> float:
    out = subprocess.run([python, "-c", WORKER, config, str(n)], capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"compare.py: {config} failed under {python}: {out.stderr.strip()[-300:]}")
    return float(out.stdout)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--n", type=int, default=25)
    ap.add_argument("--python", default=sys.executable)
    ap.add_argument("--smoke", action="store_true", help="a quick pass for CI (n=18, 2 reps)")
    ap.add_argument("--json", help="also write the results here")
    a = ap.parse_args()
    if a.smoke:
        a.n, a.reps = 18, 2
    best = {c: float("inf") for c in CONFIGS}
    for _ in range(a.reps):
        for c in CONFIGS:  # interleaved: drift on the machine hits every config alike
            best[c] = min(best[c], run_once(a.python, c, a.n))
    version = subprocess.run([a.python, "-c", "import sys; print(sys.version.split()[0])"],
                             capture_output=True, text=True).stdout.strip()
    print(f"fib({a.n}), best of {a.reps}, Python {version}")
    print(f"{'config':<24}{'ms':>9}{'x plain':>9}{'x cProfile':>12}")
    for c in CONFIGS:
        print(f"{c:<24}{best[c] * 1e3:>9.1f}{best[c] / best['plain']:>9.2f}{best[c] / best['cProfile']:>12.2f}")
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"python": version, "n": a.n, "reps": a.reps, "best_s": best}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
