#!/usr/bin/env bash
# Configures (once) and builds prom in build/ (Release, Ninja, 2 jobs: a LibTorch translation unit
# takes 1-2 GB to compile). A second run with nothing changed rebuilds nothing.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${PROM_BUILD_DIR:-$root/build}
jobs=${PROM_BUILD_JOBS:-2}
if [[ ! -f "$build/build.ninja" ]]; then
  cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release ${PROM_CMAKE_ARGS:-}
fi
cmake --build "$build" -j "$jobs"
