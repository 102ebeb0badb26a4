"""cprof next to the other Python profilers: overhead per workload, and attribution accuracy.

    python3 benches/compare.py [--reps 5] [--python PATH] [--out DIR]
                               [--configs PATTERNS] [--workloads PATTERNS] [--smoke]
                               [--venv DIR] [--python-gil 0|1]

1. Sets up a venv for the chosen Python (default: pyenv's 3.12.1, else python3.12, else
   this interpreter) in benches/.venv/pyXY (pyXYt when free-threaded; --venv DIR), and installs into it: cprof from this checkout
   (re-installed whenever its sources change; --cprof HEAD takes a clean export of a commit
   instead, when others are editing the working tree), yappi, pyinstrument, py-spy, black (its pure
   Python wheel, so that black runs as Python code a profiler can see) and matplotlib.  A
   peer that cannot be installed is reported as MISSING with pip's reason, never dropped.
   3.15's profiling.tracing and profiling.sampling run where the standard library has them.
2. Builds floor/_benchfloor.c, an empty C callback, for the sys.monitoring floor (3.12+).
3. Tunes the bias workload's inline half so that both halves take the same time unprofiled.
4. Runs every workload (workloads.py) under every configuration, each run in a fresh
   interpreter that times only the workload (perf_counter inside the process, printed on a
   line this script parses, with whether the GIL was on), configurations interleaved and
   rotated, --reps repetitions; each ratio is the median of the paired ratios (run r of a
   configuration over run r of plain, measured in the same rotation), with their range:
   these machines are shared and noisy.  --python-gil sets PYTHON_GIL in every run.
5. Prints the overhead table (ratio to no profiler, and to cProfile) and the accuracy table:
   each profiler's calls_half/inline_half ratio (the median over the repetitions; sampling
   profilers' samples pooled over them) over the true ratio (the median over the unprofiled
   runs of their fastest rounds' ratio), and writes results.json, table.md, table.txt and
   overhead.png into --out (default benches/results/; benches/results/smoke/ with --smoke).
   --report RESULTS_JSON prints and draws saved results again.

--smoke (CI): tiny workloads, one repetition, pip with short timeouts; if the venv or a peer
cannot be set up it says which configurations it skipped and goes on with what it has.
Exit status: 0 when plain, cProfile and every cprof configuration ran every workload.
"""
from __future__ import annotations

import argparse
import datetime
import fnmatch
import hashlib
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent  # the checkout whose cprof is measured
WORKLOADS = ["fib", "fib4", "heavy", "io", "alloc", "threads", "black", "bias"]
CALLS_PER_ROUND = 200_000  # workloads.CALLS_PER_ROUND
PEERS = ["yappi", "pyinstrument", "py-spy", "black", "matplotlib"]
# in the standard library from 3.15 on (PEP 799): profiling.tracing is cProfile under its new name,
# profiling.sampling a sampling profiler that reads another process's memory, as py-spy does
STDLIB_PROFILERS = ["profiling.tracing", "profiling.sampling"]


# ---- configurations ------------------------------------------------------------------------

class Config:
    """One way of running workloads.py: its argv, the profile it writes, what it needs."""

    def __init__(self, name, argv, fmt=None, needs=None, env=None):
        self.name = name          # also the label in tables
        self.argv = argv          # f(venv, profile_path, script_argv) -> argv
        self.fmt = fmt            # extract.py FORMAT of its profile (None: no profile)
        self.needs = needs        # peer it needs ("floor", "cprof-nocomp", a PEERS name) or None
        self.env = env or {}


def make_configs(venv: Path) -> list[Config]:
    py = str(venv / "bin" / "python")
    spy = str(venv / "bin" / "py-spy")

    def cprof(counters, *extra):
        return lambda p, s: [py, "-m", "cprof", f"--counter={counters}", *extra, "-o", p, *s]

    floor_env = {"PYTHONPATH": str(venv / "floor")}
    return [
        Config("plain", lambda p, s: [py, *s]),
        Config("floor py", lambda p, s: [py, str(HERE / "floor_run.py"), "py", *s],
               needs="floor", env=floor_env),
        Config("floor cprof-events", lambda p, s: [py, str(HERE / "floor_run.py"), "cprof", *s],
               needs="floor", env=floor_env),
        Config("cProfile", lambda p, s: [py, "-m", "cProfile", "-o", p, *s], "pstats"),
        Config("profiling.tracing", lambda p, s: [py, "-m", "profiling.tracing", "-o", p, *s], "pstats",
               "profiling.tracing"),
        Config("yappi cpu", lambda p, s: [py, "-m", "yappi", "-c", "cpu", "-f", "pstat", "-o", p, *s],
               "pstats", "yappi"),
        Config("yappi wall", lambda p, s: [py, "-m", "yappi", "-c", "wall", "-f", "pstat", "-o", p, *s],
               "pstats", "yappi"),
        Config("pyinstrument", lambda p, s: [py, "-m", "pyinstrument", "-r", "pyisession", "-o", p, *s],
               "pyisession", "pyinstrument"),
        Config("py-spy", lambda p, s: [spy, "record", "--format", "raw", "-o", p, "--", py, *s],
               "pyspy-raw", "py-spy", env={"BENCH_SETTLE": "0.2"}),
        # its defaults (1 kHz, wall mode) but every thread, as py-spy samples every thread
        Config("profiling.sampling", lambda p, s: [py, "-m", "profiling.sampling", "run", "-a", "--collapsed",
                                                   "-o", p, *s],
               "collapsed", "profiling.sampling", env={"BENCH_SETTLE": "0.2"}),
        Config("cprof wall", cprof("wall"), "cprof"),
        Config("cprof cpu", cprof("cpu"), "cprof"),
        Config("cprof cpu --no-compensate", cprof("cpu", "--no-compensate"), "cprof", "cprof-nocomp"),
        Config("cprof cpu,ctxsw", cprof("cpu,ctxsw"), "cprof"),
        Config("cprof cpu,wall,ctxsw", cprof("cpu,wall,ctxsw"), "cprof"),
    ]


