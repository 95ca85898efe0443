#include "core/autocast.h"

#include <c10/core/impl/LocalDispatchKeySet.h>
#include <torch/library.h>

#include <mutex>

namespace prom {
namespace {

#if TORCH_VERSION_MAJOR < 2
// LibTorch 1.13 has no bfloat16 CPU kernel for hardtanh's backward, which ReLU6 (MobileNetV2's
// activation) uses: under CPU bf16 autocast the backward stops with "hardshrink_backward_cpu not
// implemented for 'BFloat16'". This autocast kernel runs in-place hardtanh in fp32 and writes the
// result back: the forward values are the same (clamping a bf16 value to [min, max] gives a bf16
// value) and the backward goes through fp32 kernels.
at::Tensor& hardtanh_fp32_(at::Tensor& self, const at::Scalar& min_val, const at::Scalar& max_val) {
  c10::impl::ExcludeDispatchKeyGuard no_autocast(c10::DispatchKey::AutocastCPU);
  if (self.scalar_type() != at::kBFloat16) return at::hardtanh_(self, min_val, max_val);
  self.copy_(at::hardtanh(self.to(at::kFloat), min_val, max_val));
  return self;
}
#endif

}  // namespace

void install_autocast_kernels() {
#if TORCH_VERSION_MAJOR < 2
  static std::once_flag once;
  std::call_once(once, [] {
    // Lives as long as the process: destroying a Library removes its kernels.
    static auto* library = new torch::Library(torch::Library::IMPL, "aten", c10::DispatchKey::AutocastCPU, __FILE__,
                                              __LINE__);
    library->impl("hardtanh_", TORCH_FN(hardtanh_fp32_));
  });
#endif
}

}  // namespace prom
