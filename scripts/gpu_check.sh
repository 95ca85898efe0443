#!/usr/bin/env bash
# One prepared check for a machine with a CUDA GPU and PyTorch 2.x (with CUDA), but none of Debian's
# packages, no package registry and no internet. It builds prom against the Python package's LibTorch
# (-DPROM_WITH_DATA=OFF: no OpenCV; -DPROM_USE_TCMALLOC=OFF), with the small dependencies taken from
# DEPS_DIR (made on Debian by scripts/make_gpu_deps.sh and copied here), runs the CUDA tests
# (ctest -R cuda), then `prom-bench train --device cuda` for the float, QAT and AMP steps against
# torchvision, and prints one summary. Every stage has a timeout; the whole run stays under 8 minutes.
#
# usage: scripts/gpu_check.sh DEPS_DIR [--python PYTHON] [--check-deps]
#   --python PY    the Python with torch (default: $PROM_GPU_PYTHON, else python3)
#   --check-deps   only check DEPS_DIR (layout, CMake finds every package there) and stop: runs on CPU
# Environment: PROM_GPU_BUILD_DIR (default build-gpu), PROM_GPU_CHECK_SECONDS (default 470),
#   PROM_GPU_AMP (the AMP step's train.amp, default bf16), PROM_GPU_JOBS (default: every core).
# Exit: 0 every stage passed; 1 a stage failed, or no torch / no CUDA / a missing tool; 2 bad usage
# or DEPS_DIR is not a folder make_gpu_deps.sh made.
set -uo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
started=$SECONDS
budget=${PROM_GPU_CHECK_SECONDS:-470}
die() { echo "gpu_check: $1" >&2; exit "${2:-1}"; }

deps="" python=${PROM_GPU_PYTHON:-python3} check_only=0
while (($#)); do
  case $1 in
    --python) (($# >= 2)) || die "--python needs a value (usage: scripts/gpu_check.sh DEPS_DIR [--python PYTHON] [--check-deps])" 2
              python=$2; shift 2 ;;
    --check-deps) check_only=1; shift ;;
    -*) die "unknown option '$1' (usage: scripts/gpu_check.sh DEPS_DIR [--python PYTHON] [--check-deps])" 2 ;;
    *) [[ -z "$deps" ]] || die "one DEPS_DIR only, got '$deps' and '$1'" 2
       deps=$1; shift ;;
  esac
done
[[ -n "$deps" ]] || die "usage: scripts/gpu_check.sh DEPS_DIR [--python PYTHON] [--check-deps] (DEPS_DIR: made by scripts/make_gpu_deps.sh)" 2

# --- DEPS_DIR: the manifest, this machine's architecture, every package's CMake file -------------
[[ -d "$deps" ]] || die "DEPS_DIR '$deps' is not a folder (make it on Debian with scripts/make_gpu_deps.sh)" 2
deps=$(cd "$deps" && pwd)
manifest="$deps/prom-gpu-deps.txt"
[[ -f "$manifest" ]] || die "$manifest not found: '$deps' was not made by scripts/make_gpu_deps.sh" 2
deps_arch=$(awk '$1 == "arch" { print $2 }' "$manifest")
multiarch=$(awk '$1 == "multiarch" { print $2 }' "$manifest")
case $(uname -m) in x86_64) arch=amd64 ;; aarch64) arch=arm64 ;; *) arch=$(uname -m) ;; esac
[[ "$deps_arch" == "$arch" && -n "$multiarch" ]] ||
  die "$manifest: packages for '${deps_arch:-?}', this machine is $arch (run make_gpu_deps.sh on a Debian $arch machine)" 2
