"""What --follow-children costs: whole-process runs, interleaved, CPU time of the whole
process tree (user + sys of every descendant the run waited for, from
getrusage(RUSAGE_CHILDREN)) and wall time, for three ways of running the same program:
plain Python, cprof, and cprof --follow-children.

    python benches/children_cost.py [--pairs N]

Workloads: Pool(4).map of 400 tasks of sum(range(20000)) with fork and with spawn (the
workers' own work profiled, and their start and end), and a parent starting 20
`python -c pass` children one after another (the start-up of a followed child: cprof
started in it, its profile built and written).  Printed: medians, and the median of
the per-round differences (each round runs the three ways back to back, in a rotating
order), per run and, for the start-up, per child."""
from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

POOL = """\
import multiprocessing as mp, sys
def f(x):
    return sum(range(20000)) + x
if __name__ == "__main__":
    with mp.get_context(sys.argv[1]).Pool(4) as p:
        p.map(f, range(400))
"""

STARTS = """\
import subprocess, sys
for _ in range(20):
    subprocess.run([sys.executable, "-c", "pass"], check=True, timeout=60)
"""


def run(cmd: list[str], cwd: str) -> tuple[float, float]:
    """(CPU seconds of the whole tree, wall seconds) of one run."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    subprocess.run(cmd, check=True, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                   timeout=300)
    wall = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime), wall


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pairs", type=int, default=7, help="rounds (each runs the three ways)")
    args = ap.parse_args()
    py = sys.executable
    with tempfile.TemporaryDirectory() as d:
        for name, text in (("pool.py", POOL), ("starts.py", STARTS)):
            with open(os.path.join(d, name), "w") as f:
                f.write(text)
        out = os.path.join(d, "out.json")
        ways = {"plain": [py], "cprof": [py, "-m", "cprof", "-o", out],
                "cprof --follow-children": [py, "-m", "cprof", "--follow-children", "-o", out]}
        loads = {"Pool(4).map fork": ["pool.py", "fork"], "Pool(4).map spawn": ["pool.py", "spawn"],
                 "20 children `python -c pass`": ["starts.py"]}
        print(f"Python {sys.version.split()[0]}, {args.pairs} rounds, load {os.getloadavg()[0]:.1f}")
        for load, argv in loads.items():
            seen: dict[str, list[tuple[float, float]]] = {w: [] for w in ways}
            names = list(ways)
            for i in range(args.pairs):
                order = names[i % 3:] + names[:i % 3]
                for w in order:
                    seen[w].append(run(ways[w] + argv, d))
            print(f"\n{load}")
            for w in names:
                cpu = statistics.median(c for c, _ in seen[w])
                wall = statistics.median(t for _, t in seen[w])
                print(f"  {w:26} CPU {cpu * 1000:8.0f} ms   wall {wall * 1000:8.0f} ms")
            for a, b in (("plain", "cprof --follow-children"), ("cprof", "cprof --follow-children")):
                dc = statistics.median(y[0] - x[0] for x, y in zip(seen[a], seen[b]))
                dw = statistics.median(y[1] - x[1] for x, y in zip(seen[a], seen[b]))
                per = "" if not load.startswith("20") else f"  ({dc / 20 * 1000:.1f} ms CPU a child)"
                print(f"  {b} - {a}: CPU {dc * 1000:+.0f} ms, wall {dw * 1000:+.0f} ms{per}")


if __name__ == "__main__":
    main()
