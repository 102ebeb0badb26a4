"""Signals held across a fork: a forked interpreter drops, as it starts, the signals
whose Python handlers have not run yet (CPython's _PySignal_AfterFork), so an ending
signal that reaches a child before its first instruction would be lost where the
default action ends it.  Blocked in the forking thread before the fork (the child
inherits the mask), it waits in the kernel until the child's own handlers are set.
cli.py (cprof's handler in its process) and children.py (a followed process's) each
keep a ForkMask: their hooks nest, each restoring what it saw."""
from __future__ import annotations

import _signal
import _thread

TYPE_CHECKING = False   # typing.TYPE_CHECKING without importing typing (PEP 781)
if TYPE_CHECKING:
    from collections.abc import Iterable


class ForkMask:
    def __init__(self) -> None:
        self._saved: dict[int, set[int]] = {}   # by thread: its mask before block()

    def block(self, signums: Iterable[int]) -> None:
        """In a before-fork hook: block `signums` (if any) in this thread."""
        signums = list(signums)
        if signums:
            self._saved[_thread.get_ident()] = _signal.pthread_sigmask(_signal.SIG_BLOCK, signums)

    def restore(self) -> None:
        """After the fork, in the parent at once, in the child once its handlers are
        set: this thread's mask as block() found it; a held signal acts now."""
        mask = self._saved.pop(_thread.get_ident(), None)
        if mask is not None:
            _signal.pthread_sigmask(_signal.SIG_SETMASK, mask)
