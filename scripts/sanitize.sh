#!/usr/bin/env bash
# Builds prom with AddressSanitizer + UndefinedBehaviorSanitizer in build-asan/ (PROM_SANITIZE=ON:
# -O1 with line tables, fast enough to run the tests, precise enough for stack traces; no tcmalloc)
# and runs CTest groups there. Any report aborts the process under test (the test binary or an app it
# runs), so the test fails and the log holds the report with its stack.
#
# Which groups: PROM_SANITIZE_TESTS, a ctest -R regex. The default fits the CI budget on the 2-core
# machine (the build alone takes about as long as the normal one, ~10 min): the groups that parse
# inputs and run prom's own loops (config, io, model, train, cli, data, export, export_cli).
# PROM_SANITIZE_TESTS=. runs everything; under ASan the slow ones are quant (fake-quant training,
# ~6 min), bad_input (180 process starts, ~13 min on a loaded machine), train_cli, dist and the
# Python cross-checks (they work: the instrumented prom_tests writes, Debian's Python reads).
# [export] trains its fixture for PROM_TEST_QAT_STEPS (here 3 instead of 25) steps: memory and UB
# checks need the code paths, not a converged model (see test/unit/test_export.cpp).
# Extra arguments go to ctest. PROM_SANITIZE_JOBS: build jobs (2).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${PROM_SANITIZE_BUILD_DIR:-$root/build-asan}
"$root/scripts/install_deps.sh"

start=$SECONDS
if [[ ! -f "$build/build.ninja" ]]; then
  cmake -S "$root" -B "$build" -G Ninja -DPROM_SANITIZE=ON -DPROM_USE_TCMALLOC=OFF \
    -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O1 -g1" ${PROM_CMAKE_ARGS:-}
fi
cmake --build "$build" -j "${PROM_SANITIZE_JOBS:-2}"
echo "sanitize: build took $((SECONDS - start)) s"

supp=$root/test/sanitizers
# abort_on_error: a report kills the process with SIGABRT, which no test mistakes for a clean exit 1.
# Leak detection stays on; test/sanitizers/lsan.supp lists third-party process-lifetime allocations.
export ASAN_OPTIONS="halt_on_error=1:abort_on_error=1:detect_leaks=1:${ASAN_OPTIONS:-}"
export LSAN_OPTIONS="suppressions=$supp/lsan.supp:print_suppressions=0:${LSAN_OPTIONS:-}"
export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1:suppressions=$supp/ubsan.supp:${UBSAN_OPTIONS:-}"
export PROM_TEST_QAT_STEPS=${PROM_TEST_QAT_STEPS:-3}

start=$SECONDS
cd "$build"
status=0
ctest --output-on-failure -j "${PROM_TEST_JOBS:-2}" -R "${PROM_SANITIZE_TESTS:-^(config|io|model|train|cli|data|export|export_cli)\$}" "$@" ||
  status=$?
echo "sanitize: tests took $((SECONDS - start)) s"
exit $status
