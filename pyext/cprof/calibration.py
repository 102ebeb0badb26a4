"""The tracer's own cost per event (compensation, README "The profile file"): measured
on this machine and interpreter, kept per process, and kept across runs in a small
cache file that a short measurement confirms before it is used.

The cache: one file per configuration, $XDG_CACHE_HOME/cprof/calibration-<hash>
(~/.cache/cprof without XDG_CACHE_HOME), lines of text: a header, the configuration
it was measured for (machine, interpreter, cprof build, counters and options:
`_config`), then up to KEEP figures (the cost per event of each counter), the one
last used first.  Several, because the cost per event depends on the machine's load:
a run confirms whichever figure its check agrees with, so a machine that goes from
quiet to busy and back measures each state once, not at every change.  Written atomically
(a new file renamed over the old), only over a file that is itself a cprof
calibration.  CPROF_NO_CACHE=1 neither reads nor writes it; recalibrate=True (the
CLI's --recalibrate) measures afresh and replaces every kept figure with the new
one.  Any problem with
the cache (unreadable, corrupt, a folder that cannot be written) falls back to
measuring, silently: the cache only saves time.
"""
from __future__ import annotations

import os
import sys
import time

TYPE_CHECKING = False
if TYPE_CHECKING:
    from ._cprof import Profiler

# a full calibration: REPS pairs of CALLS calls.  3,000 gives the figure 20,000 gave
# (interleaved in fresh processes: within the machine's own drift) in 8-10 ms of CPU
# instead of 35-52
CALLS, REPS = 3_000, 9
CHECK_CALLS, CHECK_REPS = 300, 9   # the check of a cached figure: 1/10 of the calls
CHECK_SLACK = 0.10             # how far beyond the check's own spread a cached figure may lie
KEEP = 4                       # figures kept per configuration (load states), last used first
SAME_STATE = 0.05              # figures this close (each counter) are one load state's

_HEADER = "cprof calibration 1"
_calibrated: dict = {}         # per process: configuration -> cost per event
_machine: str | None = None
_clock: tuple | None = None    # (cache file, its configuration) of the clock's ratio, once seeded


