#!/usr/bin/env bash
# Each binary given must find libstdc++ before any LibTorch library (lib/CMakeLists.txt says why:
# pip wheels of torch export copies of libstdc++'s std::filesystem functions). Reads the
# binaries' DT_NEEDED entries in order; fails naming the first binary that lists a torch library
# (libtorch*, libc10*) before libstdc++.so.
set -euo pipefail
command -v readelf >/dev/null || { echo "SKIPPED libstdcxx_first: no readelf (binutils)"; exit 77; }
(($# > 0)) || { echo "usage: test_libstdcxx_first.sh BINARY..." >&2; exit 2; }
for bin in "$@"; do
  needed=$(readelf -d "$bin" | awk '/\(NEEDED\)/ { gsub(/[][]/, "", $5); print $5 }')
  first=$(grep -m1 -E '^(libstdc\+\+|libtorch|libc10)' <<<"$needed" || true)
  [[ "$first" == libstdc++.so* ]] || {
    echo "$bin: loads ${first:-no libstdc++ nor LibTorch} first; libstdc++ must come before LibTorch. Its libraries in order:"
    echo "$needed" | sed 's/^/  /'
    exit 1
  }
  echo "$bin: libstdc++ first, then $(grep -m1 -E '^(libtorch|libc10)' <<<"$needed" || echo "no LibTorch library")"
done
