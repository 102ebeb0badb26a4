"""benches/compare.py's own pieces that its numbers rest on: the launcher that reports each run's
peak RSS, CPU and wall time, configuration names with commas, and the json workload."""
import importlib.util
import os
import shutil
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BENCHES = os.path.join(ROOT, "benches")


def load_compare():
    spec = importlib.util.spec_from_file_location("bench_compare", os.path.join(BENCHES, "compare.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def compare(tmp_path_factory):
    if not os.path.exists(os.path.join(BENCHES, "compare.py")):
        pytest.skip("no benches/ in this checkout (an installed package is being tested)")
    mod = load_compare()
    cc = os.environ.get("CC", "cc")
    if not shutil.which(cc):
        pytest.skip(f"no C compiler ({cc}) to build benches/launch.c")
    exe = tmp_path_factory.mktemp("launch") / "launch"
    subprocess.run([cc, "-O2", "-o", str(exe), os.path.join(BENCHES, "launch.c")], check=True)
    mod.LAUNCHER = str(exe)
    return mod


def test_peak_rss_is_the_child_s_own(compare):
    # this process holds 200 MB more than the child ever will: a child forked from it directly
    # would report at least that (the kernel keeps the larger high-water mark through exec)
    ballast = bytearray(200 << 20)
    ballast[::4096] = b"x" * len(ballast[::4096])
    small = compare.spawn([sys.executable, "-c", "pass"], timeout=60)
    big = compare.spawn([sys.executable, "-c", "b = bytearray(120 << 20); b[::4096] = b'x' * len(b[::4096])"],
                        timeout=60)
    del ballast
    assert small.returncode == 0 and big.returncode == 0, (small.stderr, big.stderr)
    assert small.maxrss < 100, small.maxrss  # an empty Python: 8-25 MiB
    assert 120 <= big.maxrss < 120 + 100, big.maxrss
    assert big.cpu > 0 and big.wall >= big.cpu * 0.5 / os.cpu_count()


def test_exit_status_output_and_time_out(compare):
    p = compare.spawn([sys.executable, "-c", "import sys; print('out'); print('err', file=sys.stderr); sys.exit(3)"],
                      timeout=60)
    assert (p.returncode, p.stdout, p.stderr) == (3, "out\n", "err\n")
    with pytest.raises(subprocess.TimeoutExpired):
        compare.spawn([sys.executable, "-c", "import time; time.sleep(60)"], timeout=1)


def test_configuration_names_with_commas(compare):
    names = ["plain", "floor py", "cProfile", "cprof wall", "cprof cpu", "cprof cpu,ctxsw", "cprof cpu,wall,ctxsw"]
    assert compare.select(names, "plain,cprof cpu,ctxsw,cprof wall") == ["plain", "cprof wall", "cprof cpu,ctxsw"]
    assert compare.select(names, "cprof cpu") == ["cprof cpu"]
    assert compare.select(names, "floor*,cprof cpu,wall,ctxsw") == ["floor py", "cprof cpu,wall,ctxsw"]
    assert compare.select(names, None) == names


def test_json_workload(tmp_path):
    script = os.path.join(BENCHES, "workloads.py")
    if not os.path.exists(script):
        pytest.skip("no benches/ in this checkout")
    data = tmp_path / "in.json"
    subprocess.run([sys.executable, script, "json", "--make", str(data), "--mb", "0.1"], check=True)
    assert 100_000 <= data.stat().st_size < 101_000
    r = subprocess.run([sys.executable, script, "json", "--data", str(data)], capture_output=True, text=True,
                       cwd=tmp_path, check=True)
    assert "BENCH_SECONDS" in r.stdout
    assert os.listdir(tmp_path) == ["in.json"]  # its output file is removed