def _low_quantile(values: list) -> int:
    """The first quartile of paired differences, never below 0."""
    return max(0, sorted(values)[len(values) // 4])


def _leaf(x):
    return x


def _loop(n):
    s = 0
    for _ in range(n):
        s = _leaf(s)


def measure(probe: Profiler, calls: int, reps: int) -> list[list[int]]:
    """`reps` pairs, back to back: `calls` calls of a one-line function without and
    then with profiling.  One row per pair: the growth of each counter with profiling
    minus without, and last, the same for this thread's CPU time (ns)."""
    clock, read, loop = time.thread_time_ns, probe.read, _loop
    rows = []
    for _ in range(reps):
        t0 = clock()
        r0 = read()
        loop(calls)
        r1 = read()
        t1 = clock()
        probe.enable(push_existing=False)
        t2 = clock()
        r2 = read()
        loop(calls)
        r3 = read()
        t3 = clock()
        probe.disable()
        rows.append([(d - c) - (b - a) for a, b, c, d in zip(r0, r1, r2, r3)]
                    + [(t3 - t2) - (t1 - t0)])
    return rows


def _events(calls: int) -> int:
    # _leaf's start and return per call, _loop's, range's, and the clock's call and return
    return 2 * calls + 6


def estimate(rows: list[list[int]], calls: int, info: list[dict]) -> list[int]:
    """Cost per event of each counter from measure()'s rows: the first quartile of the
    paired differences over the events profiling handled.  Counters the tracer does
    not raise get 0; the time counters all get the thread-CPU-time estimate."""
    events = _events(calls)
    time_cost = _low_quantile([r[-1] for r in rows]) // events
    return [(time_cost if c["time"] else _low_quantile([r[i] for r in rows]) // events)
            if c["compensable"] else 0 for i, c in enumerate(info)]


def _bounds(rows: list[list[int]], calls: int, info: list[dict]) -> list[tuple[int, int] | None]:
    """Per counter, the range of cost per event a short measurement's rows allow: from
    their second lowest to their median per event (None for counters not compensated)."""
    events = _events(calls)
    out: list[tuple[int, int] | None] = []
    for i, c in enumerate(info):
        if not c["compensable"]:
            out.append(None)
            continue
        col = sorted(r[-1 if c["time"] else i] // events for r in rows)
        out.append((col[min(1, len(col) - 1)], col[len(col) // 2]))
    return out


def confirms(cached: list[int], rows: list[list[int]], calls: int, info: list[dict]) -> bool:
    """A short measurement's rows agree with a cached cost per event: for each counter
    the tracer raises, the cached figure lies between the rows' second lowest and
    their median per event, widened by CHECK_SLACK (and 1 unit, for small figures).
    Load only makes a pair's profiled half slower, most often (short pairs are either
    hit or not), so the low rows are the undisturbed cost.  On a quiet machine the
    rows agree closely and the check is tight; under load they spread and it allows
    what a new calibration could not tell apart either.  A figure the machine's
    present state contradicts (measured under load and now quiet, or the reverse;
    another CPU; an edited file) fails, and is measured again."""
    return _within(cached, _bounds(rows, calls, info))


def _same_state(a: list[int], b: list[int]) -> bool:
    return all(abs(x - y) <= SAME_STATE * max(x, y) + 1 for x, y in zip(a, b))


def _within(cached: list[int], bounds: list[tuple[int, int] | None]) -> bool:
    return all(b is None or b[0] * (1 - CHECK_SLACK) - 1 <= v <= b[1] * (1 + CHECK_SLACK) + 1
               for v, b in zip(cached, bounds))


def confirmed(figures: list[list[int]], rows: list[list[int]], calls: int,
              info: list[dict]) -> int | None:
    """Which of the cached `figures` the rows confirm (see confirms): of those that
    agree, the one nearest the middle of the rows' range (the figure taken out of every
    interval: the nearer, the truer), the last used on a tie; None if none agrees."""
    bounds = _bounds(rows, calls, info)
    best, best_off = None, 0.0
    for k, fig in enumerate(figures):
        if not _within(fig, bounds):
            continue
        off = max((abs(2 * v - b[0] - b[1]) / max(1, b[0] + b[1])
                   for v, b in zip(fig, bounds) if b is not None), default=0.0)
        if best is None or off < best_off:
            best, best_off = k, off
    return best


# ---- the cache file ------------------------------------------------------------------

def cache_dir() -> str | None:
    """$XDG_CACHE_HOME/cprof, or ~/.cache/cprof (the XDG base directory rule: a relative
    XDG_CACHE_HOME is ignored); None without a home folder."""
    base = os.environ.get("XDG_CACHE_HOME", "")
    if not os.path.isabs(base):
        home = os.path.expanduser("~")
        if not os.path.isabs(home):
            return None
        base = os.path.join(home, ".cache")
    return os.path.join(base, "cprof")


def _machine_id() -> str:
    """The CPU model (from /proc/cpuinfo's first processor) and the kernel."""
    global _machine
    if _machine is None:
        cpu = []
        try:
            with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
                for line in f:
                    if not line.strip():
                        break  # the first processor's block is enough
                    key, _, value = line.partition(":")
                    if key.strip() in ("vendor_id", "cpu family", "model", "model name", "stepping",
                                       "microcode", "CPU implementer", "CPU architecture",
                                       "CPU variant", "CPU part", "CPU revision"):
                        cpu.append(value.strip())
        except OSError:
            pass
        u = os.uname()
        _machine = " ".join(cpu) + f" | {u.sysname} {u.release} {u.machine}"
    return _machine


def _file_id(path: str) -> str:
    try:
        st = os.stat(path)
    except OSError:
        return path + " (missing)"
    return f"{path} {st.st_size} {st.st_mtime_ns}"


def _config(names: tuple, options: tuple) -> str:
    """One line naming everything a cost per event depends on: the machine, the
    interpreter and how it runs, this cprof build, the counters and the options."""
    from . import _cprof
    from ._version import version
    gil = getattr(sys, "_is_gil_enabled", None)
    trampoline = getattr(sys, "is_stack_trampoline_active", None)
    counters = tuple(_file_id(n[len("plugin:"):]) if n.startswith("plugin:") else n for n in names)
    return repr((
        _machine_id(),
        sys.version, sys.executable, getattr(sys, "abiflags", ""), sys.implementation.cache_tag,
        gil() if gil else True, trampoline() if trampoline else False,
        version, _file_id(_cprof.__file__ or ""),
        counters, options,
    ))


def _fnv1a(text: str) -> int:
    h = 0xcbf29ce484222325
    for b in text.encode("utf-8", "surrogateescape"):
        h = ((h ^ b) * 0x100000001b3) & 0xffffffffffffffff
    return h


def cache_path(config: str, kind: str = "calibration") -> str | None:
    d = cache_dir()
    return None if d is None else os.path.join(d, f"{kind}-{_fnv1a(config):016x}")


def read_cache(path: str, config: str, n: int) -> list[list[int]] | None:
    """The figures (cost per event of n counters each, at most KEEP, the one last used
    first) the file holds for `config`, or None."""
    import stat
    try:
        # a regular file only, opened without blocking: a FIFO or a device at the path
        # would wait for a writer (or never end)
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC)
        with os.fdopen(fd, encoding="utf-8", errors="strict") as f:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                return None
            text = f.read(1 << 16)
        header, saved, *lines = text.split("\n")
        if header != _HEADER or saved != config or not lines or lines[-1] != "":
            return None
        figures = [[int(v) for v in line.split()] for line in lines[:-1]]
    except (OSError, ValueError, UnicodeError):
        return None
    # figures the C side takes as unsigned 64-bit values
    if not 1 <= len(figures) <= KEEP or any(len(fig) != n or not all(0 <= v < 1 << 64 for v in fig)
                                            for fig in figures):
        return None
    return figures


def _ours(path: str) -> bool:
    """Nothing at `path`, or a cprof calibration file (a regular file with its header):
    the only things write_cache may replace."""
    import stat
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return True
    except OSError:
        return False
    if not stat.S_ISREG(st.st_mode):
        return False
    try:
        with open(path, "rb") as f:
            return f.read(len(_HEADER) + 1) == (_HEADER + "\n").encode()
    except OSError:
        return False


def write_cache(path: str, config: str, figures: list[list[int]]) -> bool:
    """Store `figures` (the one last used first) for `config` at `path`, atomically;
    False if it could not
    (a folder that cannot be made or written, a full disk, a file there that cprof
    did not write), which only means the next run measures again."""
    folder = os.path.dirname(path)
    tmp = None
    try:
        os.makedirs(folder, mode=0o700, exist_ok=True)
        if not _ours(path):
            return False
        tmp = os.path.join(folder, f".{os.path.basename(path)}.{os.getpid()}.{time.time_ns()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(f"{_HEADER}\n{config}\n" + "".join(" ".join(map(str, fig)) + "\n"
                                                      for fig in figures[:KEEP]))
        os.replace(tmp, path)
        return True
    except OSError:
        if tmp is not None:
            try:
                os.unlink(tmp)
            except OSError:
                pass
        return False


def use_cache() -> bool:
    v = os.environ.get("CPROF_NO_CACHE", "")
    return not v or v == "0"


def calibrated(items: list, names: tuple, options: dict, recalibrate: bool = False,
               calls: int = CALLS, reps: int = REPS) -> list[int]:
    """The cost per event for this configuration (the counters, or their stand-ins,
    `items`, named by `names`; the Profiler's `options`): this process's figure if it
    has one; else the cache's, if a short measurement confirms it; else measured, and
    cached."""
    from ._cprof import Profiler
    opts = tuple(sorted(options.items()))
    key = (names, opts, calls, reps)
    if not recalibrate and key in _calibrated:
        return _calibrated[key]
    # the same work per event as the real profile (histograms, the slow-call test)
    probe = Profiler(items, **options)
    info = probe.stats()["counters"]
    path, config = None, ""
    if use_cache():
        config = _config(names, opts + (() if (calls, reps) == (CALLS, REPS) else (calls, reps)))
        path = cache_path(config)
    figures: list[list[int]] = []
    if path is not None and not recalibrate:
        figures = [[v if c["compensable"] else 0 for v, c in zip(fig, info)]
                   for fig in read_cache(path, config, len(info)) or []]
        if figures:
            k = confirmed(figures, measure(probe, CHECK_CALLS, CHECK_REPS), CHECK_CALLS, info)
            if k is not None:
                per_event = figures[k]
                if k:                  # the last used first: the one to drop is the oldest
                    write_cache(path, config, [per_event] + figures[:k] + figures[k + 1:])
                _calibrated[key] = per_event
                return per_event
    per_event = estimate(measure(probe, calls, reps), calls, info)
    if path is not None:
        # the new figure first, then the kept ones of other load states: those within
        # SAME_STATE of it are its own state's, replaced (none are kept after --recalibrate)
        write_cache(path, config, [per_event] + [f for f in figures if not _same_state(f, per_event)])
    _calibrated[key] = per_event
    return per_event


# ---- the cheap clock's TSC ratio -------------------------------------------------------

def _boot_id() -> str:
    try:
        with open("/proc/sys/kernel/random/boot_id", encoding="ascii") as f:
            return f.read().strip()
    except (OSError, ValueError):
        return ""


def seed_clock(recalibrate: bool = False) -> None:
    """Before the first Profiler of the process: hand the C clock the TSC ratio an
    earlier process measured on this machine since its boot, which it confirms in
    0.2 ms instead of measuring for 2 ms (counters/clock.c).  Without a boot id, with
    CPROF_NO_CACHE=1 or recalibrate=True, the clock measures as before."""
    global _clock
    if _clock is not None:
        return
    _clock = ()
    from . import _cprof
    boot = _boot_id()
    if not boot or not use_cache():
        return
    config = repr(("clock", _machine_id(), boot))
    path = cache_path(config, "clock")
    if path is None:
        return
    _clock = (path, config)
    if not recalibrate:
        cached = read_cache(path, config, 1)
        if cached:
            _cprof.clock_seed(cached[0][0])


def keep_clock() -> None:
    """After a Profiler started the clock: store its ratio if it measured it."""
    global _clock
    if not _clock:
        return
    from . import _cprof
    mult, seeded = _cprof.clock_ratio()
    if mult:
        if not seeded:
            write_cache(_clock[0], _clock[1], [[mult]])
        _clock = ()
