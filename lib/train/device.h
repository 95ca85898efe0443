// run.device -> a torch::Device. Never assumes CUDA is (or is not) there: "auto" asks LibTorch.
#pragma once
#include <torch/torch.h>

#include <string>

#include "core/error.h"

namespace prom::train {

// Whether run.device `spec` puts the job on CUDA: cuda, cuda:N, or auto where LibTorch sees a GPU.
// resolve_device's choice, also read where the device is not made yet (the memory-format check).
inline bool device_is_cuda(const std::string& spec) {
  return spec.rfind("cuda", 0) == 0 || (spec == "auto" && torch::cuda::is_available());
}

// local_rank: the process's index on its machine in a data-parallel job (LOCAL_RANK, SLURM_LOCALID):
// auto and cuda then mean cuda:local_rank, one GPU per process.
inline torch::Device resolve_device(const std::string& spec, int local_rank = 0) {
  if (!device_is_cuda(spec)) return torch::Device(torch::kCPU);  // cpu, or auto without a GPU
  if (!torch::cuda::is_available())
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
