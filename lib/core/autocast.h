// Mixed precision (train.amp): autocast regions for the model's float compute. LibTorch 2.4
// replaced the per-device autocast calls (set_enabled, set_cpu_enabled, set_autocast_cpu_dtype, ...)
// by device-typed ones (set_autocast_enabled(type, on), set_autocast_dtype(type, dtype)); both are
// hidden here behind the version macros, so the rest of prom names neither.
#pragma once
#include <ATen/autocast_mode.h>
#include <torch/torch.h>
#include <torch/version.h>

#include <string>

#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 4)
#define PROM_AUTOCAST_DEVICE_TYPED 1
#endif

namespace prom {

enum class Amp { kOff, kBf16, kFp16 };

// "off", "bf16", "fp16" (the values train.amp accepts).
inline Amp parse_amp(const std::string& value) {
  if (value == "bf16") return Amp::kBf16;
  if (value == "fp16") return Amp::kFp16;
  return Amp::kOff;
}

namespace autocast_detail {

inline bool enabled(c10::DeviceType type) {
#ifdef PROM_AUTOCAST_DEVICE_TYPED
  return at::autocast::is_autocast_enabled(type);
#else
  return type == c10::DeviceType::CUDA ? at::autocast::is_enabled() : at::autocast::is_cpu_enabled();
#endif
}

inline void set_enabled(c10::DeviceType type, bool on) {
#ifdef PROM_AUTOCAST_DEVICE_TYPED
  at::autocast::set_autocast_enabled(type, on);
#else
  if (type == c10::DeviceType::CUDA) at::autocast::set_enabled(on);
  else at::autocast::set_cpu_enabled(on);
#endif
}

inline at::ScalarType dtype(c10::DeviceType type) {
#ifdef PROM_AUTOCAST_DEVICE_TYPED
  return at::autocast::get_autocast_dtype(type);
#else
  return type == c10::DeviceType::CUDA ? at::autocast::get_autocast_gpu_dtype() : at::autocast::get_autocast_cpu_dtype();
#endif
}

inline void set_dtype(c10::DeviceType type, at::ScalarType dtype) {
#ifdef PROM_AUTOCAST_DEVICE_TYPED
  at::autocast::set_autocast_dtype(type, dtype);
#else
  if (type == c10::DeviceType::CUDA) at::autocast::set_autocast_gpu_dtype(dtype);
  else at::autocast::set_autocast_cpu_dtype(dtype);
#endif
}

}  // namespace autocast_detail

// Kernels that CPU autocast needs on this LibTorch (1.13: ReLU6's in-place hardtanh in fp32, whose
// backward has no bf16 CPU kernel there); nothing on LibTorch 2.x. Idempotent; AutocastScope calls it.
void install_autocast_kernels();

// Autocast to bf16 or fp16 on `device`'s type for its lifetime (nothing with Amp::kOff), like
// torch.autocast: convolutions and matrix products run in the low precision, reductions and
// losses in fp32. The previous state comes back at the end, and the cache of cast weights is
// cleared when the outermost region ends (the optimizer changes the weights between steps).
class AutocastScope {
 public:
  AutocastScope(Amp amp, const torch::Device& device) : type_(device.type()) {
    if (amp == Amp::kOff) return;
    install_autocast_kernels();
    active_ = true;
    was_enabled_ = autocast_detail::enabled(type_);
    was_dtype_ = autocast_detail::dtype(type_);
    autocast_detail::set_dtype(type_, amp == Amp::kBf16 ? at::kBFloat16 : at::kHalf);
    autocast_detail::set_enabled(type_, true);
    at::autocast::increment_nesting();
  }
  ~AutocastScope() {
    if (!active_) return;
    if (at::autocast::decrement_nesting() == 0) at::autocast::clear_cache();
    autocast_detail::set_enabled(type_, was_enabled_);
    autocast_detail::set_dtype(type_, was_dtype_);
  }
  AutocastScope(const AutocastScope&) = delete;
  AutocastScope& operator=(const AutocastScope&) = delete;

 private:
  c10::DeviceType type_;
  bool active_ = false, was_enabled_ = false;
  at::ScalarType was_dtype_ = at::kFloat;
};

// Autocast off on CPU and CUDA for its lifetime: for code inside an autocast region that must
// compute in fp32 (fake quantizers' arithmetic, convolutions over integer-valued tensors that
// must stay exact).
class AutocastOff {
 public:
  AutocastOff() : cpu_(autocast_detail::enabled(c10::DeviceType::CPU)), cuda_(autocast_detail::enabled(c10::DeviceType::CUDA)) {
    if (cpu_) autocast_detail::set_enabled(c10::DeviceType::CPU, false);
    if (cuda_) autocast_detail::set_enabled(c10::DeviceType::CUDA, false);
  }
  ~AutocastOff() {
    if (cpu_) autocast_detail::set_enabled(c10::DeviceType::CPU, true);
    if (cuda_) autocast_detail::set_enabled(c10::DeviceType::CUDA, true);
  }
  AutocastOff(const AutocastOff&) = delete;
  AutocastOff& operator=(const AutocastOff&) = delete;

 private:
  bool cpu_, cuda_;
};

}  // namespace prom
