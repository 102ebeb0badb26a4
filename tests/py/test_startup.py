"""Start-up: what `import cprof` and a profiling run import before the program runs,
and the calibration kept across runs (cprof.calibration): hit, miss, a figure the
machine no longer confirms, corrupt or foreign files, folders that cannot be written,
and the switches that bypass it."""
import glob
import os
import subprocess
import sys
import textwrap

import pytest

from conftest import can_run_as_nobody, load, run_cprof

import cprof
from cprof import calibration
from cprof.api import calibrate

# Heavy modules that `import cprof` must leave alone (they cost 1-7 ms each): the
# profile's builder and report, json, tempfile, typing, argparse, re.
HEAVY = ("typing", "json", "tempfile", "argparse", "re", "traceback", "shutil", "functools",
         "warnings", "threading", "cprof.build", "cprof.report", "cprof.profile_file",
         "cprof.model", "cprof.focus", "cprof.schema", "cprof.exporters", "cprof.capture")


def new_modules(code):
    r = subprocess.run([sys.executable, "-c", "import sys; before = set(sys.modules)\n" + code
                        + "\nprint(' '.join(sorted(set(sys.modules) - before)))"],
                       capture_output=True, text=True, check=True)
    return set(r.stdout.split())


def test_import_cprof_imports_only_its_own_small_modules():
    """Before, import cprof imported 60 modules (typing, json, tempfile, re, the report
    and the profile file's code): 20 ms.  Now its own five and __future__."""
    new = new_modules("import cprof")
    assert new <= {"cprof", "cprof._cprof", "cprof._version", "cprof.api", "cprof.calibration",
                   "__future__"}, sorted(new)


def test_import_of_the_command_line_leaves_reports_and_exports_out():
    """Nothing of HEAVY, not even argparse (a plain run's command line is read without it:
    cli._parse_run), nor signal's enums: enum cost an empty run 30M instructions."""
    heavy = new_modules("import cprof.cli") & (set(HEAVY) | {"enum", "signal", "sysconfig"})
    assert not heavy, sorted(heavy)


def test_a_profiling_run_imports_neither_exporters_nor_json_before_the_program(tmp_path):
    """What the program sees already imported when it starts under cprof (with -o:
    the exporters' registry is consulted only to write the file)."""
    script = tmp_path / "seen.py"
    script.write_text(textwrap.dedent(f"""
        import sys
        print(" ".join(m for m in {HEAVY!r} if m in sys.modules))
    """))
    r = run_cprof([str(script)], check_rc=0)
    # less what `python -m` itself has imported by then (runpy; on 3.10 its importlib
    # imports warnings)
    plain = subprocess.run([sys.executable, "-m", "seen"], cwd=tmp_path, capture_output=True,
                           text=True, check=True)
    seen = set(r.stdout.split()) - set(plain.stdout.split())
    if sys.version_info < (3, 12):  # the setprofile hooks profile new threads through threading
        seen.discard("threading")
    assert not seen, sorted(seen)
    # -o: its place is checked before the run (profile_file.check_writable); the
    # exporters and what writing needs come after
    r = run_cprof(["-o", str(tmp_path / "p.json"), str(script)], check_rc=0)
    seen = set(r.stdout.split()) & {"cprof.exporters", "cprof.build", "cprof.report", "traceback"}
    assert not seen, sorted(seen)


def test_help_still_names_the_formats_and_commands():
    r = run_cprof(["--help"], check_rc=0)
    assert "--format {pstats," in r.stdout and "by the name's ending" in r.stdout
    assert "report" in r.stdout and "compare" in r.stdout and "--recalibrate" in r.stdout
    r = run_cprof(["export", "--help"], check_rc=0)
    assert "speedscope" in r.stdout


# ---- the calibration cache -----------------------------------------------------------

