#!/bin/sh
# Runs Catch2 tests that write files, then a Python script (Debian's python3 with numpy) that checks
# them. usage: check_after.sh NAME PROM_TESTS TAGS -- COMMAND...   (COMMAND sees $OUT_DIR)
# Exit 77 (CTest: skipped) when numpy is not there, with the reason.
name=$1 tests=$2 tags=$3
shift 4
py=${PROM_REFERENCE_PYTHON:-/usr/bin/python3}
OUT_DIR=$(dirname "$tests")/crosscheck/$name
export OUT_DIR
mkdir -p "$OUT_DIR"
if ! "$py" -c "import numpy" 2>/dev/null; then
  echo "SKIPPED $name: $py cannot import numpy (apt-get install python3-numpy)"
  exit 77
fi
PROM_CROSSCHECK_DIR="$OUT_DIR" "$tests" "$tags" || exit 1
eval "$@"
