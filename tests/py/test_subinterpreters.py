"""What sub-interpreters get: nothing.  cprof's extension keeps state that is one per
process (the thread-local state of the hot path, the pymalloc hooks: pyext/profiler.h), so
on 3.12+ it declares Py_mod_multiple_interpreters NOT_SUPPORTED and importing it in a
sub-interpreter that checks its extensions fails with ImportError, whether that
interpreter has its own GIL or shares the main one.  Uses the interpreter's own
sub-interpreter module (_interpreters on 3.13+, _xxsubinterpreters on 3.12)."""
import importlib
import sys

import pytest

pytestmark = pytest.mark.skipif(
    sys.version_info < (3, 12), reason="Py_mod_multiple_interpreters is new in 3.12"
)

REFUSED = "module cprof._cprof does not support loading in subinterpreters"


def _module():
    for name in ("_interpreters", "_xxsubinterpreters"):
        try:
            return importlib.import_module(name)
        except ImportError:
            pass
    pytest.skip("this Python has neither _interpreters nor _xxsubinterpreters")


def _import_error(config):
    """The error `import cprof._cprof` raises in a new sub-interpreter made with `config`
    (a config name or object on 3.13+; 'isolated' on 3.12): (type name, message), or None."""
    interp = _module()
    if interp.__name__ == "_xxsubinterpreters":
        if config != "isolated":
            pytest.skip("3.12's _xxsubinterpreters makes only isolated or unchecked interpreters")
        iid = interp.create(isolated=True)
        try:
            interp.run_string(iid, "import cprof._cprof")
        except interp.RunFailedError as e:   # its text: "<class 'ImportError'>: message"
            kind, _, msg = str(e).partition(": ")
            return kind.split("'")[1], msg
        finally:
            interp.destroy(iid)
        return None
    iid = interp.create(config if isinstance(config, str) else config(interp))
    try:
        exc = interp.run_string(iid, "import cprof._cprof")
    finally:
        interp.destroy(iid)
    return exc and (exc.type.__name__, exc.msg)


def test_an_isolated_subinterpreter_cannot_import_it():
    assert _import_error("isolated") == ("ImportError", REFUSED)


def test_a_subinterpreter_sharing_the_gil_cannot_import_it():
    # the one that loaded the module before it declared NOT_SUPPORTED (3.13+ only:
    # 3.12's module cannot make such an interpreter)
    def shared_gil(interp):
        if not hasattr(interp, "new_config"):
            pytest.skip("no _interpreters.new_config")
        return interp.new_config("legacy", check_multi_interp_extensions=True)

    assert _import_error(shared_gil) == ("ImportError", REFUSED)


def test_the_main_interpreter_still_profiles_after_a_refusal():
    import cprof

    _import_error("isolated")

    def f():
        return sum(range(10))

    p = cprof.Profile(counters=["wall"])
    p.enable()
    f()
    p.disable()
    calls = {fn["name"].rsplit(".", 1)[-1]: fn["calls"] for fn in p.profile()["functions"]}
    assert calls["f"] == 1
