"""cprof next to the other Python profilers: overhead, start-up, memory, instructions, accuracy.

    python3 benches/compare.py [--reps 5] [--python PATH] [--out DIR] [--modes MODES]
                               [--configs PATTERNS] [--workloads PATTERNS] [--smoke]
                               [--venv DIR] [--python-gil 0|1] [--instr-n N1,N2] [--json-mb MB]
    python3 benches/compare.py --report RESULTS_JSON [RESULTS_JSON...] [--out DIR]

1. Sets up a venv for the chosen Python (default: pyenv's 3.12.1, else python3.12, else
   this interpreter) in benches/.venv/pyXY (pyXYt when free-threaded; --venv DIR), and installs into it: cprof from this checkout
   (re-installed whenever its sources change; --cprof HEAD takes a clean export of a commit
   instead, when others are editing the working tree), yappi, pyinstrument, py-spy, black (its pure
   Python wheel, so that black runs as Python code a profiler can see) and matplotlib.  A
   peer that cannot be installed is reported as MISSING with pip's reason, never dropped.
   3.15's profiling.tracing and profiling.sampling run where the standard library has them.
2. Builds floor/_benchfloor.c, an empty C callback, for the sys.monitoring floor (3.12+), and
   launch.c, through which every measured process runs: it reports the process tree's wall
   time (fork to exit), CPU time and peak RSS (wait4), which a child forked from this Python
   could not (it would keep this Python's peak RSS through exec).
3. Tunes the bias workload's inline half so that both halves take the same time unprofiled.
4. --modes, comma-separated (default all three):
   workloads     every workload (workloads.py) under every configuration, each run in a fresh
                 interpreter that times only the workload (perf_counter inside the process,
                 printed on a line this script parses, with whether the GIL was on), and
                 the whole process as launch.c saw it: time, CPU time, peak RSS.
                 Configurations interleaved and rotated, --reps repetitions; each ratio is the
                 median of the paired ratios (run r of a configuration over run r of plain,
                 measured in the same rotation), with their range: these machines are shared
                 and noisy.  On the real programs (black, json) also the time a profiler adds
                 over the time cProfile adds, paired per repetition (the issue's goal 2).
   startup       an empty script under each profiler, whole process: wall and CPU time, what
                 it adds to the unprofiled run of the same repetition, peak RSS; and `import
                 cprof` / `import cProfile` and their first enable(), timed in fresh interpreters.
   instructions  per call of naive fib, counted by callgrind (valgrind): fib(N2) minus
                 fib(N1) over the difference of their calls, so that start-up and writing the
                 profile cancel (the intercept is what those cost); load does not move these
                 counts.  Under valgrind glibc registers no rseq, so cprof's cpu and ctxsw
                 take their slow path there: each configuration is also timed natively (ns a
                 call on fib(--native-n), paired with the unprofiled run), and the table says
                 which counts to read as time (CPU time of the process: what waiting for a
                 CPU on a shared machine moves least).  Without valgrind: said, native only.
   requests      (not in the default) the request-loop workload of request_loop.py: a handler
                 (JSON parsing, a little computation, a write and read on a pipe) called
                 thousands of times, under plain, cprof, sample=0.01, a 1 s window every
                 60 s, cProfile and 3.15's profiling.sampling (run and attach); its
                 configurations are request_loop.configs(), one line each.
   --python-gil sets PYTHON_GIL in every run.
5. Prints the tables (overhead; real programs' whole process, added time and peak RSS; peak RSS
   of every workload; start-up; instructions; fib4's parallelism; accuracy: each profiler's
   calls_half/inline_half ratio (the median over the repetitions; sampling profilers' samples
   pooled over them) over the true ratio (the median over the unprofiled runs of their fastest
   rounds' ratio)), and writes results.json, table.md (each table headed by the command that
   made it), table.txt and overhead.png into --out (default benches/results/;
   benches/results/smoke/ with --smoke).  --report RESULTS_JSON prints and draws saved results
   again; with several files, one markdown table per kind, a row group per file (the README's).

--smoke (CI): tiny workloads, one repetition, two configurations' instruction counts (skipped,
said so, without valgrind), pip with short timeouts; if the venv or a peer cannot be set up it
says which configurations it skipped and goes on with what it has.
Exit status: 0 when plain, cProfile and every cprof configuration ran every workload.
"""
from __future__ import annotations

import argparse
import atexit
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
WORKLOADS = ["fib", "fib4", "heavy", "io", "alloc", "threads", "black", "json", "bias", "libheavy"]
MODES = ["workloads", "startup", "instructions", "requests"]
# smoke: the instruction counts of two configurations only (each is two valgrind runs, and
# cprof's calibration alone is hundreds of millions of instructions: --no-compensate has none)
SMOKE_INSTRUCTIONS = ["plain", "cprof cpu --no-compensate"]
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
        # only the program's own code (libheavy is its case: benches/trace_overhead.py)
        Config("cprof cpu --trace=app", cprof("cpu", "--trace=app"), "cprof"),
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


class Spawned(subprocess.CompletedProcess):
    """A finished measured run: its output, plus what the kernel says of the whole process
    (wait4's rusage: the child and every descendant it reaped, so py-spy's run counts the
    Python it ran too)."""
    wall: float     # seconds from fork to reaping: start-up, imports, workload, writing, exit
    cpu: float      # user + system CPU seconds of the process tree
    maxrss: float   # peak resident set of the largest process in the tree, MiB


# benches/launch.c, built by Venv.build_launcher: every measured process is forked from it, so
# that its peak RSS is its own (a child forked from this Python keeps this Python's peak
# through exec); None if it could not be built: then peak RSS reads at least the harness's own
LAUNCHER: str | None = None


