#include "distributed/backend.h"

#include "core/error.h"

#ifdef PROM_WITH_NCCL
#include <nccl.h>
#endif

namespace prom::dist {

std::string choose_backend(const std::string& requested, bool cuda_device, int world_size, BackendBuild build) {
  const std::string device = cuda_device ? "cuda" : "cpu";
  if (requested == "nccl") {
    if (!cuda_device) throw ConfigKeyError("dist.backend: nccl needs a CUDA device (run.device is " + device + ")");
    if (!build.nccl)
      throw ConfigKeyError("dist.backend: nccl, but this build has no NCCL (build against a CUDA LibTorch that "
                           "ships NCCL; see the NCCL line of --version)");
    return "nccl";
  }
  if (requested == "gloo") {
    if (!build.gloo)
      throw ConfigKeyError("dist.backend: gloo, but this build has no Gloo (install libgloo-dev and reconfigure)");
    return "gloo";  // asked for by name: allowed on CUDA too
  }
  if (requested != "auto") throw ConfigKeyError("dist.backend: unknown backend '" + requested + "'");
  if (cuda_device && build.nccl) return "nccl";
  if (cuda_device && world_size > 1)
    throw ConfigKeyError("dist.backend: auto on CUDA with " + std::to_string(world_size) +
                         " ranks needs NCCL, but this build has none (its LibTorch has no NCCL, or CMake did not "
                         "find its nccl.h); rebuild against a LibTorch with NCCL, or set dist.backend: gloo to "
                         "all-reduce through the host (slow)");
  if (!build.gloo && world_size > 1)
    throw ConfigKeyError("dist.backend: auto on " + device +
                         " needs Gloo, but this build has none (install libgloo-dev and reconfigure)");
  return "gloo";
}

BackendBuild compiled_backends() {
  BackendBuild b;
#ifdef PROM_WITH_NCCL
  b.nccl = true;
#endif
#ifdef PROM_WITH_GLOO
  b.gloo = true;
#endif
  return b;
}

std::string nccl_version_text() {
#if defined(PROM_WITH_NCCL) && defined(NCCL_MAJOR) && defined(NCCL_MINOR) && defined(NCCL_PATCH)
  return std::to_string(NCCL_MAJOR) + "." + std::to_string(NCCL_MINOR) + "." + std::to_string(NCCL_PATCH) +
         " (the nccl.h next to LibTorch)";
#elif defined(PROM_WITH_NCCL)
  return "built in (nccl.h gives no version)";
#else
  return "not built in";
#endif
}

}  // namespace prom::dist
