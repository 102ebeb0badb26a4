"""The profile file: writing it atomically and loading it back with clear errors
(build.py makes it from the C profiler's raw stats; model.py types it).  Format
version 3:

    {"version": 3, "tool": "cprof 0.1.0",
     "counters": [{"name", "unit", "description", "read_path"}],
     "functions": [{"id", "name", "file", "line", "calls", "primitive_calls",
                    "self": {counter: n}, "total": {counter: n},
                    optional "dist": {counter: {...}}, "slow_calls": [...]}],
     "edges": [{"caller": id, "callee": id, "calls", "primitive_calls", "total": {counter: n}}],
     "tree": {"nodes": N, "encoding": "leb128-base64",
              "parent": "...", "function": "...", "calls": "...",
              "self": {counter: "..."}, "total": {counter: "..."}},
     "meta": {"health": {"out_of_memory", "backwards_readings", "backwards_first",
                         "counter_failures", "tree_folded", "distribution_values_lost",
                         "unmatched_exits"},
              "paths": {"stdlib", "site", "cprof"}, ...}}

The tree's columns are packed (pack_column): base64 of one unsigned LEB128 varint per
node, the parent column as each node's distance back to its parent and the function
column as the function id + 1; a column may also be a plain JSON list of integers
(version 2 wrote only those).  Loading unpacks them in C into memoryviews of int64,
which every reader takes as it takes lists, with no Python int per value.

Version 2 differs only in its tree columns (lists) and is read as is; version 1
(cprof before the health record) had the health counts at the top of meta and tree
and meta.paths optional; load() reads it through upgrade(), one step.
"""
from __future__ import annotations

TYPE_CHECKING = False   # typing.TYPE_CHECKING without importing typing (PEP 781)
if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator
    from typing import Any

import errno
import os
import stat

from . import focus, schema
from ._cprof import CprofError
from .model import HEALTH_COUNTS, HEALTH_KEYS, READS, VERSION, Health, Profile, Tree
from .schema import printable

# ---------------------------------------------------------------- writing
#
# cprof never damages a file it did not create.  The rules (README, "Use"):
# - a new file is created atomically (a temporary file in the same folder, flushed,
#   then renamed), with open()'s mode, or 0600 when it holds argument reprs;
# - an existing regular file is replaced atomically and keeps its mode and owner;
#   one that cannot be replaced so (owned by another user, hard-linked, or in a
#   folder closed to us) is rewritten in place, so it keeps its identity too;
# - anything else (a device such as /dev/null, a FIFO, a socket) and the process's
#   own streams (/dev/stdout, /dev/fd/N, /proc/self/fd/N) are written in place,
#   never replaced;
# - a symbolic link is written through: the file it points to gets the profile,
#   the link stays (as open(path, "w") would do).

def _chain(path: str):
    """The path, then each symbolic link it leads through (last component only)."""
    p = os.path.abspath(path)
    for _ in range(40):  # the kernel's own limit on links in a row
        yield p
        try:
            link = os.readlink(p)
        except OSError:
            return
        p = os.path.normpath(os.path.join(os.path.dirname(p), link))


def _fd_number(text: str) -> int | None:
    return int(text) if text.isdecimal() else None   # what a regular expression's \d takes


def _stream_fd(path: str) -> int | None:
    """The descriptor of this process that `path` names (/dev/stdout, /dev/fd/2,
    /proc/self/fd/1, or a link to one of them), else None.  (String tests, not a
    regular expression: importing re would cost a run's -o 5 ms of start-up.)"""
    for p in _chain(path):
        if p in ("/dev/stdout", "/dev/stderr"):
            return 1 if p.endswith("out") else 2
        if p.startswith("/dev/fd/"):
            fd = _fd_number(p[len("/dev/fd/"):])
            if fd is not None:
                return fd
            continue
        parts = p.split("/")   # '', 'proc', who, 'fd', N
        if len(parts) != 5 or parts[:2] != ["", "proc"] or parts[3] != "fd":
            continue
        fd = _fd_number(parts[4])
        pid = _fd_number(parts[2])
        if fd is not None and (parts[2] in ("self", "thread-self") or pid == os.getpid()):
            return fd
    return None


def _special(path: str) -> bool:
    """The path is, or leads to, something under /dev or /proc: never replaced."""
    return any(p.startswith(("/dev/", "/proc/")) for p in _chain(path))