def spawn(argv, timeout: float, env=None, cwd=None) -> Spawned:
    """subprocess.run, through the launcher (or reaped with os.wait4) so that each run's own peak
    RSS and CPU time are known (getrusage(RUSAGE_CHILDREN) only gives the largest child so far).
    Its own session: a time-out kills the whole tree (py-spy's Python too)."""
    import threading
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err, \
            tempfile.NamedTemporaryFile(prefix="cprof-rusage-") as report:
        full = [LAUNCHER, report.name, *argv] if LAUNCHER else list(argv)
        t0 = time.perf_counter()
        p = subprocess.Popen(full, stdout=out, stderr=err, stdin=subprocess.DEVNULL, env=env, cwd=cwd,
                             start_new_session=True)
        killed = []

        def kill():
            killed.append(True)
            try:
                os.killpg(p.pid, 9)
            except OSError:
                pass
        timer = threading.Timer(timeout, kill) if timeout else None
        if timer:
            timer.start()
        try:
            while True:
                try:
                    _, status, ru = os.wait4(p.pid, 0)
                    break
                except InterruptedError:
                    continue
        finally:
            if timer:
                timer.cancel()
        wall = time.perf_counter() - t0
        p.returncode = os.waitstatus_to_exitcode(status)  # reaped here: Popen must not wait again
        try:
            os.killpg(p.pid, 9)  # what the run left behind (a daemon it started) goes with it
        except OSError:
            pass
        if killed:
            raise subprocess.TimeoutExpired(argv, timeout)
        out.seek(0)
        err.seek(0)
        r = Spawned(argv, p.returncode, out.read().decode(errors="replace"), err.read().decode(errors="replace"))
        r.wall, r.cpu, r.maxrss = wall, ru.ru_utime + ru.ru_stime, ru.ru_maxrss / 1024  # Linux: KiB
        if LAUNCHER:
            fields = Path(report.name).read_text().split()
            if len(fields) == 3:
                r.wall, r.cpu, r.maxrss = float(fields[0]), float(fields[1]), int(fields[2]) / 1024
            elif r.returncode == 0:
                r.returncode = 127
                r.stderr += "\nlaunch: wrote no report"
    return r


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

    def build_launcher(self) -> None:
        """benches/launch.c, which every measured run goes through (see LAUNCHER)."""
        global LAUNCHER
        exe = self.dir / "launch"
        src = HERE / "launch.c"
        if not exe.exists() or exe.stat().st_mtime < src.stat().st_mtime:
            cc = os.environ.get("CC", "cc")
            p = run([cc, "-O2", "-o", str(exe), str(src)])
            if p.returncode != 0:
                self.missing["launcher"] = (f"benches/launch.c did not compile ({cc}: {why(p)}): peak RSS "
                                            "reads at least this harness's own")
                log(f"compare.py: {self.missing['launcher']}")
                return
        LAUNCHER = str(exe)

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
            p = spawn(argv, timeout=timeout, env=env, cwd=scratch)
        except subprocess.TimeoutExpired:
            return {"error": f"timed out after {timeout:.0f} s"}
        except OSError as e:
            return {"error": f"could not start: {e}"}
        got = parse_output(p.stdout)
        if "skip" in got:
            return {"skip": got["skip"]}
        if p.returncode != 0 or "seconds" not in got:
            return {"error": f"exit {p.returncode}: {why(p)}"}
        got.update(proc_wall=p.wall, proc_cpu=p.cpu, maxrss=p.maxrss)
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


# ---- start-up: an empty script, the whole process ------------------------------------------

IMPORT_PROBE = """import sys, time
c0, t0 = time.process_time(), time.perf_counter()
import {module}
t1, c1 = time.perf_counter(), time.process_time()
{make}
c2, t2 = time.process_time(), time.perf_counter()
p.enable()
t3, c3 = time.perf_counter(), time.process_time()
p.disable()
print("BENCH_IMPORT", t1 - t0, t3 - t2, c1 - c0, c3 - c2)
"""
IMPORT_PROBES = {  # what is timed: `import MODULE`, then the first enable() of a profile
    "cprof": ("cprof", "p = cprof.Profile()"),  # default counters cpu,wall, as the CLI
    "cProfile": ("cProfile", "p = cProfile.Profile()"),
}


def startup_configs(configs: list[Config]) -> list[Config]:
    """The profilers, run on an empty script (the floors are no profilers: left out), and the
    first cprof configuration again without its calibration cache (a first run on a machine)."""
    out = [c for c in configs if not c.name.startswith("floor")]
    first = next((c for c in out if c.name.startswith("cprof")), None)
    if first is not None:
        out.insert(out.index(first) + 1, Config(first.name + " CPROF_NO_CACHE=1", first.argv, first.fmt,
                                                first.needs, {**first.env, "CPROF_NO_CACHE": "1"}))
    return out


def run_startup(venv: Venv, configs: list[Config], reps: int, timeout: float, problems: dict) -> dict:
    """Each configuration on an empty script, whole process (fork to reaping) wall and CPU time
    and peak RSS, interleaved and rotated like the workloads; then `import cprof` and the first
    enable() timed inside fresh interpreters."""
    res = {"configs": {c.name: {"wall": {}, "cpu": {}, "maxrss": {}, "errors": []} for c in configs},
           "imports": {k: {"import": [], "enable": [], "import_cpu": [], "enable_cpu": [], "errors": []}
                       for k in IMPORT_PROBES}}
    with tempfile.TemporaryDirectory(prefix="cprof-bench-startup-") as scratch:
        empty = os.path.join(scratch, "empty.py")
        Path(empty).write_text("")
        for rep in range(reps):
            k = rep % len(configs)
            for cfg in configs[k:] + configs[:k]:
                cell = res["configs"][cfg.name]
                env = dict(os.environ)
                env.pop("PYTHONPATH", None)
                env.update(PYTHONHASHSEED="0", **venv.run_env, **{k2: v for k2, v in cfg.env.items()
                                                                  if k2 != "BENCH_SETTLE"})
                try:
                    p = spawn(cfg.argv(os.path.join(scratch, "profile.out"), [empty]), timeout, env, scratch)
                except (subprocess.TimeoutExpired, OSError) as e:
                    cell["errors"].append(f"timed out after {timeout:.0f} s" if isinstance(
                        e, subprocess.TimeoutExpired) else f"could not start: {e}")
                    continue
                if p.returncode != 0:
                    cell["errors"].append(f"exit {p.returncode}: {why(p)}")
                    continue
                cell["wall"][str(rep)], cell["cpu"][str(rep)], cell["maxrss"][str(rep)] = p.wall, p.cpu, p.maxrss
            for name, (module, make) in IMPORT_PROBES.items():
                probe = res["imports"][name]
                q = run([str(venv.python), "-c", IMPORT_PROBE.format(module=module, make=make)],
                        timeout=timeout, env=dict(os.environ, **venv.run_env), cwd=scratch)
                got = [ln.split()[1:] for ln in q.stdout.splitlines() if ln.startswith("BENCH_IMPORT")]
                if q.returncode != 0 or not got:
                    probe["errors"].append(f"exit {q.returncode}: {why(q)}")
                    continue
                for key, x in zip(("import", "enable", "import_cpu", "enable_cpu"), got[0]):
                    probe[key].append(float(x))
            log(f"start-up rep {rep + 1}/{reps}: " + "  ".join(
                f"{c.name}={res['configs'][c.name]['wall'][str(rep)] * 1e3:.0f}ms"
                if str(rep) in res["configs"][c.name]["wall"] else f"{c.name}=—" for c in configs))
    summarize_startup(res, problems)
    return res


