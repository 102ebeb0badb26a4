"""--trace=app's overhead on a library-heavy program (workloads.py libheavy: a thin
application layer over email's header parser, urllib, json and re), next to full
profiling and cProfile.

    python benches/trace_overhead.py [--python PY] [--reps 7] [--requests N]
                                     [--instructions N1,N2] [--counter cpu]

Two measures, both printed as ratios over the unprofiled run:
- CPU time of the workload (time.process_time inside the process, workloads.py's
  BENCH_CPU line: what a shared machine's load moves least), the configurations
  interleaved and rotated, each ratio the median of the paired ratios (repetition r
  over plain's repetition r) with their range;
- with --instructions N1,N2 (valgrind): instructions per request, counted by callgrind
  over the whole process at N1 and N2 requests, (I(N2) - I(N1)) / (N2 - N1), so start-up,
  calibration and writing the profile cancel.  Without compensation (its calibration
  under valgrind is slow and cancels anyway).

compare.py has the same workload (libheavy) and configuration ("cprof cpu --trace=app")
for the full tables."""
from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent


def configs(py: str, counter: str) -> dict[str, list[str]]:
    return {
        "plain": [py],
        "cprof --trace=app": [py, "-m", "cprof", f"--counter={counter}", "--trace=app", "-o", "{out}"],
        "cprof": [py, "-m", "cprof", f"--counter={counter}", "-o", "{out}"],
        "cProfile": [py, "-m", "cProfile", "-o", "{out}"],
    }


def run(argv: list[str], requests: int, scratch: str, timeout: float = 600) -> float:
    out = os.path.join(scratch, "profile.out")
    cmd = [a.replace("{out}", out) for a in argv] + [str(HERE / "workloads.py"), "libheavy",
                                                       "--requests", str(requests)]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=scratch,
                       env=dict(os.environ, PYTHONHASHSEED="0"))
    m = re.search(r"^BENCH_CPU (\S+)", p.stdout, re.M)
    if p.returncode or not m:
        raise SystemExit(f"{' '.join(cmd)} failed: {p.stderr[-500:]}")
    return float(m.group(1))


def instructions(argv: list[str], requests: int, scratch: str) -> int:
    out = os.path.join(scratch, "cg.out")
    prof = os.path.join(scratch, "profile.out")
    cmd = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}"]
    cmd += [a.replace("{out}", prof) for a in argv]
    if "cprof" in argv:
        cmd.insert(cmd.index("cprof") + 1, "--no-compensate")
    cmd += [str(HERE / "workloads.py"), "libheavy", "--requests", str(requests)]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=1800, cwd=scratch,
                       env=dict(os.environ, PYTHONHASHSEED="0", CPROF_NO_CACHE="1"))
    m = re.search(r"Collected : (\d+)", p.stderr)
    if p.returncode or not m:
        raise SystemExit(f"{' '.join(cmd)} failed: {p.stderr[-500:]}")
    return int(m.group(1))


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--python", default=sys.executable)
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--requests", type=int, default=6000)
    ap.add_argument("--counter", default="cpu")
    ap.add_argument("--instructions", default=None, help="N1,N2 requests, counted by callgrind")
    opts = ap.parse_args()
    cfgs = configs(opts.python, opts.counter)
    names = list(cfgs)
    ver = subprocess.run([opts.python, "-c", "import sys; print(sys.version.split()[0])"],
                         capture_output=True, text=True).stdout.strip()
    print(f"# python {ver}: {' '.join(sys.argv)}")
    with tempfile.TemporaryDirectory(prefix="cprof-trace-bench-") as scratch:
        if opts.reps:
            cpu: dict[str, list[float]] = {n: [] for n in names}
            for r in range(opts.reps):
                order = names[r % len(names):] + names[:r % len(names)]
                for n in order:
                    cpu[n].append(run(cfgs[n], opts.requests, scratch))
            print(f"CPU time of {opts.requests} requests, {opts.reps} repetitions, ratio over "
                  "plain (median of paired ratios [min-max])")
            for n in names:
                ratios = [a / b for a, b in zip(cpu[n], cpu["plain"])]
                print(f"  {n:20s} {statistics.median(ratios):6.3f}  [{min(ratios):.3f}-"
                      f"{max(ratios):.3f}]  median {statistics.median(cpu[n]) * 1e3:8.1f} ms")
        if opts.instructions:
            n1, n2 = (int(x) for x in opts.instructions.split(","))
            per = {}
            for n in names:
                per[n] = (instructions(cfgs[n], n2, scratch)
                          - instructions(cfgs[n], n1, scratch)) / (n2 - n1)
            print(f"instructions per request (callgrind, ({n2} - {n1} requests)), ratio over plain")
            for n in names:
                print(f"  {n:20s} {per[n]:12,.0f}  {per[n] / per['plain']:6.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
