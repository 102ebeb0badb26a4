"""Where profiles and exports are written: cprof never damages a file it did not
create (devices, FIFOs, links, modes, owners), refuses a place it cannot write before
the program runs, saves the run elsewhere when writing fails at the end, and never
lets a forked child overwrite its parent's profile."""
from __future__ import annotations

import gzip
import json
import os
import pwd
import re
import stat
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

from conftest import can_run_as_nobody, run_cprof
from test_cli import BEHAVE, assert_valid_profile, by_name, cprof, load, no_temp_files, one_sentence, run_py

ROOT = os.geteuid() == 0


def write_script(folder: Path, name: str, text: str) -> Path:
    p = folder / name
    p.write_text(text)
    return p


# ---------------------------------------------------------------- what is there already

@pytest.mark.skipif(not ROOT, reason="making a device node needs root")
def test_a_device_is_written_in_place_never_replaced(tmp_path):
    # a private copy of /dev/null (same major, minor): what `-o /dev/null` did to the real one
    dev = tmp_path / "null"
    os.mknod(dev, stat.S_IFCHR | 0o666, os.makedev(1, 3))
    before = os.stat(dev)
    r = cprof("-o", dev, BEHAVE)
    assert r.returncode == 0, r.stderr
    after = os.stat(dev)
    assert stat.S_ISCHR(after.st_mode), oct(after.st_mode)
    assert (after.st_ino, after.st_rdev) == (before.st_ino, before.st_rdev)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["null"]


def test_a_fifo_is_written_in_place(tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    got = bytearray()

    def read():  # opening blocks until cprof opens it to write, as a FIFO's reader does
        with open(fifo, "rb") as f:
            got.extend(f.read())
    t = threading.Thread(target=read, daemon=True)
    t.start()
    r = cprof("-o", fifo, BEHAVE)
    t.join(timeout=30)
    assert r.returncode == 0, r.stderr
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)
    assert_valid_profile(json.loads(got))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pipe"]


def test_dev_stdout_follows_the_programs_output(tmp_path):
    # the profile comes after what the program wrote, on the same stream (a pipe here)
    r = cprof("-o", "/dev/stdout", BEHAVE)
    assert r.returncode == 0, r.stderr
    head, _, rest = r.stdout.partition(b"\n")
    assert head == b"behave: ok"
    assert_valid_profile(json.loads(rest))
    assert stat.S_ISLNK(os.lstat("/dev/stdout").st_mode) or stat.S_ISCHR(os.stat("/dev/stdout").st_mode)


def test_dev_stdout_redirected_to_a_file_keeps_the_programs_output(tmp_path):
    out = tmp_path / "all.txt"
    with open(out, "wb") as f:
        r = subprocess.run([sys.executable, "-m", "cprof", "-o", "/dev/stdout", str(BEHAVE)],
                           stdout=f, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
    assert r.returncode == 0, r.stderr
    head, _, rest = out.read_bytes().partition(b"\n")
    assert head == b"behave: ok"
    assert_valid_profile(json.loads(rest))


def test_an_existing_file_keeps_its_mode(tmp_path):
    out = tmp_path / "p.json"
    out.write_text("old")
    os.chmod(out, 0o600)
    assert cprof("-o", out, BEHAVE).returncode == 0
    assert stat.S_IMODE(os.stat(out).st_mode) == 0o600
    assert_valid_profile(load(out))
    os.chmod(out, 0o640)
    assert cprof("-o", tmp_path / "p.json", BEHAVE).returncode == 0
    assert stat.S_IMODE(os.stat(out).st_mode) == 0o640
    no_temp_files(tmp_path)


@pytest.mark.skipif(not ROOT, reason="giving a file to another user needs root")
def test_an_existing_file_keeps_its_owner(tmp_path):
    out = tmp_path / "p.json"
    out.write_text("old")
    nobody = pwd.getpwnam("nobody")
    os.chown(out, nobody.pw_uid, nobody.pw_gid)
    assert cprof("-o", out, BEHAVE).returncode == 0
    st = os.stat(out)
    assert (st.st_uid, st.st_gid) == (nobody.pw_uid, nobody.pw_gid)
    assert_valid_profile(load(out))


def test_a_profile_with_argument_reprs_is_created_private(tmp_path):
    out = tmp_path / "p.json"
    old = os.umask(0o022)
    try:
        r = cprof("--slow-calls=2", "-o", out, BEHAVE)
    finally:
        os.umask(old)
    assert r.returncode == 0, r.stderr
    assert stat.S_IMODE(os.stat(out).st_mode) == 0o600
    assert any(f.get("slow_calls") for f in load(out)["functions"])
    plain = tmp_path / "plain.json"
    os.umask(0o022)
    try:
        assert cprof("-o", plain, BEHAVE).returncode == 0
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(plain).st_mode) == 0o644


