"""speedscope's file format (https://www.speedscope.app/file-format-schema.json):
one "sampled" profile per counter over shared frames.  Each sample is a call path
of the tree (outermost first) weighted by its self value, in depth-first order, so
speedscope's time-order view draws the call tree and its left-heavy view merges it.
Time counters are in nanoseconds; other counters have unit "none" (speedscope
knows no other unit), their unit is in the profile's name."""
from __future__ import annotations

import json
from typing import Any

from ..model import Profile
from . import folded_note, stacks, unit_of, warn_folded, write_atomic

_UNITS = {"ns": "nanoseconds", "B": "bytes"}


def document(profile: Profile, counter: str) -> dict:
    tree = profile["tree"]
    frames = []
    for f in profile["functions"]:
        frame: dict[str, Any] = {"name": f["name"]}
        if f["file"] != "~":
            frame.update(file=f["file"], line=f["line"])
        frames.append(frame)
    names = [c["name"] for c in profile["counters"]]
    title = " ".join(profile["meta"].get("command") or []) or "cprof profile"
    if folded_note(profile, counter):  # said where speedscope shows it: the profile's name
        title += f" [call tree full: {profile['meta']['health']['tree_folded']:,} call paths folded into their parent]"
    profiles = []
    for name in names:
        unit = unit_of(profile, name)
        node_self = tree["self"][name]
        samples, weights = [], []
        for node, path in stacks(tree, node_self.__getitem__):
            samples.append(path)
            weights.append(node_self[node])
        total = sum(weights)
        shown = name if unit in _UNITS else f"{name} ({unit})"
        profiles.append({"type": "sampled", "name": f"{title} — {shown}",
                         "unit": _UNITS.get(unit, "none"), "startValue": 0, "endValue": total,
                         "samples": samples, "weights": weights})
    return {"$schema": "https://www.speedscope.app/file-format-schema.json",
            "shared": {"frames": frames}, "profiles": profiles, "name": title,
            "activeProfileIndex": names.index(counter), "exporter": profile.get("tool", "cprof")}


def write(profile: Profile, path: str, counter: str) -> None:
    """document()'s JSON text, its samples and weights made in C (stats.c tree_stacks):
    black's 17 million frames took 19 s as lists and json.dumps.  The same bytes."""
    write_atomic(path, _text(profile, counter))
    warn_folded(profile, counter, path)  # once written: a failure is one sentence alone


def _text(profile: Profile, counter: str) -> list[bytes]:
    import os

    from .._cprof import tree_stacks
    tree = profile["tree"]
    names = [c["name"] for c in profile["counters"]]
    marks = [f"@cprof-{os.urandom(8).hex()}-{i}" for i in range(2 * len(names))]
    stub: Any = {"parent": [-1], "function": [-1], "calls": [0], "self": {n: [0] for n in names}}
    doc = document({**profile, "tree": stub}, counter)  # every field but the paths
    parts = []
    for i, (name, prof) in enumerate(zip(names, doc["profiles"])):
        samples, weights, total = tree_stacks(tree["parent"], tree["function"], [tree["self"][name]], 0)
        prof["samples"], prof["weights"], prof["endValue"] = marks[2 * i], marks[2 * i + 1], total
        parts += [samples, weights]
    text = json.dumps(doc, separators=(",", ":")).encode("utf-8")
    out = []
    for mark, part in zip(marks, parts):  # each mark once, in this order
        head, _, text = text.partition(f'"{mark}"'.encode())
        out += [head, b"[", part, b"]"]
    return out + [text]