def _write_all(fd: int, data: bytes | Iterable[bytes]) -> None:
    """Write `data`: bytes, or an iterable of byte chunks (a profile streamed out as it
    is encoded, so that its whole text never sits in memory)."""
    for chunk in ((data,) if isinstance(data, (bytes, bytearray)) else data):
        view = memoryview(chunk)
        while view:
            view = view[os.write(fd, view):]
        del chunk, view  # written: not held while the next chunk is made


def _write_in_place(path: str, data: bytes | Iterable[bytes], regular: bool) -> None:
    # no O_CREAT: the file exists (a device or FIFO must not be made a file)
    fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC | (os.O_TRUNC if regular else 0))
    try:
        _write_all(fd, data)
        if regular:
            os.fsync(fd)
    finally:
        os.close(fd)


def _create_temp(folder: str, mode: int) -> tuple[int, str]:
    """A new file beside the target, created with `mode` less the umask, as open()
    creates files (reading the umask would mean setting it, racing other threads)."""
    for _ in range(100):
        tmp = os.path.join(folder, f".cprof-{os.urandom(6).hex()}.tmp")
        try:
            return os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode), tmp
        except FileExistsError:
            continue
    raise FileExistsError(errno.EEXIST, "no free temporary name", folder)


def _replace(target: str, data: bytes | Iterable[bytes], st: os.stat_result | None, private: bool) -> None:
    fd, tmp = _create_temp(os.path.dirname(target), 0o600 if private or st is not None else 0o666)
    try:
        if st is not None:  # the file it replaces: its owner (root can give it), then its mode
            if (st.st_uid, st.st_gid) != (os.geteuid(), os.getegid()):
                try:
                    os.fchown(fd, st.st_uid, st.st_gid)
                except OSError:
                    pass
            os.fchmod(fd, stat.S_IMODE(st.st_mode))  # after fchown, which clears set-id bits
        _write_all(fd, data)
        os.fsync(fd)
        os.close(fd)
        fd = -1
        os.replace(tmp, target)
    except BaseException:
        if fd >= 0:
            os.close(fd)
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def _write(path: str, data: bytes | Iterable[bytes], private: bool) -> None:
    fd = _stream_fd(path)
    if fd is not None:  # -o /dev/stdout: after what the program wrote there, not over it
        _write_all(fd, data)
        return
    target = os.path.realpath(path)  # through symbolic links
    try:
        st = os.stat(target)
    except FileNotFoundError:
        st = None
    if st is not None and (not stat.S_ISREG(st.st_mode) or _special(path)):
        _write_in_place(path, data, regular=stat.S_ISREG(st.st_mode))
        return
    if st is not None and (st.st_nlink > 1 or (os.geteuid() != 0 and st.st_uid != os.geteuid())):
        _write_in_place(target, data, regular=True)  # keeps its links and its owner
        return
    try:
        _replace(target, data, st, private)
    except PermissionError:
        if st is None:
            raise
        _write_in_place(target, data, regular=True)  # the folder is closed to us, the file is not


def _reason(e: OSError) -> str:
    return (e.strerror or str(e)).lower() if e.errno != errno.ENOENT else "its folder does not exist"


def write_atomic(path: str, data: bytes | Iterable[bytes], private: bool = False) -> None:
    """Write `data` to `path` by the rules above (profiles and exports alike): an
    interrupted run never leaves a half-written file, and nothing that is not a
    regular file is ever replaced.  private: a new file is 0600 (it holds argument
    reprs).  A failure is a CprofError naming `path`."""
    try:
        _write(path, data, private)
    except OSError as e:
        raise CprofError(f"cannot write '{printable(path)}' ({_reason(e)})") from None


def write(profile: Profile, path: str) -> None:
    """The JSON profile, written atomically; 0600 if it holds argument reprs (--slow-calls).
    Streamed out piece by piece (encode), so writing costs little memory beyond the
    profile itself."""
    private = any(f.get("slow_calls") for f in profile.get("functions", ()))
    write_atomic(path, _buffered(encode(profile)), private)


def _buffered(pieces: Iterable[str], size: int = 1 << 18) -> Iterator[bytes]:
    """The pieces as UTF-8, in chunks of about `size` bytes (one write each)."""
    buf: list[str] = []
    held = 0
    for piece in pieces:
        # a packed column (anything of a quarter chunk or more): as it is, not copied into a
        # chunk; a column just under a chunk, buffered, was held three times over (the list,
        # its join, its bytes) with the one before it: CI's fresh venvs, whose big test tree
        # came out 255 KB a column, measured 5.6 times the widest column instead of 4.4
        if len(piece) >= size // 4:
            if buf:
                yield "".join(buf).encode("utf-8")
                buf.clear()
                held = 0
            data = piece.encode("utf-8")
            del piece  # neither held while the next piece is made
            yield data
            del data
            continue
        buf.append(piece)
        held += len(piece)
        if held >= size:
            yield "".join(buf).encode("utf-8")
            buf.clear()
            held = 0
    if buf:
        yield "".join(buf).encode("utf-8")