def summarize_startup(res: dict, problems: dict) -> None:
    base = res["configs"].get("plain", {}).get("wall", {})
    for name, cell in res["configs"].items():
        if not cell["wall"]:
            cell["status"] = "FAILED"
            cell["reason"] = cell["errors"][-1] if cell["errors"] else "?"
            problems[f"{name} start-up"] = f"FAILED: {cell['reason']}"
            continue
        cell["status"] = "ok"
        cell["wall_ms"] = median(cell["wall"].values()) * 1e3
        cell["cpu_ms"] = median(cell["cpu"].values()) * 1e3
        cell["maxrss_mib"] = median(cell["maxrss"].values())
        added = [(cell["wall"][r] - base[r]) * 1e3 for r in cell["wall"] if r in base]
        cell["added_ms"] = median(added)
        cell["added_range"] = [min(added), max(added)] if added else None
        base_cpu = res["configs"].get("plain", {}).get("cpu", {})
        added = [(cell["cpu"][r] - base_cpu[r]) * 1e3 for r in cell["cpu"] if r in base_cpu]
        cell["cpu_added_ms"] = median(added)
        cell["cpu_added_range"] = [min(added), max(added)] if added else None
    for probe in res["imports"].values():
        for key in ("import", "enable", "import_cpu", "enable_cpu"):
            xs = probe.get(key, [])
            probe[key + "_ms"] = median(xs) * 1e3 if xs else None
            probe[key + "_range"] = [min(xs) * 1e3, max(xs) * 1e3] if xs else None


# ---- instructions per call: callgrind ------------------------------------------------------

# timed in CPU time of the process (user + system: ctxsw's getrusage is in the kernel): on a
# shared machine the wall time of 30 ms of fib is mostly how long it waited for a CPU
FIB_SCRIPT = """import sys, time
def fib(n):
    return n if n < 2 else fib(n - 1) + fib(n - 2)
t0 = time.process_time()
fib(int(sys.argv[1]))
t1 = time.process_time()
print("BENCH_SECONDS", t1 - t0)
"""
# Under valgrind glibc registers no rseq area, so cprof's cpu and ctxsw counters cannot see a
# thread leave the CPU and take their slow path (a system call at every reading): their
# instruction counts there are not what they cost natively.  They are timed natively instead.
SLOW_UNDER_VALGRIND = re.compile(r"\b(cpu|ctxsw)\b")


def fib_calls(n: int) -> int:
    a, b = 0, 1  # F(0), F(1)
    for _ in range(n + 1):
        a, b = b, a + b
    return 2 * a - 1  # calls of naive fib(n) = 2 F(n+1) - 1


def instruction_configs(configs: list[Config]) -> list[Config]:
    """The deterministic profilers and the floors: a sampler reads another process, which
    valgrind's serialized, 50x slower run does not resemble."""
    return [c for c in configs if c.fmt not in ("pyisession", "pyspy-raw", "collapsed")]


def callgrind(argv: list[str], env: dict, cwd: str, timeout: float) -> int:
    p = run(["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", *argv],
            timeout=timeout, env=env, cwd=cwd)
    m = re.search(r"Collected\s*:\s*(\d+)", p.stderr)
    if p.returncode != 0 or not m:
        last = [ln for ln in p.stderr.splitlines() if ln.strip() and not ln.startswith("==")]
        raise RuntimeError(f"exit {p.returncode}: {(last or p.stderr.splitlines() or ['?'])[-1][:200]}")
    return int(m.group(1))


def run_instructions(venv: Venv, configs: list[Config], sizes: tuple[int, int], native_n: int,
                     reps: int, timeout: float, problems: dict) -> dict:
    """Instructions per call of naive fib under callgrind: fib(N2) minus fib(N1), over the
    difference of their calls, so that start-up, imports and writing the profile cancel (the
    intercept, I(N1) - calls(N1) x per-call, is what those cost).  Load on the machine does not
    move these counts.  Then native time per call: fib(native_n) timed inside the process in
    CPU time, paired with the unprofiled run of the same repetition (these are the figures to read for
    cpu and ctxsw, whose instruction counts under valgrind are of their slow path)."""
    n1, n2 = sizes
    res = {"sizes": [n1, n2], "calls": [fib_calls(n1), fib_calls(n2)], "native_n": native_n,
           "native_calls": fib_calls(native_n), "configs": {}}
    have_valgrind = shutil.which("valgrind") is not None
    if not have_valgrind:
        res["skipped"] = "valgrind is not installed: no instruction counts (native times only)"
        log(f"instructions: {res['skipped']}")
    with tempfile.TemporaryDirectory(prefix="cprof-bench-instr-") as scratch:
        script = os.path.join(scratch, "fib.py")
        Path(script).write_text(FIB_SCRIPT)
        profile = os.path.join(scratch, "profile.out")
        envs = {}
        for cfg in configs:
            env = dict(os.environ)
            env.pop("PYTHONPATH", None)
            env.update(PYTHONHASHSEED="0", **venv.run_env, **{k: v for k, v in cfg.env.items() if k != "BENCH_SETTLE"})
            # cprof keeps its calibration per machine and interpreter (~/.cache/cprof): a figure
            # measured under valgrind must not reach the native runs (nor the reverse)
            env["CPROF_NO_CACHE"] = "1"
            envs[cfg.name] = env
            cell = res["configs"][cfg.name] = {"native": {}, "errors": []}
            if have_valgrind:
                try:
                    i1 = callgrind(cfg.argv(profile, [script, str(n1)]), env, scratch, timeout * 20)
                    i2 = callgrind(cfg.argv(profile, [script, str(n2)]), env, scratch, timeout * 20)
                except (RuntimeError, subprocess.TimeoutExpired) as e:
                    cell["errors"].append(f"callgrind: {e}")
                    problems[f"{cfg.name} instructions"] = f"FAILED: {e}"
                else:
                    per = (i2 - i1) / (res["calls"][1] - res["calls"][0])
                    cell.update(instr=[i1, i2], per_call=per, intercept=i1 - per * res["calls"][0])
                    log(f"instructions: {cfg.name}: {per:,.0f} a call")
        for rep in range(reps):
            k = rep % len(configs)
            for cfg in configs[k:] + configs[:k]:
                cell = res["configs"][cfg.name]
                try:
                    p = spawn(cfg.argv(profile, [script, str(native_n)]), timeout, envs[cfg.name], scratch)
                except (subprocess.TimeoutExpired, OSError) as e:
                    cell["errors"].append(f"native: {e}")
                    continue
                got = parse_output(p.stdout)
                if p.returncode != 0 or "seconds" not in got:
                    cell["errors"].append(f"native: exit {p.returncode}: {why(p)}")
                    continue
                cell["native"][str(rep)] = got["seconds"]
    base = res["configs"].get("plain", {})
    floors = {f: res["configs"].get(f, {}).get("per_call") for f in ("floor py", "floor cprof-events")}
    cp = res["configs"].get("cProfile", {}).get("per_call")
    calls = res["native_calls"]
    for name, cell in res["configs"].items():
        cell["slow_under_valgrind"] = bool(name.startswith("cprof") and SLOW_UNDER_VALGRIND.search(name))
        if base.get("per_call") is not None and cell.get("per_call") is not None:
            added = cell["added"] = cell["per_call"] - base["per_call"]
            for f, fv in floors.items():
                if fv is not None and fv > base["per_call"] and name != "plain" and not name.startswith("floor"):
                    cell["x_" + f] = added / (fv - base["per_call"])
            if cp is not None and cp > base["per_call"] and name != "plain":
                cell["x_cProfile"] = added / (cp - base["per_call"])
        nat = cell["native"]
        if nat:
            cell["native_ns"] = median(nat.values()) / calls * 1e9
            bn = base.get("native", {})
            added = [(nat[r] - bn[r]) / calls * 1e9 for r in nat if r in bn]
            if added and name != "plain":
                cell["native_added_ns"] = median(added)
                cell["native_added_range"] = [min(added), max(added)]
        if "per_call" not in cell and not nat and cell["errors"]:
            problems.setdefault(f"{name} instructions", f"FAILED: {cell['errors'][-1]}")
    return res