@pytest.fixture
def cache(tmp_path, monkeypatch):
    """A fresh cache folder and no figure kept in this process; measure() recorded."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.delenv("CPROF_NO_CACHE", raising=False)
    monkeypatch.setattr(calibration, "_calibrated", {})
    calls = []
    real = calibration.measure

    def measure(probe, n, reps):
        calls.append("check" if n == calibration.CHECK_CALLS else "full")
        return real(probe, n, reps)
    monkeypatch.setattr(calibration, "measure", measure)
    return tmp_path / "xdg" / "cprof", calls


def files(folder):
    return sorted(glob.glob(os.path.join(str(folder), "*")) +
                  glob.glob(os.path.join(str(folder), ".*")))


def forget():
    calibration._calibrated.clear()


def test_a_miss_measures_and_stores_then_a_hit_only_checks(cache):
    folder, calls = cache
    first = calibrate(["cpu", "ctxsw"])
    assert calls == ["full"]
    [path] = files(folder)
    lines = open(path).read().split("\n")
    assert lines[0] == "cprof calibration 1" and lines[3] == ""
    assert [int(v) for v in lines[2].split()] == first
    assert "'cpu', 'ctxsw'" in lines[1] and sys.executable in lines[1]
    forget()
    calls.clear()
    # a hit that the check confirms is the cached figure itself
    with open(path, "w") as f:
        f.write("\n".join([lines[0], lines[1], f"{first[0] + 1} 0", ""]))
    orig = calibration.confirmed
    try:
        calibration.confirmed = lambda *a: 0
        assert calibrate(["cpu", "ctxsw"]) == [first[0] + 1, 0]
    finally:
        calibration.confirmed = orig
    assert calls == ["check"]
    calls.clear()
    assert calibrate(["cpu", "ctxsw"]) == [first[0] + 1, 0]   # kept in this process
    assert calls == []
    assert files(folder) == [path]        # nothing else written, no temporary file left


def test_a_figure_the_check_contradicts_is_measured_again(cache):
    folder, calls = cache
    good = calibrate(["cpu"])
    [path] = files(folder)
    lines = open(path).read().split("\n")
    forget()
    calls.clear()
    with open(path, "w") as f:        # 50 times what this machine costs
        f.write("\n".join([lines[0], lines[1], str(50 * good[0] + 100), ""]))
    again = calibrate(["cpu"])
    assert calls == ["check", "full"]
    assert again[0] < 50 * good[0]
    # the new figure first; the old one kept after it, as another load state's
    assert open(path).read().split("\n")[2:] == [str(again[0]), str(50 * good[0] + 100), ""]


def test_the_figure_of_another_load_state_is_kept_beside_and_found_again(cache, monkeypatch):
    """A machine that goes from quiet to busy and back: each state's figure is measured
    once and then confirmed, whichever came last (before, each change of state measured
    afresh: ~50 ms at every run under changing load).  The measurements are made steady
    here (this machine's own state may change between two calibrations)."""
    folder, calls = cache
    good = calibrate(["cpu"])[0]
    [path] = files(folder)
    header, config = open(path).read().split("\n")[:2]
    other = 50 * good + 100               # no check can confirm it

    def steady(probe, n, reps):           # every pair at `good` ns an event
        calls.append("check" if n == calibration.CHECK_CALLS else "full")
        x = good * calibration._events(n)
        return [[x, x] for _ in range(reps)]
    monkeypatch.setattr(calibration, "measure", steady)
    forget()
    calls.clear()
    with open(path, "w") as f:            # the other state's figure was used last
        f.write(f"{header}\n{config}\n{other}\n{good}\n")
    assert calibrate(["cpu"]) == [good]
    assert calls == ["check"]             # found among the kept figures: no full measurement
    assert open(path).read() == f"{header}\n{config}\n{good}\n{other}\n"   # now the last used
    forget()
    calls.clear()
    assert calibrate(["cpu"]) == [good] and calls == ["check"]
    assert open(path).read() == f"{header}\n{config}\n{good}\n{other}\n"   # not rewritten


def test_a_new_figure_replaces_the_kept_ones_of_its_own_state(cache, monkeypatch):
    """A full measurement that lands within 5% of a kept figure is that load state
    measured again: it replaces it rather than taking a second place."""
    folder, calls = cache
    good = calibrate(["cpu"])[0]
    [path] = files(folder)
    header, config = open(path).read().split("\n")[:2]
    forget()
    monkeypatch.setattr(calibration, "estimate", lambda *a: [1000])
    with open(path, "w") as f:            # none confirmable; 1020 and 990 are 1000's state
        f.write(f"{header}\n{config}\n{10**9}\n1020\n{2 * 10**9}\n990\n")
    assert calibrate(["cpu"]) == [1000]
    assert open(path).read() == f"{header}\n{config}\n1000\n{10**9}\n{2 * 10**9}\n"
    assert good > 0


def test_at_most_keep_figures_the_oldest_dropped(cache):
    folder, calls = cache
    calibrate(["cpu"])
    [path] = files(folder)
    header, config = open(path).read().split("\n")[:2]
    stale = [str(10**9 + k) for k in range(calibration.KEEP)]     # none confirmable
    forget()
    calls.clear()
    with open(path, "w") as f:
        f.write("\n".join([header, config, *stale, ""]))
    new = calibrate(["cpu"])
    assert calls == ["check", "full"]
    assert open(path).read().split("\n")[2:] == [str(new[0]), *stale[:-1], ""]
    forget()
    calls.clear()
    with open(path, "w") as f:            # more than KEEP: not a file this cprof wrote
        f.write("\n".join([header, config, *stale, str(new[0]), ""]))
    assert calibrate(["cpu"]) and calls == ["full"]


def test_the_nearest_confirmed_figure_is_used():
    info = [{"compensable": True, "time": True}]
    events = 2 * 100 + 6
    loaded = [[v * events] for v in (28, 31, 33, 35, 40, 46, 52, 60, 75)]   # range 31-40
    assert calibration.confirmed([[70], [30], [36]], loaded, 100, info) == 2
    assert calibration.confirmed([[70], [30]], loaded, 100, info) == 1
    assert calibration.confirmed([[30], [36]], loaded, 100, info) == 1    # the nearer
    assert calibration.confirmed([[35], [36]], loaded, 100, info) == 0    # a tie: the last used
    assert calibration.confirmed([[70], [20]], loaded, 100, info) is None


def test_the_check_is_as_tight_as_its_own_measurement():
    info = [{"compensable": True, "time": True}, {"compensable": False, "time": False}]
    events = 2 * 100 + 6
    quiet = [[0, 7, 30 * events + k] for k in range(9)]     # 30 ns per event, little spread
    assert calibration.confirms([30, 5], quiet, 100, info)  # the second counter: not checked
    assert not calibration.confirms([36, 0], quiet, 100, info)
    assert not calibration.confirms([25, 0], quiet, 100, info)
    loaded = [[0, 0, v * events] for v in (28, 31, 33, 35, 40, 46, 52, 60, 75)]
    assert calibration.confirms([36, 0], loaded, 100, info)  # within the spread: no better figure
    assert not calibration.confirms([70, 0], loaded, 100, info)


def test_counters_the_tracer_does_not_raise_get_nothing_from_a_cached_file(cache, monkeypatch):
    folder, calls = cache
    calibrate(["cpu", "ctxsw"])
    [path] = files(folder)
    lines = open(path).read().split("\n")
    forget()
    with open(path, "w") as f:
        f.write("\n".join([lines[0], lines[1], lines[2].split()[0] + " 99", ""]))
    monkeypatch.setattr(calibration, "confirmed", lambda *a: 0)
    assert calibrate(["cpu", "ctxsw"])[1] == 0


@pytest.mark.parametrize("content", ["", "cprof calibration 1\n", "cprof calibration 1\nx\n1\n",
                                     "cprof calibration 1\n{config}\nabc\n",
                                     "cprof calibration 1\n{config}\n-5\n",
                                     "cprof calibration 1\n{config}\n1 2 3\n",
                                     "cprof calibration 9\n{config}\n20\n",
                                     "cprof calibration 1\n{config}\n18446744073709551616\n",
                                     "cprof calibration 1\n{config}\n20\n20 1\n",
                                     "cprof calibration 1\n{config}\n20\n\n",
                                     "cprof calibration 1\n{config}\n20"])
def test_a_corrupt_or_stale_file_of_ours_is_measured_again_and_replaced(cache, content):
    folder, calls = cache
    calibrate(["cpu"])
    [path] = files(folder)
    config = open(path).read().split("\n")[1]
    forget()
    calls.clear()
    content = content.replace("{config}", config)
    with open(path, "w") as f:
        f.write(content)
    cost = calibrate(["cpu"])
    assert calls == ["full"]
    if content.startswith("cprof calibration 1\n"):   # ours: rewritten
        assert open(path).read().split("\n")[2] == str(cost[0])
    else:                                                # not recognisably ours: left alone
        assert open(path).read() == content
    assert files(folder) == [path]


def test_files_cprof_did_not_write_are_never_replaced(cache, tmp_path):
    folder, calls = cache
    calibrate(["cpu"])
    [path] = files(folder)
    forget()
    mine = tmp_path / "precious.txt"
    mine.write_bytes(b"\x00\xffthe user's own file\n")
    os.unlink(path)
    os.symlink(mine, path)                 # a link cprof did not make
    calibrate(["cpu"])
    assert os.path.islink(path) and mine.read_bytes() == b"\x00\xffthe user's own file\n"
    forget()
    os.unlink(path)
    os.mkdir(path)                         # a folder in its place
    assert calibrate(["cpu"])[0] > 0
    assert os.path.isdir(path) and os.listdir(path) == []
    assert sorted(os.listdir(folder)) == [os.path.basename(path)]   # no temporary file left


def test_a_cache_folder_that_cannot_be_made_falls_back_to_measuring(tmp_path, monkeypatch, cache):
    folder, calls = cache
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocker))          # cprof/ cannot be made in it
    assert calibrate(["cpu"])[0] > 0 and calls == ["full"]
    assert blocker.read_text() == "not a folder"


