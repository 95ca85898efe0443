#!/bin/sh
# Installs ONNX Runtime for Node.js (npm's onnxruntime-node, pinned in package.json) into DIR, a
# folder outside the source tree (default: build/onnx_runtime). A test-only dependency, like
# python3-torch: prom builds and runs without it. `npm install --ignore-scripts` keeps the CPU
# runtime the package ships (its install script only downloads GPU builds). Idempotent.
# usage: install.sh [DIR]     Exit 0: installed; 77: node/npm missing or the registry unreachable
# (the reason on a line starting with "SKIPPED onnx_runtime:"); 1: anything else.
here=$(cd "$(dirname "$0")" && pwd)
dir=${1:-${PROM_ONNXRUNTIME_DIR:-$here/../../build/onnx_runtime}}
version=$(sed -n 's/.*"onnxruntime-node": *"\([^"]*\)".*/\1/p' "$here/package.json")
command -v node >/dev/null 2>&1 || { echo "SKIPPED onnx_runtime: node not found (apt-get install nodejs npm)"; exit 77; }
mkdir -p "$dir" && dir=$(cd "$dir" && pwd) || exit 1  # absolute: require() reads a relative name as a package
installed=$(node -e "try{console.log(require('$dir/node_modules/onnxruntime-node/package.json').version)}catch(e){}" 2>/dev/null)
[ "$installed" = "$version" ] && exit 0
command -v npm >/dev/null 2>&1 || { echo "SKIPPED onnx_runtime: npm not found (apt-get install npm)"; exit 77; }
cp "$here/package.json" "$dir/package.json" || exit 1
[ -f "$here/package-lock.json" ] && cp "$here/package-lock.json" "$dir/package-lock.json"
echo "installing onnxruntime-node $version into $dir (npm install --ignore-scripts)"
if ! log=$(cd "$dir" && npm install --ignore-scripts --no-audit --no-fund 2>&1); then
  echo "SKIPPED onnx_runtime: npm install onnxruntime-node@$version failed: $(printf '%s\n' "$log" | grep -m1 -i 'err' || printf '%s\n' "$log" | tail -1)"
  exit 77
fi
node -e "require('$dir/node_modules/onnxruntime-node')" >/dev/null 2>&1 ||
  { echo "SKIPPED onnx_runtime: onnxruntime-node $version installed in $dir but does not load on this platform"; exit 77; }
exit 0