def must_run(name: str) -> bool:
    """Configurations whose failure fails the harness (the rest are peers: reported, not fatal)."""
    return name in ("plain", "cProfile") or name.startswith("cprof")


# ---- set-up --------------------------------------------------------------------------------

def default_python() -> str:
    pyenv = Path("/root/.pyenv/versions/3.12.1/bin/python")
    if pyenv.exists():
        return str(pyenv)
    return shutil.which("python3.12") or sys.executable


def run(argv, timeout=None, env=None, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=env, cwd=cwd)


def why(proc: subprocess.CompletedProcess) -> str:
    """The line of a failed command's output that says why, in one line."""
    lines = [ln.strip() for ln in (proc.stderr + "\n" + proc.stdout).splitlines() if ln.strip()]
    lines = [ln for ln in lines if "WARNING" not in ln and "notice" not in ln.lower()]
    # "Error: ...", "ERROR: ..." (pip), "ValueError: ..." (a Python traceback's last line)
    headed = [ln for ln in lines if re.match(r"([A-Za-z_.]*Error|ERROR|error|Exception)\b:?", ln)]
    errors = [ln for ln in lines if re.search(r"error|denied|not permitted|failed|no such", ln, re.I)]
    text = (headed or errors or lines or [f"exit status {proc.returncode}"])[-1]
    if "Failed to get process executable name" in text:
        text += " (the process ended before py-spy attached: the workload is shorter than its start-up)"
    return text[:300]


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def cprof_source_hash() -> str:
    h = hashlib.sha256()
    for top in ("core", "counters", "pyext"):
        for path in sorted((ROOT / top).rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts:
                h.update(str(path.relative_to(ROOT)).encode() + b"\0" + path.read_bytes())
    for name in ("meson.build", "meson.options", "pyproject.toml"):
        if (ROOT / name).exists():
            h.update(name.encode() + b"\0" + (ROOT / name).read_bytes())
    return h.hexdigest()


class Venv:
    def __init__(self, base_python: str, smoke: bool, venv_dir: str | None = None):
        self.base = base_python
        self.smoke = smoke
        # "3.14t" for a free-threaded build: its extensions cannot share a venv with 3.14's
        ver = run([base_python, "-c", "import sys, sysconfig; print('%d.%d' % sys.version_info[:2] + "
                   "('t' if sysconfig.get_config_var('Py_GIL_DISABLED') else ''))"]).stdout.strip()
        if not ver:
            raise SystemExit(f"compare.py: error: cannot run the Python '{base_python}'; give another with --python")
        self.version = ver
        self.dir = Path(venv_dir) if venv_dir else HERE / ".venv" / f"py{ver.replace('.', '')}"
        self.python = self.dir / "bin" / "python"
        self.missing: dict[str, str] = {}   # peer or need -> reason
        self.versions: dict[str, str] = {}  # installed package -> version
        self.pip_opts = ["--timeout", "20", "--retries", "1"] if smoke else []
        self.run_env: dict[str, str] = {}   # set in every measured run (PYTHON_GIL)

    def version_tuple(self) -> tuple[int, int]:
        major, minor = self.version.rstrip("t").split(".")
        return int(major), int(minor)

    def pip(self, *args, timeout=900) -> subprocess.CompletedProcess:
        return run([str(self.python), "-m", "pip", *args, *self.pip_opts, "--disable-pip-version-check"],
                   timeout=timeout)

    def has_module(self, module: str) -> bool:
        return run([str(self.python), "-c", f"import {module}"]).returncode == 0

    def create(self) -> None:
        if not self.python.exists():
            log(f"setting up {self.dir} with {self.base}")
            p = run([self.base, "-m", "venv", str(self.dir)])
            if p.returncode != 0:
                raise RuntimeError(f"python -m venv failed: {why(p)}")

    def install_cprof(self, ref: str | None) -> str:
        """Install cprof from the working tree (ref None) or from a commit; return what was
        installed, as a description for the results."""
        stamp = self.dir / "cprof-source.sha256"
        if ref is None:
            digest, what = cprof_source_hash(), git_describe()
        else:
            sha = run(["git", "-C", str(ROOT), "rev-parse", "--verify", f"{ref}^{{commit}}"]).stdout.strip()
            if not sha:
                raise RuntimeError(f"'{ref}' is not a commit of {ROOT}")
            digest, what = f"commit {sha}", f"{sha[:7]} ({ref}, committed tree)"
        if not (stamp.exists() and stamp.read_text() == digest and self.cprof_works() is None):
            with tempfile.TemporaryDirectory(prefix="cprof-src-") as tmp:
                source = str(ROOT)
                if ref is not None:  # a clean export: what others are editing right now stays out
                    archive = subprocess.run(["git", "-C", str(ROOT), "archive", digest.split()[1]],
                                             capture_output=True, check=True).stdout
                    subprocess.run(["tar", "-x", "-C", tmp], input=archive, check=True)
                    source = tmp
                log(f"installing cprof {what} into the bench venv")
                stamp.unlink(missing_ok=True)
                p = self.pip("install", "-q", "--force-reinstall", "--no-deps", source)
                if p.returncode != 0:
                    raise RuntimeError(f"pip install of cprof {what} failed: {why(p)}")
        broken = self.cprof_works()
        if broken:
            raise RuntimeError(f"the cprof installed from {what} does not run: {broken}")
        stamp.write_text(digest)
        return what

    def cprof_works(self) -> str | None:
        p = run([str(self.python), "-m", "cprof", "--list-counters"])
        return None if p.returncode == 0 else why(p)

    def install_peer(self, peer: str) -> None:
        try:
            if peer == "py-spy":
                if not (self.dir / "bin" / "py-spy").exists():
                    p = self.pip("install", "-q", "py-spy")
                    if p.returncode != 0:
                        raise RuntimeError(why(p))
            elif peer == "black":
                self._install_pure_black()
            elif not self.has_module(peer):
                p = self.pip("install", "-q", peer)
                if p.returncode != 0:
                    raise RuntimeError(why(p))
        except (RuntimeError, subprocess.TimeoutExpired) as e:
            self.missing[peer] = f"pip could not install it: {e}"
            return
        if peer != "py-spy" and not self.has_module(peer):
            self.missing[peer] = "installed, but does not import"

    def _install_pure_black(self) -> None:
        """The py3-none-any wheel: the default wheels are compiled with mypyc, which a Python
        profiler sees as a few opaque C calls."""
        probe = run([str(self.python), "-c", "import black, pathlib; "
                     "print(any(pathlib.Path(black.__file__).parent.glob('*.so')))"])
        if probe.returncode == 0 and probe.stdout.strip() == "False":
            return
        with tempfile.TemporaryDirectory() as d:
            p = self.pip("download", "-q", "black", "--no-deps", "--only-binary=:all:", "--platform", "any",
                         "--python-version", "%d.%d" % self.version_tuple(), "-d", d)
            wheels = list(Path(d).glob("black-*.whl"))
            if p.returncode != 0 or not wheels:
                raise RuntimeError(why(p))
            p = self.pip("install", "-q", "--force-reinstall", str(wheels[0]))
            if p.returncode != 0:
                raise RuntimeError(why(p))

    def build_floor(self) -> None:
        if self.version_tuple() < (3, 12):
            self.missing["floor"] = f"sys.monitoring needs Python 3.12+ (this is {self.version})"
            return
        out = self.dir / "floor"
        out.mkdir(exist_ok=True)
        q = run([str(self.python), "-c", "import sysconfig; print(sysconfig.get_paths()['include']); "
                 "print(sysconfig.get_config_var('EXT_SUFFIX'))"])
        include, suffix = q.stdout.split()
        cc = os.environ.get("CC", "cc")
        p = run([cc, "-O2", "-shared", "-fPIC", f"-I{include}", "-o", str(out / f"_benchfloor{suffix}"),
                 str(HERE / "floor" / "_benchfloor.c")])
        if p.returncode != 0:
            self.missing["floor"] = f"the empty C callback did not compile ({cc}): {why(p)}"

    def describe(self) -> None:
        q = run([str(self.python), "-c", "import sys, importlib.metadata as m\n"
                 "for n in ('cprof', 'yappi', 'pyinstrument', 'py-spy', 'black', 'matplotlib'):\n"
                 "    try: print(n, m.version(n))\n"
                 "    except Exception: pass\n"
                 "print('python', sys.version.split()[0] + ('t' if not getattr(sys, '_is_gil_enabled', "
                 "lambda: True)() or __import__('sysconfig').get_config_var('Py_GIL_DISABLED') else ''))"])
        for line in q.stdout.splitlines():
            name, _, version = line.partition(" ")
            self.versions[name] = version
        for module in STDLIB_PROFILERS:
            if not self.has_module(module):
                self.missing[module] = f"not in Python {self.version}'s standard library (3.15+)"
        helptext = run([str(self.python), "-m", "cprof", "--help"]).stdout
        if "--no-compensate" not in helptext:
            self.missing["cprof-nocomp"] = "this cprof has no --no-compensate flag yet"


# ---- running -------------------------------------------------------------------------------

def parse_output(stdout: str) -> dict:
    got = {}
    for line in stdout.splitlines():
        parts = line.split()
        if parts[:1] == ["BENCH_SECONDS"]:
            got["seconds"] = float(parts[1])
        elif parts[:1] == ["BENCH_HALVES"]:
            got["halves"] = tuple(float(x) for x in parts[1:])  # sums, then fastest rounds
        elif parts[:1] == ["BENCH_CPU"]:
            got["cpu"] = float(parts[1])
        elif parts[:1] == ["BENCH_GIL"]:
            got["gil"] = parts[1]  # "on", "off", or "always" (a build with the GIL)
        elif parts[:1] == ["BENCH_SKIP"]:
            got["skip"] = line.split(None, 1)[1]
    return got


def run_cell(venv: Venv, cfg: Config, workload: str, extra: list[str], timeout: float) -> dict:
    """One run of one workload under one configuration, in a scratch folder of its own."""
    with tempfile.TemporaryDirectory(prefix="cprof-bench-") as scratch:
        profile = os.path.join(scratch, "profile.out")
        argv = cfg.argv(profile, [str(HERE / "workloads.py"), workload, *extra])
        env = dict(os.environ)
        env.pop("PYTHONPATH", None)  # the venv's packages only, plus what the config adds
        env.update(PYTHONHASHSEED="0", **venv.run_env, **cfg.env)
        try:
            p = run(argv, timeout=timeout, env=env, cwd=scratch)
        except subprocess.TimeoutExpired:
            return {"error": f"timed out after {timeout:.0f} s"}
        except OSError as e:
            return {"error": f"could not start: {e}"}
        got = parse_output(p.stdout)
        if "skip" in got:
            return {"skip": got["skip"]}
        if p.returncode != 0 or "seconds" not in got:
            return {"error": f"exit {p.returncode}: {why(p)}"}
        if workload == "bias" and cfg.fmt:
            if not os.path.exists(profile):
                return {**got, "extract_error": "the profiler wrote no profile"}
            q = run([str(venv.python), str(HERE / "extract.py"), cfg.fmt, profile], timeout=300)
            if q.returncode != 0:
                got["extract_error"] = why(q)
            else:
                got["reported"] = json.loads(q.stdout)
        return got


def tune_bias(venv: Venv, rounds: int, timeout: float) -> tuple[int, list]:
    """The inline half's iteration count that makes both halves take the same time unprofiled
    (their fastest rounds over three runs: the least disturbed by the rest of the machine)."""
    plain = Config("plain", lambda p, s: [str(venv.python), *s])
    inline, history, rounds = 3 * CALLS_PER_ROUND, [], min(rounds, 10)
    for _ in range(4):
        calls = inl = float("inf")
        for _ in range(3):
            r = run_cell(venv, plain, "bias", ["--inline", str(inline), "--rounds", str(rounds)], timeout)
            if "halves" not in r:
                raise RuntimeError(f"the bias workload failed unprofiled: {r}")
            calls, inl = min(calls, r["halves"][2]), min(inl, r["halves"][3])
        history.append({"inline": inline, "calls_round_s": calls, "inline_round_s": inl,
                        "ratio": calls / inl})
        if abs(calls / inl - 1) < 0.02:
            break
        inline = max(1000, round(inline * calls / inl))
    return inline, history


# ---- tables --------------------------------------------------------------------------------

def ratio(a, b):
    return a / b if a and b else None


def fmt_ratio(x, digits=2):
    return "—" if x is None else f"{x:.{digits}f}"


def summarize(results: dict) -> None:
    cells, configs, workloads = results["cells"], results["configs"], results["workloads"]
    # Ratios are paired: run r of a configuration over run r of plain (or cProfile), the two
    # measured within one rotation, minutes apart at most; the median of those ratios, and
    # their range as the spread.  Another agent's load moves both runs of a pair alike more
    # often than it moves the best of each.
    def paired(cell: dict) -> dict:
        # results.json written before runs were paired has only the best of each cell
        return cell.get("by_rep") or ({"best": cell["best_s"]} if cell.get("best_s") else {})

    for w in workloads:
        base = paired(cells[w].get("plain", {}))
        cp = paired(cells[w].get("cProfile", {}))
        for c in configs:
            cell = cells[w][c]
            mine = paired(cell)
            for key, other in (("x_plain", base), ("x_cProfile", cp)):
                pairs = [mine[r] / other[r] for r in mine if other.get(r)]
                cell[key] = median(pairs)
                cell[key + "_range"] = [min(pairs), max(pairs)] if pairs else None
    par = results["parallel"] = {}
    if "fib" in cells and "fib4" in cells:
        # four times fib's work in fib4: 4 * t(fib) / t(fib4) is the speed-up the threads got,
        # paired per repetition; with the GIL on it stays near 1, free-threaded it nears the cores
        for c in configs:
            one, four = cells["fib"][c].get("by_rep", {}), cells["fib4"][c].get("by_rep", {})
            ups = [4 * one[r] / four[r] for r in four if one.get(r)]
            cpu = cells["fib4"][c].get("cpu_by_rep", {})
            busy = [cpu[r] / four[r] for r in cpu if four.get(r)]  # cores kept busy in fib4
            if ups:
                par[c] = {"speedup": median(ups), "range": [min(ups), max(ups)],
                          "cores": median(busy), "cores_range": [min(busy), max(busy)] if busy else None,
                          "gil": sorted(set(cells["fib4"][c].get("gil", [])))}
    results["floor_ratios"] = []
    if "fib" in cells:
        for floor in ("floor py", "floor cprof-events"):
            fb = cells["fib"].get(floor, {}).get("by_rep", {})
            for c in ("cprof wall", "cprof cpu", "cprof cpu,ctxsw", "cProfile", "profiling.tracing"):
                cb = cells["fib"].get(c, {}).get("by_rep", {})
                pairs = [cb[r] / fb[r] for r in cb if fb.get(r)]
                if pairs:
                    results["floor_ratios"].append({"profiler": c, "floor": floor, "ratio": median(pairs),
                                                    "range": [min(pairs), max(pairs)]})
    # Accuracy.  The unprofiled ratio itself moves by several % from one process to the next on
    # this shared VM, so: the true ratio is the median of the plain runs' ratios; a
    # deterministic profiler's reported ratio is the median of its runs' ratios (one unlucky
    # run does not move it); a sampling profiler's pools its samples over the runs (each run
    # alone has a few dozen samples per half).
    # each plain run's ratio is that of its fastest round of each half: the least disturbed
    per_true = [h[-2] / h[-1] for h in results["true_halves"] if h[-1]]
    true = median(per_true)
    results["true_ratio"] = true
    results["true_ratio_per_rep"] = per_true
    for c, acc in results["accuracy"].items():
        reps = acc["per_rep"]
        if not reps:
            continue
        rep_calls = sum(r["calls_half"] for r in reps)
        rep_inline = sum(r["inline_half"] for r in reps)
        if not rep_calls or not rep_inline:
            acc["error"] = (f"no {acc['per_rep'][0].get('unit', 'time')} landed in "
                            f"{'inline_half' if rep_calls else 'calls_half'}")
            continue
        per = [r["calls_half"] / r["inline_half"] if r["inline_half"] else None for r in reps]
        sampling = c in results.get("sampling", ())
        acc["statistic"] = "pooled" if sampling else "median"
        acc["reported_ratio"] = ratio(rep_calls, rep_inline) if sampling else median(
            [x for x in per if x is not None])
        acc["accuracy"] = ratio(acc["reported_ratio"], true)
        acc["per_rep_accuracy"] = [ratio(x, true) for x in per]


def median(xs):
    xs = sorted(xs)
    if not xs:
        return None
    mid = len(xs) // 2
    return xs[mid] if len(xs) % 2 else (xs[mid - 1] + xs[mid]) / 2


def fmt_cell(cell: dict) -> str:
    """The paired median ratio to plain and its range: 1.85 [1.80-1.92]."""
    r = cell.get("x_plain_range")
    spread = f" [{r[0]:.2f}-{r[1]:.2f}]" if r and r[0] != r[1] else ""
    return fmt_ratio(cell.get("x_plain")) + spread


def gil_note(results: dict) -> str | None:
    """Which configurations ran with the GIL on, on a free-threaded build."""
    states: dict[str, set] = {}
    for w in results["workloads"]:
        for c in results["configs"]:
            states.setdefault(c, set()).update(results["cells"][w][c].get("gil", []))
    if not any(s & {"on", "off"} for s in states.values()):
        return None
    on = [c for c, s in states.items() if "on" in s]
    off = [c for c, s in states.items() if s == {"off"}]
    env = results["meta"].get("run_env", {})
    return (f"GIL (free-threaded build{', ' + ', '.join(f'{k}={v}' for k, v in env.items()) if env else ''}): "
            f"on in {', '.join(on) or 'none'}; off in {', '.join(off) or 'none'}")


def status_text(cell: dict) -> str | None:
    if cell.get("status") in ("MISSING", "FAILED", "SKIPPED"):
        return cell["status"]
    return None


def text_tables(results: dict) -> str:
    cells, configs, workloads = results["cells"], results["configs"], results["workloads"]
    m = results["meta"]
    out = [f"Python {m['python_version']} ({m['hook']}), {m['machine']}, {m['date']}, "
           f"paired medians of {m['reps']}{' (SMOKE: tiny workloads, not a measurement)' if m['smoke'] else ''}",
           f"cprof {m['cprof_commit']}; peers: " + ", ".join(f"{k} {v}" for k, v in m["versions"].items()
                                                           if k not in ("python", "cprof")),
           ""]
    width = max(len(c) for c in configs) + 2
    colw = 28
    out.append("Overhead: workload time / unprofiled time [range]  (/ cProfile's time), "
               "medians of paired runs")
    out.append(f"{'':<{width}}" + "".join(f"{w:>{colw}}" for w in workloads))
    row = f"{'plain (ms)':<{width}}"
    for w in workloads:
        b = cells[w]["plain"].get("best_s")
        row += f"{(f'{b * 1e3:.1f}' if b else status_text(cells[w]['plain']) or '—'):>{colw}}"
    out.append(row)
    for c in configs:
        if c == "plain":
            continue
        row = f"{c:<{width}}"
        for w in workloads:
            cell = cells[w][c]
            st = status_text(cell)
            text = st if st else f"{fmt_cell(cell)} ({fmt_ratio(cell['x_cProfile'])})"
            row += f"{text:>{colw}}"
        out.append(row)
    if "bias" in cells:
        out.append("")
        out.append(f"Accuracy on the bias workload ({CALLS_PER_ROUND:,} tiny calls vs the same work inline, "
                   f"{results['bias']['rounds']} rounds, inline={results['bias']['inline']:,}):")
        out.append(f"true unprofiled ratio calls_half/inline_half = {fmt_ratio(results['true_ratio'], 3)}")
        out.append(f"{'':<{width}}{'reported':>10}{'reported/true':>15}  per repetition")
        for c in configs:
            if c not in results["accuracy"]:
                continue
            acc = results["accuracy"][c]
            st = status_text(cells["bias"][c]) if "bias" in cells else None
            if st or acc.get("accuracy") is None:
                out.append(f"{c:<{width}}{st or 'FAILED':>10}   {acc.get('error', '')}")
                continue
            per = " ".join(fmt_ratio(x) for x in acc["per_rep_accuracy"])
            out.append(f"{c:<{width}}{fmt_ratio(acc['reported_ratio']):>10}{fmt_ratio(acc['accuracy']):>15}  {per}")
    par = results.get("parallel")
    if par:
        out.append("")
        out.append("fib4 (fib in 4 threads) / fib: speed-up of the threads, 4 * t(fib) / t(fib4), and the "
                   f"cores fib4 kept busy (process CPU time / wall time), on {results['meta'].get('cpus', '?')} CPUs")
        for c, x in par.items():
            cores = (f"  cores {x['cores']:.2f} [{x['cores_range'][0]:.2f}-{x['cores_range'][1]:.2f}]"
                     if x.get("cores") is not None else "")
            out.append(f"  {c:<{width}}{x['speedup']:.2f} [{x['range'][0]:.2f}-{x['range'][1]:.2f}]" + cores
                       + (f"  GIL {'/'.join(x['gil'])}" if x["gil"] else ""))
    note = gil_note(results)
    if note:
        out.append("")
        out.append(note)
    floors = results.get("floor_ratios")
    if floors:
        out.append("")
        out.append("fib, ratio to the empty sys.monitoring callback: " +
                   ", ".join(f"{x['profiler']} / {x['floor']} = {fmt_ratio(x['ratio'])}" for x in floors))
    if results["problems"]:
        out.append("")
        out.append("MISSING / FAILED / SKIPPED:")
        out.extend(f"  {k}: {v}" for k, v in results["problems"].items())
    return "\n".join(out)


def markdown_tables(results: dict) -> str:
    cells, configs, workloads = results["cells"], results["configs"], results["workloads"]
    md = ["| profiler | " + " | ".join(workloads) + " |", "|---|" + "---|" * len(workloads)]
    md.append("| no profiler (ms) | " + " | ".join(
        f"{cells[w]['plain']['best_s'] * 1e3:.1f}" if cells[w]["plain"].get("best_s") else "—"
        for w in workloads) + " |")
    for c in configs:
        if c == "plain":
            continue
        row = []
        for w in workloads:
            cell = cells[w][c]
            st = status_text(cell)
            row.append(st if st else f"{fmt_cell(cell)} ({fmt_ratio(cell['x_cProfile'])})")
        md.append(f"| {c} | " + " | ".join(row) + " |")
    par = results.get("parallel")
    if par:
        md.append("")
        md.append("| profiler | fib4 speed-up, 4·t(fib)/t(fib4) | cores busy in fib4 | GIL in fib4 |")
        md.append("|---|---|---|---|")
        for c, x in par.items():
            cores = (f"{x['cores']:.2f} [{x['cores_range'][0]:.2f}-{x['cores_range'][1]:.2f}]"
                     if x.get("cores") is not None else "—")
            md.append(f"| {c} | {x['speedup']:.2f} [{x['range'][0]:.2f}-{x['range'][1]:.2f}] | {cores} | "
                      f"{'/'.join(x['gil']) or '?'} |")
    if "bias" in cells:
        md.append("")
        md.append(f"| profiler | reported ratio | reported / true (true = {fmt_ratio(results['true_ratio'], 3)}) |")
        md.append("|---|---|---|")
        for c in configs:
            acc = results["accuracy"].get(c)
            if acc is None:
                continue
            if acc.get("accuracy") is None:
                md.append(f"| {c} | {status_text(cells['bias'][c]) or 'FAILED'} | {acc.get('error', '')} |")
            else:
                md.append(f"| {c} | {fmt_ratio(acc['reported_ratio'])} | {fmt_ratio(acc['accuracy'])} |")
    return "\n".join(md) + "\n"


def write_outputs(results: dict, out_dir: Path, chart_python: str | None, no_chart_reason=None) -> None:
    text = text_tables(results)
    print(text)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "results.json").write_text(json.dumps(results, indent=1, default=list))
    (out_dir / "table.md").write_text(markdown_tables(results))
    (out_dir / "table.txt").write_text(text + "\n")
    png = out_dir / "overhead.png"
    png.unlink(missing_ok=True)  # never leave an older run's chart beside these results
    if chart_python is None:
        print(f"no chart: matplotlib is MISSING ({no_chart_reason})")
    else:
        p = run([chart_python, str(HERE / "chart.py"), str(out_dir / "results.json"), str(png)], timeout=300)
        if p.returncode != 0:
            print(f"no chart: chart.py failed: {why(p)}")
    elapsed = results["meta"].get("elapsed_s")
    print(f"wrote {out_dir}/results.json, table.md, table.txt{', overhead.png' if png.exists() else ''}"
          + (f" in {elapsed:.0f} s" if elapsed else ""))


