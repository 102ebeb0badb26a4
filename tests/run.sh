#!/usr/bin/env bash
# The whole test suite: installs what it needs, then runs
#   1. the Criterion tests of core/ and counters/ (meson test),
#   2. ruff and mypy over the package, once pyproject.toml configures them,
#   3. pytest for pyext/ and the CLI, under every CPython 3.10-3.15 and the free-threaded
#      3.14t found here (pyenv's versions, the ones ../shared/tools/build-pythons builds
#      into /opt/cpython/X.Y[t], or pythonX.Y[t] on PATH), the default python3 at least.
# Each Python gets its own venv (build-venvs/pyX.Y, made anew each run): nothing is
# installed into the interpreters themselves, and a failed install stops that Python's
# tests with pip's own error.  Everything is built with -Werror (users' installs are not).
# Usage: bash tests/run.sh            (CPROF_PYTHONS="python3.12 python3.13" to choose)
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
pkg-config --exists criterion 2>/dev/null || need_apt+=(libcriterion-dev)
command -v pkg-config >/dev/null || need_apt+=(pkg-config)
command -v setpriv >/dev/null || need_apt+=(util-linux)
# the HTML report's browser test (tests/py/test_html.py; it skips without chromium)
command -v chromium >/dev/null || need_apt+=(chromium)
# the pprof export's real consumer (tests/py/test_exports.py: go tool pprof)
command -v go >/dev/null || need_apt+=(golang-go)
# libpfm4 is optional for cprof (loaded at run time), but the suite tests PMU names with it;
# its headers let the build check cprof's declarations of its ABI (counters/pfm_loader.c)
[ -f /usr/include/perfmon/pfmlib_perf_event.h ] || need_apt+=(libpfm4-dev)
# Debian/Ubuntu's python3 makes venvs only with python3-venv (ensurepip)
if [ -x /usr/bin/python3 ] && ! /usr/bin/python3 -c 'import ensurepip' 2>/dev/null; then
  need_apt+=(python3-venv)
fi
if [ ${#need_apt[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

pythons=()
if [ -n "${CPROF_PYTHONS:-}" ]; then
  read -r -a pythons <<< "$CPROF_PYTHONS"
else
  # X.Yt is the free-threaded build of X.Y (pyenv names it X.Y.Zt)
  for v in 3.10 3.11 3.12 3.13 3.14 3.15 3.14t 3.15t; do
    py=""
    if command -v pyenv >/dev/null; then
      py=$(ls -d "$(pyenv root)"/versions/"${v%t}".*/bin/python 2>/dev/null | sort -V \
           | if [[ $v == *t ]]; then grep 't/bin/python$'; else grep -v 't/bin/python$'; fi \
           | tail -n 1 || true)
    fi
    [ -z "$py" ] && [ -x "/opt/cpython/$v/bin/python$v" ] && py="/opt/cpython/$v/bin/python$v"
    [ -z "$py" ] && py=$(command -v "python$v" 2>/dev/null || true)
    [ -n "$py" ] && "$py" -c 'import sys' 2>/dev/null && pythons+=("$py")
  done
  [ ${#pythons[@]} -eq 0 ] && pythons=(python3)
fi
# "3.14", or "3.14t" for a free-threaded build
version_of() {
  "$1" -c 'import sys, sysconfig
print("%d.%d%s" % (*sys.version_info[:2], "t" if sysconfig.get_config_var("Py_GIL_DISABLED") else ""))'
}

# A fresh venv, its path on stdout: make_venv PYTHON NAME -> build-venvs/NAME.
make_venv() {
  local dir="$PWD/build-venvs/$2"
  "$1" -m venv --clear "$dir" >&2 || {
    echo "tests/run.sh: error: $1 could not make a venv in $dir (Debian/Ubuntu: apt-get install python3-venv)" >&2
    return 1
  }
  echo "$dir"
}

# The tools (meson, ninja; ruff and mypy) in a venv of their own: build-venvs/tools
# (.ci/run uses its meson too).
# the newest with the GIL: meson and mypy drop old ones first (and may lack free-threaded wheels)
tools_py=${pythons[-1]}
for py in "${pythons[@]}"; do [[ $(version_of "$py") == *t ]] || tools_py=$py; done
tools=$(make_venv "$tools_py" tools)
"$tools/bin/python" -m pip install -q meson ninja
echo "== C tests (Criterion, meson test, -Werror)"
"$tools/bin/python" -m mesonbuild.mesonmain setup build-tests --reconfigure -Dtests=enabled -Dwerror=true \
  >/dev/null 2>&1 \
  || "$tools/bin/python" -m mesonbuild.mesonmain setup build-tests --wipe -Dtests=enabled -Dwerror=true
"$tools/bin/python" -m mesonbuild.mesonmain test -C build-tests --print-errorlogs

status=0
# ruff and mypy over the package, with the project's configuration in pyproject.toml;
# until it has one, the step says so and is skipped.
if grep -q '^\[tool\.ruff' pyproject.toml && grep -q '^\[tool\.mypy' pyproject.toml; then
  echo "== lint: ruff check pyext/cprof, mypy"
  "$tools/bin/python" -m pip install -q ruff mypy
  "$tools/bin/python" -m ruff check pyext/cprof || status=1
  "$tools/bin/python" -m mypy || status=1
else
  echo "== lint: skipped, pyproject.toml has no [tool.ruff] and [tool.mypy] configuration yet"
fi

for py in "${pythons[@]}"; do
  ver=$(version_of "$py")
  venv=$(make_venv "$py" "py$ver") || { status=1; continue; }
  echo "== pytest with $("$venv/bin/python" -c 'import sys; print(sys.version.split()[0])') ($py, in $venv)"
  if ! "$venv/bin/python" -m pip install -q --config-settings=setup-args=-Dwerror=true ".[test]"; then
    echo "tests/run.sh: error: pip could not install cprof for $py (its error is above)" >&2
    status=1
    continue
  fi
  if [[ $ver == *t ]]; then
    # Free-threaded builds: the whole suite with the GIL off (PYTHON_GIL=0, inherited by the
    # CLI the tests start), then the tests of the pymalloc-* counters, which cprof refuses
    # with the GIL off, with it on
    (cd tests/py && PYTHON_GIL=0 "$venv/bin/python" -m pytest -q -p no:cacheprovider .) || status=1
    echo "== pytest -m pymalloc with PYTHON_GIL=1 ($ver)"
    (cd tests/py && PYTHON_GIL=1 "$venv/bin/python" -m pytest -q -p no:cacheprovider -m pymalloc .) || status=1
  else
    (cd tests/py && "$venv/bin/python" -m pytest -q -p no:cacheprovider .) || status=1
  fi
done

# The free-threading tests under ThreadSanitizer, when its interpreter is built here
bash tests/tsan.sh || status=1
exit $status
