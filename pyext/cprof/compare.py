"""Comparing two profiles (before/after a change): per function, the change of each
counter's self and total, absolute and relative, largest self change first.

Functions are matched by qualified name and file name (not the folder, not the line:
a checkout elsewhere or an edit above the function must not unmatch it); functions
sharing both are summed on each side."""
from __future__ import annotations

import os
from typing import Any

from ._cprof import CprofError
from .model import Function, Profile
from .report import human
from .schema import printable as _p


def _key(f: Function) -> tuple[str, str]:
    return f["name"], os.path.basename(f["file"])


def _side(profile: Profile, counters: list[str]) -> dict[tuple[str, str], dict[str, Any]]:
    out: dict[tuple[str, str], dict[str, Any]] = {}
    for f in profile["functions"]:
        e = out.setdefault(_key(f), {"file": f["file"], "line": f["line"], "calls": 0,
                                     "self": dict.fromkeys(counters, 0),
                                     "total": dict.fromkeys(counters, 0)})
        e["calls"] += f["calls"]
        for c in counters:
            e["self"][c] += f["self"][c]
            e["total"][c] += f["total"][c]
    return out


def common_counters(before: Profile, after: Profile, counter: str | None, names: tuple[str, str]) -> list[str]:
    b = [c["name"] for c in before["counters"]]
    a = {c["name"] for c in after["counters"]}
    if counter is not None:
        for prof, name in ((before, names[0]), (after, names[1])):
            have = [c["name"] for c in prof["counters"]]
            if counter not in have:
                raise CprofError(f"'{_p(name)}' has no counter '{_p(counter)}'; its counters are "
                                 f"{_p(', '.join(have))}")
        return [counter]
    both = [n for n in b if n in a]
    if not both:
        raise CprofError(f"'{_p(names[0])}' and '{_p(names[1])}' have no counter in common; "
                         "profile both with the same --counter")
    return both


def diff(before: Profile, after: Profile, counters: list[str]) -> list[dict[str, Any]]:
    """One row per function of either side, sorted by the largest change of the first
    counter's self (then total), absolute.  A row: name, file, status ('both', 'new'
    (only after), 'gone' (only before)), calls (before, after), and per counter
    self/total (before, after)."""
    bs, as_ = _side(before, counters), _side(after, counters)
    rows: list[dict[str, Any]] = []
    zero: dict[str, Any] = {"calls": 0, "self": dict.fromkeys(counters, 0), "total": dict.fromkeys(counters, 0)}
    for key in list(bs) + [k for k in as_ if k not in bs]:
        b, a = bs.get(key), as_.get(key)
        status = "both" if (b and a) else ("gone" if b else "new")
        where = a or b or zero
        b, a = b or zero, a or zero
        rows.append({"name": key[0], "file": where["file"], "line": where["line"], "status": status,
                     "calls": (b["calls"], a["calls"]),
                     "self": {c: (b["self"][c], a["self"][c]) for c in counters},
                     "total": {c: (b["total"][c], a["total"][c]) for c in counters}})
    first = counters[0]
    rows.sort(key=lambda r: (abs(r["self"][first][1] - r["self"][first][0]),
                             abs(r["total"][first][1] - r["total"][first][0])), reverse=True)
    return rows


def _signed(delta: int, unit: str) -> str:
    return ("+" if delta > 0 else "-" if delta < 0 else "") + human(abs(delta), unit) if delta else "0"


def _pct(before: int, after: int) -> str:
    if before == 0:
        return "new" if after else "0%"
    return f"{(after - before) * 100 / before:+.1f}%"


def growth(before: int, after: int) -> float:
    """Relative growth in percent (inf when it grew from zero)."""
    if before == 0:
        return 0.0 if after == 0 else float("inf")
    return (after - before) * 100 / before


