#!/usr/bin/env bash
# What of scripts/gpu_check.sh runs without a GPU: its argument and environment checks (each a
# one-line error with the documented exit code, nothing written), and that the folder
# scripts/make_gpu_deps.sh makes is one gpu_check.sh accepts (CMake finds every package in it).
# usage: test_gpu_check.sh REPO WORK_DIR   (WORK_DIR keeps the downloaded .debs between runs)
# Exit 77 (CTest: skipped) when apt cannot download the packages, with a SKIPPED line saying why.
set -uo pipefail
repo=$1 work=$2
check=$repo/scripts/gpu_check.sh
failures=0
mkdir -p "$work"
export PROM_GPU_BUILD_DIR="$work/must-not-exist"
rm -rf "$PROM_GPU_BUILD_DIR"

# expect NAME CODE PATTERN COMMAND...: COMMAND exits CODE and prints one line matching PATTERN.
expect() {
  local name=$1 code=$2 pattern=$3 out status=0
  shift 3
  out=$("$@" 2>&1) || status=$?
  if [[ $status -ne $code || $(wc -l <<<"$out") -ne 1 || ! "$out" =~ $pattern ]]; then
    echo "FAIL $name: wanted exit $code and one line matching '$pattern', got exit $status:"
    echo "$out" | sed 's/^/    /'
    failures=$((failures + 1))
  else
    echo "ok   $name: $out"
  fi
}

expect "no DEPS_DIR is a usage error" 2 "usage: scripts/gpu_check.sh DEPS_DIR" "$check"
expect "an unknown option is a usage error" 2 "unknown option '--gpu'" "$check" "$work" --gpu
expect "--python without a value is a usage error" 2 "--python needs a value" "$check" "$work" --python
expect "a missing DEPS_DIR is named" 2 "DEPS_DIR '$work/nope' is not a folder" "$check" "$work/nope"
mkdir -p "$work/empty"
expect "a folder without the manifest is named" 2 "$work/empty/prom-gpu-deps.txt not found" "$check" "$work/empty"

deps=$work/gpu_deps
if ! make_out=$("$repo/scripts/make_gpu_deps.sh" "$deps" 2>&1); then
  echo "SKIPPED the deps folder cases: scripts/make_gpu_deps.sh failed (no Debian archive reachable?): $(tail -1 <<<"$make_out")"
  ((failures == 0)) && exit 77
  exit 1
fi
echo "ok   make_gpu_deps.sh: $(tail -1 <<<"$make_out")"
expect "the folder make_gpu_deps.sh makes is usable" 0 "DEPS_DIR $deps is usable" "$check" "$deps" --check-deps

# Broken copies of it: a package's CMake file missing, packages for another architecture.
broken=$work/broken
rm -rf "$broken" && cp -a "$deps" "$broken" && rm -rf "$broken/usr/share/cmake/CLI11"
expect "a missing CMake file is named" 2 "$broken/usr/share/cmake/CLI11/CLI11Config.cmake: not found" \
  "$check" "$broken" --check-deps
rm -rf "$broken" && cp -a "$deps" "$broken" && sed -i 's/^arch .*/arch sparc64/' "$broken/prom-gpu-deps.txt"
expect "packages for another architecture are refused" 2 "packages for 'sparc64'" "$check" "$broken" --check-deps
rm -rf "$broken"

# The Python side: not found, no torch, no CUDA (Debian's torch is a CPU build; a CUDA build on a
# machine without a GPU sees no device).
expect "a missing Python is named" 1 "Python '$work/nope/python3' not found" "$check" "$deps" --python "$work/nope/python3"
printf '#!/bin/sh\nexec /usr/bin/python3 -I -S "$@"\n' >"$work/python-without-torch"
chmod +x "$work/python-without-torch"
expect "a Python without torch is a one-line error" 1 "cannot import torch: .*torch" \
  "$check" "$deps" --python "$work/python-without-torch"
if /usr/bin/python3 -c 'import torch' 2>/dev/null; then
  expect "torch without CUDA is a one-line error" 1 "(is a CPU-only build|no CUDA device)" \
    "$check" "$deps" --python /usr/bin/python3
else
  echo "SKIPPED the no-CUDA case: /usr/bin/python3 has no torch (apt-get install python3-torch)"
fi

if [[ -e "$PROM_GPU_BUILD_DIR" ]]; then
  echo "FAIL a failed check wrote $PROM_GPU_BUILD_DIR"
  failures=$((failures + 1))
fi
((failures == 0)) && echo "all gpu_check.sh CPU checks passed" || echo "$failures gpu_check.sh check(s) failed"
((failures == 0))