_dumps_made: list = []


def _dumps() -> Any:
    """json.dumps with its defaults, made from the C encoder json itself uses (its
    call unchanged from 3.10 to 3.15), so that writing a run's profile does not import
    json, whose decoder imports re: 3-5 ms of an empty run's start-up.  json.dumps
    itself if that encoder is missing or its call changed.  Made once."""
    if not _dumps_made:
        _dumps_made.append(_make_dumps())
    return _dumps_made[0]


def _make_dumps() -> Any:
    try:
        from _json import encode_basestring_ascii as text
        from _json import make_encoder

        def default(o: Any) -> Any:
            raise TypeError(f"Object of type {type(o).__name__} is not JSON serializable")

        def dumps(o: Any) -> str:
            if isinstance(o, str):
                return text(o)
            # markers (circular references), default, the str encoder, indent, the
            # separators, sort_keys, skipkeys, allow_nan: json.dumps's defaults
            return "".join(make_encoder({}, default, text, None, ": ", ", ", False, False, True)(o, 0))

        if dumps({"a": [1, 2.5, None, True, "\u00e9"]}) == '{"a": [1, 2.5, null, true, "\\u00e9"]}':
            return dumps
    except Exception:  # whatever a changed _json does: the self-test above is the guard
        pass
    import json
    return json.dumps


def encode(profile: Profile) -> Iterator[str]:
    """The profile's JSON text (format version 3), in pieces: load() of their
    concatenation gives back the profile (its tree columns as memoryviews).  One
    function or edge a line, the tree one packed column a line, the rest as json.dumps
    makes it; never the whole text, nor a Python int per tree value, at once."""
    dumps = _dumps()
    sep = "{"
    for key, value in profile.items():
        yield f"{sep}{dumps(key)}: "
        sep = ",\n "
        if key == "version":
            yield dumps(VERSION)  # a loaded older profile is written as this version
        elif key in ("functions", "edges") and isinstance(value, list):
            if not value:
                yield "[]"
                continue
            inner = "[\n  "
            for item in value:
                yield inner
                yield dumps(item)
                inner = ",\n  "
            yield "]"
        elif key == "tree" and isinstance(value, dict):
            yield from _encode_tree(value, dumps)
        else:
            yield dumps(value)
    yield "}\n" if sep != "{" else "{}\n"


def _encode_tree(tree: dict, dumps: Any) -> Iterator[str]:
    """The tree with its columns packed (pack_column), one column a line: each column's
    text is made and written in turn, never the whole tree's."""
    columns: list[tuple[str, Any]] = [("parent", tree.get("parent")), ("function", tree.get("function")),
                                      ("calls", tree.get("calls"))]
    packed = _prepacked(tree)
    if not packed and not all(_intlike(c) for _, c in columns):  # not a tree cprof made
        yield dumps(tree)   # as json writes it
        return
    nodes = tree["nodes"] if packed else len(columns[0][1])
    yield f'{{"nodes": {nodes}, "encoding": {dumps(ENCODING)}'
    for key, value in tree.items():
        if key in ("nodes", "encoding"):
            continue
        yield f",\n  {dumps(key)}: "
        if isinstance(value, dict):
            yield "{"
            sep = ""
            for name, column in value.items():
                yield f"{sep}{dumps(name)}: "
                sep = ",\n    "
                yield from _encode_column(column, dumps, _KINDS.get(key, 0), packed)
            yield "}"
        else:
            yield from _encode_column(value, dumps, _KINDS.get(key, 0), packed)
    yield "}"


def _prepacked(tree: dict) -> bool:
    """A tree already packed as this version writes it (build's packed: the run's last
    profile, written at exit): "nodes", this encoding, and every column a packed text."""
    cols = [tree.get("parent"), tree.get("function"), tree.get("calls"),
            *(tree.get("self") or {}).values(), *(tree.get("total") or {}).values()]
    return (tree.get("encoding") == ENCODING and type(tree.get("nodes")) is int
            and isinstance(tree.get("self"), dict) and isinstance(tree.get("total"), dict)
            and all(isinstance(c, str) for c in cols))