def find_function(profile: Profile, name: str, source: str) -> list[Function]:
    """The records named `name`, or those whose name ends with '.name' (so 'fib'
    finds '__main__.fib'); one sentence if none or several functions match."""
    fns = [f for f in profile["functions"] if f["name"] == name]
    if not fns:
        fns = [f for f in profile["functions"] if f["name"].endswith("." + name)]
    if not fns:
        raise CprofError(f"'{_p(source)}' has no function named '{_p(name)}'; give the name the report shows")
    if len({f["name"] for f in fns}) > 1:
        raise CprofError(f"'{_p(name)}' matches several functions in '{_p(source)}' "
                         f"({_p(', '.join(sorted({f['name'] for f in fns})))}); give the full name")
    return fns


def format_diff(before: Profile, after: Profile, counters: list[str], names: tuple[str, str],
                limit: int = 25) -> str:
    units = {c["name"]: c["unit"] for c in after["counters"]}
    rows = diff(before, after, counters)
    shown = rows[:limit] if limit > 0 else rows
    lines = [f"cprof compare: {_p(names[0])} -> {_p(names[1])}"]
    rb, ra = before["meta"].get("region", {}), after["meta"].get("region", {})
    parts = []
    for c in counters:
        x, y = rb.get(c, 0), ra.get(c, 0)
        parts.append(f"{_p(c)} {human(x, units[c])} -> {human(y, units[c])} "
                     f"({_signed(y - x, units[c])}, {_pct(x, y)})")
    lines.append("profiled: " + ", ".join(parts))
    new = sum(r["status"] == "new" for r in rows)
    gone = sum(r["status"] == "gone" for r in rows)
    lines.append(f"sorted by the change of {_p(counters[0])} self; top {len(shown)} of {len(rows)} functions "
                 f"({new} only after, marked +; {gone} only before, marked -)")
    lines.append("")
    cols = ["calls"]
    for c in counters:
        cols += [f"{_p(c)} self change", "%", f"{_p(c)} total change", "%"]
    table = []
    for r in shown:
        cb, ca = r["calls"]
        row = [str(ca) if cb == ca else f"{cb}->{ca}"]
        for c in counters:
            u = units[c]
            for which in ("self", "total"):
                x, y = r[which][c]
                row += [_signed(y - x, u), _pct(x, y) if r["status"] != "gone" else "gone"]
        mark = {"both": " ", "new": "+", "gone": "-"}[r["status"]]
        where = f"{_p(os.path.basename(r['file']))}:{r['line']}" if r["file"] != "~" else "built-in"
        table.append((row, f"{mark} {_p(r['name'])}  ({where})"))
    widths = [max([len(cols[i])] + [len(t[0][i]) for t in table]) for i in range(len(cols))]
    lines.append("  ".join(cols[i].rjust(widths[i]) for i in range(len(cols))) + "    function")
    for row, name in table:
        lines.append("  ".join(row[i].rjust(widths[i]) for i in range(len(cols))) + "  " + name)
    return "\n".join(lines) + "\n"


def check_growth(before: Profile, after: Profile, counter: str, pct: float, function: str | None,
                 names: tuple[str, str]) -> tuple[bool, str]:
    """(grew more than pct?, one sentence saying by how much).  With a function: its
    total (summed over records of that name); without: the profiled region."""
    unit = next(c["unit"] for c in after["counters"] if c["name"] == counter)
    if function is None:
        x = before["meta"].get("region", {}).get(counter, 0)
        y = after["meta"].get("region", {}).get(counter, 0)
        what = f"the profiled region's {_p(counter)}"
    else:
        fb = find_function(before, function, names[0])
        fa = find_function(after, function, names[1])
        x = sum(f["total"][counter] for f in fb)
        y = sum(f["total"][counter] for f in fa)
        what = f"{_p(fa[0]['name'])}'s total {_p(counter)}"
    g = growth(x, y)
    shown = "from zero" if g == float("inf") else f"{g:+.1f}%"
    verdict = "more than" if g > pct else "not more than"
    return g > pct, (f"{what} went from {human(x, unit)} to {human(y, unit)} ({shown}), "
                     f"{verdict} the {pct:g}% allowed")
