#!/usr/bin/env bash
# Builds and installs prom inside docker/Dockerfile's image: build_prom.sh SOURCE_DIR PREFIX.
# Matches the C++ ABI of the installed torch (see the Dockerfile's header).
set -euo pipefail
src=$1
prefix=$2
python=${PYTHON:-python}
torch_prefix=$("$python" -c 'import torch; print(torch.utils.cmake_prefix_path)')
abi=$("$python" -c 'import torch; print(int(torch._C._GLIBCXX_USE_CXX11_ABI))')
cuda=$("$python" -c 'import torch; print(torch.version.cuda or "none")')
echo "build_prom: torch $("$python" -c 'import torch; print(torch.__version__)'), CUDA $cuda, _GLIBCXX_USE_CXX11_ABI=$abi"
jobs=$(nproc)
deps=/opt/prom-deps
prefix_path="$torch_prefix"

if [ "$abi" = "0" ]; then
  # Rebuild the distribution's C++ libraries whose interfaces carry std::string with ABI 0.
  mkdir -p /tmp/abi0 "$deps"
  cd /tmp/abi0
  apt-get update
  apt-get source fmtlib spdlog yaml-cpp opencv
  flags="-D_GLIBCXX_USE_CXX11_ABI=0"
  common=(-G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_INSTALL_PREFIX="$deps" -DCMAKE_PREFIX_PATH="$deps"
          -DCMAKE_CXX_FLAGS="$flags" -DBUILD_SHARED_LIBS=ON -DCMAKE_POSITION_INDEPENDENT_CODE=ON)
  cmake -S fmtlib-*/ -B b-fmt "${common[@]}" -DFMT_TEST=OFF -DFMT_DOC=OFF
  cmake --build b-fmt -j "$jobs" && cmake --install b-fmt
  cmake -S spdlog-*/ -B b-spdlog "${common[@]}" -DSPDLOG_FMT_EXTERNAL=ON -DSPDLOG_BUILD_SHARED=ON \
    -DSPDLOG_BUILD_EXAMPLE=OFF -DSPDLOG_BUILD_TESTS=OFF
  cmake --build b-spdlog -j "$jobs" && cmake --install b-spdlog
  cmake -S yaml-cpp-*/ -B b-yaml "${common[@]}" -DYAML_CPP_BUILD_TESTS=OFF -DYAML_CPP_BUILD_TOOLS=OFF \
    -DYAML_BUILD_SHARED_LIBS=ON
  cmake --build b-yaml -j "$jobs" && cmake --install b-yaml
  # OpenCV: only what prom_data uses (core, imgproc, imgcodecs), no GUI, no video, no CUDA.
  cmake -S opencv-*/ -B b-opencv "${common[@]}" -DBUILD_LIST=core,imgproc,imgcodecs -DWITH_CUDA=OFF \
    -DBUILD_TESTS=OFF -DBUILD_PERF_TESTS=OFF -DBUILD_EXAMPLES=OFF -DBUILD_opencv_apps=OFF -DWITH_GTK=OFF \
    -DWITH_QT=OFF -DWITH_FFMPEG=OFF -DWITH_GSTREAMER=OFF -DWITH_V4L=OFF -DWITH_OPENEXR=OFF -DWITH_IPP=OFF \
    -DBUILD_JAVA=OFF -DBUILD_opencv_python3=OFF -DBUILD_ZLIB=OFF -DBUILD_PNG=OFF -DBUILD_JPEG=OFF -DWITH_PNG=ON \
    -DWITH_JPEG=ON -DWITH_TIFF=OFF -DWITH_WEBP=OFF -DWITH_OPENJPEG=OFF -DWITH_JASPER=OFF -DWITH_OPENCL=OFF \
    -DWITH_PROTOBUF=OFF -DWITH_ADE=OFF
  cmake --build b-opencv -j "$jobs" && cmake --install b-opencv
  cd /
  rm -rf /tmp/abi0 /var/lib/apt/lists/*
  prefix_path="$deps;$torch_prefix"
fi

cmake -S "$src" -B /tmp/prom-build -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_PREFIX_PATH="$prefix_path" \
  -DCMAKE_INSTALL_PREFIX="$prefix" -DPROM_BUILD_TESTS=ON
cmake --build /tmp/prom-build -j "$jobs"
# The CPU tests run here (no GPU during docker build); the GPU path is checked on the cluster.
(cd /tmp/prom-build && ctest --output-on-failure -j "$jobs" -E 'torchvision|pil|read_prom_model') ||
  { echo "build_prom: tests failed" >&2; exit 1; }
mkdir -p "$prefix/bin"
cp /tmp/prom-build/apps/prom-* "$prefix/bin/"
cp "$src/scripts/launch_local.sh" "$prefix/bin/"
rm -rf /tmp/prom-build
"$prefix/bin/prom-train" --version
