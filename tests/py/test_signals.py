"""A run ended by SIGTERM or SIGHUP (how services, containers and `timeout` stop a
process) still writes its profile, then ends by the same signal, so its exit status
is what it would have been; a program's own handler, or a signal it inherited as
ignored, is left alone."""
from __future__ import annotations

import signal
import subprocess
import sys
import time

import pytest

from test_cli import BEHAVE, _env, assert_valid_profile, by_name, edge, load, no_temp_files


def start(args, preexec=None) -> subprocess.Popen:
    p = subprocess.Popen([sys.executable, "-m", "cprof", *map(str, args)], stdin=subprocess.DEVNULL,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=_env(), preexec_fn=preexec)
    return p


def wait_ready(p: subprocess.Popen, *lines: bytes) -> None:
    for line in lines:
        assert p.stdout.readline() == line
    time.sleep(0.5)  # let it enter time.sleep


def finish(p: subprocess.Popen, timeout: float = 20) -> tuple[bytes, str]:
    try:
        out, err = p.communicate(timeout=timeout)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    return out, err.decode()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP], ids=["SIGTERM", "SIGHUP"])
def test_a_terminating_signal_writes_the_profile_and_ends_by_it(tmp_path, sig):
    out = tmp_path / "p.json"
    p = start(["-o", out, BEHAVE, "wait"])
    wait_ready(p, b"behave: wait\n", b"ready\n")
    p.send_signal(sig)
    _, err = finish(p)
    assert p.returncode == -sig, err
    assert err.splitlines() == [f"cprof: wrote {out} ({len(load(out)['functions'])} functions)"]
    profile = load(out)
    assert_valid_profile(profile)
    fns = by_name(profile)
    # what was running when the signal came: open, counted once, up to the signal
    assert fns["__main__.wait_forever"]["calls"] == 1
    assert fns["__main__.main"]["calls"] == 1
    assert fns["time.sleep"]["calls"] == 2
    assert fns["time.sleep"]["total"]["wall"] >= 400_000_000
    assert profile["meta"]["signal"] == signal.Signals(sig).name
    assert profile["meta"]["exit_code"] == -sig
    no_temp_files(tmp_path)
    r = subprocess.run([sys.executable, "-m", "cprof", "report", str(out)], capture_output=True,
                       text=True, env=_env())
    assert r.returncode == 0, r.stderr
    assert (f"the run ended by {signal.Signals(sig).name}: the functions still running then are "
            "counted up to that moment") in r.stdout.splitlines()


def test_a_terminating_signal_without_output_prints_the_report(tmp_path):
    p = start([BEHAVE, "wait"])
    wait_ready(p, b"behave: wait\n", b"ready\n")
    p.send_signal(signal.SIGTERM)
    _, err = finish(p)
    assert p.returncode == -signal.SIGTERM, err
    assert "__main__.wait_forever" in err and err.lstrip().startswith(f"cprof: {BEHAVE}")


HANDLES_SIGTERM = """\
import signal, sys, time
def work():
    return sum(range(1000))
def on_term(signum, frame):
    print("handled", signum, flush=True)
    sys.exit(7)
signal.signal(signal.SIGTERM, on_term)
work()
print("ready", flush=True)
time.sleep(30)
"""


def test_the_programs_own_handler_wins(tmp_path):
    script = tmp_path / "handles.py"
    script.write_text(HANDLES_SIGTERM)
    out = tmp_path / "p.json"
    p = start(["-o", out, script])
    wait_ready(p, b"ready\n")
    p.send_signal(signal.SIGTERM)
    stdout, err = finish(p)
    assert p.returncode == 7, err
    assert stdout == f"handled {int(signal.SIGTERM)}\n".encode()
    profile = load(out)
    assert "signal" not in profile["meta"] and profile["meta"]["exit_code"] == 7
    assert by_name(profile)["__main__.on_term"]["calls"] == 1


IGNORED = """\
import signal, time
print(signal.getsignal(signal.SIGTERM) == signal.SIG_IGN, flush=True)
time.sleep(1)
print("still here", flush=True)
"""


def test_an_ignored_signal_stays_ignored(tmp_path):
    script = tmp_path / "ignored.py"
    script.write_text(IGNORED)
    out = tmp_path / "p.json"
    p = start(["-o", out, script], preexec=lambda: signal.signal(signal.SIGTERM, signal.SIG_IGN))
    assert p.stdout.readline() == b"True\n"
    p.send_signal(signal.SIGTERM)
    stdout, err = finish(p)
    assert p.returncode == 0, err
    assert stdout == b"still here\n"
    assert "signal" not in load(out)["meta"]


SLOW_REPR = """\
import os, time
class Slow:
    def __repr__(self):
        os.write(1, b"in repr\\n")  # sys.stdout is cprof's StringIO while it captures
        time.sleep(1)
        return "Slow()"
def f(x):
    time.sleep(0.01)
    return x
f(Slow())
time.sleep(30)
"""


def test_a_signal_during_an_argument_repr_waits_for_it(tmp_path):
    # --slow-calls runs repr inside cprof's hook with stdout/stderr redirected: stopping
    # there would lose cprof's own lines and leave the call half-counted
    script = tmp_path / "slow_repr.py"
    script.write_text(SLOW_REPR)
    out = tmp_path / "p.json"
    p = start(["--slow-calls=2", "-o", out, script])
    assert p.stdout.readline() == b"in repr\n"
    time.sleep(0.3)
    p.send_signal(signal.SIGTERM)
    _, err = finish(p)
    assert p.returncode == -signal.SIGTERM, err
    assert err.startswith(f"cprof: wrote {out} "), err
    profile = load(out)
    assert_valid_profile(profile)
    f = by_name(profile)["__main__.f"]
    assert f["calls"] == 1 and f["slow_calls"][0]["args"] == "x=Slow()"
    for fn in profile["functions"]:
        assert fn["total"]["wall"] >= fn["self"]["wall"], fn
    assert edge(profile, "__main__.<module>", "time.sleep")["calls"] == 1  # the signal waited for it