def test_a_symlink_is_written_through(tmp_path):
    real = tmp_path / "real.json"
    real.write_text("old")
    os.chmod(real, 0o600)
    link = tmp_path / "latest.json"
    link.symlink_to("real.json")
    assert cprof("-o", link, BEHAVE).returncode == 0
    assert os.readlink(link) == "real.json"
    assert_valid_profile(load(real))
    assert stat.S_IMODE(os.stat(real).st_mode) == 0o600
    no_temp_files(tmp_path)


def test_a_dangling_symlink_creates_its_target(tmp_path):
    (tmp_path / "d").mkdir()
    link = tmp_path / "latest.json"
    link.symlink_to("d/new.json")
    assert cprof("-o", link, BEHAVE).returncode == 0
    assert os.path.islink(link)
    assert_valid_profile(load(tmp_path / "d" / "new.json"))


def test_a_hard_linked_file_stays_linked(tmp_path):
    a = tmp_path / "a.json"
    a.write_text("old")
    os.link(a, tmp_path / "b.json")
    assert cprof("-o", a, BEHAVE).returncode == 0
    assert os.stat(a).st_ino == os.stat(tmp_path / "b.json").st_ino
    assert_valid_profile(load(tmp_path / "b.json"))


# ---------------------------------------------------------------- refused before running

def test_a_folder_as_output_is_refused_before_running(tmp_path):
    r = cprof("-o", tmp_path, BEHAVE)
    one_sentence(r, f"'{tmp_path}' is a folder", str(tmp_path / "profile.json"))
    assert r.stdout == b""  # the script did not run


def test_a_file_used_as_a_folder_is_refused(tmp_path):
    (tmp_path / "f").write_text("")
    r = cprof("-o", tmp_path / "f" / "p.json", BEHAVE)
    one_sentence(r, str(tmp_path / "f" / "p.json"))
    assert r.stdout == b""


nobody = pytest.mark.skipif(bool(can_run_as_nobody()), reason=can_run_as_nobody() or "")


@nobody
def test_a_folder_you_cannot_write_is_refused_before_running(shared_dir):
    closed = os.path.join(shared_dir, "closed")
    os.mkdir(closed, 0o755)  # root's: nobody may not create files in it
    if not ROOT:
        os.chmod(closed, 0o555)
    out = os.path.join(closed, "p.json")
    r = run_cprof(["-o", out, str(BEHAVE)], user="nobody", cwd=shared_dir)
    assert r.returncode == 2, r.stderr
    assert r.stderr.splitlines() == [r.stderr.strip()] and r.stderr.startswith("cprof: error: "), r.stderr
    assert closed in r.stderr and "permission" in r.stderr
    assert r.stdout == ""
    assert os.listdir(closed) == []


@nobody
def test_a_file_you_cannot_write_is_refused_before_running(shared_dir):
    out = os.path.join(shared_dir, "p.json")
    with open(out, "w") as f:
        f.write("theirs")
    os.chmod(out, 0o444)
    r = run_cprof(["-o", out, str(BEHAVE)], user="nobody", cwd=shared_dir)
    assert r.returncode == 2, r.stderr
    assert r.stderr.startswith("cprof: error: ") and len(r.stderr.splitlines()) == 1, r.stderr
    assert out in r.stderr and r.stdout == ""
    with open(out) as f:
        assert f.read() == "theirs"


@pytest.mark.parametrize("cmd", ["export", "html"])
def test_export_and_html_to_a_folder_are_one_sentence(tmp_path, cmd):
    saved = tmp_path / "p.json"
    assert cprof("-o", saved, BEHAVE).returncode == 0
    args = ["export", saved, "--format", "pstats", "-o", tmp_path] if cmd == "export" else \
        ["report", saved, "--html", "-o", tmp_path]
    one_sentence(cprof(*args), f"'{tmp_path}' is a folder")


