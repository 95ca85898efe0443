// Where prom-bench finds its reference scripts, configs and the ONNX Runtime install: the source
// and build trees it was compiled from. The paths are compiled into build_paths.cpp alone, so that
// the other translation units' command lines are the same in every clone and stay ccache hits.
#pragma once
#include <string>

namespace prom::bench {

std::string source_dir();       // the source tree (configs/, scripts/)
std::string scripts_dir();      // <source>/scripts
std::string onnxruntime_dir();  // <build>/onnx_runtime, where the build installs onnxruntime-node

}  // namespace prom::bench
