// run.device -> a torch::Device. Never assumes CUDA is (or is not) there: "auto" asks LibTorch.
#pragma once
#include <torch/torch.h>

#include <string>

#include "core/error.h"

namespace prom::train {

// local_rank: the process's index on its machine in a data-parallel job (LOCAL_RANK, SLURM_LOCALID):
// auto and cuda then mean cuda:local_rank, one GPU per process.
inline torch::Device resolve_device(const std::string& spec, int local_rank = 0) {
  if (spec == "cpu") return torch::Device(torch::kCPU);
  const bool cuda = torch::cuda::is_available();
  if (spec == "auto" && !cuda) return torch::Device(torch::kCPU);
  if (!cuda)
    throw ConfigKeyError("run.device: '" + spec + "' requested, but CUDA is not available here (use auto or cpu)");
  const int index = spec == "cuda" || spec == "auto" ? local_rank : std::stoi(spec.substr(5));
  const int count = static_cast<int>(torch::cuda::device_count());
  if (index >= count)
    throw ConfigKeyError("run.device: '" + spec + "' means cuda:" + std::to_string(index) +
                         (spec == "auto" || spec == "cuda" ? " (LOCAL_RANK)" : "") + " but only " +
                         std::to_string(count) + " CUDA device(s) exist");
  return torch::Device(torch::kCUDA, static_cast<c10::DeviceIndex>(index));
}

}  // namespace prom::train