def test_a_cache_folder_that_cannot_be_written_falls_back_to_measuring(monkeypatch, cache):
    folder, calls = cache
    monkeypatch.setenv("XDG_CACHE_HOME", "/proc/self")   # no folder can be made there, even by root
    assert calibrate(["cpu"])[0] > 0 and calls == ["full"]


def test_a_run_whose_cache_folder_it_may_not_write_still_profiles(shared_dir):
    """As an unprivileged user, with the cache folder someone else's and private: the run
    measures, profiles and writes its profile as without a cache."""
    why = can_run_as_nobody()
    if why:
        pytest.skip(why)
    private = os.path.join(shared_dir, "xdg")
    os.makedirs(os.path.join(private, "cprof"))
    os.chmod(os.path.join(private, "cprof"), 0o755)   # root's: nobody may read, not write
    script = os.path.join(shared_dir, "s.py")
    with open(script, "w") as f:
        f.write("def f():\n    pass\nfor _ in range(100):\n    f()\n")
    out = os.path.join(shared_dir, "p.json")
    r = run_cprof(["--counter=cpu", "-o", out, script], user="nobody",
                  env={"XDG_CACHE_HOME": private}, check_rc=0)
    assert "Traceback" not in r.stderr
    assert load(out)["meta"]["tracer_share"]["per_event"]["cpu"] > 0
    assert os.listdir(os.path.join(private, "cprof")) == []


