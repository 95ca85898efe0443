#include "quant/int_tensor_ops.h"

#include <ATen/Parallel.h>
#if defined(__x86_64__)
#include <immintrin.h>  // the AVX-512 requantization; elsewhere only the portable loop is built

#include "quant/requantize_avx512.h"
#endif

#include <algorithm>
#include <atomic>
#include <cmath>
#include <type_traits>

#include "core/error.h"

namespace prom::quant {
namespace {

// A dense tensor (NCHW- or channels-last-contiguous) as it is, anything else made contiguous.
torch::Tensor dense(const torch::Tensor& t) {
  if (t.is_contiguous() || (t.dim() == 4 && t.is_contiguous(torch::MemoryFormat::ChannelsLast))) return t;
  return t.contiguous();
}

bool channels_last(const torch::Tensor& t) {
  return t.dim() == 4 && !t.is_contiguous() && t.is_contiguous(torch::MemoryFormat::ChannelsLast);
}

constexpr int64_t kGrain = 1 << 14;

// The nearest integer to an integer-valued accumulator: a plain conversion unless the value has a
// fraction (never from an exact convolution; kept for any other caller), so the loop makes no libm call.
template <typename T>
inline int64_t nearest_integer(T v) {
  const auto r = static_cast<int64_t>(v);
  return static_cast<T>(r) == v ? r : static_cast<int64_t>(std::nearbyint(v));
}

std::atomic<bool> avx512_allowed{true};

bool use_avx512() {
#if defined(__x86_64__)
  static const bool has = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq");
  return has && avx512_allowed.load(std::memory_order_relaxed);
#else
  return false;
#endif
}

#if defined(__x86_64__)
// Eight int32 per-channel parameters as int64 lanes: p[i..i+7] (`step` 1) or p[0] eight times (`step` 0).
__attribute__((target("avx512f,avx512dq"))) inline __m512i load_per_channel(const int32_t* p, int64_t i, int step) {
  return _mm512_cvtepi32_epi64(step ? _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + i)) : _mm256_set1_epi32(*p));
}

// requantize_run for float32 accumulators, 8 at a time in int64 lanes: arith::requantize step by step
// (conversion rounds half to even like nearbyint; exact below 2^24, where float32 accumulators stay).
__attribute__((target("avx512f,avx512dq"))) int64_t requantize_run_avx512(
    const float* a, float* y, int64_t count, int channel_step, int acc_shift, const int32_t* bias,
    const int32_t* mult, const int32_t* shift, int32_t lo, int32_t hi) {
  const __m512i lo_v = _mm512_set1_epi64(lo), hi_v = _mm512_set1_epi64(hi);
  int64_t i = 0;
  for (; i + 8 <= count; i += 8) {
    __m512i v = _mm512_cvtepi32_epi64(_mm256_cvtps_epi32(_mm256_loadu_ps(a + i)));
    v = _mm512_slli_epi64(v, static_cast<unsigned>(acc_shift));
    v = _mm512_add_epi64(v, load_per_channel(bias, i, channel_step));
    const __m512i p = _mm512_mullo_epi64(v, load_per_channel(mult, i, channel_step));
    __m512i r = arith::rounding_shift_right_lanes512(p, load_per_channel(shift, i, channel_step));
    r = _mm512_min_epi64(_mm512_max_epi64(r, lo_v), hi_v);
    _mm256_storeu_ps(y + i, _mm256_cvtepi32_ps(_mm512_cvtepi64_epi32(r)));
  }
  return i;
}
#endif

// One run of `count` accumulators; `channel_step` 0 keeps channel `c` (an NCHW plane), 1 walks the
// channels (a channels-last pixel or a row of [N, C]). No division per element.
template <typename T>
void requantize_run(const T* a, float* y, int64_t count, int64_t c, int channel_step, const IntLayer& l,
                    const int32_t* bias, const int32_t* mult, const int32_t* shift) {
  const int acc_shift = static_cast<int>(l.acc_shift);
  int64_t i = 0;
#if defined(__x86_64__)
  if constexpr (std::is_same_v<T, float>)
    if (use_avx512())
      i = requantize_run_avx512(a, y, count, channel_step, acc_shift, bias + c, mult + c, shift + c, l.clamp_lo,
                                l.clamp_hi);
#endif
  for (c += i * channel_step; i < count; ++i, c += channel_step)
    y[i] = static_cast<float>(
        arith::requantize(nearest_integer(a[i]), acc_shift, bias[c], {mult[c], shift[c]}, l.clamp_lo, l.clamp_hi));
}

