"""The extension's reference handling where it can go wrong: an allocation that fails while
a result is built, and an object the extension only borrowed that Python code run meanwhile
frees.  Each runs in a child Python, so a crash is a failed test rather than a dead run."""
import subprocess
import sys
import textwrap

import pytest

from cprof import _cprof

MONITORING = _cprof.HOOK == "sys.monitoring"


def run(code):
    r = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, (r.returncode, r.stdout, r.stderr)
    return r.stdout


def test_counters_survive_each_failed_allocation():
    # Profiler.counters builds a tuple of names: a name that cannot be made must
    # give MemoryError, never a tuple holding NULL
    pytest.importorskip("_testcapi")
    out = run("""
        import _testcapi
        from cprof import _cprof
        p = _cprof.Profiler(counters="cpu,wall")
        failed = 0
        for start in range(12):
            _testcapi.set_nomemory(start, start + 1)
            try:
                got = p.counters
            except MemoryError:
                got = None
            finally:
                _testcapi.remove_mem_hooks()
            if got is None:
                failed += 1
            else:
                assert got == ("cpu", "wall"), repr(got)
        print(failed)
    """)
    assert int(out) > 0       # some allocation did fail: the test tested something


@pytest.mark.skipif(MONITORING, reason="one profile hook per thread before 3.12")
def test_a_replaced_hook_dropped_while_cprof_describes_it():
    # At disable(), cprof describes a thread whose hook the program replaced, with what
    # holds the hook now.  Describing runs Python code (the thread's name), during which
    # that thread drops the hook, freeing its only reference: cprof must hold its own.
    out = run("""
        import sys, threading
        from cprof import _cprof

        class Holder:
            def __call__(self, frame, event, arg):
                pass
            def __repr__(self):
                return "<the-holder>"

        class Other(Holder):            # same size: takes the freed Holder's place
            def __repr__(self):
                return "<another-object>"

        dropping = False
        junk = []
        drop, dropped, finish = threading.Event(), threading.Event(), threading.Event()

        class T(threading.Thread):
            @property
            def name(self):
                if dropping and not dropped.is_set():
                    drop.set()
                    dropped.wait(10)
                    junk.extend(Other() for _ in range(1000))
                return "held-thread"
            @name.setter
            def name(self, value):
                pass

        def body():
            sys.setprofile(Holder())    # its only reference: the thread's hook
            ready.set()
            drop.wait(10)
            sys.setprofile(None)        # frees it
            dropped.set()
            finish.wait(10)

        ready = threading.Event()
        p = _cprof.Profiler(counters="wall")
        p.enable()
        t = T(target=body)
        t.start()
        ready.wait(10)
        dropping = True
        p.disable(strict=False)
        finish.set()
        t.join()
        [entry] = [e for e in p.hook_replaced() if e["alive"]]
        print(entry["message"])
    """)
    assert "replaced cprof's profile hook with <the-holder>" in out
