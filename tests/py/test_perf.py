"""perf_event_open counters through the CLI and the API, against ground truth:
a function that touches N fresh pages takes N page faults, one that touches
none takes almost none; context switches equal what getrusage saw.  Hardware
events: this machine may have no PMU, and then `--counter=cycles` must fail
with one sentence; where a PMU exists, instructions must scale with the work."""
import json
import os
import resource
import shutil
import subprocess
import sys

import pytest

import cprof
from cprof import _cprof
from conftest import can_run_as_nobody, fn, load, run_cprof

PAGES = 2000
USERS = ["root", "nobody"] if os.geteuid() == 0 else ["self"]

TOUCH = r'''
import json, mmap, resource, sys

PAGES = int(sys.argv[2])

def touch(n):
    # fresh anonymous memory: the first write to each 4 KiB page faults once
    m = mmap.mmap(-1, n * 4096)
    for i in range(n):
        m[i * 4096] = 1
    m.close()

def compute(n):
    # the same kind of loop, on memory that is already there
    s = 0
    for i in range(n):
        s += i * i
    return s

def main():
    compute(1000)                       # warm the interpreter's own memory
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    touch(PAGES)
    after = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    compute(PAGES)
    with open(sys.argv[1], "w") as f:
        json.dump({"minflt_touch": after - before}, f)

main()
'''


def _rows():
    return {r["name"]: r for r in _cprof.list_counters()}


def _hw_unavailable_reason() -> str:
    """'' if this machine counts hardware events, else why not (cprof's own sentence)."""
    row = _rows()["instructions"]
    return "" if row["available"] else row["reason"]


def _script(folder, text, name="work.py"):
    path = os.path.join(folder, name)
    with open(path, "w") as f:
        f.write(text)
    os.chmod(path, 0o644)
    return path


def _one_sentence(r, *needles):
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert "Traceback" not in r.stderr, r.stderr
    lines = r.stderr.splitlines()
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith("cprof: error: "), lines[0]
    for n in needles:
        assert n in lines[0], (n, lines[0])
    return lines[0]


# ---------------------------------------------------------------- ground truth

@pytest.mark.parametrize("user", USERS)
def test_page_faults_equal_the_pages_touched(shared_dir, user):
    if user == "nobody" and can_run_as_nobody():
        pytest.skip(can_run_as_nobody())
    script = _script(shared_dir, TOUCH)
    truth, out = os.path.join(shared_dir, "truth.json"), os.path.join(shared_dir, "out.json")
    r = run_cprof(["--counter=page-faults,minor-faults,cpu", "-o", out, script, truth, str(PAGES)],
                  cwd=shared_dir, user=user)
    assert r.returncode == 0, r.stderr
    prof = load(out)
    assert [c["name"] for c in prof["counters"]] == ["page-faults", "minor-faults", "cpu"]
    assert prof["counters"][0]["unit"] == "faults"
    touch, compute = fn(prof, "__main__.touch"), fn(prof, "__main__.compute")
    faults = touch["total"]["page-faults"]
    # N pages, N faults: 5% and a few for the mmap object itself, never fewer
    assert PAGES <= faults <= PAGES * 1.05 + 10, (faults, json.load(open(truth)))
    assert touch["total"]["minor-faults"] == faults  # anonymous memory: no I/O
    assert compute["total"]["page-faults"] <= 5, compute
    if user == "nobody":  # user-mode faults only, and the read path says so
        assert "user mode only" in prof["counters"][0]["read_path"]
    # conservation, as for every counter
    for c in ("page-faults", "minor-faults"):
        total_self = sum(f["self"][c] for f in prof["functions"])
        assert total_self + prof["meta"]["unattributed"][c] == prof["meta"]["region"][c]
    print(f"[measure] {user}: {PAGES} pages touched -> {faults} page faults attributed to touch "
          f"(getrusage minflt {json.load(open(truth))['minflt_touch']}), "
          f"{compute['total']['page-faults']} to compute")


