"""Read one profiler's output and print the inclusive cost of the bias workload's two halves.

    python extract.py FORMAT FILE        (run by compare.py with the bench venv's Python)

FORMAT is how the profiler wrote FILE:
  pstats      cProfile -o, yappi -f pstat: cumtime (yappi's ttot) of calls_half / inline_half
  pyisession  pyinstrument -r pyisession: time of the samples whose stack holds the function
  pyspy-raw   py-spy --format raw: number of samples whose stack holds the function
  collapsed   python -m profiling.sampling run --collapsed (3.15+): the same, from its lines
              "tid:N;file:function:line;... COUNT"
  cprof       cprof -o: `total` of the first counter (the one --counter names first)

Prints one JSON object: {"calls_half": x, "inline_half": y, "unit": "...", ...}.  Only
frames from workloads.py count, so a library function with the same name cannot mix in.
"""
from __future__ import annotations

import json
import sys

HALVES = ("calls_half", "inline_half")
SCRIPT = "workloads.py"


def from_pstats(path: str) -> dict:
    import pstats
    out = {h: 0.0 for h in HALVES}
    for (filename, _line, func), (_cc, _nc, _tt, ct, _callers) in pstats.Stats(path).stats.items():
        if func in HALVES and filename.endswith(SCRIPT):
            out[func] += ct
    out["unit"] = "s"
    return out


def from_pyisession(path: str) -> dict:
    with open(path) as f:
        session = json.load(f)
    out = {h: 0.0 for h in HALVES}
    out["samples"] = len(session["frame_records"])
    for stack, seconds in session["frame_records"]:
        seen = set()
        for frame in stack:  # "function\0file\0line[\1attributes]"
            parts = frame.split("\x00")
            if len(parts) >= 2 and parts[0] in HALVES and parts[1].endswith(SCRIPT):
                seen.add(parts[0])
        for h in seen:  # inclusive: once per sample, whatever the depth
            out[h] += seconds
    out["unit"] = "s"
    return out


def from_pyspy_raw(path: str) -> dict:
    out = {h: 0 for h in HALVES}
    total = 0
    with open(path) as f:
        for line in f:  # "frame;frame;... COUNT", frame = "func (file.py:line)"
            stack, _, count = line.rstrip("\n").rpartition(" ")
            if not count.isdigit():
                continue
            total += int(count)
            seen = {fr.split(" (", 1)[0] for fr in stack.split(";")
                    if SCRIPT in fr and fr.split(" (", 1)[0] in HALVES}
            for h in seen:
                out[h] += int(count)
    out["unit"] = "samples"
    out["samples"] = total
    return out


def from_collapsed(path: str) -> dict:
    out = {h: 0 for h in HALVES}
    total = 0
    with open(path) as f:
        for line in f:
            stack, _, count = line.rstrip("\n").rpartition(" ")
            if not count.isdigit():
                continue
            total += int(count)
            seen = set()
            for fr in stack.split(";"):
                parts = fr.rsplit(":", 2)  # the file name may hold a colon, the rest cannot
                if len(parts) == 3 and parts[1] in HALVES and parts[0].endswith(SCRIPT):
                    seen.add(parts[1])
            for h in seen:
                out[h] += int(count)
    out["unit"] = "samples"
    out["samples"] = total
    return out


def from_cprof(path: str) -> dict:
    with open(path) as f:
        prof = json.load(f)
    counter = prof["counters"][0]["name"]
    out = {h: 0 for h in HALVES}
    for fn in prof["functions"]:
        short = fn["name"].rsplit(".", 1)[-1]
        if short in HALVES and str(fn.get("file", "")).endswith(SCRIPT):
            out[short] += fn["total"][counter]
    out["unit"] = f"{counter} ({prof['counters'][0]['unit']})"
    meta = prof.get("meta", {})
    # whatever the profile says about its own cost and compensation, kept for the record
    out["meta"] = {k: v for k, v in meta.items()
                   if k not in ("command", "started", "duration_s", "exit_code", "python")}
    return out


READERS = {"pstats": from_pstats, "pyisession": from_pyisession,
           "pyspy-raw": from_pyspy_raw, "collapsed": from_collapsed, "cprof": from_cprof}


def main() -> int:
    fmt, path = sys.argv[1], sys.argv[2]
    print(json.dumps(READERS[fmt](path)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