ENCODING = "leb128-base64"  # tree.encoding: how version 3 packs the tree's columns
_KINDS = {"parent": 1, "function": 2}  # pack_column's kinds; other columns are values (0)


def _intlike(column: Any) -> bool:
    return isinstance(column, memoryview) or (isinstance(column, list) and all(type(v) is int for v in column))


def _encode_column(column: Any, dumps: Any, kind: int, packed: bool = False) -> Iterator[str]:
    """A column (a list of ints, or a memoryview of int64; packed: its text) packed as a
    JSON string."""
    if packed:
        yield '"'
        yield column   # base64: nothing to escape
        yield '"'
        return
    if not _intlike(column):
        yield dumps(column)  # anything else as json writes it (and refuses it)
        return
    yield '"'
    yield pack_column(column, kind)   # base64: nothing to escape
    yield '"'


def pack_column(column: Any, kind: int = 0) -> str:
    """A tree column as version 3 stores it: base64 (RFC 4648, padded) of one unsigned
    LEB128 varint per node.  kind 0, a value column (calls, self, total): the values;
    1, parent: each node's distance back to its parent (node - parent; 1 for the root);
    2, function: the function id + 1 (0 for the root).  In C (stats.c)."""
    from ._cprof import column_pack
    return column_pack(column, kind)


def check_writable(path: str) -> None:
    """Before any work: a CprofError (one sentence) if `path` cannot be written.  The
    path is shown escaped (a newline or an escape sequence in it must not reach the
    terminal as one)."""
    shown = printable(path)
    fd = _stream_fd(path)
    if fd is not None:
        try:
            os.fstat(fd)
        except (OSError, OverflowError):  # not open, or beyond any descriptor number
            raise CprofError(f"cannot write '{shown}': descriptor {fd} is not open in cprof") from None
        return
    try:
        st = os.stat(path)
    except FileNotFoundError:
        st = None
    except OSError as e:  # a file used as a folder, a loop of links, a folder closed to us
        raise CprofError(f"cannot write '{shown}' ({_reason(e)}); give another path") from None
    if st is not None and stat.S_ISDIR(st.st_mode):
        raise CprofError(f"'{shown}' is a folder; give a file name, such as "
                         f"{printable(os.path.join(path, 'profile.json'))}")
    if st is not None:
        if not os.access(path, os.W_OK):
            raise CprofError(f"cannot write '{shown}': you have no permission to write that file; "
                             "give another path or change its mode")
        return
    if path.endswith(os.sep):
        raise CprofError(f"'{shown}' names a folder that does not exist; give a file name")
    folder = os.path.dirname(os.path.realpath(path))
    if not os.path.isdir(folder):
        if os.path.exists(folder):
            raise CprofError(f"cannot write '{shown}': '{printable(folder)}' is not a folder")
        raise CprofError(f"cannot write '{shown}': folder '{printable(folder)}' does not exist")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise CprofError(f"cannot write '{shown}': you have no permission to create files in "
                         f"folder '{printable(folder)}'; give a path in a folder you can write to")


def split_ending(path: str) -> tuple[str, str]:
    """(stem, ending): out.json -> (out, .json), out.pb.gz -> (out, .pb.gz), out -> (out, '')."""
    from .exporters import COMPOUND_ENDINGS  # the exporters' registry (which imports this module)
    low = path.lower()
    for ending in COMPOUND_ENDINGS:
        if low.endswith(ending) and len(path) > len(ending):
            return path[:-len(ending)], path[-len(ending):]
    stem, ext = os.path.splitext(path)
    return stem, ext


def tagged_path(path: str, tag: str) -> str:
    """`path` with `.tag` before its ending, in the same folder: out.json -> out.TAG.json."""
    stem, ending = split_ending(path)
    return f"{stem}.{tag}{ending}"


def beside_path(path: str, pid: int) -> str | None:
    """Where a forked process writes its own profile when its parent writes `path`:
    beside it, tagged with its pid (out.json -> out.4242.json); None when `path` is a
    stream (/dev/stdout, /dev/fd/1, /proc/self/fd/1) or the tagged file would land in
    /dev, /proc or /sys, links followed (/dev/null, a folder linked to /dev): a regular
    file is never made there.  /dev/shm, a plain folder, is not refused."""
    if _stream_fd(path) is not None:
        return None
    tagged = tagged_path(path, str(pid))
    folder = os.path.realpath(os.path.dirname(os.path.abspath(tagged)))
    if folder in ("/dev", "/proc", "/sys") or folder.startswith(("/proc/", "/sys/")) or (
            folder.startswith("/dev/") and not (folder + "/").startswith("/dev/shm/")):
        return None
    return tagged