template <typename T>
void requantize_cpu(const torch::Tensor& acc, const IntLayer& l, torch::Tensor& out) {
  const int64_t channels = acc.size(1), n = acc.numel();
  if (n == 0) return;
  const int64_t inner = acc.dim() == 4 ? acc.size(2) * acc.size(3) : 1;
  // Runs of equal length: channels-last pixels and [N, C] rows walk the channels, NCHW planes keep one.
  const bool walk_channels = channels_last(acc) || inner == 1;
  const int64_t run = walk_channels ? channels : inner, runs = n / run;
  const T* a = acc.data_ptr<T>();
  float* y = out.data_ptr<float>();
  const int32_t* bias = l.bias.data_ptr<int32_t>();
  const int32_t* mult = l.multiplier.data_ptr<int32_t>();
  const int32_t* shift = l.right_shift.data_ptr<int32_t>();
  at::parallel_for(0, runs, std::max<int64_t>(1, kGrain / run), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const int64_t first_channel = walk_channels ? 0 : r % channels;
      requantize_run(a + r * run, y + r * run, run, first_channel, walk_channels ? 1 : 0, l, bias, mult, shift);
    }
  });
}

// The same with int64 tensor ops, for devices without our loops.
torch::Tensor requantize_tensor_ops(const torch::Tensor& acc, const IntLayer& l) {
  std::vector<int64_t> shape(acc.dim(), 1);
  shape[1] = acc.size(1);
  auto opts = torch::TensorOptions().dtype(torch::kInt64).device(acc.device());
  auto per_channel = [&](const torch::Tensor& t) { return t.to(opts).reshape(shape); };
  torch::Tensor pow2 = torch::pow(torch::full({}, 2, torch::kInt64), l.right_shift.to(torch::kInt64));
  torch::Tensor v = torch::round(acc).to(torch::kInt64) * (int64_t{1} << l.acc_shift) + per_channel(l.bias);
  torch::Tensor p = v * per_channel(l.multiplier);
  torch::Tensor d = per_channel(pow2);
  torch::Tensor q = torch::div(p, d, "floor");
  torch::Tensor rem = p - q * d, half = torch::div(d, 2, "floor");
  torch::Tensor up = rem.gt(half).logical_or(rem.eq(half).logical_and(q.remainder(2).eq(1)));
  return (q + up.to(torch::kInt64)).clamp(l.clamp_lo, l.clamp_hi).to(torch::kFloat32);
}

}  // namespace

torch::Tensor quantize_codes(const torch::Tensor& x_in, float scale, arith::CodeGrid grid) {
  torch::Tensor x = dense(x_in.to(torch::kFloat32));
  const float inv = 1.0f / scale;
  if (!x.is_cpu()) return torch::clamp(torch::round(x * torch::full({}, inv, x.options())), grid.lo, grid.hi);
  torch::Tensor out = torch::empty_like(x);
  const float* src = x.data_ptr<float>();
  float* dst = out.data_ptr<float>();
  at::parallel_for(0, x.numel(), kGrain, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) dst[i] = static_cast<float>(arith::quantize_to_code(src[i], inv, grid));
  });
  return out;
}

torch::Tensor requantize_codes(const torch::Tensor& acc_in, const IntLayer& layer) {
  torch::Tensor acc = dense(acc_in);
  if (!acc.is_cpu()) return requantize_tensor_ops(acc, layer);
  torch::Tensor out = torch::empty_like(acc, acc.options().dtype(torch::kFloat32));
  if (acc.scalar_type() == torch::kFloat64) requantize_cpu<double>(acc, layer, out);
  else requantize_cpu<float>(acc.to(torch::kFloat32), layer, out);
  return out;
}

void set_requantize_avx512(bool allowed) { avx512_allowed.store(allowed); }