libdir="$deps/usr/lib/$multiarch"
declare -A config=(
  [libyaml-cpp-dev]="$libdir/cmake/yaml-cpp/yaml-cpp-config.cmake"
  [libspdlog-dev]="$libdir/cmake/spdlog/spdlogConfig.cmake"
  [libfmt-dev]="$libdir/cmake/fmt/fmt-config.cmake"
  [libcli11-dev]="$deps/usr/share/cmake/CLI11/CLI11Config.cmake"
  [nlohmann-json3-dev]="$deps/usr/share/cmake/nlohmann_json/nlohmann_jsonConfig.cmake"
  [catch2]="$deps/usr/lib/cmake/Catch2/Catch2Config.cmake|$libdir/cmake/Catch2/Catch2Config.cmake")
for p in "${!config[@]}"; do
  grep -q "^package $p " "$manifest" || die "$manifest: package $p is missing (rerun make_gpu_deps.sh)" 2
  found=0
  IFS='|' read -ra paths <<<"${config[$p]}"
  for f in "${paths[@]}"; do [[ -f "$f" ]] && found=1; done
  ((found)) || die "${paths[0]}: not found, though $manifest lists $p (rerun make_gpu_deps.sh)" 2
done
prefix_path="$deps/usr;$libdir/cmake;$deps/usr/lib/cmake;$deps/usr/share/cmake"

