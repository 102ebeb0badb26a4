"""What an installed cprof says about itself: one version, written once (meson.build's
project()), and the MIT license shipped with it."""
import importlib.metadata
import os
import re
import subprocess
import sys

import cprof
from conftest import run_cprof

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _meson_version() -> str:
    with open(os.path.join(ROOT, "meson.build")) as f:
        m = re.search(r"project\('cprof'.*?version:\s*'([^']+)'", f.read(), re.S)
    assert m, "meson.build's project() has no version"
    return m.group(1)


def test_one_version_everywhere():
    version = _meson_version()
    assert cprof.__version__ == version
    assert importlib.metadata.version("cprof") == version          # pyproject: dynamic
    assert run_cprof(["--version"], check_rc=0).stdout == f"cprof {version}\n"


def test_the_version_costs_no_metadata_lookup_at_import():
    r = subprocess.run([sys.executable, "-c", "import sys, cprof; "
                        "print('importlib.metadata' in sys.modules, cprof.__version__)"],
                       capture_output=True, text=True, check=True)
    assert r.stdout == f"False {_meson_version()}\n"


def test_the_license_ships_with_the_package():
    dist = importlib.metadata.distribution("cprof")
    assert dist.metadata["License-Expression"] == "MIT"
    files = [f for f in dist.files or [] if f.name == "LICENSE"]
    assert files, "no LICENSE in the installed distribution"
    text = files[0].read_text()
    assert text.startswith("MIT License") and "WITHOUT WARRANTY OF ANY KIND" in text