def test_page_faults_through_the_api():
    import mmap

    def touch(n):
        m = mmap.mmap(-1, n * 4096)
        for i in range(n):
            m[i * 4096] = 1
        m.close()

    def compute(n):
        return sum(i * i for i in range(n))

    compute(1000)
    with cprof.Profile(["page-faults", "task-clock"]) as p:
        touch(1000)
        compute(1000)
    prof = p.profile()
    t = [f for f in prof["functions"] if f["name"].endswith("touch")]
    c = [f for f in prof["functions"] if f["name"].endswith("compute")]
    assert len(t) == 1 and len(c) == 1
    assert 1000 <= t[0]["total"]["page-faults"] <= 1060
    assert c[0]["total"]["page-faults"] <= 5
    assert t[0]["total"]["task-clock"] > 0


SLEEPS = r'''
import json, resource, sys, time

def sleeper():
    for _ in range(20):
        time.sleep(0.001)

ru = resource.getrusage(resource.RUSAGE_THREAD)
before = ru.ru_nvcsw + ru.ru_nivcsw
sleeper()
ru = resource.getrusage(resource.RUSAGE_THREAD)
with open(sys.argv[1], "w") as f:
    json.dump({"switches": ru.ru_nvcsw + ru.ru_nivcsw - before}, f)
'''


def test_context_switches_match_getrusage(shared_dir):
    if os.geteuid() != 0:
        pytest.skip("context-switches needs kernel.perf_event_paranoid <= 1 or root")
    script = _script(shared_dir, SLEEPS)
    truth, out = os.path.join(shared_dir, "truth.json"), os.path.join(shared_dir, "out.json")
    r = run_cprof(["--counter=context-switches,ctxsw", "-o", out, script, truth], cwd=shared_dir)
    assert r.returncode == 0, r.stderr
    prof = load(out)
    assert "mmap'd page" in prof["counters"][0]["read_path"]
    sleeper = fn(prof, "__main__.sleeper")
    got, want = sleeper["total"]["context-switches"], load(truth)["switches"]
    assert got >= 20
    # the profiler's own reads may be preempted too: at most a few more than the bare run
    assert abs(got - want) <= 3, (got, want)
    assert sleeper["total"]["ctxsw"] <= got


# ---------------------------------------------------------------- errors

def test_cycles_without_a_pmu_is_one_sentence(tmp_path):
    reason = _hw_unavailable_reason()
    if not reason:
        pytest.skip("this machine has a hardware PMU: cycles works here")
    script = _script(str(tmp_path), "print('never runs')\n")
    # the counter named is the first one that cannot be opened
    for spec, bad in (("cycles", "cycles"), ("cpu,cycles", "cycles"),
                      ("cycles,instructions", "cycles"), ("branch-misses:u", "branch-misses:u")):
        r = run_cprof([f"--counter={spec}", script])
        line = _one_sentence(r, f"counter '{bad}'", "no hardware PMU is visible")
        assert "VM" in line
        assert r.stdout == ""
    assert "no hardware PMU is visible" in _rows()["cycles"]["reason"]


def test_paranoid_refusal_names_the_sysctl(shared_dir):
    if os.geteuid() != 0:
        pytest.skip("needs root to run the CLI as nobody")
    if can_run_as_nobody():
        pytest.skip(can_run_as_nobody())
    with open("/proc/sys/kernel/perf_event_paranoid") as f:
        paranoid = int(f.read())
    if paranoid < 2:
        pytest.skip(f"kernel.perf_event_paranoid is {paranoid}: nobody may count kernel events")
    script = _script(shared_dir, "print('never runs')\n")
    r = run_cprof(["--counter=context-switches", script], cwd=shared_dir, user="nobody")
    _one_sentence(r, "'context-switches'", f"kernel.perf_event_paranoid is {paranoid}",
                  "at most 1", "sysctl")


def test_unknown_event_suggests_close_names(tmp_path):
    script = _script(str(tmp_path), "print('never runs')\n")
    line = _one_sentence(run_cprof(["--counter=cylces", script]), "'cylces'", "cycles",
                         "cpu, wall, ctxsw")
    assert "did you mean" in line
    _one_sentence(run_cprof(["--counter=pagefaults", script]), "page-faults")
    _one_sentence(run_cprof(["--counter=cycles:z", script]), "'cycles:z'", "modifiers")
    _one_sentence(run_cprof(["--counter=page-faults,page-faults", script]), "twice")


