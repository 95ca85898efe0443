// Which c10d backend a data-parallel job uses, decided before any rendezvous so that a job that
// would run badly stops at once with one line instead of degrading silently: on CUDA with more
// than one rank that is NCCL, and a build without NCCL is an error unless dist.backend: gloo was
// asked for explicitly (Gloo on CUDA copies every gradient bucket GPU -> host -> TCP -> GPU).
// A pure function (no torch, no CUDA): tested on any machine.
#pragma once
#include <string>

namespace prom::dist {

struct BackendBuild {
  bool nccl = false;  // this build compiled ProcessGroupNCCL (PROM_WITH_NCCL)
  bool gloo = false;  // this build compiled ProcessGroupGloo (PROM_WITH_GLOO)
};

// requested: dist.backend (auto | gloo | nccl). Returns "nccl" or "gloo"; throws
// prom::ConfigKeyError (exit 2) naming dist.backend and the cause.
std::string choose_backend(const std::string& requested, bool cuda_device, int world_size, BackendBuild build);

// What this binary was compiled with.
BackendBuild compiled_backends();

// "2.21.5 (the headers of the NCCL LibTorch was built with)" or "not built in".
std::string nccl_version_text();

}  // namespace prom::dist
