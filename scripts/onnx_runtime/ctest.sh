#!/bin/sh
# CTest's onnx_runtime test: installs ONNX Runtime (install.sh) if needed, then runs the Catch2 tests
# that export models, run them in ONNX Runtime through run_model.js and compare with prom's engine.
# usage: ctest.sh PROM_TESTS TAGS    Exit 77 (CTest: skipped) with a "SKIPPED onnx_runtime:" line
# when node, npm or the package is missing.
tests=$1 tags=$2
here=$(cd "$(dirname "$0")" && pwd)
PROM_ONNXRUNTIME_DIR=${PROM_ONNXRUNTIME_DIR:-$(dirname "$tests")/../onnx_runtime}
"$here/install.sh" "$PROM_ONNXRUNTIME_DIR" || exit $?
PROM_ONNXRUNTIME_DIR=$(cd "$PROM_ONNXRUNTIME_DIR" && pwd)
PROM_ONNX_RUNNER="$here/run_model.js"
export PROM_ONNXRUNTIME_DIR PROM_ONNX_RUNNER
exec "$tests" "$tags"