# ---- tables --------------------------------------------------------------------------------

def ratio(a, b):
    return a / b if a and b else None


def fmt_ratio(x, digits=2):
    return "—" if x is None else f"{x:.{digits}f}"


def summarize(results: dict) -> None:
    cells, configs, workloads = results["cells"], results["configs"], results["workloads"]
    if results.get("startup"):
        summarize_startup(results["startup"], {})
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
            # the whole process (fork to reaping: start-up, imports and writing the profile
            # included), its CPU time (user + system of the process tree: what other agents'
            # load moves least), and its peak RSS
            for key, src in (("xp", "proc_wall_by_rep"), ("xc", "proc_cpu_by_rep")):
                mine_p, base_p = cell.get(src, {}), cells[w].get("plain", {}).get(src, {})
                cp_p = cells[w].get("cProfile", {}).get(src, {})
                pairs = [mine_p[r] / base_p[r] for r in mine_p if base_p.get(r)]
                cell[key + "_plain"] = median(pairs)
                cell[key + "_plain_range"] = [min(pairs), max(pairs)] if pairs else None
                # the time this profiler adds over the time cProfile adds, paired per repetition
                added = [(mine_p[r] - base_p[r]) / (cp_p[r] - base_p[r]) for r in mine_p
                         if r in base_p and r in cp_p and cp_p[r] > base_p[r]]
                cell[key + "_added_vs_cProfile"] = median(added) if c not in ("plain", "cProfile") else None
                cell[key + "_added_vs_cProfile_range"] = [min(added), max(added)] if added else None
            rss = cell.get("maxrss_by_rep", {})
            cell["maxrss_mib"] = median(rss.values()) if rss else None
            cell["maxrss_range"] = [min(rss.values()), max(rss.values())] if rss else None
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
                # the share of the unprofiled 4 threads' throughput that survives profiling:
                # t_plain(fib4) / t(fib4), paired per repetition
                plain4 = cells["fib4"].get("plain", {}).get("by_rep", {})
                kept = [plain4[r] / four[r] for r in four if plain4.get(r)]
                par[c]["kept"] = median(kept)
                par[c]["kept_range"] = [min(kept), max(kept)] if kept else None
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
    # (under --hogs, the sums of rounds: the fastest rounds are the ones the load left alone,
    # while every profiler's figure sums all of them)
    if results["meta"].get("hogs"):
        per_true = [h[0] / h[1] for h in results["true_halves"] if h[1]]
    else:
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


REAL_PROGRAMS = ("black", "json")  # the goal 2 is measured on these


def fmt_range(x, r, digits=2, unit=""):
    if x is None:
        return "—"
    spread = f" [{r[0]:.{digits}f}-{r[1]:.{digits}f}]" if r and round(r[0], digits) != round(r[1], digits) else ""
    return f"{x:.{digits}f}{unit}{spread}"


def real_program_rows(results: dict, w: str) -> list[tuple[str, str, str, str, str]]:
    """(configuration, whole-process time / plain, added / cProfile's added (wall; CPU),
    peak RSS MiB (/ cProfile's)) for one workload."""
    cells = results["cells"][w]
    cp_rss = cells.get("cProfile", {}).get("maxrss_mib")
    rows = []
    for c in results["configs"]:
        cell = cells[c]
        st = status_text(cell)
        if st:
            rows.append((c, st, "", "", ""))
            continue
        rss = cell.get("maxrss_mib")
        rss_text = "—" if rss is None else f"{rss:.0f}" + (f" ({rss / cp_rss:.2f})" if cp_rss else "")
        if c == "plain":
            pw = median(cell.get("proc_wall_by_rep", {}).values())
            pc = median(cell.get("proc_cpu_by_rep", {}).values())
            rows.append((c, f"{pw:.2f} s" if pw else "—", "", f"{pc:.2f} s" if pc else "—", rss_text))
            continue
        added = "" if c == "cProfile" else fmt_range(cell.get("xp_added_vs_cProfile"),
                                                      cell.get("xp_added_vs_cProfile_range"))
        added_cpu = "" if c == "cProfile" else fmt_ratio(cell.get("xc_added_vs_cProfile"))
        rows.append((c, fmt_range(cell.get("xp_plain"), cell.get("xp_plain_range")), added,
                     fmt_range(cell.get("xc_plain"), cell.get("xc_plain_range")) +
                     (f" ({added_cpu})" if added_cpu else ""), rss_text))
    return rows