def test_a_relative_xdg_cache_home_is_ignored(tmp_path, monkeypatch, cache):
    folder, calls = cache
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("XDG_CACHE_HOME", "relative")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    calibrate(["cpu"])
    assert not (tmp_path / "relative").exists()
    assert len(files(tmp_path / "home" / ".cache" / "cprof")) == 1


def test_no_cache_and_recalibrate(cache, monkeypatch):
    folder, calls = cache
    monkeypatch.setenv("CPROF_NO_CACHE", "1")
    calibrate(["cpu"])
    assert calls == ["full"] and not os.path.exists(folder)   # neither read nor written
    monkeypatch.delenv("CPROF_NO_CACHE")
    forget()
    calls.clear()
    calibrate(["cpu"])
    [path] = files(folder)
    forget()
    calls.clear()
    with open(path) as f:
        lines = f.read().split("\n")
    with open(path, "w") as f:
        f.write("\n".join([lines[0], lines[1], "1", "2", ""]))
    monkeypatch.setattr(calibration, "confirmed", lambda *a: 0)
    cost = calibrate(["cpu"], recalibrate=True)
    assert calls == ["full"]                      # the cached figures were not even checked
    assert open(path).read().split("\n")[2:] == [str(cost[0]), ""]   # and are replaced


def test_each_configuration_has_its_own_figure(cache):
    folder, calls = cache
    calibrate(["cpu"])
    calibrate(["cpu", "wall"])
    calibrate(["cpu"], all_call_sites=True)
    calibrate(["cpu"], distributions=True)
    configs = {open(p).read().split("\n")[1] for p in files(folder)}
    assert len(configs) == 4 and len(files(folder)) == 4


