#!/usr/bin/env bash
# The whole test suite: installs what it needs, then runs
#   1. the Criterion tests of core/ and counters/ (meson test),
#   2. pytest for pyext/ and the CLI, under every CPython 3.9-3.13 found here
#      (pyenv's versions, or pythonX.Y on PATH), the default python3 at least.
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
# libpfm4 is optional for cprof, but the suite tests the build with it (perf tests)
[ -f /usr/include/perfmon/pfmlib_perf_event.h ] || need_apt+=(libpfm4-dev)
if [ ${#need_apt[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

pythons=()
if [ -n "${CPROF_PYTHONS:-}" ]; then
  read -r -a pythons <<< "$CPROF_PYTHONS"
else
  for v in 3.9 3.10 3.11 3.12 3.13; do
    py=""
    if command -v pyenv >/dev/null; then
      py=$(ls -d "$(pyenv root)"/versions/"$v".*/bin/python 2>/dev/null | sort -V | tail -n 1 || true)
    fi
    [ -z "$py" ] && py=$(command -v "python$v" 2>/dev/null || true)
    [ -n "$py" ] && "$py" -c 'import sys' 2>/dev/null && pythons+=("$py")
  done
  [ ${#pythons[@]} -eq 0 ] && pythons=(python3)
fi

first="${pythons[0]}"
"$first" -m pip install -q meson ninja 2>&1 | grep -v -i "warning: running pip as" || true
echo "== C tests (Criterion, meson test)"
"$first" -m mesonbuild.mesonmain setup build-tests --reconfigure -Dtests=enabled >/dev/null 2>&1 \
  || "$first" -m mesonbuild.mesonmain setup build-tests -Dtests=enabled
"$first" -m mesonbuild.mesonmain test -C build-tests --print-errorlogs

status=0
for py in "${pythons[@]}"; do
  echo "== pytest with $("$py" -c 'import sys; print(sys.executable, sys.version.split()[0])')"
  "$py" -m pip install -q ".[test]" 2>&1 | grep -v -i "warning: running pip as" || true
  (cd tests/py && "$py" -m pytest -q -p no:cacheprovider .) || status=1
done
exit $status
