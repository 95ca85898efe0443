// libFuzzer target: the config loader (lib/config/config.h) on arbitrary bytes as a YAML file,
// including `base:` includes: the input is written as config.yaml beside a valid fragment base.yaml
// (and may name itself, a missing file or a directory as its base). A prom::ConfigError (or any
// prom::Error) is the expected outcome; anything else is a finding. A config that loads must load
// again from its printed form (to_yaml), as runs save it to RUN_DIR/config.yaml and --resume reads it.
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

#include "config/config.h"
#include "core/error.h"

namespace {

namespace fs = std::filesystem;

void write(const fs::path& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << text;
  if (!out.flush()) std::abort();  // the harness itself failed, not the code under test
}

// A fresh private directory per process, with the fragment the inputs may include.
const fs::path& work_dir() {
  static const fs::path dir = [] {
    fs::path d = fs::temp_directory_path() / ("prom-fuzz-config-" + std::to_string(::getpid()));
    fs::create_directories(d / "sub");
    write(d / "base.yaml",
          "model: {arch: mobilenet_v2, num_classes: 10}\n"
          "quant:\n  enabled: true\n  rules:\n    - roles: [pointwise_expand, pointwise_project]\n"
          "      weight: {type: ternary, method: absmean}\n      input: {type: int8}\n");
    write(d / "sub" / "nested.yaml", "base: ../base.yaml\ntrain: {epochs: 2}\n");
    return d;
  }();
  return dir;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const fs::path path = work_dir() / "config.yaml";
  write(path, std::string(reinterpret_cast<const char*>(data), size));
  prom::config::Config config;
  try {
    config = prom::config::load_config(path.string());
  } catch (const prom::Error&) {
    return 0;
  }
  const fs::path printed = work_dir() / "printed.yaml";
  write(printed, prom::config::to_yaml(config));
  prom::config::Config again = prom::config::load_config(printed.string());  // must not throw
  if (prom::config::to_yaml(again) != prom::config::to_yaml(config)) std::abort();
  return 0;
}