@nobody
@pytest.mark.parametrize("cmd", ["export", "html"])
def test_export_and_html_to_an_unwritable_folder_are_one_sentence(shared_dir, cmd):
    saved = os.path.join(shared_dir, "p.json")
    assert run_cprof(["-o", saved, str(BEHAVE)]).returncode == 0
    os.chmod(saved, 0o644)
    closed = os.path.join(shared_dir, "closed")
    os.mkdir(closed, 0o755)
    if not ROOT:
        os.chmod(closed, 0o555)
    out = os.path.join(closed, "x.out")
    args = ["export", saved, "--format", "pstats", "-o", out] if cmd == "export" else \
        ["report", saved, "--html", "-o", out]
    r = run_cprof(args, user="nobody")
    assert r.returncode == 2, r.stderr
    assert r.stderr.startswith("cprof: error: ") and len(r.stderr.splitlines()) == 1, r.stderr
    assert out in r.stderr and ".cprof-" not in r.stderr


# ---------------------------------------------------------------- failing at the end

REMOVES_ITS_OUTPUT_FOLDER = """\
import shutil, sys
def work():
    return sum(range(1000))
work()
shutil.rmtree(sys.argv[1])
print("removed", flush=True)
if sys.argv[2] == "raise":
    raise ValueError("the program's own error")
sys.exit(int(sys.argv[2]))
"""


@pytest.mark.parametrize("how, code", [("raise", 1), ("5", 5)])
def test_a_failed_write_at_the_end_saves_the_profile_elsewhere(tmp_path, how, code):
    script = write_script(tmp_path, "rm.py", REMOVES_ITS_OUTPUT_FOLDER)
    folder = tmp_path / "out"
    folder.mkdir()
    out = folder / "p.pb.gz"
    r = cprof("-o", out, script, folder, how)
    assert r.returncode == code, r.stderr
    assert r.stdout == b"removed\n"
    notes = [line for line in r.stderr.splitlines() if line.startswith("cprof:")]
    assert len(notes) == 1, r.stderr
    m = re.fullmatch(rf"cprof: error: cannot write '{re.escape(str(out))}'(?: \(its folder does not exist\)"
                     rf"|: folder '{re.escape(str(folder))}' does not exist); "
                     r"the profile was written to (\S+) instead", notes[0])
    assert m, notes[0]
    spare = m.group(1)
    try:
        assert spare.endswith(".pb.gz") and os.path.basename(spare).startswith("p.")
        assert stat.S_IMODE(os.stat(spare).st_mode) == 0o600
        assert len(gzip.decompress(Path(spare).read_bytes())) > 0
    finally:
        os.unlink(spare)
    if how == "raise":  # the program's traceback, as Python prints it, after cprof's lines
        assert r.stderr.rstrip().endswith("ValueError: the program's own error")
        assert "Traceback (most recent call last)" in r.stderr
    assert ".cprof-" not in r.stderr


def test_dump_to_a_folder_names_the_path(tmp_path):
    import cprof
    prof = cprof.Profile()
    with prof:
        sum(range(10))
    with pytest.raises(cprof.CprofError) as e:
        prof.dump(str(tmp_path))
    assert str(e.value) == f"cannot write '{tmp_path}' (is a directory)"
    with pytest.raises(cprof.CprofError) as e:
        prof.dump(str(tmp_path / "no" / "p.json"))
    assert str(e.value) == f"cannot write '{tmp_path / 'no' / 'p.json'}' (its folder does not exist)"
    assert os.listdir(tmp_path) == []


# ---------------------------------------------------------------- forked children

FORKS = """\
import os, sys, time
def before():
    return 1
def parent_work():
    return sum(range(100))
def child_work():
    return sum(range(100))
before()
pid = os.fork()
if pid == 0:
    time.sleep(0.3)  # the parent has written its profile by now
    child_work()
    print("child", os.getpid(), flush=True)
else:
    parent_work()
    print("parent", os.getpid(), flush=True)
"""