def report_again(path: str, out: str | None) -> int:
    """--report: the tables and chart again from a results.json (after changing how they are drawn)."""
    results = json.loads(Path(path).read_text())
    summarize(results)
    chart_python = results["meta"]["python"]
    if not Path(chart_python).exists() or run([chart_python, "-c", "import matplotlib"]).returncode:
        chart_python = None
    write_outputs(results, Path(out) if out else Path(path).parent, chart_python,
                  "the venv that measured these results has no matplotlib")
    return 0


# ---- main ----------------------------------------------------------------------------------

def select(names: list[str], patterns: str | None) -> list[str]:
    if not patterns:
        return list(names)
    pats = [p.strip() for p in patterns.split(",") if p.strip()]
    # a configuration name may itself hold commas (cprof cpu,ctxsw): match whole names first
    whole = [n for n in names if n == patterns.strip()]
    if whole:
        return whole
    return [n for n in names if any(fnmatch.fnmatchcase(n, p) for p in pats)]


def machine_description() -> str:
    model = ""
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    clock = ""
    try:
        clock = Path("/sys/devices/system/clocksource/clocksource0/current_clocksource").read_text().strip()
    except OSError:
        pass
    return f"{os.cpu_count()} vCPU {model}, Linux {platform.release()}, clocksource {clock or '?'}"


