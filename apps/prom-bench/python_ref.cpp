#include "python_ref.h"

#include <dlfcn.h>

#include <cstdio>
#include <cstdlib>

namespace prom::bench {

std::string tcmalloc_library() {
  void* sym = dlsym(RTLD_DEFAULT, "tc_malloc");
  Dl_info info{};
  if (sym == nullptr || dladdr(sym, &info) == 0 || info.dli_fname == nullptr) return "";
  return info.dli_fname;
}

std::string python_allocator_env() {
  const std::string lib = tcmalloc_library();
  if (lib.empty()) return "";
  const char* old = std::getenv("LD_PRELOAD");
  std::string value = lib + (old != nullptr && *old != '\0' ? std::string(":") + old : std::string());
  return "LD_PRELOAD='" + value + "' ";
}

void note_python_allocator() {
  static bool printed = false;
  if (printed) return;
  printed = true;
  const std::string lib = tcmalloc_library();
  if (lib.empty())
    std::printf("Python references: glibc malloc, as prom (built without tcmalloc)\n");
  else
    std::printf("Python references: LD_PRELOAD=%s (the tcmalloc prom runs with)\n", lib.c_str());
  std::fflush(stdout);
}

}  // namespace prom::bench
