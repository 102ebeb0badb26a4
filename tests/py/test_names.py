"""C functions are named after the class that defines them, the same in every run and for
every caller: every type's __new__ is its own function (they share one PyMethodDef, which
made them one key named after whichever type called first), and a method bound to an
instance is named after the class whose __dict__ holds it, not the instance's type."""
import dis
import os
import sys
import textwrap
import weakref

import pytest

from conftest import load, run_cprof

SCRIPT = """
    import sys, weakref

    class Plain:
        pass

    class Ref(weakref.ref):
        pass

    def target():
        pass

    def make_objects(n):
        for _ in range(n):
            object.__new__(Plain)

    def make_refs(n):
        for _ in range(n):
            weakref.ref.__new__(weakref.ref, target)
            weakref.ref.__new__(Ref, target)    # a heap subclass: the same C function

    def read_file(n):
        for _ in range(n):
            with open(__file__, "rb") as f:
                f.__enter__()
                f.read(1)
                f.__exit__(None, None, None)

    for step in sys.argv[1].split(","):
        {"objects": make_objects, "refs": make_refs, "files": read_file}[step](
            {"objects": 3000, "refs": 2000, "files": 7}[step])
"""


def c_functions(prof):
    """The C functions the script's own functions called, with their calls from there
    (the script's `import weakref` may run weakref's module body, which calls some too)."""
    fns = prof["functions"]
    ours = {f["id"] for f in fns if f["file"].endswith("names.py") and f["name"] != "__main__.<module>"}
    calls: dict = {}
    for e in prof["edges"]:
        f = fns[e["callee"]]
        if e["caller"] in ours and f["file"] == "~":
            calls[f["name"]] = calls.get(f["name"], 0) + e["calls"]
    return calls


def profile(tmp_path, order):
    script = tmp_path / "names.py"
    script.write_text(textwrap.dedent(SCRIPT))
    out = tmp_path / f"{order}.json"
    run_cprof(["-o", str(out), str(script), order], check_rc=0)
    return c_functions(load(out))


def test_each_types_new_is_its_own_function_whatever_came_first(tmp_path):
    ref_type = weakref.ref
    ref_new = f"{ref_type.__module__}.{ref_type.__qualname__}.__new__"
    if ref_type.__module__ == "builtins":
        ref_new = f"{ref_type.__qualname__}.__new__"
    a = profile(tmp_path, "objects,refs")
    b = profile(tmp_path, "refs,objects")
    for names in (a, b):
        assert names["object.__new__"] == 3000
        assert names[ref_new] == 4000
        assert not [n for n in names if n.endswith("Ref.__new__") or n.endswith("Plain.__new__")]
    new_a = {n: c for n, c in a.items() if n.endswith("__new__")}
    new_b = {n: c for n, c in b.items() if n.endswith("__new__")}
    assert new_a == new_b


def _with_calls_enter() -> bool:
    """Whether this interpreter's `with` calls __enter__ through a call instruction (a call
    event of its own), as its bytecode says."""
    ops = {i.opname for i in dis.get_instructions(compile("with x:\n    pass\n", "w", "exec"))}
    return not ops & {"SETUP_WITH", "BEFORE_WITH"}


def test_bound_methods_are_named_after_their_defining_class(tmp_path):
    import _io
    names = profile(tmp_path, "files")
    # where each method lives on this Python (the test derives it, the profile must agree)
    owner = {m: next(c for c in _io.BufferedReader.__mro__ if m in c.__dict__)
             for m in ("__enter__", "__exit__", "read")}
    for m, cls in owner.items():
        assert f"{cls.__module__}.{cls.__qualname__}.{m}" in names, sorted(names)
    assert owner["__exit__"] is _io._IOBase                  # _io._IOBase.__exit__
    assert not [n for n in names if n.startswith("_io.BufferedReader.__e")]
    exits = names["_io._IOBase.__exit__"]
    # 7 explicit calls and the with statement's 7 (a call instruction on every Python)
    assert exits == 14
    # 7 explicit calls, and the with statement's 7 where it calls __enter__ with a call
    # instruction (3.14's LOAD_SPECIAL + CALL), not inside its own (SETUP_WITH, BEFORE_WITH)
    assert names["_io._IOBase.__enter__"] == (14 if _with_calls_enter() else 7)
    assert names["_io.BufferedReader.read"] == 7