# The carried libraries must load with this machine's C++ runtime: every GLIBCXX_ version they
# need must be in its libstdc++ (a Debian 12 spdlog needs GCC 12's, for example).
check_runtime() {
  command -v objdump >/dev/null || { echo "SKIPPED the C++ runtime check of DEPS_DIR: no objdump (binutils)"; return; }
  local cxx=${CXX:-c++} stdcxx need v
  stdcxx=$("$cxx" -print-file-name=libstdc++.so.6 2>/dev/null)
  [[ -f "$stdcxx" ]] || { echo "SKIPPED the C++ runtime check of DEPS_DIR: $cxx does not say where libstdc++.so.6 is"; return; }
  for lib in "$libdir"/lib*.so.*; do
    [[ -f "$lib" && ! -L "$lib" ]] || continue
    need=$(objdump -T "$lib" | grep -oE 'GLIBCXX_[0-9.]+[0-9]' | sort -uV)
    for v in $need; do
      grep -qaF "$v" "$stdcxx" ||
        die "$lib needs $v, which this machine's $stdcxx lacks (make DEPS_DIR on an older Debian, or use a newer GCC)" 1
    done
    v=$(objdump -T "$lib" | grep -oE 'GLIBC_[0-9.]+[0-9]' | sort -uV | tail -1)
    if [[ -n "$v" && -n "$glibc" && "$(printf '%s\n' "${v#GLIBC_}" "$glibc" | sort -V | tail -1)" != "$glibc" ]]; then
      die "$lib needs $v, this machine has glibc $glibc (make DEPS_DIR on an older Debian)" 1
    fi
  done
}
glibc=$(getconf GNU_LIBC_VERSION 2>/dev/null | awk '{ print $2 }')

# CMake must find each package in DEPS_DIR, not elsewhere: a tiny project asks it.
check_cmake_finds_deps() {
  command -v cmake >/dev/null || die "cmake not found (CMake >= 3.18 is needed to build prom)" 1
  local probe
  probe=$(mktemp -d) || die "mktemp failed" 1
  cat >"$probe/CMakeLists.txt" <<'EOF'
cmake_minimum_required(VERSION 3.18)
project(prom_deps_probe LANGUAGES CXX)  # spdlog looks for Threads, which needs a compiler
foreach(p yaml-cpp spdlog fmt CLI11 nlohmann_json Catch2)
  find_package(${p} REQUIRED)
  message(STATUS "probe ${p} ${${p}_DIR}")
endforeach()
EOF
  if ! cmake -S "$probe" -B "$probe/b" -DCMAKE_PREFIX_PATH="$prefix_path" >"$probe/log" 2>&1; then
    local why
    why=$(grep -m1 -iE 'could not find|error' "$probe/log")
    rm -rf "$probe"
    die "CMake cannot use DEPS_DIR $deps: ${why:-see the output of cmake}" 2
  fi
  local outside
  outside=$(grep '^-- probe ' "$probe/log" | grep -v " $deps/" | head -1)
  rm -rf "$probe"
  [[ -z "$outside" ]] || die "CMake found a package outside DEPS_DIR: ${outside#-- probe }" 2
}

check_runtime
check_cmake_finds_deps
if ((check_only)); then
  echo "gpu_check: DEPS_DIR $deps is usable ($(grep -c '^package ' "$manifest") packages from Debian $(awk '$1 == "release" { print $2 }' "$manifest"), $arch)"
  exit 0
fi

# --- Python, torch, CUDA, the toolchain ---------------------------------------------------------
command -v "$python" >/dev/null || die "Python '$python' not found (pass --python PATH to the Python that has torch)" 1
torch_probe='
import torch, torch.utils
cuda = torch.version.cuda or "none"
available = torch.cuda.is_available()
nccl = ".".join(map(str, torch.cuda.nccl.version())) if available and hasattr(torch.cuda, "nccl") else "none"
print("version", torch.__version__)
print("cuda", cuda)
print("available", int(available))
print("gpu", torch.cuda.get_device_name(0).replace(" ", "_") if available else "none")
print("arch", "%d.%d" % torch.cuda.get_device_capability(0) if available else "none")
print("nccl", nccl)
print("abi", int(torch._C._GLIBCXX_USE_CXX11_ABI))
print("prefix", torch.utils.cmake_prefix_path)
'
torch_info=$("$python" -c "$torch_probe" 2>&1) || die "$python cannot import torch: $(echo "$torch_info" | tail -1)" 1
info() { awk -v k="$1" '$1 == k { print $2 }' <<<"$torch_info"; }
torch_version=$(info version)
[[ "$(info cuda)" != none ]] || die "torch $torch_version in $python is a CPU-only build: gpu_check needs PyTorch with CUDA" 1
[[ "$(info available)" == 1 ]] ||
  die "no CUDA device: torch $torch_version (CUDA $(info cuda)) sees none (torch.cuda.is_available() is False)" 1
[[ "$(info abi)" == 1 ]] ||
  die "torch $torch_version uses the pre-C++11 ABI (_GLIBCXX_USE_CXX11_ABI=0), which Debian's libraries in DEPS_DIR cannot link with: use torch >= 2.7 or docker/build_prom.sh" 1
command -v "${CXX:-c++}" >/dev/null || die "no C++ compiler (${CXX:-c++}) on PATH" 1
command -v nvcc >/dev/null || [[ -x "${CUDA_HOME:-/usr/local/cuda}/bin/nvcc" ]] ||
  die "nvcc not found (on PATH or in \${CUDA_HOME:-/usr/local/cuda}/bin): LibTorch's CMake files for a CUDA torch need the CUDA toolkit" 1
# LibTorch's CMake files compile for TORCH_CUDA_ARCH_LIST, else probe the GPU by building and running
# a CUDA program at configure time: name this GPU's architecture instead (prom has no CUDA sources).
export TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-$(info arch)}
generator=(-G "Unix Makefiles") keep_going=(-k)
command -v ninja >/dev/null && generator=(-G Ninja) keep_going=(-k 0)

# --- Stages: each under its own cap and the run's overall budget -----------------------------------
build=${PROM_GPU_BUILD_DIR:-$repo/build-gpu}
logs="$build/gpu_check_logs"
mkdir -p "$logs" || die "$logs: cannot create the folder" 1
export LD_LIBRARY_PATH="$libdir${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
summary=()
failed=0
# stage NAME CAP_SECONDS COMMAND...: runs COMMAND with a timeout, logs to $logs/NAME.log.
stage() {
  local name=$1 cap=$2 left status=0 t0=$SECONDS result=ok
  shift 2
  left=$((budget - (SECONDS - started)))
  if ((left < 10)); then
    summary+=("$(printf '%-12s %-10s %s' "$name" "NOT RUN" "out of the ${budget} s budget")")
    failed=1
    return 1
  fi
  ((cap < left)) || cap=$left
  echo "gpu_check: $name (at most $cap s) ..."
  timeout --kill-after=10 "$cap" "$@" >"$logs/$name.log" 2>&1 || status=$?
  if ((status == 124 || status == 137)); then result=TIMEOUT
  elif ((status != 0)); then result="FAILED($status)"
  fi
  summary+=("$(printf '%-12s %-10s %4d s  %s' "$name" "$result" $((SECONDS - t0)) "$logs/$name.log")")
  [[ $result == ok ]] && return 0
  failed=1
  echo "gpu_check: $name $result; the end of $logs/$name.log:"
  tail -n 15 "$logs/$name.log" | sed 's/^/  /'
  return 1
}

cuda_tests() {
  local n
  n=$(cd "$build" && ctest -N -R cuda | awk '/Total Tests:/ { print $3 }')
  if [[ "${n:-0}" == 0 ]]; then
    echo "no CTest test matches 'cuda': the CUDA tests (CPU vs CUDA fake quant, float/QAT/AMP steps, checkpoint CUDA<->CPU, NCCL) are not registered"
    return 1
  fi
  (cd "$build" && ctest -R cuda --output-on-failure --timeout 120)
}

bench() {  # bench EXTRA-FLAGS...: one prom-bench train run on the GPU against torchvision
  "$build/apps/prom-bench" train --device cuda --python "$python" --warmup 3 --iters 10 "$@"
}
# `timeout` runs programs, not shell functions: the stages call this script's functions through bash.
export -f cuda_tests bench
export build python

cmake_args=(-S "$repo" -B "$build" "${generator[@]}" -DCMAKE_BUILD_TYPE=Release -DPROM_WITH_DATA=OFF
  -DPROM_USE_TCMALLOC=OFF "-DCMAKE_PREFIX_PATH=$(info prefix);$prefix_path")
about="torch $torch_version, CUDA $(info cuda), NCCL $(info nccl), GPU $(info gpu | tr _ ' '), deps from Debian $(awk '$1 == "release" { print $2 }' "$manifest")"
echo "gpu_check: $about"
echo "gpu_check: $("${CXX:-c++}" --version | head -1); $(cmake --version | head -1); nvcc $(command -v nvcc || echo "${CUDA_HOME:-/usr/local/cuda}/bin/nvcc"); TORCH_CUDA_ARCH_LIST=$TORCH_CUDA_ARCH_LIST"
built=1
stage configure 120 cmake "${cmake_args[@]}" &&
  stage build 330 cmake --build "$build" -j "${PROM_GPU_JOBS:-$(nproc)}" -- "${keep_going[@]}" && built=0  # every error at once
if ((built == 0)); then
  stage cuda_tests 120 bash -c cuda_tests
  stage bench_float 90 bash -c bench
  stage bench_qat 90 bash -c 'bench --qat'
  stage bench_amp 90 bash -c "bench --amp ${PROM_GPU_AMP:-bf16}"
else
  for name in cuda_tests bench_float bench_qat bench_amp; do
    summary+=("$(printf '%-12s %-10s %s' "$name" "NOT RUN" "prom did not build")")
  done
fi

echo
echo "gpu_check summary, $(date -u '+%Y-%m-%d %H:%M UTC'), $((SECONDS - started)) s: $about"
printf '  %s\n' "${summary[@]}"
for b in bench_float bench_qat bench_amp; do
  [[ -f "$logs/$b.log" ]] && grep -E 'px|ratio' "$logs/$b.log" | sed "s/^/  $b: /"
done
if ((failed == 0)); then echo "gpu_check: all stages passed"; else echo "gpu_check: some stages did not pass (see above)"; fi
exit "$failed"