def git_describe() -> str:
    head = run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"]).stdout.strip() or "?"
    dirty = run(["git", "-C", str(ROOT), "status", "--porcelain", "--", "core", "counters", "pyext",
                 "meson.build", "pyproject.toml"]).stdout.strip()
    return head + (" + uncommitted changes in core/counters/pyext" if dirty else "")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog="\n".join(__doc__.splitlines()[2:]))
    ap.add_argument("--reps", type=int, default=5, help="repetitions, best kept (default 5)")
    ap.add_argument("--python", default=None, help="the Python to measure (default: 3.12)")
    ap.add_argument("--out", default=None, help="output folder (default benches/results/)")
    ap.add_argument("--configs", help="comma-separated shell patterns of configurations "
                    "(e.g. 'plain,cProfile,cprof*'); default: all")
    ap.add_argument("--workloads", help=f"comma-separated patterns among {','.join(WORKLOADS)}")
    ap.add_argument("--rounds", type=int, default=None, help="bias workload rounds (default 30)")
    ap.add_argument("--timeout", type=float, default=None, help="seconds per run (default 600)")
    ap.add_argument("--smoke", action="store_true", help="a quick pass for CI: tiny workloads, 1 repetition")
    ap.add_argument("--cprof", metavar="REF", help="measure the cprof of this commit (e.g. HEAD), "
                    "exported clean, instead of the working tree as it is now")
    ap.add_argument("--venv", metavar="DIR", help="the bench venv to set up and use "
                    "(default benches/.venv/pyXY, pyXYt for a free-threaded build)")
    ap.add_argument("--python-gil", choices=("0", "1"), help="set PYTHON_GIL in every measured run "
                    "(free-threaded builds: 0 keeps the GIL off even if an extension does not declare "
                    "Py_mod_gil)")
    ap.add_argument("--list", action="store_true", help="list configurations and workloads, and exit")
    ap.add_argument("--report", metavar="RESULTS_JSON", help="print and draw a results.json again, run nothing")
    a = ap.parse_args()
    if a.report:
        return report_again(a.report, a.out)

    smoke = a.smoke
    reps = 1 if smoke and a.reps == 5 else a.reps
    rounds = a.rounds or (2 if smoke else 30)
    timeout = a.timeout or (30 if smoke else 600)
    out_dir = Path(a.out) if a.out else HERE / "results" / ("smoke" if smoke else "")
    python = a.python or default_python()
    t_start = time.time()

    venv = Venv(python, smoke, a.venv)
    if a.python_gil:
        venv.run_env["PYTHON_GIL"] = a.python_gil
    all_configs = make_configs(venv.dir)
    if a.list:
        print("configurations: " + "; ".join(c.name for c in all_configs))
        print("workloads: " + ", ".join(WORKLOADS))
        return 0
    names = select([c.name for c in all_configs], a.configs)
    if "plain" not in names:
        names.insert(0, "plain")  # every ratio is to it
    configs = [c for c in all_configs if c.name in names]
    workloads = select(WORKLOADS, a.workloads)
    if not workloads:
        raise SystemExit(f"compare.py: error: no workload matches '{a.workloads}'; choose among {', '.join(WORKLOADS)}")

    # -- set-up: a failure here is reported per configuration, not silently dropped
    fallback = None
    try:
        venv.create()
        cprof_what = venv.install_cprof(a.cprof)
    except (RuntimeError, subprocess.TimeoutExpired, subprocess.CalledProcessError) as e:
        if not smoke:
            raise SystemExit(f"compare.py: error: cannot set up the bench venv: {e}")
        fallback = str(e)
        cprof_what = f"{git_describe()}, as installed in {python}"
    if fallback is not None:
        # smoke only: measure what the chosen Python itself has (tests/run.sh installed cprof there)
        log(f"compare.py: the bench venv could not be set up ({fallback}); "
            f"smoke pass runs with {python} itself, without the peers")
        venv.dir = Path(tempfile.mkdtemp(prefix="cprof-bench-venv-"))
        (venv.dir / "bin").mkdir()
        os.symlink(python, venv.dir / "bin" / "python")
        venv.python = venv.dir / "bin" / "python"
        for peer in PEERS:
            venv.missing[peer] = f"not installed: the bench venv could not be set up ({fallback})"
        all_configs = make_configs(venv.dir)
        configs = [c for c in all_configs if c.name in names]
    else:
        needed = {c.needs for c in configs if c.needs in PEERS}
        if "black" in workloads:
            needed.add("black")
        needed.add("matplotlib")
        for peer in PEERS:
            if peer in needed:
                venv.install_peer(peer)
    if any(c.needs == "floor" for c in configs):
        venv.build_floor()
    venv.describe()

    problems: dict[str, str] = {}
    if not a.configs:  # by default, leave out what this Python's standard library does not have
        for c in [c for c in configs if c.needs in STDLIB_PROFILERS and c.needs in venv.missing]:
            problems[c.name] = f"NOT RUN: {venv.missing[c.needs]}"
            configs.remove(c)
    fatal: list[str] = []  # problems that fail the harness: plain, cProfile or cprof did not run
    for c in configs:
        if c.needs and c.needs in venv.missing and c.name not in problems:
            problems[c.name] = f"MISSING: {venv.missing[c.needs]}"
    log("configurations: " + ", ".join(c.name + (" (MISSING)" if c.name in problems else "") for c in configs))

    bias = {"rounds": rounds, "calls_per_round": CALLS_PER_ROUND, "inline": None, "tuning": []}
    if "bias" in workloads:
        try:
            bias["inline"], bias["tuning"] = tune_bias(venv, rounds, timeout)
            log(f"bias tuned: inline half = {bias['inline']:,} iterations "
                f"(unprofiled ratio {bias['tuning'][-1]['ratio']:.3f})")
        except RuntimeError as e:
            problems["bias workload"] = f"FAILED: {e}"
            fatal.append("bias workload")
            workloads.remove("bias")

    cells = {w: {c.name: {"times": [], "errors": []} for c in configs} for w in workloads}
    accuracy = {c.name: {"per_rep": [], "errors": []} for c in configs if c.fmt}
    true_halves = []
    runnable = [c for c in configs if c.name not in problems]
    hung: dict[str, str] = {}
    for rep in range(reps):
        for wi, w in enumerate(workloads):
            extra = (["--smoke"] if smoke else []) + \
                    (["--inline", str(bias["inline"]), "--rounds", str(rounds)] if w == "bias" else [])
            k = (rep + wi) % len(runnable)  # rotate: no configuration always runs first
            for cfg in runnable[k:] + runnable[:k]:
                cell = cells[w][cfg.name]
                if cell.get("skip"):
                    continue
                if cfg.name in hung:  # smoke: one time-out is enough, CI has a budget
                    cell["errors"].append(hung[cfg.name])
                    continue
                r = run_cell(venv, cfg, w, extra, timeout)
                if "skip" in r:
                    cell["skip"] = r["skip"]
                elif "error" in r:
                    cell["errors"].append(r["error"])
                    if smoke and r["error"].startswith("timed out"):
                        hung[cfg.name] = f"not run: it {r['error']} on {w}"
                else:
                    cell["times"].append(r["seconds"])
                    cell.setdefault("by_rep", {})[str(rep)] = r["seconds"]  # paired with plain's run of this rep
                    if "cpu" in r:
                        cell.setdefault("cpu_by_rep", {})[str(rep)] = r["cpu"]
                    if "gil" in r:
                        cell.setdefault("gil", []).append(r["gil"])
                    if w == "bias":
                        if cfg.name == "plain":
                            true_halves.append(r["halves"])
                        if cfg.fmt:
                            if "reported" in r:
                                accuracy[cfg.name]["per_rep"].append(r["reported"])
                            else:
                                accuracy[cfg.name]["errors"].append(r.get("extract_error", "?"))
            log(f"rep {rep + 1}/{reps} {w}: " + "  ".join(
                f"{c.name}={cells[w][c.name]['times'][-1] * 1e3:.0f}ms" if cells[w][c.name]["times"]
                else f"{c.name}=—" for c in runnable))

    # -- cell status
    for w in workloads:
        for c in configs:
            cell = cells[w][c.name]
            if c.name in problems:
                cell["status"], cell["reason"] = "MISSING", problems[c.name]
            elif cell.get("skip"):
                cell["status"], cell["reason"] = "SKIPPED", cell["skip"]
                problems.setdefault(f"{w} workload", f"SKIPPED: {cell['skip']}")
            elif not cell["times"]:
                cell["status"], cell["reason"] = "FAILED", cell["errors"][-1]
                problems[f"{c.name} on {w}"] = f"FAILED: {cell['errors'][-1]}"
                if must_run(c.name):
                    fatal.append(f"{c.name} on {w}")
            else:
                cell["status"] = "ok"
                cell["best_s"] = min(cell["times"])
                if cell["errors"]:
                    problems[f"{c.name} on {w}"] = (f"failed {len(cell['errors'])} of {reps} runs "
                                                    f"(best of the rest kept): {cell['errors'][-1]}")
    for c, acc in accuracy.items():
        if acc["errors"] and not acc["per_rep"]:
            acc["error"] = acc["errors"][-1]
            problems[f"{c} accuracy"] = f"FAILED: could not read its profile: {acc['errors'][-1]}"

    hook = "sys.monitoring" if venv.version_tuple() >= (3, 12) else "setprofile"
    results = {
        "meta": {"python": str(venv.python), "python_version": venv.versions.get("python", venv.version),
                 "hook": hook, "machine": machine_description(),
                 "date": datetime.date.today().isoformat(), "reps": reps, "smoke": smoke,
                 "cpus": os.cpu_count(), "run_env": venv.run_env,
                 "cprof_commit": cprof_what, "versions": venv.versions,
                 "command": sys.argv, "elapsed_s": None},
        "configs": [c.name for c in configs], "workloads": workloads,
        "cells": cells, "accuracy": accuracy, "bias": bias, "true_halves": true_halves,
        "sampling": [c.name for c in configs if c.fmt in ("pyisession", "pyspy-raw", "collapsed")],
        "problems": problems,
    }
    summarize(results)
    for c, acc in accuracy.items():
        if acc.get("error") and cells.get("bias", {}).get(c, {}).get("status") == "ok":
            problems.setdefault(f"{c} accuracy", f"FAILED: {acc['error']}")
            if must_run(c):
                fatal.append(f"{c} accuracy")
    results["meta"]["elapsed_s"] = round(time.time() - t_start, 1)
    write_outputs(results, out_dir, None if "matplotlib" in venv.missing else str(venv.python),
                  venv.missing.get("matplotlib"))

    if fatal:
        print("compare.py: FAILED: " + "; ".join(f"{k}: {problems[k]}" for k in fatal))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