def test_profiles_use_and_the_cli_refreshes_the_cache(tmp_path):
    """Whole runs, with the test session's cache folder (conftest): a second run finds
    the figure, --recalibrate writes it anew; the numbers stay conserved."""
    folder = os.path.join(os.environ["XDG_CACHE_HOME"], "cprof")
    script = tmp_path / "s.py"
    script.write_text("def f():\n    pass\nfor _ in range(1000):\n    f()\n")
    out = str(tmp_path / "p.json")
    run_cprof(["--counter=cpu,ctxsw", "-o", out, str(script)], check_rc=0)
    mine = [p for p in files(folder) if "('cpu', 'ctxsw'), (('all_call_sites', False), "
            "('distributions', False), ('slow_calls', 0)))" in open(p).read()]
    assert len(mine) == 1
    before = os.stat(mine[0]).st_mtime_ns
    run_cprof(["--recalibrate", "--counter=cpu,ctxsw", "-o", out, str(script)], check_rc=0)
    assert os.stat(mine[0]).st_mtime_ns > before
    prof = load(out)
    share = prof["meta"]["tracer_share"]
    assert share["per_event"]["cpu"] > 0 and share["per_event"]["ctxsw"] == 0
    for name in ("cpu", "ctxsw"):
        assert sum(f["self"][name] for f in prof["functions"]) + prof["meta"]["unattributed"][name] \
            == prof["meta"]["region"][name]


def test_profile_recalibrate_keyword():
    with cprof.Profile(["cpu"], recalibrate=True) as p:
        pass
    assert p.profile()["meta"]["tracer_share"]["per_event"]["cpu"] > 0


# ---- the cheap clock's TSC ratio -------------------------------------------------------

CLOCK = """
import cprof, cprof._cprof as c
cprof.Profile(["wall"])
print(*c.clock_ratio())
"""


def clock_run(xdg, **env):
    e = dict(os.environ, XDG_CACHE_HOME=str(xdg), **env)
    r = subprocess.run([sys.executable, "-c", CLOCK], capture_output=True, text=True, env=e,
                       check=True)
    mult, seeded = r.stdout.split()
    return int(mult), seeded == "True"