def text_extra_tables(results: dict) -> list[str]:
    out = []
    configs = results["configs"]
    width = max([len(c) for c in configs] + [24]) + 2
    for w in [w for w in results["workloads"] if w in REAL_PROGRAMS]:
        out.append("")
        out.append(f"{w}, the whole process (fork to exit: start-up, imports, writing the profile): "
                   "time / unprofiled [range], its added time / cProfile's added time [range], "
                   "CPU time / unprofiled (CPU added / cProfile's), peak RSS MiB (/ cProfile's)")
        out.append(f"{'':<{width}}{'time':>22}{'added/cProfile':>22}{'CPU time':>26}{'peak RSS':>16}")
        for c, t, added, cpu, rss in real_program_rows(results, w):
            out.append(f"{c:<{width}}{t:>22}{added:>22}{cpu:>26}{rss:>16}")
    if results["workloads"]:
        out.append("")
        out.append("Peak RSS, MiB (median of the runs; the largest process of the run: py-spy's Python "
                   "or py-spy itself)")
        out.append(f"{'':<{width}}" + "".join(f"{w:>10}" for w in results["workloads"]))
        for c in configs:
            vals = [results["cells"][w][c].get("maxrss_mib") for w in results["workloads"]]
            out.append(f"{c:<{width}}" + "".join(f"{'—' if v is None else f'{v:.0f}':>10}" for v in vals))
    su = results.get("startup")
    if su:
        out.append("")
        out.append("Start-up: an empty script, whole process (fork to exit), median ms, "
                   "added over the unprofiled run of the same repetition [range]")
        out.append(f"{'':<{width}}{'wall ms':>10}{'added ms':>22}{'CPU ms':>10}{'CPU added ms':>22}"
                   f"{'peak RSS MiB':>14}")
        for c, cell in su["configs"].items():
            if cell.get("status") != "ok":
                out.append(f"{c:<{width}}{'FAILED':>10}  {cell.get('reason', '')}")
                continue
            added = "" if c == "plain" else fmt_range(cell["added_ms"], cell["added_range"], 1)
            cadded = "" if c == "plain" else fmt_range(cell.get("cpu_added_ms"), cell.get("cpu_added_range"), 1)
            out.append(f"{c:<{width}}{cell['wall_ms']:>10.1f}{added:>22}{cell['cpu_ms']:>10.1f}{cadded:>22}"
                       f"{cell['maxrss_mib']:>14.1f}")
        for name, probe in su["imports"].items():
            if probe.get("import_ms") is None:
                out.append(f"  import {name}: FAILED {probe['errors'][-1] if probe['errors'] else ''}")
                continue
            out.append(f"  import {name}: {fmt_range(probe['import_ms'], probe['import_range'], 1)} ms "
                       f"(CPU {fmt_ratio(probe.get('import_cpu_ms'), 1)}); first {name}.Profile().enable(): "
                       f"{fmt_range(probe['enable_ms'], probe['enable_range'], 1)} ms "
                       f"(CPU {fmt_ratio(probe.get('enable_cpu_ms'), 1)}) (median [range] of fresh interpreters)")
    ins = results.get("instructions")
    if ins:
        out.extend([""] + instruction_text(ins, width))
    return out


def instruction_text(ins: dict, width: int) -> list[str]:
    n1, n2 = ins["sizes"]
    out = [(f"Per call of naive fib: instructions (callgrind, fib({n2}) - fib({n1}) = "
            f"{ins['calls'][1] - ins['calls'][0]:,} calls; start-up cancels), the profiler's added "
            f"instructions and their ratio to the empty callback's and cProfile's; native ns a call "
            f"(fib({ins['native_n']}) in CPU time of the process, median), added over the unprofiled run [range]")]
    if ins.get("skipped"):
        out.append(f"  {ins['skipped']}")
    out.append(f"{'':<{width}}{'instr':>8}{'added':>8}{'/floor py':>10}{'/floor ev':>10}{'/cProfile':>10}"
               f"{'start+end Minstr':>17}{'ns':>8}{'added ns':>20}")
    for c, cell in ins["configs"].items():
        mark = " *" if cell.get("slow_under_valgrind") and "per_call" in cell else ""
        row = f"{c + mark:<{width}}"
        row += f"{cell['per_call']:>8.0f}" if "per_call" in cell else f"{'—':>8}"
        row += f"{cell['added']:>8.0f}" if "added" in cell and c != "plain" else f"{'':>8}"
        for key in ("x_floor py", "x_floor cprof-events", "x_cProfile"):
            row += f"{cell[key]:>10.2f}" if key in cell else f"{'':>10}"
        row += f"{cell['intercept'] / 1e6:>17.1f}" if "intercept" in cell else f"{'':>17}"
        row += f"{cell['native_ns']:>8.0f}" if "native_ns" in cell else f"{'—':>8}"
        row += f"{fmt_range(cell.get('native_added_ns'), cell.get('native_added_range'), 0):>20}" \
            if "native_added_ns" in cell else f"{'':>20}"
        out.append(row)
    if any(c.get("slow_under_valgrind") and "per_call" in c for c in ins["configs"].values()):
        out.append("  * cpu and ctxsw: under valgrind glibc registers no rseq, so these counters take their "
                   "slow path (a system call at every reading) and their instructions are not what they "
                   "cost natively; read their native ns columns")
    return out


