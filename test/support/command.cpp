#include "support/command.h"

#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <random>
#include <stdexcept>

namespace prom::test {
namespace fs = std::filesystem;

CommandResult run_command(const std::string& command) {
  CommandResult r;
  std::string full = command + " 2>&1";
  FILE* pipe = ::popen(full.c_str(), "r");
  if (pipe == nullptr) throw std::runtime_error("popen failed: " + command);
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, pipe)) > 0) r.output.append(buf, n);
  int status = ::pclose(pipe);
  if (WIFEXITED(status)) r.exit_code = WEXITSTATUS(status);
  return r;
}

std::string bin(const std::string& name) { return std::string(PROM_BINARY_DIR) + "/apps/" + name; }
std::string source(const std::string& relative) { return std::string(PROM_SOURCE_DIR) + "/" + relative; }

TempDir::TempDir(const std::string& tag) {
  std::random_device rd;
  path_ = std::string(PROM_BINARY_DIR) + "/test-tmp/" + tag + "-" + std::to_string(::getpid()) + "-" +
          std::to_string(rd());
  fs::create_directories(path_);
}

TempDir::~TempDir() {
  std::error_code ec;
  fs::remove_all(path_, ec);
}

std::string TempDir::write(const std::string& name, const std::string& text) const {
  std::string p = file(name);
  fs::create_directories(fs::path(p).parent_path());
  std::ofstream(p) << text;
  return p;
}

}  // namespace prom::test
