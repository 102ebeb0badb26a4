"""The arguments of a slow call, for --slow-calls: the repr of each parameter as
bound in the frame at its return, bounded in length.

repr runs user code, so it runs here with profiling suspended (inside cprof's
hook no event is reported), its output thrown away, and its exceptions caught:
it must not change the program's behaviour or output."""
from __future__ import annotations

import builtins
import io
import reprlib
import sys
import threading

ARG_LEN = 80          # characters per argument
ALL_LEN = 400         # characters for all of them


class _Repr(reprlib.Repr):
    """reprlib's bounded reprs of containers and strings; an object's own __repr__
    is called as is, so that its exception reaches us (reprlib would hide it)."""

    def repr_instance(self, x, level):
        s = builtins.repr(x)
        return s if len(s) <= self.maxother else s[:self.maxother - 3] + "..."


_repr = _Repr()
_repr.maxstring = _repr.maxother = ARG_LEN
_repr.maxlong = 40

CO_VARARGS, CO_VARKEYWORDS = 0x04, 0x08


def _one(value) -> str:
    try:
        r = _repr.repr(value)
    except Exception as e:  # a __repr__ that raises
        return f"<repr failed: {type(e).__name__}>"
    return r if len(r) <= ARG_LEN else r[:ARG_LEN - 3] + "..."


def capture(frame) -> tuple:
    """(arguments, thread name) of the call running in `frame`."""
    code = frame.f_code
    pos, kwonly = code.co_argcount, code.co_kwonlyargcount
    star, starstar = bool(code.co_flags & CO_VARARGS), bool(code.co_flags & CO_VARKEYWORDS)
    v = code.co_varnames    # positional, keyword-only, *args, **kwargs: in that order
    names = (v[:pos] + v[pos + kwonly:pos + kwonly + star] + v[pos:pos + kwonly]
             + v[pos + kwonly + star:pos + kwonly + star + starstar])   # as in the signature
    saved = sys.stdout, sys.stderr
    sys.stdout = sys.stderr = io.StringIO()   # a __repr__ that prints prints nowhere
    try:
        loc = frame.f_locals
        parts = [f"{name}={_one(loc[name]) if name in loc else '<unbound>'}" for name in names]
    except Exception as e:
        parts = [f"<arguments unavailable: {type(e).__name__}>"]
    finally:
        sys.stdout, sys.stderr = saved
    text = ", ".join(parts)
    if len(text) > ALL_LEN:
        text = text[:ALL_LEN - 3] + "..."
    return text, threading.current_thread().name
