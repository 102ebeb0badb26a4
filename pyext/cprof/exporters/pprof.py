"""pprof: the gzipped protocol buffer of Go's profile.proto (go tool pprof,
Pyroscope, Parca), encoded here by hand so no protobuf package is needed.

One sample type per counter (the chosen one is the default), one sample per call
path of the tree whose self value is not zero in some counter, carrying every
counter's self value; one function and one location per profiled function (the
location's line is the function's first line: cprof measures functions, not
lines).  Time counters are in nanoseconds; other counters keep their unit name."""
from __future__ import annotations

import gzip

from .._cprof import CprofError
from ..model import Counter, Profile
from . import folded_note, warn_folded, write_atomic

_UNITS = {"ns": "nanoseconds", "B": "bytes"}

# profile.proto field numbers
_P_SAMPLE_TYPE, _P_SAMPLE, _P_MAPPING, _P_LOCATION, _P_FUNCTION, _P_STRING_TABLE = 1, 2, 3, 4, 5, 6
_P_TIME_NANOS, _P_DURATION_NANOS, _P_PERIOD_TYPE, _P_PERIOD, _P_COMMENT, _P_DEFAULT_SAMPLE_TYPE = \
    9, 10, 11, 12, 13, 14


# ---------------------------------------------------------------- wire format

def _varint(n: int) -> bytes:
    """An int64 (or uint64) as a base-128 varint: at most ten bytes."""
    if not -(1 << 63) <= n < 1 << 64:  # beyond 64 bits the loop below would never end
        sign = "negative" if n < 0 else "positive"
        raise CprofError(f"pprof cannot hold a {sign} value of {n.bit_length()} bits; its numbers are "
                         "64-bit integers")
    if n < 0:
        n += 1 << 64  # int64 as two's complement, ten bytes
    if n < 0x80:
        return _SMALL[n]
    out = bytearray()
    while n >= 0x80:
        out.append(n & 0x7F | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


_SMALL = [bytes((i,)) for i in range(0x80)]


def _int(field: int, n: int) -> bytes:
    """A varint field (wire type 0); zero is the default and is left out."""
    return _varint(field << 3) + _varint(n) if n else b""


def _bytes(field: int, data: bytes) -> bytes:
    """A length-delimited field (wire type 2)."""
    return _varint(field << 3 | 2) + _varint(len(data)) + data


class _Strings:
    def __init__(self) -> None:
        self.table: list[str] = [""]  # index 0 is always the empty string
        self.index: dict[str, int] = {"": 0}

    def __call__(self, s: str) -> int:
        i = self.index.get(s)
        if i is None:
            i = self.index[s] = len(self.table)
            self.table.append(s)
        return i


# ---------------------------------------------------------------- the profile

def encode(profile: Profile, counter: str) -> bytes:
    """The profile.proto message, not yet gzipped."""
    tree = profile["tree"]
    s = _Strings()
    counters = profile["counters"]
    names = [c["name"] for c in counters]
    out = bytearray()

    def value_type(c: Counter) -> bytes:
        return _int(1, s(c["name"])) + _int(2, s(_UNITS.get(c["unit"], c["unit"])))

    for c in counters:
        out += _bytes(_P_SAMPLE_TYPE, value_type(c))

    # one sample per node with any non-zero self, in node order; location ids (function
    # id + 1) leaf first.  Encoded in C (stats.c): black's 333,000 nodes hold 17 million
    # frames, which took 15 s a _varint call each, 5 s built from the parent's in Python
    from .._cprof import pprof_samples
    if profile.get("processes"):  # a --follow-children merge: each process's paths, labelled pid
        from ..children import pprof_samples as by_process
        out += by_process(profile, names, s)
    else:
        out += pprof_samples(tree["parent"], tree["function"], [tree["self"][n] for n in names])
    # one mapping standing for the interpreter, flagged as already symbolized
    out += _bytes(_P_MAPPING, _int(1, 1) + _int(5, s("python")) + _int(7, 1) + _int(8, 1) + _int(9, 1))
    for f in profile["functions"]:
        fid = f["id"] + 1
        line = _int(1, fid) + _int(2, f["line"])
        out += _bytes(_P_LOCATION, _int(1, fid) + _int(2, 1) + _bytes(4, line))
    for f in profile["functions"]:
        filename = f["file"] if f["file"] != "~" else "<built-in>"
        out += _bytes(_P_FUNCTION, _int(1, f["id"] + 1) + _int(2, s(f["name"])) + _int(3, s(f["name"]))
                      + _int(4, s(filename)) + _int(5, f["line"]))

    meta = profile["meta"]
    chosen = counters[names.index(counter)]
    tail = bytearray()
    if isinstance(meta.get("started"), (int, float)):
        tail += _int(_P_TIME_NANOS, int(meta["started"] * 1e9))
    if isinstance(meta.get("duration_s"), (int, float)):
        tail += _int(_P_DURATION_NANOS, int(meta["duration_s"] * 1e9))
    tail += _bytes(_P_PERIOD_TYPE, value_type(chosen))
    tail += _int(_P_PERIOD, 1)
    comments = [(f"{profile.get('tool', 'cprof')}: deterministic, values are exact sums per call path, "
                "not samples")]
    if meta.get("command"):
        comments.append("command: " + " ".join(meta["command"]))
    note = folded_note(profile, counter)
    if note:
        comments.append(note)
    for text in comments:
        tail += _int(_P_COMMENT, s(text))
    tail += _int(_P_DEFAULT_SAMPLE_TYPE, s(chosen["name"]))
    # the string table last: every string above is in it by now
    for text in s.table:
        # valid UTF-8 always: a file name that was not UTF-8 (surrogate escapes) as \udcXX
        out += _bytes(_P_STRING_TABLE, text.encode("utf-8", "backslashreplace"))
    out += tail
    return bytes(out)


def write(profile: Profile, path: str, counter: str) -> None:
    # mtime=0: the same profile gives the same bytes;
    # level 1: black's 35 MB message in 0.3 s, where the default 9 took 3 s for a file
    # a quarter smaller
    write_atomic(path, gzip.compress(encode(profile, counter), compresslevel=1, mtime=0))
    warn_folded(profile, counter, path)  # once written: a failure is one sentence alone
