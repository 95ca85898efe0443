// Per-tensor affine fake quantization on the CPU, vectorized (AVX2 where the CPU has it), computing
// bit for bit what torch's _fake_quantize_per_tensor_affine_cachemask_tensor_qparams computes.
// Why our own: LibTorch's CPU kernel for it is a scalar loop (nearbyint per element) and was ~40% of
// a PROM QAT step at 224 px; its straight-through backward (grad * mask) first converts the mask to
// float. Other devices, dtypes and layouts go to torch's kernels. The one difference: an input that
// is not finite or lies beyond 2^63 steps, which torch converts to int64 (undefined behaviour, qmin
// on x86), we clamp to the grid's edge (NaN to qmin); the mask blocks its gradient either way.
#pragma once
#include <torch/torch.h>

namespace prom::quant {

struct FakeQuantOutput {
  torch::Tensor values;  // (clamp(round(x / scale) + zero_point, qmin, qmax) - zero_point) * scale
  torch::Tensor mask;    // bool: round(x / scale) + zero_point lies in [qmin, qmax] (where the STE passes)
};

// `scale` and `zero_point` are [1] tensors (float32, int32), as torch's tensor-qparams variant takes.
// `relu6`: quantize relu6(x) = clamp(x, 0, 6) instead, in the same pass, and let the gradient pass
// only where ReLU6's does too (0 < x < 6): bit for bit relu6 followed by fake quantization, forward
// and backward, with one pass over x instead of three (relu6_, its backward, the mask). Only on
// unsigned grids (qmin = 0), where a NaN ends at 0 either way.
FakeQuantOutput fake_quantize_per_tensor(const torch::Tensor& x, const torch::Tensor& scale,
                                         const torch::Tensor& zero_point, int64_t qmin, int64_t qmax,
                                         bool relu6 = false);

// Straight-through gradient: where(mask, grad, 0).
torch::Tensor masked_gradient(const torch::Tensor& grad, const torch::Tensor& mask);

// false forces the portable loops (tests compare both paths with torch).
void set_fake_quant_avx2(bool allowed);

}  // namespace prom::quant
