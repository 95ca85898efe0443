#include "core/build_info.h"

#include <dlfcn.h>
#include <sched.h>
#include <torch/torch.h>
#include <torch/version.h>

#include <climits>
#include <cstdlib>

#include "prom/version.h"

namespace prom {
namespace {

// The BLAS actually serving sgemm_ in this process (Debian switches it with update-alternatives).
std::string blas_library() {
  void* sym = dlsym(RTLD_DEFAULT, "sgemm_");
  if (sym == nullptr) return "none found (sgemm_ not loaded)";
  Dl_info info{};
  if (dladdr(sym, &info) == 0 || info.dli_fname == nullptr) return "unknown";
  char resolved[PATH_MAX];
  const char* path = realpath(info.dli_fname, resolved) ? resolved : info.dli_fname;
  std::string p = path;
  if (p.find("openblas") != std::string::npos) {
    return "OpenBLAS (" + p + ")";
  }
  if (p.find("mkl") != std::string::npos) return "MKL (" + p + ")";
  if (p.find("blis") != std::string::npos) return "BLIS (" + p + ")";
  if (p.find("/blas/") != std::string::npos) return "reference BLAS, slow (" + p + ")";
  return p;
}

std::string allocator_name() {
  // tcmalloc exports this symbol; glibc does not.
  return dlsym(RTLD_DEFAULT, "tc_malloc") != nullptr ? "tcmalloc" : "glibc malloc";
}

}  // namespace

int available_cores() {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof(set), &set) == 0) {
    int n = CPU_COUNT(&set);
    if (n > 0) return n;
  }
  return 1;
}

void set_threads(int threads) {
  torch::set_num_threads(threads > 0 ? threads : available_cores());
}

BuildInfo build_info() {
  BuildInfo b;
  b.prom_version = PROM_VERSION;
  b.torch_version = TORCH_VERSION;
  b.cuda_available = torch::cuda::is_available();
  b.cuda_device_count = static_cast<int>(torch::cuda::device_count());
  b.threads = torch::get_num_threads();
  b.interop_threads = torch::get_num_interop_threads();
  b.blas = blas_library();
  b.allocator = allocator_name();
  return b;
}

}  // namespace prom