# ---------------------------------------------------------------- PMU event names, by host

# perf_event_open's number, for the architectures cprof runs on
_PERF_EVENT_OPEN = {"x86_64": 298, "aarch64": 241, "ppc64le": 319, "s390x": 331, "riscv64": 241}


def _hw_errno() -> int:
    """The kernel's view, not cprof's: 0 if perf_event_open counts a hardware event here
    (instructions, user mode only, as an unprivileged user may), else its errno."""
    import ctypes
    import platform
    import struct
    nr = _PERF_EVENT_OPEN.get(platform.machine())
    if nr is None:
        pytest.skip(f"perf_event_open's number on {platform.machine()} is not known to this test")
    attr = bytearray(128)       # struct perf_event_attr: type, size, config, ..., flags at 40
    struct.pack_into("IIQ", attr, 0, 0, len(attr), 1)  # PERF_TYPE_HARDWARE, INSTRUCTIONS
    struct.pack_into("Q", attr, 40, 1 | 1 << 5 | 1 << 6)  # disabled, exclude_kernel, exclude_hv
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    fd = libc.syscall(ctypes.c_long(nr), (ctypes.c_char * len(attr)).from_buffer(attr),
                      ctypes.c_int(0), ctypes.c_int(-1), ctypes.c_int(-1), ctypes.c_ulong(0))
    if fd >= 0:
        os.close(fd)
        return 0
    return ctypes.get_errno()


def _no_pmu(e: int) -> bool:
    import errno
    return e not in (0, errno.EACCES, errno.EPERM, errno.EMFILE, errno.ENFILE, errno.EINTR,
                     errno.EBUSY)


def _libpfm_view(event: str):
    """libpfm4's own view, through ctypes on libpfm.so: (the core PMU it detects here or
    None, whether a PMU it detects has `event`, the PMUs it does not detect that have it,
    core PMUs first, each in libpfm4's order)."""
    import ctypes
    import ctypes.util

    class PmuInfo(ctypes.Structure):
        _fields_ = [("name", ctypes.c_char_p), ("desc", ctypes.c_char_p),
                    ("size", ctypes.c_size_t)] + [
                   (f, ctypes.c_int) for f in ("pmu", "type", "nevents", "first_event",
                                               "max_encoding", "num_cntrs", "num_fixed")] + [
                   ("flags", ctypes.c_uint)]

    class EventInfo(ctypes.Structure):
        _fields_ = [("name", ctypes.c_char_p), ("desc", ctypes.c_char_p),
                    ("equiv", ctypes.c_char_p), ("size", ctypes.c_size_t),
                    ("code", ctypes.c_uint64)] + [
                   (f, ctypes.c_int) for f in ("pmu", "dtype", "idx", "nattrs", "reserved")] + [
                   ("flags", ctypes.c_uint)]

    path = ctypes.util.find_library("pfm")
    if not path:
        pytest.skip("cprof has libpfm4 but ctypes finds no libpfm.so to ask")
    pfm = ctypes.CDLL(path)
    assert pfm.pfm_initialize() == 0
    core, here, elsewhere = None, False, {1: [], 0: []}
    for p in range(4096):           # beyond PFM_PMU_MAX: invalid ids answer an error
        info = PmuInfo(size=ctypes.sizeof(PmuInfo))
        if pfm.pfm_get_pmu_info(p, ctypes.byref(info)) != 0:
            continue
        present, is_core = info.flags & 1, info.type == 1   # PFM_PMU_TYPE_CORE
        if present and is_core and core is None:
            core = info.name.decode()
        i, has = info.first_event, False
        while i != -1:
            e = EventInfo(size=ctypes.sizeof(EventInfo))
            if pfm.pfm_get_event_info(i, 0, ctypes.byref(e)) == 0 and e.name.decode().lower() \
                    == event.lower():
                has = True
                break
            i = pfm.pfm_get_event_next(i)
        if has and present:
            here = True
        elif has:
            elsewhere[int(is_core)].append(info.name.decode())
    return core, here, elsewhere[1] or elsewhere[0]


