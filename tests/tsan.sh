#!/usr/bin/env bash
# The free-threading ground truths (tests/py/test_free_threading.py, the GIL off) under
# ThreadSanitizer: a CPython built --disable-gil --with-thread-sanitizer, cprof built with
# -fsanitize=thread.  Reports go to files (not to the profiled children's stderr, which the
# tests check); any report with a cprof frame in it fails the run, the others (CPython's own,
# after its published suppressions) are counted and listed.
#   bash tests/tsan.sh        (tests/run.sh calls it when the interpreter is there)
# The interpreter: $CPROF_TSAN_PYTHON, else /opt/cpython/3.14t-tsan, which
#   VERSIONS="3.14t-tsan" ../shared/tools/build-pythons
# builds (about 40 minutes on a busy 2-core machine, so CI does not build it).
set -euo pipefail
cd "$(dirname "$0")/.."

py=${CPROF_TSAN_PYTHON:-/opt/cpython/3.14t-tsan/bin/python3.14t}
if [ ! -x "$py" ]; then
  echo "== ThreadSanitizer: skipped, no $py (build it with VERSIONS=\"3.14t-tsan\" ../shared/tools/build-pythons)"
  exit 0
fi
venv="$PWD/build-venvs/tsan"
logs="$PWD/build-venvs/tsan-reports"
"$py" -m venv --clear "$venv"
rm -rf "$logs" && mkdir -p "$logs"
"$venv/bin/python" -m pip install -q meson ninja meson-python
"$venv/bin/python" -m pip install -q --no-build-isolation \
  -Csetup-args=-Db_sanitize=thread -Csetup-args=-Db_lundef=false -Csetup-args=-Dwerror=true ".[test]"

# CPython's own suppressions for its free-threaded build, from the source it was built from
opts="halt_on_error=0 report_signal_unsafe=0 log_path=$logs/report"
ver=$("$py" -c 'import platform; print(platform.python_version())')
tarball=$(ls ../shared/pythons/cpython-"$ver".tar.* 2>/dev/null | head -n 1 || true)
if [ -n "$tarball" ]; then
  tar -xOf "$tarball" "cpython-${ver%.*}/Tools/tsan/suppressions_free_threading.txt" \
    > "$logs/../tsan-suppressions.txt" 2>/dev/null \
    && opts+=" suppressions=$logs/../tsan-suppressions.txt"
fi

echo "== ThreadSanitizer: tests/py/test_free_threading.py with $py (Python $ver)"
status=0
(cd tests/py && TSAN_OPTIONS="$opts" "$venv/bin/python" -m pytest -q -p no:cacheprovider \
   test_free_threading.py) || status=1

reports=$(cat "$logs"/report.* 2>/dev/null | grep -c '^WARNING: ThreadSanitizer' || true)
ours=$(for f in "$logs"/report.*; do [ -f "$f" ] && awk '/^WARNING: ThreadSanitizer/{r=1} r&&/_cprof/{print FILENAME": "$0; r=0} /^====/{r=0}' "$f"; done | wc -l)
echo "== ThreadSanitizer: $reports report(s), $ours with a cprof frame (reports in $logs)"
if [ "$ours" -gt 0 ]; then
  grep -l _cprof "$logs"/report.* | head -n 3 | xargs cat
  status=1
fi
exit $status
