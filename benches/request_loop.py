"""The request-loop workload (issue 16 item 5): a service's handler called thousands of
times, each call parsing a JSON request, doing a little computation and a little I/O
(a write and a read on a pipe), measured under the ways of profiling a service:

    python3 benches/request_loop.py [--python PY] [--reps 5] [--requests 20000] [--configs A,B]
    python3 benches/request_loop.py --sample-ab 0.01 [--python PY]   # what a chosen call costs

Every configuration runs the same script; the repetitions are interleaved (rep 1 of
every configuration, then rep 2 ...) and each ratio is taken within a repetition, to the
plain run next to it, so load on the machine (2 vCPUs shared here) hits both sides of a
ratio alike; the table gives the median ratio and its range.  The time measured is the
request loop's CPU time, inside the program (time.process_time around it: every thread
of the process, cprof's window switching included; wall time on this shared machine
varied 5x between runs): start-up and writing the profile are out of it.

configs() lists the configurations, one line each (a new one, such as `--trace=app`, is a
one-line addition).  compare.py's `--modes requests` runs this with its venv's Python.
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

REQUESTS = 20000   # the default: ~0.4 s of plain loop, under 1 s under cprof (one window)

WORKLOAD = r'''
import json, os, sys, time

def parse(body):
    return json.loads(body)

def score(items):
    total = 0
    for item in items:
        total += item["qty"] * item["price"]
    return round(total * 1.2, 2)

def store(pipe, i, result):
    data = json.dumps(result).encode()
    os.write(pipe[1], data)          # a small write and read: two system calls
    return len(os.read(pipe[0], 65536))

def handler(pipe, i, body):
    req = parse(body)
    result = {"id": req["id"], "total": score(req["items"]), "user": req["user"].upper()}
    return store(pipe, i, result)

def main():
    n = int(sys.argv[1])
    mode = sys.argv[2] if len(sys.argv) > 2 else "plain"
    delay = float(sys.argv[3]) if len(sys.argv) > 3 else 0.0
    h = handler
    if mode.startswith("sample="):
        import cprof
        h = cprof.Profile(sample=float(mode[7:]), sample_seed=1)(handler)
    bodies = [json.dumps({"id": i, "user": f"user{i}",
                          "items": [{"qty": k + 1, "price": 1.5 * k} for k in range(12)]})
              for i in range(64)]
    pipe = os.pipe()
    if delay:
        time.sleep(delay)
    c0, w0 = time.process_time(), time.perf_counter()
    for i in range(n):
        h(pipe, i, bodies[i % 64])
    c1, w1 = time.process_time(), time.perf_counter()
    print(f"LOOP {c1 - c0:.6f} {w1 - w0:.6f}")

main()
'''


def configs(py: str, out: str, version: tuple[int, int]) -> dict[str, tuple]:
    """name -> (argv before the script, the script's mode, seconds it waits before its
    loop, the argv of a profiler that attaches to its pid or None).  One line each."""
    def cprof(*extra: str) -> list[str]:
        return [py, "-m", "cprof", *extra, "-o", out]
    table = {
        "plain": ([py], "plain", 0, None),
        "cprof": (cprof(), "plain", 0, None),
        # the handler wrapped in cprof.Profile(sample=0.01) by the script itself
        "cprof --trace=app": (cprof("--trace=app"), "plain", 0, None),
        "cprof sample=0.01": ([py], "sample=0.01", 0, None),
        # 1 s of every 60: the loop (< 1 s) inside the first window, and after it (it starts
        # 1.2 s in), between windows; the minute's average is derived from the two in the
        # README (59 s between, 1 s inside)
        "cprof --window=1 --every=60 (inside the window)":
            (cprof("--window=1", "--every=60"), "plain", 0, None),
        "cprof --window=1 --every=60 (between windows)":
            (cprof("--window=1", "--every=60"), "plain", 1.2, None),
        "cProfile": ([py, "-m", "cProfile", "-o", out], "plain", 0, None),
    }
    if version >= (3, 15):
        table["profiling.sampling run"] = (
            [py, "-m", "profiling.sampling", "run", "-a", "--collapsed", "-o", out], "plain", 0, None)
        # attached to the running program half a second before its loop starts
        table["profiling.sampling attach"] = (
            [py], "plain", 0.5,
            lambda pid: [py, "-m", "profiling.sampling", "attach", "-a", "--collapsed", "-o", out,
                         str(pid)])
    return table


def run_one(cfg: tuple, script: str, n: int, timeout: float) -> tuple[float, float]:
    """(CPU seconds, wall seconds) of the script's loop under this configuration."""
    argv, mode, delay, attach = cfg
    p = subprocess.Popen([*argv, script, str(n), mode, str(delay)], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    sampler = None
    if attach is not None:
        sampler = subprocess.Popen(attach(p.pid), stdout=subprocess.DEVNULL,
                                   stderr=subprocess.PIPE, text=True)
    try:
        out, err = p.communicate(timeout=timeout)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        if sampler is not None:
            try:
                sampler.communicate(timeout=30)   # it ends with its target
            except subprocess.TimeoutExpired:
                sampler.kill()
                sampler.wait()
    for line in out.splitlines():
        if line.startswith("LOOP "):
            cpu, wall = line.split()[1:]
            return float(cpu), float(wall)
    raise RuntimeError(f"exit {p.returncode}: {err.strip().splitlines()[-1:] or out[-200:]}")


def measure(py: str, reps: int, n: int, names: list[str] | None = None,
            timeout: float = 300) -> dict[str, dict]:
    """{config: {"cpu": [ratio...], "wall": [ratio...], "loop": [(cpu, wall)...],
    "error": str?}}, the repetitions interleaved, each ratio to the plain run of its own
    repetition."""
    v = subprocess.run([py, "-c", "import sys; print(*sys.version_info[:2])"],
                       capture_output=True, text=True, check=True).stdout.split()
    with tempfile.TemporaryDirectory() as tmp:
        script = os.path.join(tmp, "request_loop.py")
        with open(script, "w") as f:
            f.write(WORKLOAD)
        out = os.path.join(tmp, "out.json")
        table = configs(py, out, (int(v[0]), int(v[1])))
        chosen = [c for c in table if names is None or c in names or c == "plain"]
        res: dict[str, dict] = {c: {"cpu": [], "wall": [], "loop": []} for c in chosen}
        for _ in range(reps):
            plain = run_one(table["plain"], script, n, timeout)
            for c in chosen:
                if "error" in res[c]:
                    continue
                for f in os.listdir(tmp):   # the profiles (windows) of the last run
                    if f.startswith("out."):
                        os.unlink(os.path.join(tmp, f))
                try:
                    t = plain if c == "plain" else run_one(table[c], script, n, timeout)
                except (RuntimeError, subprocess.TimeoutExpired) as e:
                    res[c]["error"] = str(e)
                    continue
                res[c]["loop"].append(t)
                res[c]["cpu"].append(t[0] / plain[0])
                res[c]["wall"].append(t[1] / plain[1])
        return res


def table(res: dict[str, dict], n: int) -> str:
    lines = ["| configuration | CPU time / plain | range | wall time / plain | range |",
             "|---|---|---|---|---|"]
    for c, cell in res.items():
        if not cell["cpu"]:
            lines.append(f"| {c} | did not run: {cell.get('error')} | | | |")
            continue
        cpu, wall = cell["cpu"], cell["wall"]
        lines.append(f"| {c} | {statistics.median(cpu):.2f}x | {min(cpu):.2f}-{max(cpu):.2f} | "
                     f"{statistics.median(wall):.2f}x | {min(wall):.2f}-{max(wall):.2f} |")
    plain = res["plain"]["loop"]
    lines.append(f"\nplain: {statistics.median(t[0] for t in plain) / n * 1e6:.1f} us CPU per "
                 f"request; {n} requests, {len(plain)} interleaved repetitions")
    return "\n".join(lines)


SAMPLE_AB = r'''
import sys, time, cprof
ns = {"__name__": "request_loop"}
exec(compile(WORKLOAD.replace("\nmain()\n", "\n"), "request_loop.py", "exec"), ns)
handler, pipe = ns["handler"], __import__("os").pipe()
bodies = [__import__("json").dumps({"id": i, "user": f"user{i}",
          "items": [{"qty": k + 1, "price": 1.5 * k} for k in range(12)]}) for i in range(64)]
frac, blocks, n = float(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
prof = cprof.Profile(sample=frac, sample_seed=1)
sampled = prof(handler)
def block(h):
    c = time.thread_time()
    for i in range(n):
        h(pipe, i, bodies[i % 64])
    return time.thread_time() - c
plain = chosen = 0.0
for _ in range(blocks):   # alternating blocks of plain and sampled calls, one thread's CPU time
    plain += block(handler)
    chosen += block(sampled)
k = prof._sampled[0]
print(f"plain {plain / (blocks * n) * 1e6:.1f} us CPU per call; sample={frac}: "
      f"{chosen / plain:.3f}x; {k} chosen calls, each "
      f"{(chosen - plain) / k * 1e6:.0f} us more than an unprofiled one")
'''


def sample_ab(py: str, frac: float, blocks: int = 10, n: int = 2000) -> str:
    """sample=FRAC against plain in ONE process, in alternating blocks (thread CPU time):
    what a chosen call costs, with process start-up and machine load out of the ratio."""
    code = "WORKLOAD = " + repr(WORKLOAD) + "\n" + SAMPLE_AB
    r = subprocess.run([py, "-c", code, str(frac), str(blocks), str(n)], capture_output=True,
                       text=True, timeout=600, check=False)
    return r.stdout.strip() or r.stderr.strip().splitlines()[-1]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--python", default=sys.executable)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--requests", type=int, default=REQUESTS)
    ap.add_argument("--configs", help="comma-separated names (plain is always run)")
    ap.add_argument("--sample-ab", type=float, metavar="FRAC",
                    help="only: Profile(sample=FRAC) against plain in one process, alternating "
                         "blocks of calls (what a chosen call costs)")
    a = ap.parse_args()
    if a.sample_ab:
        print(sample_ab(a.python, a.sample_ab))
        return 0
    names = a.configs.split(",") if a.configs else None
    t0 = time.time()
    res = measure(a.python, a.reps, a.requests, names)
    v = subprocess.run([a.python, "-c", "import sys; print(sys.version.split()[0])"],
                       capture_output=True, text=True, check=True).stdout.strip()
    print(f"Python {v}, {time.time() - t0:.0f} s: python3 {' '.join(sys.argv)}")
    print(table(res, a.requests))
    return 0


if __name__ == "__main__":
    sys.exit(main())