@pytest.mark.parametrize("name", ["INST_RETIRED.ANY_P:u", "RETIRED_INSTRUCTIONS:u"])
def test_pmu_event_name_here(tmp_path, name):
    """An Intel and an AMD PMU event name: counted where the CPU's PMU has the event and
    the kernel opens it; else one sentence saying what is true of this host, which the
    test works out by its own means (the kernel through perf_event_open, libpfm4 through
    its library): (a) a PMU detected and usable, (b) detected but no PMU visible to perf
    (a VM: the AMD EPYC host of issue 12), (c) none detected, (d) the name unknown to
    libpfm4, (e) a cprof without libpfm4."""
    script = _script(str(tmp_path), "print('ran')\n")
    r = run_cprof([f"--counter={name}", script])
    hw = _hw_errno()
    no_pmu = _no_pmu(hw)
    why = f"no hardware PMU is visible to perf here (perf_event_open: {os.strerror(hw)})"
    print(f"[measure] {name}: perf_event_open(instructions) -> {os.strerror(hw) if hw else 'ok'}")
    info = _cprof.build_info()
    if not info["libpfm"]:                                              # (e)
        if "built without" in info["libpfm_why"]:
            line = _one_sentence(r, f"'{name}'", "without libpfm4")
            assert (why if no_pmu else "reinstall cprof without that option") in line, line
        else:   # not found or not started here: why (its gist beside the missing PMU)
            line = _one_sentence(r, f"'{name}'", info["libpfm_why"].split(" (")[0])
            assert (why if no_pmu else info["libpfm_why"]) in line, line
        return
    core, here, elsewhere = _libpfm_view(name.split(".")[0].split(":")[0])
    print(f"[measure] libpfm4: core PMU {core}, has the event: {here}, others: {elsewhere}")
    if here and not no_pmu:                                             # (a)
        assert r.returncode == 0 and r.stdout == "ran\n", r.stderr
        return
    if here:                                                            # (b), a name of its own
        line = _one_sentence(r, f"'{name}'", f"libpfm4 knows it as an event of this CPU's PMU "
                             f"({core})", "no hardware PMU is visible to perf here", "VM")
    elif elsewhere:                                                     # another CPU's name
        more = f" and {len(elsewhere) - 1} more" if len(elsewhere) > 1 else ""
        line = _one_sentence(r, f"counter '{name}' is an event of other PMUs in libpfm4 "
                             f"({elsewhere[-1]}{more})")
        if core:                                                        # (a) or (b)
            assert f"not of this CPU's ({core})" in line, line
        elif no_pmu:                                                    # (c), as on this VM
            assert "it detects none on this CPU" in line, line
        else:                                                           # (c), bare metal
            assert "does not recognise this CPU's" in line, line
        if no_pmu:
            assert why in line and "task-clock" in line, line
        else:
            assert "no hardware PMU" not in line, line
    else:                                                               # (d)
        line = _one_sentence(r, f"unknown counter '{name}'")
    assert r.stdout == ""


# ---------------------------------------------------------------- --list-counters

def test_list_counters_tells_the_truth_about_this_machine():
    r = run_cprof(["--list-counters"], check_rc=0)
    out = r.stdout
    lines = out.splitlines()
    names = [line.split()[0] for line in lines if line[:1].strip() and "  [" in line]
    assert names[:3] == ["cpu", "wall", "ctxsw"]
    for name in ("page-faults", "minor-faults", "major-faults", "context-switches",
                 "cpu-migrations", "task-clock", "cycles", "instructions", "branch-misses",
                 "cache-misses"):
        assert name in names, name
    rows = _rows()
    # software events work here (as root, or user-only page faults as anyone)
    assert rows["page-faults"]["available"], rows["page-faults"]
    assert "read()" in rows["page-faults"]["read_path"]
    if os.geteuid() == 0:
        assert "mmap'd page" in rows["context-switches"]["read_path"]
    # hardware events: available exactly when the kernel opens them
    i = names.index("cycles")
    block = "\n".join(lines[lines.index(next(l for l in lines if l.startswith("cycles "))):][:2])
    if rows["cycles"]["available"]:
        assert "perf group" in block
    else:
        assert "UNAVAILABLE: counter 'cycles'" in block, block
    assert i > names.index("task-clock")
    assert "cprof --list-counters --pmu" in out
    assert "Traceback" not in r.stderr


