#!/usr/bin/env bash
# Installs the dependencies, builds, and runs the whole test suite with CTest.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${PROM_BUILD_DIR:-$root/build}
"$root/scripts/install_deps.sh"
"$root/scripts/build.sh"
cd "$build"
status=0
ctest --output-on-failure -j "${PROM_TEST_JOBS:-2}" "$@" || status=$?
# CTest does not print why a test was skipped: the cross-check scripts write it as a SKIPPED line.
if grep -qh '^SKIPPED' Testing/Temporary/LastTest.log 2>/dev/null; then
  echo "Skipped tests and why:"
  grep -h '^SKIPPED' Testing/Temporary/LastTest.log | sed 's/^/  /'
fi
exit $status
