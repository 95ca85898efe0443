// What this binary was built with and runs on: printed by --version and saved in every run directory.
#pragma once
#include <string>

namespace prom {

struct BuildInfo {
  std::string prom_version;
  std::string torch_version;
  bool cuda_available = false;
  int cuda_device_count = 0;
  int threads = 0;
  int interop_threads = 0;
  std::string blas;       // shared library that provides sgemm_, resolved through symlinks
  std::string allocator;  // "tcmalloc" when linked, else "glibc malloc"
};

BuildInfo build_info();

// Sets LibTorch's intra-op threads; 0 means one per available core (LibTorch defaults to 1 here).
void set_threads(int threads);

// Cores this process may run on (sched_getaffinity), at least 1.
int available_cores();

}  // namespace prom