def test_list_counters_pmu():
    r = run_cprof(["--list-counters", "--pmu"])
    info = _cprof.build_info()
    if not info["libpfm"]:
        _one_sentence(r, "PMU events", info["libpfm_why"].replace(" (-Dlibpfm=disabled)", ""))
        return
    assert r.returncode == 0, r.stderr
    # libpfm4's generic PMU is always detected
    assert "perf::PERF_COUNT_HW_CPU_CYCLES" in r.stdout
    assert "PMU 'perf'" in r.stdout
    rows = _cprof.list_counters(pmu=True)
    assert rows and all(r_["pmu"] and "::" in r_["name"] for r_ in rows)
    sw = [r_ for r_ in rows if r_["name"] == "perf::PERF_COUNT_SW_PAGE_FAULTS"]
    assert sw and sw[0]["available"], sw
    if all(r_["pmu"] in ("perf", "perf_raw") for r_ in rows):  # as on this VM's CPU
        assert "recognises no hardware PMU" in r.stdout


# ---------------------------------------------------------------- libpfm4 at run time

HIDDEN = "/nonexistent/libpfm.so.4"
NOT_FOUND = f"libpfm4 was not found ({HIDDEN}: cannot open shared object file: No such file or directory)"


def test_the_extension_does_not_link_libpfm4():
    """A build made where libpfm4 is installed must import where it is not: libpfm4 is
    loaded at run time (dlopen), never a library the extension needs."""
    readelf = shutil.which("readelf")
    if not readelf:
        pytest.skip("readelf (binutils) is not installed")
    out = subprocess.run([readelf, "-d", _cprof.__file__], capture_output=True, text=True,
                         check=True).stdout
    assert "(NEEDED)" in out, out
    assert "libpfm" not in out, out


def _real_libpfm():
    """The file behind libpfm.so.4 here, or None."""
    r = subprocess.run(["ldconfig", "-p"], capture_output=True, text=True)
    for line in r.stdout.splitlines():
        if line.strip().startswith("libpfm.so.4 ") and "=>" in line:
            return os.path.realpath(line.split("=>")[1].strip())
    return None


