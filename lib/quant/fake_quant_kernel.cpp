#include "quant/fake_quant_kernel.h"

#include <ATen/Parallel.h>
#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>  // the AVX2 kernels; elsewhere (aarch64) only the portable loops are built
#endif

#include <array>
#include <atomic>
#include <cmath>
#include <cstring>

namespace prom::quant {
namespace {

std::atomic<bool> avx2_allowed{true};

bool use_avx2() {
#if defined(__x86_64__) || defined(__i386__)
  static const bool has_avx2 = __builtin_cpu_supports("avx2");
  return has_avx2 && avx2_allowed.load(std::memory_order_relaxed);
#else
  return false;
#endif
}

// Elements per parallel task: large enough that thread hand-off costs little.
constexpr int64_t kGrain = 1 << 15;

struct Grid {
  float scale, inv_scale, zero_point, qmin, qmax;
  bool relu6;  // clamp x to [0, 6] first and pass gradients only where 0 < x < 6
};

// torch's formula, element by element (QuantizedOpKernels.cpp, _fake_quantize_tensor_helper):
// qval_f = zp + nearbyint(x * inv_scale); y = (clamp(qval_f) - zp) * scale; mask = qval_f in range.
// With g.relu6, x is first clamped to [0, 6] (NaN to 0, where relu6 then fake quantization also
// ends: NaN rounds to NaN and the grid clamp maps it to qmin = 0) and the mask also asks 0 < x < 6.
inline void fake_quant_scalar(const Grid& g, const float* x, float* y, bool* mask, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    const float v = g.relu6 ? std::fmin(std::fmax(x[i], 0.0f), 6.0f) : x[i];
    const float q = g.zero_point + std::nearbyint(v * g.inv_scale);
    const float clamped = std::fmin(std::fmax(q, g.qmin), g.qmax);
    y[i] = (clamped - g.zero_point) * g.scale;
    mask[i] = g.qmin <= q && q <= g.qmax && (!g.relu6 || (0.0f < x[i] && x[i] < 6.0f));
  }
}

#if defined(__x86_64__) || defined(__i386__)
// 8 mask bits -> 8 bool bytes.
const std::array<uint64_t, 256>& byte_masks() {
  static const std::array<uint64_t, 256> table = [] {
    std::array<uint64_t, 256> t{};
    for (int bits = 0; bits < 256; ++bits)
      for (int lane = 0; lane < 8; ++lane)
        if (bits & (1 << lane)) t[bits] |= uint64_t{1} << (8 * lane);
    return t;
  }();
  return table;
}

// Same operations in the same order as the scalar loop: one float multiply, round to nearest even
// (nearbyint in the default rounding mode), add the zero point, clamp. max_ps returns its second
// operand for a NaN, as fmax(NaN, qmin) returns qmin.
__attribute__((target("avx2"))) void fake_quant_avx2(const Grid& g, const float* x, float* y, bool* mask,
                                                     int64_t n) {
  const auto& table = byte_masks();
  const __m256 inv_scale = _mm256_set1_ps(g.inv_scale), scale = _mm256_set1_ps(g.scale);
  const __m256 zero_point = _mm256_set1_ps(g.zero_point), lo = _mm256_set1_ps(g.qmin), hi = _mm256_set1_ps(g.qmax);
  const __m256 zero = _mm256_setzero_ps(), six = _mm256_set1_ps(6.0f);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 xs = _mm256_loadu_ps(x + i);
    // max_ps(x, 0) returns 0 for a NaN x, as fmax(NaN, 0) does.
    const __m256 v = g.relu6 ? _mm256_min_ps(_mm256_max_ps(xs, zero), six) : xs;
    __m256 q = _mm256_round_ps(_mm256_mul_ps(v, inv_scale), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    q = _mm256_add_ps(zero_point, q);
    const __m256 clamped = _mm256_min_ps(_mm256_max_ps(q, lo), hi);
    _mm256_storeu_ps(y + i, _mm256_mul_ps(_mm256_sub_ps(clamped, zero_point), scale));
    __m256 in_range = _mm256_and_ps(_mm256_cmp_ps(lo, q, _CMP_LE_OQ), _mm256_cmp_ps(q, hi, _CMP_LE_OQ));
    if (g.relu6)
      in_range = _mm256_and_ps(in_range,
                               _mm256_and_ps(_mm256_cmp_ps(zero, xs, _CMP_LT_OQ), _mm256_cmp_ps(xs, six, _CMP_LT_OQ)));
    const uint64_t bytes = table[_mm256_movemask_ps(in_range)];
    std::memcpy(mask + i, &bytes, 8);
  }
  fake_quant_scalar(g, x + i, y + i, mask + i, n - i);
}

__attribute__((target("avx2"))) void masked_gradient_avx2(const float* grad, const bool* mask, float* out,
                                                          int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    uint64_t bytes;
    std::memcpy(&bytes, mask + i, 8);
    const __m256i lanes = _mm256_cvtepu8_epi32(_mm_cvtsi64_si128(static_cast<long long>(bytes)));
    const __m256 keep = _mm256_castsi256_ps(_mm256_cmpgt_epi32(lanes, _mm256_setzero_si256()));
    _mm256_storeu_ps(out + i, _mm256_and_ps(_mm256_loadu_ps(grad + i), keep));
  }
  for (; i < n; ++i) out[i] = mask[i] ? grad[i] : 0.0f;
}
#endif