def spare_path(path: str) -> str:
    """A new, private (0600) file in the temporary folder, named after `path` (same
    ending, so the same format): where a run's profile goes if `path` fails."""
    import tempfile
    stem, ending = split_ending(os.path.basename(path))
    fd, spare = tempfile.mkstemp(prefix=f"{stem or 'cprof'}.", suffix=ending)
    os.close(fd)
    return spare


def load(path: str) -> Profile:
    """Read a profile, checked once against the format (schema.check), or raise
    CprofError with one sentence naming the file and what is wrong."""
    import json
    shown = printable(path)
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except FileNotFoundError:
        raise CprofError(f"profile '{shown}' does not exist; check the path") from None
    except IsADirectoryError:
        raise CprofError(f"'{shown}' is a folder, not a profile; give a .json file written by cprof -o") from None
    except OSError as e:
        raise CprofError(f"cannot read profile '{shown}' ({e.strerror or e}); check the path and its "
                         "permissions") from None
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as e:  # JSONDecodeError, and ints of over 4300 digits
        raise CprofError(f"'{shown}' is not a cprof profile (not valid JSON: {printable(str(e))[:200]}); "
                         "give a file written by cprof -o") from None
    except RecursionError:
        raise CprofError(f"'{shown}' is not a cprof profile (JSON nested too deep); "
                         "give a file written by cprof -o") from None
    if not isinstance(data, dict) or "version" not in data or "functions" not in data:
        raise CprofError(f"'{shown}' is JSON but not a cprof profile; give a file written by cprof -o")
    version = data["version"]
    if type(version) is int and version not in READS:
        raise CprofError(f"'{shown}' is a version {printable(str(version))[:40]} profile and this cprof "
                         f"reads versions 1 to {VERSION}; use the cprof that wrote it")
    try:
        schema.check(data)
    except schema.Damaged as e:
        raise CprofError(f"'{shown}' is a damaged cprof profile: {printable(str(e))}; "
                         "give a file written by cprof -o") from None
    if version == 1:
        return upgrade(data)
    data["version"] = VERSION  # version 2 is version 3 with unpacked columns
    return data  # type: ignore[return-value]


# ---------------------------------------------------------------- older versions

def upgrade(data: dict[str, Any]) -> Profile:
    """A version-1 profile (checked by schema.check) as version 3, in place: the one
    step from the older format, so that no reader keeps an "old profile" branch.
    - meta's health counts (unmatched_exits, backwards_readings, tree_folded,
      distribution_values_lost) move into meta.health; version 1 did not record the
      rest: no counter failures, backwards_first null, out_of_memory 0;
    - a file without meta.paths gets this interpreter's folders (as version 1 was
      read), one without paths.cprof an empty list;
    - a file without a call tree (written before cprof kept one) gets a flat one:
      one node per function under the root, with the function's calls and self, and
      as total its self (nothing is known of what it called): call-path exports show
      each function alone, and a folded report line's total is its functions' self."""
    meta = data["meta"]
    meta["health"] = health_of_v1(meta)
    paths = meta.get("paths")
    if paths is None:
        meta["paths"] = focus.library_paths()
    else:
        paths.setdefault("cprof", [])
    if "tree" not in data:
        data["tree"] = flat_tree(data)
    data["version"] = VERSION
    return data  # type: ignore[return-value]


def health_of_v1(meta: dict[str, Any]) -> Health:
    """meta.health from a version-1 meta, whose health counts it removes."""
    health: dict[str, Any] = {k: meta.pop(k, 0) for k in HEALTH_COUNTS}
    health.update(backwards_first=None, counter_failures=[])
    return {k: health[k] for k in HEALTH_KEYS}  # type: ignore[return-value]


def flat_tree(data: dict[str, Any]) -> Tree:
    names = [c["name"] for c in data["counters"]]
    fns = data["functions"]
    unattributed = data["meta"].get("unattributed", {})
    self_ = {c: [unattributed.get(c, 0)] + [f["self"][c] for f in fns] for c in names}
    return {"parent": [-1] + [0] * len(fns), "function": [-1] + [f["id"] for f in fns],
            "calls": [0] + [f["calls"] for f in fns], "self": self_,
            "total": {c: [sum(col)] + col[1:] for c, col in self_.items()}}