def test_imports_where_libpfm4_is_missing(tmp_path):
    """libpfm4 made unreadable for real, in a mount namespace (its file replaced by
    /dev/null): cprof imports, says why in build_info, and a PMU event name gets the
    sentence.  Before run-time loading, the import failed ('libpfm.so.4: file too short')."""
    lib = _real_libpfm()
    if not lib or not shutil.which("unshare"):
        pytest.skip("libpfm4 is not installed here, or no unshare (util-linux)")
    probe = subprocess.run(["unshare", "--mount", "--map-root-user", "true"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip(f"no mount namespace here: {probe.stderr.decode().strip()}")
    code = "import json, cprof; from cprof import _cprof; print(json.dumps(_cprof.build_info()))"
    script = _script(str(tmp_path), "print('ran')\n")
    r = subprocess.run(["unshare", "--mount", "--map-root-user", "sh", "-c",
                        'mount --bind /dev/null "$0" && "$1" -c "$2" && '
                        'exec "$1" -m cprof --counter=INST_RETIRED.ANY_P:u "$3"',
                        lib, sys.executable, code, script],
                       capture_output=True, text=True, env={**os.environ, "CPROF_LIBPFM": ""})
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    info = json.loads(r.stdout.splitlines()[0])
    assert info["libpfm"] is False, info
    assert info["libpfm_why"].startswith("libpfm4 was not found (") and "libpfm.so.4: " in \
        info["libpfm_why"], info
    _one_sentence(r, "'INST_RETIRED.ANY_P:u'", "libpfm4 was not found")


def test_libpfm4_not_found_build_info_and_list_counters():
    """CPROF_LIBPFM names the file to load instead of libpfm.so.4: one that is not there
    stands for a machine without libpfm4."""
    env = {"CPROF_LIBPFM": HIDDEN}
    r = subprocess.run([sys.executable, "-c", "import json, cprof; from cprof import _cprof; "
                        "print(json.dumps(_cprof.build_info()))"],
                       capture_output=True, text=True, env={**os.environ, **env}, check=True)
    assert json.loads(r.stdout) == {"libpfm": False, "libpfm_why": NOT_FOUND}
    r = run_cprof(["--list-counters"], env=env, check_rc=0)
    assert ("PMU events by libpfm4 name (INST_RETIRED.ANY_P:u) do not work here: " + NOT_FOUND +
            "; install libpfm4 (Debian/Ubuntu) or libpfm (Fedora) to use them") in r.stdout, r.stdout
    assert "cycles" in r.stdout   # perf's generic events are still listed
    _one_sentence(run_cprof(["--list-counters", "--pmu"], env=env),
                  "cprof cannot list PMU events: " + NOT_FOUND, "install libpfm4 (Debian/Ubuntu)")


def test_libpfm4_not_found_pmu_event_name(tmp_path):
    script = _script(str(tmp_path), "print('ran')\n")
    env = {"CPROF_LIBPFM": HIDDEN}
    r = run_cprof(["--counter=INST_RETIRED.ANY_P:u", script], env=env)
    no_pmu = _no_pmu(_hw_errno())
    line = _one_sentence(r, "counter 'INST_RETIRED.ANY_P:u' looks like a PMU event name, but "
                         "libpfm4 was not found")
    if no_pmu:
        assert "no hardware PMU is visible to perf here" in line, line
    else:
        assert NOT_FOUND + "; install libpfm4 (Debian/Ubuntu) or libpfm (Fedora)" in line, line
    assert "built without" not in line and r.stdout == ""
    # perf's generic events and the built-in counters need no libpfm4
    r = run_cprof(["--counter=cpu,page-faults", "-o", str(tmp_path / "p.json"), script], env=env)
    assert r.returncode == 0 and r.stdout == "ran\n", r.stderr


def test_pmu_flag_alone_is_an_error():
    _one_sentence(run_cprof(["--pmu"]), "--list-counters")


# ---------------------------------------------------------------- hardware, where there is a PMU

LOOP = r'''
import sys

def loop(n):
    x = 0
    for i in range(n):
        x += i
    return x

for n in (100_000, 200_000, 400_000):
    loop(n)
'''


def test_instructions_scale_with_iterations(tmp_path):
    reason = _hw_unavailable_reason()
    if reason:
        pytest.skip(f"no hardware events here: {reason}")
    perf = shutil.which("perf")
    if perf:
        p = subprocess.run([perf, "stat", "-x,", "-e", "instructions", "true"],
                           capture_output=True, text=True)
        if "not supported" in p.stderr or "not counted" in p.stderr:
            pytest.skip("perf stat does not count instructions here: " + p.stderr.strip()[-200:])
    script = _script(str(tmp_path), LOOP)
    out = str(tmp_path / "out.json")
    r = run_cprof(["--counter=instructions,cycles", "-o", out, script])
    assert r.returncode == 0, r.stderr
    prof = load(out)
    # one function, three calls: compare the per-call cost through a second run per size
    loop = fn(prof, "__main__.loop")
    assert loop["calls"] == 3
    per_iter = loop["total"]["instructions"] / 700_000
    assert per_iter > 5, per_iter
    # linearity: a run with 4x the work takes ~4x the instructions
    script2 = _script(str(tmp_path), LOOP.replace("(100_000, 200_000, 400_000)", "(2_800_000,)"),
                      "work2.py")
    out2 = str(tmp_path / "out2.json")
    assert run_cprof(["--counter=instructions", "-o", out2, script2]).returncode == 0
    ratio = fn(load(out2), "__main__.loop")["total"]["instructions"] / loop["total"]["instructions"]
    assert 3.8 <= ratio <= 4.2, ratio


def test_report_says_when_a_group_was_scaled():
    """Multiplexing cannot be provoked without a PMU: the report is checked on a profile
    as the profiler writes it (meta.corrections holds a perf group's scaled reads)."""
    from cprof import profile_file, report
    path = ("perf group of this run's hardware counters, one read() of the group per read; "
            "scaled by time_enabled/time_running if multiplexed")
    prof = profile_file.upgrade({"version": 1, "edges": [],
            "counters": [{"name": "cycles", "unit": "events", "description": "CPU cycles",
                          "read_path": path},
                         {"name": "cpu", "unit": "ns", "description": "CPU time", "read_path": "x"}],
            "functions": [{"id": 0, "name": "f", "file": "x.py", "line": 1, "calls": 1,
                           "primitive_calls": 1, "self": {"cycles": 10, "cpu": 5},
                           "total": {"cycles": 10, "cpu": 5}}],
            "meta": {"corrections": {"cycles": {"count": 12, "total": 3456},
                                     "cpu": {"count": 3, "total": 100}},
                     "region": {"cycles": 10, "cpu": 5}, "unattributed": {"cycles": 0, "cpu": 0}}})
    text = report.format_report(prof)
    assert "multiplexed: 12 group reads scaled, 3,456 estimated" in text
    assert text.count("multiplexed:") == 1  # cpu's corrections are not scaling
    prof["meta"]["corrections"]["cycles"]["count"] = 0
    assert "multiplexed:" not in report.format_report(prof)


def test_sort_by_an_event_name_with_a_dot():
    from cprof import report
    prof = ["INST_RETIRED.ANY_P:u", "page-faults"]
    assert report.sort_key(prof, "INST_RETIRED.ANY_P:u") == ("INST_RETIRED.ANY_P:u", "self")
    assert report.sort_key(prof, "INST_RETIRED.ANY_P:u.total") == ("INST_RETIRED.ANY_P:u", "total")
    assert report.sort_key(prof, "page-faults.total") == ("page-faults", "total")
    with pytest.raises(cprof.CprofError):
        report.sort_key(prof, "INST_RETIRED.ANY_P:u.bogus")


def test_page_faults_per_thread():
    """Each thread has its own perf event: faults land on the thread that took them."""
    import mmap
    import threading

    def touch(n):
        m = mmap.mmap(-1, n * 4096)
        for i in range(n):
            m[i * 4096] = 1
        m.close()

    kernel = []     # the kernel's own count of each touch()'s faults, on its thread

    def worker(n):
        before = resource.getrusage(resource.RUSAGE_THREAD).ru_minflt
        touch(n)
        kernel.append(resource.getrusage(resource.RUSAGE_THREAD).ru_minflt - before)

    with cprof.Profile(["page-faults"]) as p:
        ts = [threading.Thread(target=worker, args=(n,)) for n in (300, 700)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
    prof = p.profile()
    assert prof["meta"]["threads"] >= 3
    t = [f for f in prof["functions"] if f["name"].endswith("touch")]
    assert len(t) == 1 and t[0]["calls"] == 2
    # 1000 pages, plus what touch()'s own objects fault in: a few pages where threads share
    # the allocator's arenas (pymalloc), more where each thread has a fresh heap of its own
    # (mimalloc, free-threaded).  The kernel's count around each touch() also holds cprof's
    # own work at touch()'s events (its first sight of the functions allocates; on a fresh
    # mimalloc heap that faults too): at most that, and never less than the pages.
    faults = sum(kernel)
    print(f"[measure] page faults in touch(): cprof {t[0]['total']['page-faults']}, "
          f"getrusage {kernel}")
    assert 1000 <= t[0]["total"]["page-faults"] <= faults <= 1000 + 2 * 256, (t[0], kernel)
    w = [f for f in prof["functions"] if f["name"].endswith("worker")]
    assert w[0]["self"]["page-faults"] <= 5