def test_the_clock_ratio_is_kept_per_boot_and_confirmed(tmp_path):
    """A second process takes the ratio the first measured (after a 0.2 ms check instead
    of the 2 ms spin); a ratio the check contradicts is measured again and replaced."""
    mult, seeded = clock_run(tmp_path)
    if mult == 0:
        pytest.skip("the cheap clock is CLOCK_MONOTONIC here (no invariant TSC)")
    assert not seeded
    [path] = glob.glob(str(tmp_path / "cprof" / "clock-*"))
    lines = open(path).read().split("\n")
    assert lines[2] == str(mult)
    again, seeded = clock_run(tmp_path)
    assert seeded and again == mult
    with open(path, "w") as f:       # 1% off: far beyond the check's 1/1000
        f.write("\n".join([lines[0], lines[1], str(mult * 101 // 100), ""]))
    fresh, seeded = clock_run(tmp_path)
    assert not seeded and abs(fresh - mult) <= mult // 1000
    assert open(path).read().split("\n")[2] == str(fresh)
    _, seeded = clock_run(tmp_path, CPROF_NO_CACHE="1")
    assert not seeded
    with open(path, "w") as f:       # past what the C side takes (was an OverflowError, every run)
        f.write("\n".join([lines[0], lines[1], str(1 << 64), ""]))
    fresh, seeded = clock_run(tmp_path)
    assert not seeded and abs(fresh - mult) <= mult // 1000


def test_a_fifo_in_the_cache_does_not_hang_the_run(tmp_path):
    """A FIFO where a cache file goes is not opened for reading (that waits for a
    writer): the run measures and goes on (it hung before)."""
    prog = tmp_path / "p.py"
    prog.write_text("print('ran')\n")
    env = dict(os.environ, XDG_CACHE_HOME=str(tmp_path / "c"))
    cmd = [sys.executable, "-m", "cprof", "-o", str(tmp_path / "p.json"), str(prog)]
    subprocess.run(cmd, env=env, check=True, capture_output=True, timeout=120)
    paths = glob.glob(str(tmp_path / "c" / "cprof" / "*"))
    assert paths
    for path in paths:
        os.unlink(path)
        os.mkfifo(path)
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60)
    assert (r.returncode, r.stdout) == (0, "ran\n"), r.stderr


def _imported(cmd, cwd):
    r = subprocess.run([sys.executable, "-X", "importtime"] + cmd, capture_output=True,
                       text=True, timeout=120, cwd=cwd)
    assert r.returncode == 0, r.stderr
    return {line.rsplit("|", 1)[-1].strip() for line in r.stderr.splitlines()
            if line.startswith("import time:")}


# what a whole run of an empty script may import beyond what `python -m empty` does: cprof's
# own modules and these small ones (the report's operator, errno for the CLI, the codec of
# a non-UTF-8 stderr)
RUN_MAY_IMPORT = {"__future__", "errno", "operator", "_operator", "encodings.ascii",
                  "encodings.latin_1"}


def test_a_whole_run_imports_only_small_modules(tmp_path):
    """Before, an empty script under cprof imported typing (46M instructions: the
    TypedDicts are for mypy only), argparse and re (27M), signal's enums (30M), sysconfig
    and threading (19M), collections (9M): 150M instructions in all, plain Python 44M.
    Building and printing the report needs none of them; nor does the cprof command
    (its launcher imports no re, as pip's entry-point scripts do)."""
    (tmp_path / "empty.py").write_text("")
    plain = _imported(["-m", "empty"], tmp_path)
    launcher = os.path.join(os.path.dirname(sys.executable), "cprof")
    for cmd in (["-m", "cprof", "--no-compensate", "empty.py"],
                [launcher, "--no-compensate", "empty.py"], [launcher, "empty.py"]):
        imported = _imported(cmd, tmp_path)
        assert "cprof.report" in imported and "cprof.model" in imported
        if sys.version_info < (3, 12):  # the setprofile hooks follow new threads through threading
            imported -= {"threading", "_weakrefset"}
        extra = {m for m in imported - plain if m != "cprof" and not m.startswith("cprof.")}
        assert extra <= RUN_MAY_IMPORT, (cmd, sorted(extra - RUN_MAY_IMPORT))


def test_a_run_writing_its_profile_imports_neither_json_nor_re_nor_typing(tmp_path):
    """-o out.json: before, writing the profile imported json (whose decoder imports re,
    enum, functools), typing (the exporters' NamedTuple), re again (the exporters' file
    name filter, /dev/stdout's matcher) and math: an empty script's run cost 26-28 ms of
    CPU over plain Python on 3.12, 11-13 now.  The profile is written with json's own C
    encoder (profile_file._dumps); what it writes is json.dumps's text (next test)."""
    (tmp_path / "empty.py").write_text("")
    plain = _imported(["-m", "empty"], tmp_path)
    imported = _imported(["-m", "cprof", "-o", "p.json", "empty.py"], tmp_path)
    assert "cprof.profile_file" in imported and "cprof.exporters" in imported
    if sys.version_info < (3, 12):
        imported -= {"threading", "_weakrefset"}
    extra = {m for m in imported - plain if m != "cprof" and not m.startswith("cprof.")}
    assert extra <= RUN_MAY_IMPORT | {"_json"}, sorted(extra - RUN_MAY_IMPORT)
    assert load(str(tmp_path / "p.json"))["meta"]["exit_code"] == 0


@pytest.mark.parametrize("value", [
    {"a": [1, -2, 2.5, 1e300, -0.0, None, True, False, "é\u2028\x00\"\\/", [], {}]},
    [float("inf"), float("-inf"), float("nan")], "x\ny", 10**30, -(2**63), 0.1, {1: 2, 2.5: 3, True: 4, None: 5},
    {"self": {"cpu": 123, "wall": 456}, "name": "<módulo> 😀", "line": 0}])
def test_the_profile_writer_dumps_as_json_does(value):
    import json

    from cprof import profile_file
    dumps = profile_file._dumps()
    assert dumps is not json.dumps      # the C encoder, on every Python this runs on
    assert dumps(value) == json.dumps(value)
    with pytest.raises(TypeError, match="not JSON serializable"):
        dumps({"x": object()})
    circular: list = []
    circular.append(circular)
    with pytest.raises(ValueError, match="ircular"):
        dumps(circular)


def _argparse_run(argv):
    from cprof import cli
    parser = cli._parser()
    head, program = cli._split_run_args(parser, argv)
    return vars(parser.parse_args(head)), program


@pytest.mark.parametrize("argv", [
    [], ["s.py"], ["s.py", "-o", "x", "--limit", "3"], ["-c", "cpu", "s.py"], ["-ccpu,wall", "s.py"],
    ["--counter=ctxsw", "-o", "out.json", "s.py", "a"], ["--counter", "wall", "--", "-s.py", "-x"],
    ["--limit=0", "--sort", "wall.total", "--all", "s.py"], ["--focus", "mypkg,src/*", "s.py"],
    ["--focus=", "s.py"], ["--counter=", "s.py"], ["--slow-calls", "3", "--distributions", "s.py"],
    ["--all-call-sites", "--no-compensate", "--recalibrate", "-m", "json.tool", "-o", "f"],
    ["-mjson.tool", "x"], ["-m", "mod"], ["--list-counters"], ["--list-counters", "--pmu"], ["-"],
    ["--limit", "5", "--limit", "7", "s.py"], ["-o", "a", "-o", "b", "s.py"], ["--counter==x", "s.py"],
])
def test_a_plain_command_line_is_read_as_argparse_reads_it(argv):
    """cli._parse_run reads these without argparse, to the same options and program."""
    from cprof import cli
    fast = cli._parse_run(argv)
    assert fast is not None, argv
    assert (vars(fast[0]), fast[1]) == _argparse_run(argv)


@pytest.mark.parametrize("argv", [
    ["--help"], ["-h"], ["--version"], ["--coun=cpu", "s.py"], ["--lim", "3", "s.py"],
    ["--limit", "-1", "s.py"], ["--limit=x", "s.py"], ["--slow-calls=1.5", "s.py"],
    ["--all", "--focus", "p", "s.py"], ["-o"], ["-o", "-x", "s.py"], ["-m"], ["--no-compensate=1"],
    ["-c=cpu", "s.py"], ["--unknown", "s.py"], ["-x", "s.py"], ["--counter", "--limit", "3"],
])
def test_anything_else_goes_to_argparse(argv):
    """What the fast reader declines, argparse reads (and refuses in its own words)."""
    from cprof import cli
    assert cli._parse_run(argv) is None


@pytest.mark.parametrize("args, words", [
    (["--limit=x", "s.py"], "not a count"), (["--all", "--focus", "p", "s.py"], "not allowed with"),
    (["--lim", "x", "s.py"], "not a count"), (["-o"], "expected one argument"),
])
def test_declined_lines_get_argparse_s_sentence(args, words):
    r = run_cprof(args, check_rc=2)
    assert words in r.stderr and r.stderr.count("\n") == 1 and "Traceback" not in r.stderr, r.stderr


def test_an_abbreviated_option_still_works(tmp_path):
    """argparse's abbreviations (--lim 3, --count cpu) keep working: those lines go to it."""
    (tmp_path / "s.py").write_text("def f():\n    pass\nf()\n")
    r = run_cprof(["--count", "wall", "--lim", "1", str(tmp_path / "s.py")], check_rc=0)
    assert "wall self" in r.stderr and "cpu self" not in r.stderr, r.stderr