def text_tables(results: dict) -> str:
    cells, configs, workloads = results["cells"], results["configs"], results["workloads"]
    m = results["meta"]
    out = [f"Python {m['python_version']} ({m['hook']}), {m['machine']}, {m['date']}, "
           f"paired medians of {m['reps']}{' (SMOKE: tiny workloads, not a measurement)' if m['smoke'] else ''}",
           f"cprof {m['cprof_commit']}; peers: " + ", ".join(f"{k} {v}" for k, v in m["versions"].items()
                                                           if k not in ("python", "cprof")),
           ""]
    width = max(len(c) for c in configs) + 2
    colw = 30
    if workloads:
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
        hogs = results["meta"].get("hogs")
        out.append(f"true unprofiled ratio calls_half/inline_half = {fmt_ratio(results['true_ratio'], 3)}"
                   + (f" (sums of rounds, under {hogs} CPU hogs)" if hogs else ""))
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
            kept = f"  throughput kept {fmt_range(x.get('kept'), x.get('kept_range'))}" if c != "plain" else ""
            out.append(f"  {c:<{width}}{x['speedup']:.2f} [{x['range'][0]:.2f}-{x['range'][1]:.2f}]" + cores + kept
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
    out.extend(text_extra_tables(results))
    if results["problems"]:
        out.append("")
        out.append("MISSING / FAILED / SKIPPED:")
        out.extend(f"  {k}: {v}" for k, v in results["problems"].items())
    return "\n".join(out)


def command_text(results: dict) -> str:
    """The command that made these results, as one would type it from the checkout."""
    import shlex
    argv = list(results["meta"].get("command") or ["benches/compare.py"])
    return "python3 benches/compare.py " + shlex.join(argv[1:])


def python_label(results: dict) -> str:
    m = results["meta"]
    env = [f"{k}={v}" for k, v in m.get("run_env", {}).items()]
    env += [f"{m['hogs']} CPU hogs"] if m.get("hogs") else []
    return m["python_version"] + (f" ({', '.join(env)})" if env else "")


# a CPU hog for --hogs: spins, and looks every million turns whether its parent is still there
HOG = """import os, sys
parent = int(sys.argv[1])
while os.getppid() == parent:
    for _ in range(1_000_000):
        pass
"""


def stop_hogs(hogs: list) -> None:
    for h in hogs:
        h.kill()
    for h in hogs:
        h.wait()
    hogs.clear()


TABLE_KINDS = ["overhead", "real", "parallel", "startup", "instructions", "accuracy"]


def markdown_tables(results: dict | list, kinds: list[str] | None = None) -> str:
    """Markdown tables of one or several results.json (several Pythons: one table per kind,
    the Python in the first column), each table headed by the commands that made it; kinds:
    which of TABLE_KINDS (default all that the results hold)."""
    runs = results if isinstance(results, list) else [results]
    md: list[str] = []
    kinds = kinds or TABLE_KINDS

    def header(title: str, which: list) -> None:
        if md:
            md.append("")
        md.append(f"**{title}**")
        md.append("")
        md.append("```")
        md.extend(dict.fromkeys(command_text(r) for r in which))  # once each, in order
        md.append("```")
        md.append("")

    def first_of(rows_by_run):
        """Print the Python only on the first row of its group."""
        for r, rows in rows_by_run:
            for i, row in enumerate(rows):
                md.append(f"| {python_label(r) if i == 0 else ''} | " + " | ".join(row) + " |")

    timed = [r for r in runs if r["workloads"]]
    if timed and "overhead" in kinds:
        workloads = list(dict.fromkeys(w for r in timed for w in r["workloads"]))
        header("Workload time with the profiler / without [range of the paired ratios] (/ cProfile's time)",
               timed)
        md.append("| Python | profiler | " + " | ".join(workloads) + " |")
        md.append("|---|---|" + "---:|" * len(workloads))
        groups = []
        for r in timed:
            cells = r["cells"]
            rows = [["*no profiler, ms*"] + [
                f"*{cells[w]['plain']['best_s'] * 1e3:.0f}*" if w in cells and cells[w]["plain"].get("best_s")
                else "" for w in workloads]]
            for c in r["configs"]:
                if c == "plain":
                    continue
                row = [c]
                for w in workloads:
                    cell = cells.get(w, {}).get(c)
                    if cell is None:
                        row.append("")
                        continue
                    st = status_text(cell)
                    row.append(st if st else f"{fmt_cell(cell)} ({fmt_ratio(cell['x_cProfile'])})")
                rows.append(row)
            groups.append((r, rows))
        first_of(groups)

    real = [r for r in timed if any(w in REAL_PROGRAMS for w in r["workloads"])]
    if real and "real" in kinds:
        header("Real programs, the whole process (fork to exit: start-up, imports and writing the profile "
               "included): time / unprofiled [range], the time it adds / the time cProfile adds [range], "
               "CPU time / unprofiled (CPU added / cProfile's), peak RSS in MiB (/ cProfile's)", real)
        md.append("| Python | workload | profiler | time | added / cProfile's added | CPU time | peak RSS MiB |")
        md.append("|---|---|---|---:|---:|---:|---:|")
        for r in real:
            first = True
            for w in [w for w in r["workloads"] if w in REAL_PROGRAMS]:
                for i, (c, t, added, cpu, rss) in enumerate(real_program_rows(r, w)):
                    label = python_label(r) if first else ""
                    first = False
                    md.append(f"| {label} | {w if i == 0 else ''} | {c if c != 'plain' else '*no profiler*'} | "
                              f"{t} | {added} | {cpu} | {rss} |")

    par_runs = [r for r in timed if r.get("parallel")]
    if par_runs and "parallel" in kinds:
        header("fib in 4 threads: speed-up 4·t(fib)/t(fib4) [range], cores kept busy in fib4 "
               "(process CPU / wall), the GIL while fib4 ran, fib4's time / unprofiled (/ cProfile's), and the "
               "share of the unprofiled 4 threads' throughput that survives profiling, t_plain(fib4) / t(fib4)",
               par_runs)
        md.append("| Python | profiler | speed-up | cores busy | GIL | fib4 time | throughput kept |")
        md.append("|---|---|---:|---:|---|---:|---:|")
        groups = []
        for r in par_runs:
            rows = []
            for c, x in r["parallel"].items():
                cores = (f"{x['cores']:.2f} [{x['cores_range'][0]:.2f}-{x['cores_range'][1]:.2f}]"
                         if x.get("cores") is not None else "—")
                cell = r["cells"]["fib4"][c]
                t = "1" if c == "plain" else f"{fmt_cell(cell)} ({fmt_ratio(cell['x_cProfile'])})"
                rows.append([c if c != "plain" else "*no profiler*",
                             f"{x['speedup']:.2f} [{x['range'][0]:.2f}-{x['range'][1]:.2f}]", cores,
                             "/".join(x["gil"]) or "?", t,
                             "" if c == "plain" else fmt_range(x.get("kept"), x.get("kept_range"))])
            groups.append((r, rows))
        first_of(groups)

    su_runs = [r for r in runs if r.get("startup")]
    if su_runs and "startup" in kinds:
        header("Start-up: an empty script, the whole process (fork to exit), median of the runs; "
               "the time added over the unprofiled run of the same repetition [range]; "
               "`import` and the first `enable()` timed inside fresh interpreters", su_runs)
        md.append("| Python | profiler | wall ms | added ms | CPU ms | CPU added ms | peak RSS MiB |")
        md.append("|---|---|---:|---:|---:|---:|---:|")
        groups = []
        for r in su_runs:
            su, rows = r["startup"], []
            for c, cell in su["configs"].items():
                name = c if c != "plain" else "*no profiler*"
                if cell.get("status") != "ok":
                    rows.append([name, "FAILED", "", "", "", ""])
                    continue
                rows.append([name, f"{cell['wall_ms']:.0f}",
                             "" if c == "plain" else fmt_range(cell["added_ms"], cell["added_range"], 0),
                             f"{cell['cpu_ms']:.0f}",
                             "" if c == "plain" else fmt_range(cell.get("cpu_added_ms"), cell.get("cpu_added_range"), 0),
                             f"{cell['maxrss_mib']:.0f}"])
            for name, probe in su["imports"].items():
                if probe.get("import_ms") is None:
                    rows.append([f"`import {name}`", "FAILED", "", "", "", ""])
                    continue
                rows.append([f"`import {name}`; first `enable()`",
                             fmt_range(probe["import_ms"], probe["import_range"], 1) + "; " +
                             fmt_range(probe["enable_ms"], probe["enable_range"], 1), "",
                             fmt_ratio(probe.get("import_cpu_ms"), 1) + "; " + fmt_ratio(probe.get("enable_cpu_ms"), 1),
                             "", ""])
            groups.append((r, rows))
        first_of(groups)

    ins_runs = [r for r in runs if r.get("instructions")]
    if ins_runs and "instructions" in kinds:
        i0 = ins_runs[0]["instructions"]
        header(f"Per call of naive fib: instructions (callgrind, fib({i0['sizes'][1]}) − fib({i0['sizes'][0]}), "
               "start-up cancelled), what the profiler adds and that over what the empty callback "
               "(PY_START/PY_RETURN; cprof's events) and cProfile add; the intercept (start-up and exit, "
               f"millions); native ns a call (fib({i0['native_n']}) in the process's CPU time, median) and the "
               "ns it adds [range]", ins_runs)
        md.append("| Python | profiler | instructions / call | added | / floor py | / floor cprof-events | "
                  "/ cProfile | start-up + exit, M | ns / call | added ns |")
        md.append("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
        groups = []
        slow = False
        for r in ins_runs:
            rows = []
            for c, cell in r["instructions"]["configs"].items():
                mark = ""
                if cell.get("slow_under_valgrind") and "per_call" in cell:
                    mark, slow = " \\*", True
                g = cell.get
                rows.append([(c if c != "plain" else "*no profiler*") + mark,
                             f"{cell['per_call']:,.0f}" if "per_call" in cell else "—",
                             f"{cell['added']:,.0f}" if "added" in cell and c != "plain" else "",
                             fmt_ratio(g("x_floor py")) if "x_floor py" in cell else "",
                             fmt_ratio(g("x_floor cprof-events")) if "x_floor cprof-events" in cell else "",
                             fmt_ratio(g("x_cProfile")) if "x_cProfile" in cell else "",
                             f"{cell['intercept'] / 1e6:,.1f}" if "intercept" in cell else "",
                             f"{cell['native_ns']:.0f}" if "native_ns" in cell else "—",
                             fmt_range(g("native_added_ns"), g("native_added_range"), 0)
                             if "native_added_ns" in cell else ""])
            if r["instructions"].get("skipped"):
                rows.append([r["instructions"]["skipped"]] + [""] * 9)
            groups.append((r, rows))
        first_of(groups)
        if slow:
            md.append("")
            md.append("\\* `cpu` and `ctxsw` under valgrind: glibc registers no rseq there, so these counters "
                      "take their slow path (a system call at every reading) and their instruction counts are "
                      "not what they cost natively; read their native ns.")

    acc_runs = [r for r in timed if "bias" in r["cells"]]
    if acc_runs and "accuracy" in kinds:
        header("Accuracy on the bias workload: each profiler's calls_half / inline_half over the true "
               "(unprofiled) ratio; 1.00 is exact", acc_runs)
        md.append("| Python | profiler | reported ratio | reported / true |")
        md.append("|---|---|---:|---:|")
        groups = []
        for r in acc_runs:
            rows = [["*true unprofiled ratio*", fmt_ratio(r["true_ratio"], 3), ""]]
            for c in r["configs"]:
                acc = r["accuracy"].get(c)
                if acc is None:
                    continue
                if acc.get("accuracy") is None:
                    rows.append([c, status_text(r["cells"]["bias"][c]) or "FAILED", acc.get("error", "")[:80]])
                else:
                    rows.append([c, fmt_ratio(acc["reported_ratio"]), fmt_ratio(acc["accuracy"])])
            groups.append((r, rows))
        first_of(groups)
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
    if not results["workloads"]:
        pass  # start-up and instructions only: the chart is of the workloads
    elif chart_python is None:
        print(f"no chart: matplotlib is MISSING ({no_chart_reason})")
    else:
        p = run([chart_python, str(HERE / "chart.py"), str(out_dir / "results.json"), str(png)], timeout=300)
        if p.returncode != 0:
            print(f"no chart: chart.py failed: {why(p)}")
    elapsed = results["meta"].get("elapsed_s")
    print(f"wrote {out_dir}/results.json, table.md, table.txt{', overhead.png' if png.exists() else ''}"
          + (f" in {elapsed:.0f} s" if elapsed else ""))


def report_again(paths: list[str], out: str | None, kinds: list[str] | None = None) -> int:
    """--report: the tables and chart again from a results.json (after changing how they are
    drawn); with several, one markdown table per kind with a row group per results.json (the
    README's tables), printed, and written to --out/table.md if --out is given."""
    runs = []
    for path in paths:
        try:
            runs.append(json.loads(Path(path).read_text()))
        except (OSError, ValueError) as e:
            raise SystemExit(f"compare.py: error: cannot read the results '{path}': {e}")
        summarize(runs[-1])
    if len(runs) > 1 or kinds:
        md = markdown_tables(runs, kinds)
        print(md)
        if out:
            Path(out).mkdir(parents=True, exist_ok=True)
            (Path(out) / "table.md").write_text(md)
        return 0
    results = runs[0]
    chart_python = results["meta"]["python"]
    if not Path(chart_python).exists() or run([chart_python, "-c", "import matplotlib"]).returncode:
        chart_python = None
    write_outputs(results, Path(out) if out else Path(paths[0]).parent, chart_python,
                  "the venv that measured these results has no matplotlib")
    return 0


# ---- main ----------------------------------------------------------------------------------

def select(names: list[str], patterns: str | None) -> list[str]:
    """The names that match comma-separated shell patterns, in their own order.  A name may itself
    hold commas (cprof cpu,ctxsw): at each place the longest run of pieces that matches a name
    is one pattern, so 'plain,cprof cpu,ctxsw,cprof wall' is three."""
    if not patterns:
        return list(names)
    pieces = [p.strip() for p in patterns.split(",")]
    pats, i = [], 0
    while i < len(pieces):
        for j in range(len(pieces), i, -1):
            cand = ",".join(pieces[i:j])
            if j == i + 1 or any(fnmatch.fnmatchcase(n, cand) for n in names):
                pats.append(cand)
                i = j
                break
    pats = [p for p in pats if p]
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
    ap.add_argument("--hogs", type=int, default=0, metavar="N",
                    help="N processes spinning on the CPU from the bias tuning to the last measurement: "
                    "the figures under load (the bias workload's true ratio then comes from the plain "
                    "runs' sums of rounds, as the profilers' figures do, not from their fastest rounds, "
                    "the ones the load left alone)")
    ap.add_argument("--list", action="store_true", help="list configurations and workloads, and exit")
    ap.add_argument("--modes", default="workloads,startup,instructions",
                    help="what to measure, comma-separated: workloads (the timed workloads, whole-process "
                    "time and peak RSS of each run), startup (an empty script; import and first enable), "
                    "instructions (callgrind per call of fib, and native time per call); default: all three")
    ap.add_argument("--instr-n", default=None, metavar="N1,N2",
                    help="the two fib sizes of the instruction counts (default 20,25: 220,894 calls apart, so "
                    "that start-up's own variation, calibration's, is under 1%% of a call; smoke 10,12)")
    ap.add_argument("--native-n", type=int, default=None, help="fib size timed natively per call (default 25)")
    ap.add_argument("--json-mb", type=float, default=None,
                    help="size of the json workload's input in MB (default 20; smoke 0.2)")
    ap.add_argument("--report", metavar="RESULTS_JSON", nargs="+", help="print and draw a results.json again, "
                    "run nothing; several: one markdown table per kind, a row group per file")
    ap.add_argument("--tables", help=f"with --report: which markdown tables, some of {','.join(TABLE_KINDS)}")
    a = ap.parse_args()
    if a.report:
        kinds = [k.strip() for k in a.tables.split(",")] if a.tables else None
        if kinds and any(k not in TABLE_KINDS for k in kinds):
            raise SystemExit(f"compare.py: error: --tables takes some of {','.join(TABLE_KINDS)}, not '{a.tables}'")
        return report_again(a.report, a.out, kinds)

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
    modes = [m.strip() for m in a.modes.split(",") if m.strip()]
    bad = [m for m in modes if m not in MODES]
    if bad or not modes:
        raise SystemExit(f"compare.py: error: unknown mode '{(bad or [a.modes])[0]}'; choose among {', '.join(MODES)}")
    workloads = select(WORKLOADS, a.workloads) if "workloads" in modes else []
    if "workloads" in modes and not workloads:
        raise SystemExit(f"compare.py: error: no workload matches '{a.workloads}'; choose among {', '.join(WORKLOADS)}")
    try:
        instr_n = tuple(int(x) for x in (a.instr_n or ("10,12" if smoke else "20,25")).split(","))
        assert len(instr_n) == 2 and 0 < instr_n[0] < instr_n[1]
    except (ValueError, AssertionError):
        raise SystemExit(f"compare.py: error: --instr-n takes two increasing sizes N1,N2, not '{a.instr_n}'")
    native_n = a.native_n or (15 if smoke else 25)

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
    venv.build_launcher()
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

    json_data = None
    if "json" in workloads:  # made once (seconds), kept beside the venvs for the next runs
        mb = a.json_mb or (0.2 if smoke else 20)
        json_data = str(HERE / ".venv" / f"workload-{mb:g}MB.json")
        if not os.path.exists(json_data):
            log(f"making the json workload's input, {mb:g} MB: {json_data}")
            Path(json_data).parent.mkdir(parents=True, exist_ok=True)
            p = run([sys.executable, str(HERE / "workloads.py"), "json", "--make", json_data, "--mb", str(mb)])
            if p.returncode != 0:
                raise SystemExit(f"compare.py: error: could not make the json workload's input: {why(p)}")

    # each in a session of its own, like the measured runs: with the kernel's autogroup
    # scheduling, hogs that share a session share one CPU share, and would hardly preempt
    # (each ends by itself once compare.py is gone, however it ended)
    hogs = [subprocess.Popen([sys.executable, "-c", HOG, str(os.getpid())], stdin=subprocess.DEVNULL,
                             start_new_session=True) for _ in range(max(0, a.hogs))]
    nhogs = len(hogs)
    atexit.register(stop_hogs, hogs)
    if hogs:
        log(f"{len(hogs)} CPU hogs running")
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
                    (["--inline", str(bias["inline"]), "--rounds", str(rounds)] if w == "bias" else []) + \
                    (["--data", json_data] if w == "json" and json_data else [])
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
                    # the whole process, from fork to reaping: start-up, imports, writing the profile
                    for key in ("proc_wall", "proc_cpu", "maxrss"):
                        cell.setdefault(key + "_by_rep", {})[str(rep)] = r[key]
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

    startup = instructions = requests = None
    phase_s = {"set-up and workloads": round(time.time() - t_start, 1)}
    if "startup" in modes:
        t_phase = time.time()
        startup = run_startup(venv, startup_configs(runnable), reps, timeout, problems)
        phase_s["startup"] = round(time.time() - t_phase, 1)
        fatal.extend(f"{c} start-up" for c, cell in startup["configs"].items()
                     if cell.get("status") != "ok" and must_run(c))
    if "instructions" in modes:
        chosen = instruction_configs(runnable)
        if smoke:
            chosen = [c for c in chosen if c.name in SMOKE_INSTRUCTIONS]
        t_phase = time.time()
        instructions = run_instructions(venv, chosen, instr_n, native_n, reps, timeout, problems)
        phase_s["instructions"] = round(time.time() - t_phase, 1)
        fatal.extend(f"{c} instructions" for c, cell in instructions["configs"].items()
                     if must_run(c) and f"{c} instructions" in problems)

    if "requests" in modes:
        import request_loop  # benches/, this script's folder
        t_phase = time.time()
        requests = request_loop.measure(str(venv.python), reps, request_loop.REQUESTS,
                                        timeout=timeout)
        phase_s["requests"] = round(time.time() - t_phase, 1)
        print(request_loop.table(requests, request_loop.REQUESTS))
        problems.update({f"{c} requests": f"FAILED: {cell['error']}"
                         for c, cell in requests.items() if "error" in cell})
        fatal.extend(f"{c} requests" for c, cell in requests.items() if "error" in cell and must_run(c))

    stop_hogs(hogs)
    hook = "sys.monitoring" if venv.version_tuple() >= (3, 12) else "setprofile"
    results = {
        "meta": {"python": str(venv.python), "python_version": venv.versions.get("python", venv.version),
                 "hook": hook, "machine": machine_description(),
                 "date": datetime.date.today().isoformat(), "reps": reps, "smoke": smoke,
                 "cpus": os.cpu_count(), "run_env": venv.run_env, "hogs": nhogs,
                 "cprof_commit": cprof_what, "versions": venv.versions,
                 "command": sys.argv, "elapsed_s": None},
        "configs": [c.name for c in configs], "workloads": workloads,
        "cells": cells, "accuracy": accuracy, "bias": bias, "true_halves": true_halves,
        "sampling": [c.name for c in configs if c.fmt in ("pyisession", "pyspy-raw", "collapsed")],
        "problems": problems, "startup": startup, "instructions": instructions,
        "requests": requests,
    }
    summarize(results)
    for c, acc in accuracy.items():
        if acc.get("error") and cells.get("bias", {}).get(c, {}).get("status") == "ok":
            problems.setdefault(f"{c} accuracy", f"FAILED: {acc['error']}")
            if must_run(c):
                fatal.append(f"{c} accuracy")
    results["meta"]["elapsed_s"] = round(time.time() - t_start, 1)
    results["meta"]["phases_s"] = phase_s
    log("seconds spent: " + ", ".join(f"{k} {v:.0f}" for k, v in phase_s.items()))
    write_outputs(results, out_dir, None if "matplotlib" in venv.missing else str(venv.python),
                  venv.missing.get("matplotlib"))

    if fatal:
        print("compare.py: FAILED: " + "; ".join(f"{k}: {problems[k]}" for k in fatal))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
