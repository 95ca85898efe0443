#include "build_paths.h"

namespace prom::bench {

std::string source_dir() { return PROM_SOURCE_DIR; }
std::string scripts_dir() { return std::string(PROM_SOURCE_DIR) + "/scripts"; }
std::string onnxruntime_dir() { return PROM_ONNXRUNTIME_DIR; }

}  // namespace prom::bench