IntAdd lower_add(double scale_a, double scale_b, double scale_out, bool out_unsigned, int multiplier_bits) {
  IntAdd add;
  const double ratio_a = scale_a / scale_out, ratio_b = scale_b / scale_out;
  add.shift = arith::add_shift_for(ratio_a, ratio_b);
  add.mult_a = std::llround(std::ldexp(ratio_a, add.shift));
  add.mult_b = std::llround(std::ldexp(ratio_b, add.shift));
  add.mult_a = arith::shorten_integer(add.mult_a, multiplier_bits);
  add.mult_b = arith::shorten_integer(add.mult_b, multiplier_bits);
  const arith::CodeGrid grid = arith::activation_grid(out_unsigned);
  add.clamp_lo = grid.lo;
  add.clamp_hi = grid.hi;
  return add;
}

torch::Tensor add_codes(const torch::Tensor& a_in, const torch::Tensor& b_in, const IntAdd& add) {
  torch::Tensor a = dense(a_in.to(torch::kFloat32));
  torch::Tensor b = b_in.to(torch::kFloat32).contiguous(a.suggest_memory_format());
  if (!a.is_cpu()) {
    torch::Tensor t = a.to(torch::kInt64) * add.mult_a + b.to(torch::kInt64) * add.mult_b;
    const int64_t d = int64_t{1} << add.shift;
    torch::Tensor q = torch::div(t, d, "floor"), rem = t - q * d;
    torch::Tensor up = rem.gt(d / 2).logical_or(rem.eq(d / 2).logical_and(q.remainder(2).eq(1)));
    if (add.shift == 0) up.zero_();
    return (q + up.to(torch::kInt64)).clamp(add.clamp_lo, add.clamp_hi).to(torch::kFloat32);
  }
  torch::Tensor out = torch::empty_like(a);
  const float *pa = a.data_ptr<float>(), *pb = b.data_ptr<float>();
  float* y = out.data_ptr<float>();
  at::parallel_for(0, a.numel(), kGrain, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i)
      y[i] = static_cast<float>(arith::add_requantize(static_cast<int64_t>(pa[i]), static_cast<int64_t>(pb[i]),
                                                      add.mult_a, add.mult_b, add.shift, add.clamp_lo, add.clamp_hi));
  });
  return out;
}

IntMul lower_mul(double scale_features, double scale_gate, double scale_out, bool out_unsigned, int multiplier_bits) {
  const double m = scale_features * scale_gate / scale_out;
  if (!arith::representable_multiplier(m))
    throw Error("squeeze-and-excitation multiplier " + std::to_string(m) + " is out of range");
  IntMul mul;
  const auto full = arith::quantize_multiplier(m);
  mul.multiplier = arith::shorten_multiplier(full, multiplier_bits);
  if (mul.multiplier.multiplier == 0 && full.multiplier != 0)
    throw Error("squeeze-and-excitation multiplier " + std::to_string(m) + " does not fit " +
                std::to_string(multiplier_bits) + " significant bits");
  const arith::CodeGrid grid = arith::activation_grid(out_unsigned);
  mul.clamp_lo = grid.lo;
  mul.clamp_hi = grid.hi;
  return mul;
}

torch::Tensor mul_codes(const torch::Tensor& features, const torch::Tensor& gate, const IntMul& mul) {
  // mul_requantize(x, g) is requantize(x * g) with no bias: one per-channel requantization of the
  // products (exact in float32: |x * g| < 2^16) with the same multiplier on every channel.
  const int64_t channels = features.size(1);
  IntLayer l;
  l.acc_shift = 0;
  l.bias = torch::zeros({channels}, torch::kInt32);
  l.multiplier = torch::full({channels}, mul.multiplier.multiplier, torch::kInt32);
  l.right_shift = torch::full({channels}, mul.multiplier.right_shift, torch::kInt32);
  l.clamp_lo = mul.clamp_lo;
  l.clamp_hi = mul.clamp_hi;
  torch::Tensor g = gate.to(torch::kFloat32).reshape({gate.size(0), channels, 1, 1});
  return requantize_codes(features.to(torch::kFloat32) * g, l);
}

torch::Tensor average_pool_codes(const torch::Tensor& codes) {
  const int64_t pixels = codes.size(2) * codes.size(3);
  torch::Tensor sums = codes.to(torch::kInt64).sum({2, 3});
  torch::Tensor q = torch::div(sums, pixels, "floor"), twice = 2 * (sums - q * pixels);
  torch::Tensor up = twice.gt(pixels).logical_or(twice.eq(pixels).logical_and(q.remainder(2).eq(1)));
  return (q + up.to(torch::kInt64)).to(torch::kFloat32);
}

}  // namespace prom::quant
