#!/usr/bin/env bash
# Builds the libFuzzer targets of test/fuzz/ (clang, -fsanitize=fuzzer,address,undefined) in
# build-fuzz/, replays every committed input (test/fuzz/corpus/ and test/fuzz/regressions/) through
# them, then fuzzes each target for PROM_FUZZ_SECONDS (default 60; 0 only replays) and prints its
# executions. Targets run PROM_FUZZ_PARALLEL at a time (default 2, one per core of the CI machine).
# Exits non-zero on any finding: a crash, a sanitizer report, an exception other than prom::Error,
# a timeout (PROM_FUZZ_TIMEOUT s per input) or an allocation over PROM_FUZZ_MEMORY_MB (2048).
# A finding's input is saved as build-fuzz/findings/<target>/crash-* (or oom-*, timeout-*); once
# fixed, commit it under test/fuzz/regressions/<target>/ so that every later run replays it.
# PROM_FUZZ_SEED (default 1) fixes libFuzzer's random seed, so a CI finding reproduces by rerunning
# the same command; PROM_FUZZ_SEED=0 lets libFuzzer pick one (exploring beyond what CI covers).
# Arguments: target names to run (default: all).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${PROM_FUZZ_BUILD_DIR:-$root/build-fuzz}
seconds=${PROM_FUZZ_SECONDS:-60}
parallel=${PROM_FUZZ_PARALLEL:-2}
memory_mb=${PROM_FUZZ_MEMORY_MB:-2048}
timeout_s=${PROM_FUZZ_TIMEOUT:-10}
seed=${PROM_FUZZ_SEED:-1}
targets=("$@")
((${#targets[@]})) || targets=(fuzz_safetensors fuzz_int_model fuzz_config fuzz_image_decode)
"$root/scripts/install_deps.sh"

start=$SECONDS
if [[ ! -f "$build/build.ninja" ]]; then
  CXX=clang++ cmake -S "$root/test/fuzz" -B "$build" -G Ninja
fi
cmake --build "$build" -j "${PROM_FUZZ_JOBS:-2}"
echo "fuzz: build took $((SECONDS - start)) s"

# The same LeakSanitizer/UBSan suppressions as scripts/sanitize.sh (third-party code only).
export LSAN_OPTIONS="suppressions=$root/test/sanitizers/lsan.supp:print_suppressions=0:${LSAN_OPTIONS:-}"
export UBSAN_OPTIONS="print_stacktrace=1:suppressions=$root/test/sanitizers/ubsan.supp:${UBSAN_OPTIONS:-}"
export OMP_NUM_THREADS=1
export OPENCV_LOG_LEVEL=SILENT  # OpenCV logs every rejected JPEG 2000 file as an ERROR line
limits=(-rss_limit_mb="$memory_mb" -malloc_limit_mb="$memory_mb" -timeout="$timeout_s")

# Replays, then fuzzes one target; writes one summary line to $build/<target>.result and returns
# non-zero on a finding.
run_target() {
  local t=$1 bin=$build/$1 seeds=$root/test/fuzz/corpus/$1 regressions=$root/test/fuzz/regressions/$1
  local findings=$build/findings/$1 work=$build/corpus/$1 log=$build/$1.log result=$build/$1.result
  mkdir -p "$findings" "$work" "$regressions"
  # 1. Every seed and every input that once found a bug, each executed once.
  if ! "$bin" "${limits[@]}" -runs=0 -artifact_prefix="$findings/" "$seeds" "$regressions" >"$log" 2>&1; then
    echo "$t: FAILED replaying test/fuzz/corpus or test/fuzz/regressions (log: $log)" >"$result"
    return 1
  fi
  local replayed
  replayed=$(find "$seeds" "$regressions" -type f | wc -l)
  if ((seconds == 0)); then
    echo "$t: replayed $replayed inputs" >"$result"
    return 0
  fi
  # 2. Bounded fuzzing; new interesting inputs go to $work (the first corpus folder, never committed).
  local status=0 execs
  "$bin" "${limits[@]}" -max_total_time="$seconds" -seed="$seed" -print_final_stats=1 -artifact_prefix="$findings/" \
    "$work" "$seeds" "$regressions" >"$log" 2>&1 || status=$?
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
  if ((status != 0)); then
    echo "$t: FINDING (exit $status) after ${execs:-?} executions: input in $findings/, log: $log" >"$result"
    return 1
  fi
  echo "$t: replayed $replayed inputs, ${execs:-?} executions in $seconds s" >"$result"
}

failed=0
running=0
for t in "${targets[@]}"; do
  if ((running >= parallel)); then
    wait -n || failed=1
    running=$((running - 1))
  fi
  run_target "$t" &
  running=$((running + 1))
done
while ((running > 0)); do
  wait -n || failed=1
  running=$((running - 1))
done

echo "fuzz: results"
for t in "${targets[@]}"; do
  echo "  $(cat "$build/$t.result")"
  if grep -q 'FINDING\|FAILED' "$build/$t.result"; then
    # The sanitizer's or libFuzzer's report and the stack that led to it.
    grep -E -A 12 '^==[0-9]+==ERROR|runtime error|terminate called|uncaught' "$build/$t.log" | head -n 40 | sed 's/^/    /'
  fi
done
if ((failed)); then
  echo "fuzz: FAILED"
  exit 1
fi
echo "fuzz: no findings (total $((SECONDS - start)) s)"
