// Every device -> host read of a tensor value goes through here, so that a test can count them: on
// CUDA each one is a synchronisation that stalls the step (issue: a step without host syncs).
#pragma once
#include <torch/torch.h>

#include <atomic>
#include <cstdint>

namespace prom {

// Reads since the process started (all threads).
int64_t host_read_count();

namespace detail {
void count_host_read();
}

// tensor.item<T>(), counted.
template <typename T>
T host_item(const torch::Tensor& t) {
  detail::count_host_read();
  return t.item<T>();
}

// A whole tensor copied to the CPU (a no-op copy for CPU tensors), counted once.
inline torch::Tensor host_copy(const torch::Tensor& t) {
  detail::count_host_read();
  return t.cpu();
}

}  // namespace prom