// Our loops walk memory linearly: every tensor involved must be float/bool on the CPU, dense and
// non-overlapping, with the same strides (same memory format).
bool flat_float(const torch::Tensor& t) {
  return t.device().is_cpu() && t.scalar_type() == torch::kFloat32 && t.is_non_overlapping_and_dense();
}

// Both dense with their elements in the same memory order: strides may differ only where a
// dimension has size 1 (an N x C x 1 x 1 tensor is both NCHW and NHWC).
bool same_dense_layout(const torch::Tensor& a, const torch::Tensor& b) {
  if (a.sizes() != b.sizes() || !a.is_non_overlapping_and_dense() || !b.is_non_overlapping_and_dense()) return false;
  for (int64_t d = 0; d < a.dim(); ++d)
    if (a.size(d) > 1 && a.stride(d) != b.stride(d)) return false;
  return true;
}

}  // namespace

void set_fake_quant_avx2(bool allowed) { avx2_allowed.store(allowed); }

FakeQuantOutput fake_quantize_per_tensor(const torch::Tensor& x, const torch::Tensor& scale,
                                         const torch::Tensor& zero_point, int64_t qmin, int64_t qmax, bool relu6) {
  TORCH_CHECK(!relu6 || qmin == 0, "fake_quantize_per_tensor: ReLU6 is fused on unsigned grids only");
  auto torch_kernel = [&]() -> FakeQuantOutput {
    auto [values, mask] = torch::_fake_quantize_per_tensor_affine_cachemask_tensor_qparams(
        relu6 ? torch::hardtanh(x, 0, 6) : x, scale, zero_point, torch::ones({1}, x.options().dtype(torch::kLong)),
        qmin, qmax);
    if (relu6) mask = mask.logical_and(x.gt(0)).logical_and(x.lt(6));  // hardtanh_backward's condition
    return {values, mask};
  };
  if (!flat_float(x) || !scale.device().is_cpu() || !zero_point.device().is_cpu()) return torch_kernel();
  const float sc = scale.item<float>();
  const Grid grid{sc, 1.0f / sc, static_cast<float>(zero_point.item<int64_t>()), static_cast<float>(qmin),
                  static_cast<float>(qmax), relu6};
  torch::Tensor values = torch::empty_like(x);  // preserves the strides of a dense tensor
  torch::Tensor mask = torch::empty_like(x, x.options().dtype(torch::kBool));
  if (values.strides() != x.strides() || mask.strides() != x.strides()) return torch_kernel();
  const float* in = x.data_ptr<float>();
  float* out = values.data_ptr<float>();
  bool* keep = mask.data_ptr<bool>();
  [[maybe_unused]] const bool avx2 = use_avx2();  // read only where the AVX2 kernels exist
  at::parallel_for(0, x.numel(), kGrain, [&](int64_t begin, int64_t end) {
#if defined(__x86_64__) || defined(__i386__)
    if (avx2) return fake_quant_avx2(grid, in + begin, out + begin, keep + begin, end - begin);
#endif
    fake_quant_scalar(grid, in + begin, out + begin, keep + begin, end - begin);
  });
  return {values, mask};
}

torch::Tensor masked_gradient(const torch::Tensor& grad_in, const torch::Tensor& mask) {
  if (!mask.device().is_cpu() || !mask.is_non_overlapping_and_dense() || grad_in.sizes() != mask.sizes())
    return torch::where(mask, grad_in, torch::zeros({}, grad_in.options()));
  // The result is laid out as the mask (the activation), whatever layout the gradient arrives in:
  // BatchNorm's backward sums in an order that follows it, and the same gradient must give the same
  // sums with ReLU6 fused here or not (hardtanh_backward lays its result out as the activation).
  torch::Tensor out = torch::empty_like(mask, grad_in.options());
  torch::Tensor grad = grad_in;
  if (!same_dense_layout(grad, mask)) grad = out.copy_(grad_in);  // then masked in place
  if (!flat_float(grad)) return out.copy_(torch::where(mask, grad, torch::zeros({}, grad.options())));
  const float* g = grad.data_ptr<float>();
  const bool* keep = mask.data_ptr<bool>();
  float* o = out.data_ptr<float>();
  [[maybe_unused]] const bool avx2 = use_avx2();  // read only where the AVX2 kernels exist
  at::parallel_for(0, grad.numel(), kGrain, [&](int64_t begin, int64_t end) {
#if defined(__x86_64__) || defined(__i386__)
    if (avx2) return masked_gradient_avx2(g + begin, keep + begin, o + begin, end - begin);
#endif
    for (int64_t i = begin; i < end; ++i) o[i] = keep[i] ? g[i] : 0.0f;
  });
  return out;
}

}  // namespace prom::quant
