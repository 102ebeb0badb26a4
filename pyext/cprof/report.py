"""The text report: top functions by one counter, self and total per counter,
in human units."""
from __future__ import annotations

TYPE_CHECKING = False   # typing.TYPE_CHECKING without importing typing (PEP 781)
if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from typing import Any

import os

from . import focus as _focus
from ._cprof import CprofError
from .model import Counter, Profile
from .schema import printable as _p


def human(value: int, unit: str) -> str:
    if unit == "ns":
        for div, suffix in ((1e9, "s"), (1e6, "ms"), (1e3, "us")):
            if value >= div:
                return f"{value / div:.3g} {suffix}" if value < div * 100 else f"{value / div:.0f} {suffix}"
        return f"{value} ns"
    if unit == "B":
        for div, suffix in ((1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")):
            if value >= div:
                return f"{value / div:.3g} {suffix}"
        return f"{value} B"
    return f"{value:,}"


def sort_key(names: Sequence[str], sort: str | None) -> tuple[str, str | None]:
    """What --sort names among the counters `names`: (counter, "self" or "total"), or
    ("calls", None); a one-sentence CprofError listing the choices if nothing."""
    names = list(names)
    if not sort:
        return names[0], "self"
    if sort == "calls":
        return "calls", None
    if sort in names:  # perf event names may hold '.' themselves (INST_RETIRED.ANY_P:u)
        return sort, "self"
    name, _, which = sort.rpartition(".")
    if not name or name not in names:
        name, _, which = sort.partition(".")
    which = which or "self"
    if name not in names or which not in ("self", "total"):
        valid = ", ".join(names + [f"{n}.total" for n in names] + ["calls"])
        raise CprofError(f"cannot sort by '{_p(sort)}': this profile's choices are {_p(valid)}")
    return name, which


def format_report(profile: Profile, sort: str | None = None, limit: int = 25, title: str = "",
                  all: bool = False, focus: str | None = None) -> str:
    """The report: the user's functions and a line per library (focus.select), or with
    all=True every function, or with focus="PATTERN,..." the matching ones and [other]."""
    counters = profile["counters"]
    units = {c["name"]: c["unit"] for c in counters}
    meta = profile["meta"]
    sort_name, which = sort_key([c["name"] for c in counters], sort)
    fns = profile["functions"]
    listed: Sequence[Mapping[str, Any]] = _focus.select(profile, all=all, focus=focus)
    if which is None:
        ordered = sorted(listed, key=lambda f: f["calls"], reverse=True)
    else:
        ordered = sorted(listed, key=lambda f: (f[which][sort_name], f["total"][sort_name]), reverse=True)
    shown = ordered[:limit] if limit > 0 else ordered

    lines: list[str] = []
    ncalls = sum(f["calls"] for f in fns)
    head = f"cprof{': ' + _p(title) if title else ''} — {len(fns)} functions, {ncalls:,} calls"
    if meta.get("threads"):
        head += f", {meta['threads']} thread{'s' if meta['threads'] != 1 else ''}"
    head += f" (Python {_p(meta.get('python', '?'))}, {_p(meta.get('hook', '?'))})"
    lines.append(head)
    sample = meta.get("sample")
    if isinstance(sample, dict):   # Profile(sample=...): a fraction of the calls, each exact
        lines.append(f"sampled: {sample.get('profiled')} of {sample.get('calls')} calls profiled "
                     f"(sample={sample.get('fraction')}), each exactly; their numbers are summed")
    region = meta.get("region", {})
    lines.append("profiled: " + ", ".join(f"{_p(c['name'])} {human(region.get(c['name'], 0), c['unit'])}"
                                         for c in counters))
    for c in counters:
        lines.append(f"  {_p(c['name']):<8} {_p(c['description'])} [{_p(c['unit'])}], "
                     f"read by: {_p(c['read_path'])}")
        scaled = meta.get("corrections", {}).get(c["name"], {})
        if "multiplexed" in c["read_path"] and scaled.get("count"):
            # perf groups: corrections count the reads scaled by time_enabled/time_running
            lines.append(f"  {'':<8} multiplexed: {scaled['count']:,} group reads scaled, "
                         f"{human(scaled.get('total', 0), c['unit'])} estimated at the last one")
    lines.append(f"sorted by {_p(sort_name)}{'' if which in (None, 'self') else ' ' + which}"
                 f"{' self' if which == 'self' else ''}; top {len(shown)} of {len(listed)}"
                 + _folding_note(listed, focus))
    for e in meta.get("hook_replaced", []):   # the program took cprof's hook in a thread
        lines.append(f"warning: {_p(e['message'])}")
    if "signal" in meta:
        lines.append(f"the run ended by {_p(meta['signal'])}: the functions still running then "
                     "are counted up to that moment")
    lines.extend(health_lines(profile, folded_lines=any("folded" in r for r in listed)))
    lines.append("")

    cols = ["calls"]
    for c in counters:
        cols += [f"{_p(c['name'])} self", f"{_p(c['name'])} total"]
    # per-call distribution of the sort counter, when recorded (--distributions)
    dist_name = sort_name if which is not None else counters[0]["name"]
    with_dist = any(dist_name in f.get("dist", {}) for f in shown)
    if with_dist:
        cols += ["per call", "p50", "p99", "max"]
    rows = []
    for f in shown:
        calls = str(f["calls"]) if f["calls"] == f["primitive_calls"] else f"{f['calls']}/{f['primitive_calls']}"
        row = [calls]
        for c in counters:
            row += [human(f["self"][c["name"]], units[c["name"]]), human(f["total"][c["name"]], units[c["name"]])]
        if with_dist:
            d, u = f.get("dist", {}).get(dist_name), units[dist_name]
            per = human(f["total"][dist_name] // f["calls"], u) if f["calls"] else "-"
            row += [per] + ([human(d[k], u) for k in ("p50", "p99", "max")] if d else ["-"] * 3)
        if "folded" in f:
            where = f"{len(f['folded'])} function{'s' if len(f['folded']) != 1 else ''} folded"
        else:
            where = f"{_p(os.path.basename(f['file']))}:{f['line']}" if f["file"] != "~" else "built-in"
        rows.append((row, f"{_p(f['name'])}  ({where})"))
    widths = [max(len(cols[i]), *(len(r[0][i]) for r in rows)) if rows else len(cols[i])
              for i in range(len(cols))]
    lines.append("  ".join(cols[i].rjust(widths[i]) for i in range(len(cols))) + "  function")
    for (row, name), f in zip(rows, shown):
        lines.append("  ".join(row[i].rjust(widths[i]) for i in range(len(cols))) + "  " + name)
        lines.extend(_slow_lines(f, counters[0], units))
    un = meta.get("unattributed", {})
    if any(un.values()):
        lines.append("")
        lines.append("outside any function: " + ", ".join(
            f"{_p(c['name'])} {human(un.get(c['name'], 0), c['unit'])}" for c in counters))
    if profile.get("tasks"):    # asyncio mode (cprof.asyncmode): the longest tasks
        from . import asyncmode
        lines.append("")
        lines.extend(asyncmode.format_tasks(profile, limit=min(limit, 10) if limit > 0 else 10).splitlines())
    return "\n".join(lines) + "\n"


def _n(n: int, one: str, many: str) -> str:
    return f"{n:,} {one if n == 1 else many}"


def health_lines(profile: Profile, folded_lines: bool = False) -> list[str]:
    """The report header's lines on meta.health, one per problem; none when it is clean.
    folded_lines: the report has folded lines, whose total a full call tree makes low."""
    h = profile["meta"]["health"]
    fns = profile["functions"]
    out = []
    if h["out_of_memory"]:
        out.append(f"cprof ran out of memory: {_n(h['out_of_memory'], 'event or record', 'events or records')} "
                   "dropped, so some numbers are low")
    if h["backwards_readings"]:
        first = h["backwards_first"]
        where = ""
        if first is not None:
            fid = first["function"]
            where = (f" (first: {_p(first['counter'])} in "
                     f"{_p(fns[fid]['name']) if fid is not None else 'no function'})")
        out.append(f"{_n(h['backwards_readings'], 'counter reading', 'counter readings')} went "
                   f"backwards{where}: each was taken as no change")
    for fail in h["counter_failures"]:
        out.append(f"counter '{_p(fail['counter'])}' failed: {_p(fail['message'])}")
    n = h["tree_folded"]
    if n and folded_lines:
        out.append(f"the call tree is full ({_n(n, 'call path', 'call paths')} folded into their parent "
                   "node): the folded lines' total and calls may be low; --all lists exact numbers")
    elif n:
        out.append(f"{_n(n, 'call path', 'call paths')} folded into their parent node (the call tree "
                   "was full): call-path exports are approximate there")
    if h["distribution_values_lost"]:
        out.append(f"{_n(h['distribution_values_lost'], 'per-call value', 'per-call values')} missing "
                   "from the distributions")
    if h["unmatched_exits"]:
        out.append(f"{_n(h['unmatched_exits'], 'return', 'returns')} of calls never seen starting "
                   "were ignored")
    return [f"warning: {line}" for line in out]


SLOW_SHOWN = 3  # slowest calls listed under a function in the text report


def _slow_lines(f: Mapping[str, Any], first: Counter, units: dict[str, str]) -> list[str]:
    """The slowest calls of f (--slow-calls), under its row."""
    out = []
    for s in f.get("slow_calls", [])[:SLOW_SHOWN]:
        v = human(s["values"][first["name"]], units[first["name"]])
        args = _p(s["args"]) if s["args"] is not None else "<arguments not seen>"
        thread = f"  [{_p(s['thread'])}]" if s.get("thread") else ""
        out.append(f"        slow: {v:>9}  ({args}){thread}")
    return out


def format_hist(profile: Profile, function: str, counter: str | None = None, width: int = 40) -> str:
    """`cprof report FILE --hist FUNC`: one function's per-call distribution as a
    text bar chart, a line per non-empty bucket."""
    names = [c["name"] for c in profile["counters"]]
    counter = counter or names[0]
    if counter not in names:
        raise CprofError(f"this profile has no counter '{_p(counter)}'; it has {_p(', '.join(names))}")
    fns = [f for f in profile["functions"] if f["name"] == function] or \
          [f for f in profile["functions"] if f["name"].endswith("." + function)]
    if not fns:
        close = [f["name"] for f in profile["functions"] if function.lower() in f["name"].lower()][:5]
        hint = f"; close names: {_p(', '.join(close))}" if close else ""
        raise CprofError(f"no function named '{_p(function)}' in this profile{hint}")
    if len(fns) > 1:
        raise CprofError(f"'{_p(function)}' names {len(fns)} functions "
                         f"({_p(', '.join(f['name'] for f in fns[:5]))}); "
                         "give the qualified name")
    f = fns[0]
    d = f.get("dist", {}).get(counter)
    if not d:
        raise CprofError("this profile has no per-call distributions; record it with "
                         "cprof --distributions")
    unit = {c["name"]: c["unit"] for c in profile["counters"]}[counter]
    top = max((k for _, _, k in d["buckets"]), default=0) or 1
    lines = [(f"{_p(f['name'])}: {d['count']:,} calls, {_p(counter)} per call "
             f"(p50 {human(d['p50'], unit)}, p90 {human(d['p90'], unit)}, "
             f"p99 {human(d['p99'], unit)}, max {human(d['max'], unit)})")]
    labels = [(human(lo, unit) if lo == hi else f"{human(lo, unit)} - {human(hi, unit)}", k)
              for lo, hi, k in d["buckets"]]
    w = max((len(lab) for lab, _ in labels), default=0)
    for lab, k in labels:
        bar = "#" * max(1, round(width * k / top))
        lines.append(f"  {lab:>{w}}  {k:>8,}  {bar}")
    return "\n".join(lines) + "\n"


def _folding_note(listed: Sequence[Mapping[str, Any]], focus: str | None) -> str:
    """What the row count leaves out, after 'top N of M': nothing when nothing is folded."""
    folded = [r for r in listed if "folded" in r]
    if not folded:
        return ""
    n = sum(len(r["folded"]) for r in folded)
    if focus:
        return (f" lines: functions matching {_p(focus)}, {n} other function{'s' if n != 1 else ''} "
                "folded into [other] (--all lists every function)")
    return (f" lines: your code, {n} library function{'s' if n != 1 else ''} folded into "
            f"{len(folded)} [library] line{'s' if len(folded) != 1 else ''} (--all lists every function)")
