"""The profile, typed: what profile_file.load returns and what Profile.profile()
builds, read by the report, focus, compare and the exporters alike.

A profile stays the plain JSON dict that the file holds (the exporters and the HTML
report read it as is, and `json.dump` writes it back); these TypedDicts name its
keys and their types for the readers and for mypy.  The loader checks a file
against them once (schema.check, which says where a file departs from them) and
upgrades an older version (profile_file.upgrade), so a reader never meets a missing
key, a wrong type or an id of no function.  Format version 3; README "The profile
file" is the prose of the same.  The tree's columns are lists of ints, or (a loaded
version-3 file, a run's compact profile) memoryviews of int64: sequences either way.
"""
from __future__ import annotations

VERSION = 3  # the format written; version 1 is read through profile_file.upgrade
READS = (1, 2, VERSION)  # the versions load() reads (2 is 3 with its tree columns as lists)

# Health's keys in its order (profile_file builds a v1 profile's health from them)
HEALTH_KEYS = ("out_of_memory", "backwards_readings", "backwards_first", "counter_failures",
               "tree_folded", "distribution_values_lost", "unmatched_exits")

# The TypedDicts exist for mypy only: importing typing at run time cost a profiled run
# ~46M instructions of start-up; at run time each name is the dict it describes.
TYPE_CHECKING = False   # typing.TYPE_CHECKING without importing typing (PEP 781)

HEALTH_COUNTS = ("out_of_memory", "backwards_readings", "tree_folded", "distribution_values_lost",
                 "unmatched_exits")

if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Any, TypeAlias, TypedDict

    Values = dict[str, int]          # one integer per counter, in the profile's counter order

    class Counter(TypedDict):
        name: str
        unit: str
        description: str
        read_path: str

    class Dist(TypedDict):
        """A function's per-call distribution of one counter (--distributions)."""
        count: int
        p50: int
        p90: int
        p99: int
        max: int
        buckets: list[list[int]]     # [low, high, calls], low <= high

    class _SlowCall(TypedDict):
        values: Values
        args: str | None          # the arguments' repr, None where they could not be seen

    class SlowCall(_SlowCall, total=False):
        thread: str | None

    class _Function(TypedDict):
        id: int                      # its place in functions
        name: str
        file: str                    # "~" for a C function
        line: int
        calls: int
        primitive_calls: int
        self: Values
        total: Values

    class Function(_Function, total=False):
        dist: dict[str, Dist]
        slow_calls: list[SlowCall]
        resumes: int                 # --async: a coroutine function's resumes

    class Edge(TypedDict):
        caller: int
        callee: int
        calls: int
        primitive_calls: int
        total: Values

    class Tree(TypedDict):
        """The call tree, column-wise: node 0 is the root (parent and function -1)."""
        parent: list[int]
        function: list[int]
        calls: list[int]
        self: dict[str, list[int]]
        total: dict[str, list[int]]

    class BackwardsFirst(TypedDict):
        counter: str
        function: int | None      # a function id, or None outside any function

    class CounterFailure(TypedDict):
        counter: str
        message: str

    class Health(TypedDict):
        """What went wrong while profiling; all 0 and no failure: clean."""
        out_of_memory: int           # events or records dropped for want of memory
        backwards_readings: int      # counter readings that went down (clamped)
        backwards_first: BackwardsFirst | None
        counter_failures: list[CounterFailure]
        tree_folded: int             # call paths folded into their parent (the tree was full)
        distribution_values_lost: int
        unmatched_exits: int         # returns of frames never seen entering


    class _Paths(TypedDict):
        stdlib: list[str]
        site: list[str]
        cprof: list[str]

    class Paths(_Paths, total=False):
        app: list[str]               # an installed program's own packages (cprof.trace)

    class _Meta(TypedDict):
        health: Health
        paths: Paths

    class Meta(_Meta, total=False):
        python: str
        hook: str
        threads: int
        events: int
        region: Values
        unattributed: Values
        corrections: dict[str, dict[str, int]]
        tracer_share: dict[str, dict[str, Any]]
        command: list[str]
        started: float
        duration_s: float
        exit_code: Any               # what the program gave sys.exit(), as written
        pid: int
        parent_pid: int
        signal: str
        hook_replaced: list[dict[str, Any]]
        trace: dict[str, Any]        # --trace: patterns, untraced function ids (cprof.trace)
        # (sic: "async" is a keyword) asyncio mode, --async: True (cprof.asyncmode)

    class _Profile(TypedDict):
        version: int
        counters: list[Counter]
        functions: list[Function]
        edges: list[Edge]
        tree: Tree
        meta: Meta

    class Task(TypedDict):
        """One asyncio task (--async; cprof.asyncmode); ns from the profile's start."""
        name: str
        coroutine: str | None
        function: int | None         # its coroutine's function id
        thread: int
        created: int
        started: int | None
        done: int | None
        wall: int                    # created to done (or to the end of profiling)
        running: int
        awaiting: int                # wall - running
        outcome: str                 # returned, raised, cancelled, pending
        exception: str | None

    class Profile(_Profile, total=False):
        tool: str
        tasks: list[Task]            # --async

    class FoldedRow(TypedDict):
        """A report line standing for several functions (a library, or [other])."""
        name: str
        file: str
        line: int
        group: str
        folded: list[int]            # the ids of its functions
        calls: int
        primitive_calls: int
        self: Values
        total: Values

    Row: TypeAlias = Function | FoldedRow
else:
    Values = dict
    Counter = Dist = _SlowCall = SlowCall = _Function = Function = Edge = Tree = BackwardsFirst = CounterFailure = Health = Paths = _Meta = Meta = Task = _Profile = Profile = FoldedRow = Row = dict  # type: ignore[misc]


def counter_names(profile: Profile) -> list[str]:
    return [c["name"] for c in profile["counters"]]


def units(profile: Profile) -> dict[str, str]:
    return {c["name"]: c["unit"] for c in profile["counters"]}


def clean(health: Health) -> bool:
    counts: Mapping[str, object] = health
    return not any(counts[k] for k in HEALTH_COUNTS) and not health["counter_failures"]
