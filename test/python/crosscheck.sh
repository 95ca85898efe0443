#!/bin/sh
# Runs a Python reference script in Debian's python3 (which has python3-torch and python3-torchvision),
# then the Catch2 tests that compare against what it wrote.
# usage: crosscheck.sh NAME PROM_TESTS SCRIPT TAGS
# Exit 77 (CTest: skipped) when the reference cannot run, with the reason on the first line.
name=$1 tests=$2 script=$3 tags=$4
py=${PROM_REFERENCE_PYTHON:-/usr/bin/python3}
out_dir=$(dirname "$tests")/crosscheck/$name
mkdir -p "$out_dir"
if [ ! -x "$py" ]; then
  echo "SKIPPED $name: $py not found (install Debian's python3-torch and python3-torchvision)"
  exit 77
fi
if ! "$py" -c "import torch, torchvision" 2>/dev/null; then
  echo "SKIPPED $name: $py cannot import torch and torchvision (apt-get install python3-torch python3-torchvision)"
  exit 77
fi
"$py" "$script" "$out_dir" || { echo "$name: the reference script $script failed"; exit 1; }
PROM_CROSSCHECK_DIR="$out_dir" exec "$tests" "$tags"