def _fork_run(tmp_path, *out):
    script = write_script(tmp_path, "forks.py", FORKS)
    r = cprof(*out, script, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    pids = dict(line.split() for line in r.stdout.decode().splitlines())
    return r, int(pids["parent"]), int(pids["child"])


@pytest.mark.parametrize("name, child_name", [("p.json", "p.{}.json"), ("p.pb.gz", "p.{}.pb.gz")])
def test_a_forked_child_never_overwrites_the_parents_profile(tmp_path, name, child_name):
    r, parent, child = _fork_run(tmp_path, "-o", tmp_path / name)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([name, child_name.format(child), "forks.py"])
    wrote = [line for line in r.stderr.splitlines() if line.startswith("cprof: wrote")]
    assert sorted(wrote)[0].startswith(f"cprof: wrote {tmp_path / name} ") or \
        sorted(wrote)[1].startswith(f"cprof: wrote {tmp_path / name} ")
    if name.endswith(".json"):
        mine, theirs = load(tmp_path / name), load(tmp_path / child_name.format(child))
        assert mine["meta"]["pid"] == parent and "parent_pid" not in mine["meta"]
        assert (theirs["meta"]["pid"], theirs["meta"]["parent_pid"]) == (child, parent)
        assert by_name(mine)["__main__.parent_work"]["calls"] == 1
        assert "__main__.child_work" not in by_name(mine)
        assert by_name(theirs)["__main__.child_work"]["calls"] == 1
        assert "__main__.parent_work" not in by_name(theirs)
        rep = cprof("report", tmp_path / child_name.format(child))
        assert f"(forked child process {child} of process {parent})" in rep.stdout.decode().splitlines()[0]


def test_a_forked_childs_report_says_whose_child_it_is(tmp_path):
    r, parent, child = _fork_run(tmp_path)
    heads = [line for line in r.stderr.splitlines() if line.startswith("cprof: ")]
    assert len(heads) == 2, r.stderr
    assert sum(f"(forked child process {child} of process {parent})" in h for h in heads) == 1, heads
    assert sum("forked child" not in h and "forks.py" in h for h in heads) == 1, heads


def test_dump_in_a_forked_child_writes_beside_the_parents(tmp_path):
    script = write_script(tmp_path, "api_fork.py", """\
import os, sys, time, cprof
out = sys.argv[1]
prof = cprof.Profile()
with prof:
    pid = os.fork()
    if pid == 0:
        sum(range(10))
if pid == 0:
    prof.dump(out)
    os._exit(0)
os.waitpid(pid, 0)
prof.dump(out)
print(pid)
""")
    out = tmp_path / "p.json"
    r = run_py(script, out)
    assert r.returncode == 0, r.stderr
    child = int(r.stdout)
    mine, theirs = load(out), load(tmp_path / f"p.{child}.json")
    assert "parent_pid" not in mine["meta"]
    assert (theirs["meta"]["pid"], theirs["meta"]["parent_pid"]) == (child, mine["meta"]["pid"])
    # a Profile made in the child is the child's own: written where it says
    script2 = write_script(tmp_path, "api_fork2.py", """\
import os, sys, cprof
pid = os.fork()
if pid == 0:
    with cprof.Profile() as prof:
        sum(range(10))
    prof.dump(sys.argv[1])
    os._exit(0)
os.waitpid(pid, 0)
""")
    own = tmp_path / "own.json"
    assert run_py(script2, own).returncode == 0
    assert "parent_pid" not in load(own)["meta"]


@pytest.mark.parametrize("out", ["/dev/null", "/dev/stdout"])
def test_a_forked_child_of_a_device_or_stream_output_writes_nothing_under_dev(tmp_path, out):
    """Before, the child wrote a regular file /dev/null.<pid> (/dev/stdout.<pid>): a file
    made under /dev.  A device or a stream has no place beside it: the child says so."""
    r, parent, child = _fork_run_any(tmp_path, "-o", out)
    made = [f"{out}.{child}", f"{out}.{child}.json"]
    left = [m for m in made if os.path.lexists(m)]
    for m in left:
        os.unlink(m)
    assert not left, left
    notes = [line for line in r.stderr.splitlines() if "did not write its profile" in line]
    assert notes == [f"cprof: note: process {child} (a fork) did not write its profile: '{out}' is a device "
                     "or a stream, with no place beside it for a second file; give -o a file name to "
                     "keep every process's profile"], r.stderr
    if out == "/dev/stdout":   # the parent's profile alone, among the program's lines
        text = "\n".join(line for line in r.stdout.decode().splitlines()
                         if not line.startswith(("parent ", "child ")))
        assert_valid_profile(json.loads(text))
        assert json.loads(text)["meta"]["pid"] == parent


def _fork_run_any(tmp_path, *out):
    script = write_script(tmp_path, "forks.py", FORKS)
    r = cprof(*out, script, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    pids = dict(line.split() for line in r.stdout.decode().splitlines() if line.startswith(("parent", "child")))
    return r, int(pids["parent"]), int(pids["child"])


def test_beside_path_refuses_dev_proc_and_streams_but_not_dev_shm(tmp_path):
    from cprof.profile_file import beside_path
    (tmp_path / "d").symlink_to("/dev")
    for refused in ("/dev/null", "/dev/stdout", "/dev/fd/1", "/proc/self/fd/1", str(tmp_path / "d" / "null"),
                    "/proc/self/x.json", "/dev/input/x.json"):
        assert beside_path(refused, 42) is None, refused
    assert beside_path("/dev/shm/p.json", 42) == "/dev/shm/p.42.json"
    assert beside_path(str(tmp_path / "p.json"), 42) == str(tmp_path / "p.42.json")
    assert beside_path("rel/p.pb.gz", 7) == "rel/p.7.pb.gz"


def test_follow_children_with_a_device_or_stream_output_is_refused(tmp_path):
    script = write_script(tmp_path, "s.py", "print('ran')\n")
    r = cprof("--follow-children", "-o", "/dev/stdout", script, cwd=tmp_path)
    one_sentence(r, "--follow-children", "'/dev/stdout' is a device or a stream", "give -o a file name")
    assert r.stdout == b""


def test_dump_in_a_forked_child_to_a_device_is_one_sentence(tmp_path):
    script = write_script(tmp_path, "d.py", """\
import os, sys, cprof
p = cprof.Profile(["wall"])
pid = os.fork()
if pid == 0:
    try:
        p.dump("/dev/null")
    except cprof.CprofError as e:
        print(e)
    os._exit(0)
os.waitpid(pid, 0)
""")
    r = run_py(script, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stdout.decode() == ("a forked process cannot write its profile to '/dev/null', a device or "
                                 "a stream with no place beside it for a second file; give a file name\n")


@pytest.mark.parametrize("out", ["/dev/fd/2147483648", "/proc/self/fd/99999999999999999999"])
def test_a_descriptor_number_beyond_any_is_one_sentence(tmp_path, out):
    """Before: OverflowError's traceback, and the program never ran."""
    script = write_script(tmp_path, "s.py", "print('ran')\n")
    r = cprof("-o", out, script, cwd=tmp_path)
    one_sentence(r, f"cannot write '{out}'", "is not open in cprof")


def test_a_path_with_a_newline_is_shown_escaped(tmp_path):
    script = write_script(tmp_path, "s.py", "print('ran')\n")
    r = cprof("-o", tmp_path / "no\nsuch" / "x.json", script, cwd=tmp_path)
    one_sentence(r, "no\\nsuch")


@pytest.mark.parametrize("out", [None, "p.json", "p.pb.gz"])
def test_a_program_that_replaces_sys_path_keeps_its_profile_and_exit_code(tmp_path, out):
    """Writing imports from the standard library (json's C encoder, gzip, the report's
    operator): before, a program that set sys.path[:] = [...] lost its profile and its
    exit code to a ModuleNotFoundError's traceback."""
    script = write_script(tmp_path, "e.py", """\
import sys
def work():
    return sum(range(10))
work()
sys.path[:] = ["/nonexistent"]
sys.exit(3)
""")
    r = cprof(*(["-o", tmp_path / out] if out else []), script, cwd=tmp_path)
    assert r.returncode == 3, r.stderr
    assert "Traceback" not in r.stderr and "Error" not in r.stderr, r.stderr
    if out is None:
        assert "work" in r.stderr
    elif out == "p.json":
        assert by_name(load(tmp_path / out))["__main__.work"]["calls"] == 1
    else:
        assert gzip.open(tmp_path / out).read()


def test_modules_named_as_json_beside_the_script_do_not_stop_the_writing(tmp_path):
    """json.py and _json.py in the script's folder (first on its sys.path): before, writing
    imported them and lost the profile; json's C encoder is now taken before the program."""
    app = tmp_path / "app"
    app.mkdir()
    (app / "json.py").write_text("raise RuntimeError('not the json module')\n")
    (app / "_json.py").write_text("raise RuntimeError('not the _json module')\n")
    script = write_script(app, "e.py", "def work():\n    return 1\nwork()\n")
    r = cprof("-o", tmp_path / "p.json", script, cwd=tmp_path)
    assert r.returncode == 0 and "Error" not in r.stderr, r.stderr
    assert by_name(load(tmp_path / "p.json"))["__main__.work"]["calls"] == 1


def test_follow_children_with_a_tempfile_py_beside_the_script_runs(tmp_path):
    """Before: children.start imported tempfile after the script's folder joined
    sys.path, so a tempfile.py there ended the run with a traceback before the program."""
    app = tmp_path / "app"
    app.mkdir()
    (app / "tempfile.py").write_text("raise ImportError('not the tempfile module')\n")
    script = write_script(app, "e.py", "def work():\n    return 1\nwork()\n")
    r = cprof("--follow-children", "-o", tmp_path / "p.json", script, cwd=tmp_path)
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr
    assert by_name(load(tmp_path / "p.json"))["__main__.work"]["calls"] == 1


def test_tagged_path_keeps_the_ending():
    from cprof.profile_file import tagged_path
    assert tagged_path("out.json", "7") == "out.7.json"
    assert tagged_path("d.x/out.pb.gz", "7") == "d.x/out.7.pb.gz"
    assert tagged_path("out.speedscope.json", "7") == "out.7.speedscope.json"
    assert tagged_path("out", "7") == "out.7"


def test_a_forked_child_ended_by_a_signal_writes_nothing(tmp_path):
    # a pool's workers are ended by SIGTERM: as without cprof, no profile, no report
    script = write_script(tmp_path, "killed.py", """\
import os, signal, time
r, w = os.pipe()
pid = os.fork()
if pid == 0:
    os.write(w, b"x")
    time.sleep(30)
    os._exit(0)
os.read(r, 1)
os.kill(pid, signal.SIGTERM)
_, status = os.waitpid(pid, 0)
print(os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGTERM)
""")
    out = tmp_path / "p.json"
    r = cprof("-o", out, script, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stdout == b"True\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["killed.py", "p.json"]
    r = cprof(script, cwd=tmp_path)
    assert r.stdout == b"True\n"
    assert r.stderr.count("cprof: ") == 1, r.stderr


def test_a_relative_output_is_where_it_was_when_the_run_began(tmp_path):
    (tmp_path / "elsewhere").mkdir()
    script = write_script(tmp_path, "moves.py", "import os, sys\nos.chdir(sys.argv[1])\n")
    r = cprof("-o", "p.json", script, tmp_path / "elsewhere", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stderr == f"cprof: wrote {tmp_path / 'p.json'} ({len(load(tmp_path / 'p.json')['functions'])} functions)\n"
    assert os.listdir(tmp_path / "elsewhere") == []
    r = cprof("-o", "q.json", BEHAVE, cwd=tmp_path)  # not moved: named as given
    assert r.stderr.startswith("cprof: wrote q.json ("), r.stderr


def test_output_that_is_the_input_is_refused(tmp_path):
    script = write_script(tmp_path, "s.py", "print('ran')\n")
    r = cprof("-o", script, script)
    one_sentence(r, str(script), "the script")
    assert script.read_text() == "print('ran')\n" and r.stdout == b""
    saved = tmp_path / "p.json"
    assert cprof("-o", saved, BEHAVE).returncode == 0
    before = saved.read_bytes()
    one_sentence(cprof("report", saved, "--html", "-o", saved), str(saved), "the profile it reads")
    one_sentence(cprof("export", saved, "--format", "pstats", "-o", saved), "the profile it reads")
    assert saved.read_bytes() == before


@pytest.mark.parametrize("end, code", [("", 0), ("os.kill(os.getpid(), signal.SIGTERM)", -15)])
def test_a_program_that_uses_up_its_file_descriptors(tmp_path, end, code):
    """A program that ends holding every file descriptor its limit allows, by returning
    or by a signal: writing the profile needs one (and Python's imports too), so cprof
    says so in one sentence, with no traceback, and the program's exit code (or its
    signal) passes through.  Before, the end's imports failed with a traceback and exit
    1."""
    script = tmp_path / "hog_fds.py"
    script.write_text(textwrap.dedent("""
        import os, resource, signal
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(soft, 256), hard))
        held = []
        try:
            while True:
                held.append(os.open(os.devnull, os.O_RDONLY))
        except OSError:
            pass
        print("held", len(held) > 0, flush=True)
    """) + end + "\n")
    out = tmp_path / "p.json"
    r = run_cprof(["-o", str(out), str(script)], check_rc=code)
    assert r.stdout == "held True\n"
    assert "Traceback" not in r.stderr, r.stderr
    assert r.stderr.count("\n") == 1 and r.stderr.startswith(
        "cprof: error: the profile could not be written: the program left no file descriptor free"), r.stderr
