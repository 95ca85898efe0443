// The integer arithmetic of quantized prom models, in one place: code grids, the rounding rule,
// saturation, fixed-point multipliers and shifts. The fake quantizers and the exact fake-quant
// forward (lib/quant), lowering (lib/lowering), the integer engine (lib/infer) and the energy counter
// all call these functions; scripts/read_prom_model.py mirrors them and a test checks the mirror.
//
// The rounding rule, everywhere a value becomes an integer: round to nearest, ties to even.
//  - float -> code: nearbyint(x * (1 / scale)) in float32 (torch's fake_quantize computes exactly this);
//  - integer -> integer (requantization, residual adds, pooling): an exact integer product or sum,
//    then one rounding shift or division, ties to even. No double rounding.
// Nothing here depends on LibTorch: the engine's kernels include it as well.
#pragma once
#include <cmath>
#include <cstdint>
#include <limits>

namespace prom::quant::arith {

// ---- code grids ----

struct CodeGrid {
  int32_t lo, hi;
};
constexpr CodeGrid kUnsignedActivation{0, 255};  // after ReLU6 / non-negative tensors
constexpr CodeGrid kSignedActivation{-128, 127};
constexpr CodeGrid kInt8Weight{-127, 127};  // symmetric: -128 is never used
constexpr CodeGrid kTernaryWeight{-1, 1};

inline CodeGrid activation_grid(bool is_unsigned) { return is_unsigned ? kUnsignedActivation : kSignedActivation; }

template <typename T>
inline T saturate(T v, T lo, T hi) {
  return v < lo ? lo : (v > hi ? hi : v);
}

// ---- float -> code ----

// The one float -> integer rounding: nearest, ties to even (the default FP rounding mode).
inline float round_half_even(float x) { return std::nearbyint(x); }
inline double round_half_even(double x) { return std::nearbyint(x); }

// The code of x on a grid with step `scale`, as torch's fake quantization computes it:
// clamp(nearbyint(x * inv_scale)) with inv_scale = 1.0f / scale in float32.
inline int32_t quantize_to_code(float x, float inv_scale, CodeGrid g) {
  float r = round_half_even(x * inv_scale);
  if (!(r > static_cast<float>(g.lo))) return g.lo;  // also NaN -> lo
  if (r > static_cast<float>(g.hi)) return g.hi;
  return static_cast<int32_t>(r);
}

// ---- integer -> integer ----

// x / 2^shift rounded to nearest, ties to even; 0 <= shift <= 63. Exact for every int64 x.
inline int64_t rounding_shift_right(int64_t x, int shift) {
  if (shift <= 0) return x;
  if (shift >= 63) return 0;  // |x| < 2^63: x / 2^63 rounds to 0 except -2^63 (-1 -> ties to even 0)
  const int64_t q = x >> shift;  // floor
  const uint64_t rem = static_cast<uint64_t>(x) & ((uint64_t{1} << shift) - 1);
  const uint64_t half = uint64_t{1} << (shift - 1);
  return q + ((rem > half || (rem == half && (q & 1))) ? 1 : 0);
}

// num / den rounded to nearest, ties to even (den > 0): global average pooling.
inline int64_t divide_round_half_even(int64_t num, int64_t den) {
  int64_t q = num / den, r = num % den;
  if (r < 0) {  // floor division
    r += den;
    --q;
  }
  const int64_t twice = 2 * r;
  if (twice > den || (twice == den && (q & 1))) ++q;
  return q;
}

// ---- fixed-point multipliers ----

// A real multiplier M >= 0 as an int32 mantissa in [2^30, 2^31) and a right shift:
// M ~= multiplier / 2^right_shift. multiplier 0 means M == 0.
struct FixedPointMultiplier {
  int32_t multiplier = 0;
  int32_t right_shift = 0;  // in [1, 63] when multiplier != 0
};

// The largest right shift a multiplier may have: a smaller real multiplier rounds every product
// that fits int32 to zero, so it is stored as 0.
constexpr int kMaxRightShift = 62;

// Nearest representation of m (>= 0). Multipliers >= 2^30 are not representable (right_shift < 1):
// callers check `representable_multiplier` first (lowering refuses such a layer).
inline bool representable_multiplier(double m) { return std::isfinite(m) && m >= 0 && m < std::ldexp(1.0, 30); }

inline FixedPointMultiplier quantize_multiplier(double m) {
  FixedPointMultiplier q;
  if (!(m > 0) || !representable_multiplier(m)) return q;
  int exponent = 0;
  const double mantissa = std::frexp(m, &exponent);  // m = mantissa * 2^exponent, mantissa in [0.5, 1)
  int64_t fixed = std::llround(std::ldexp(mantissa, 31));
  if (fixed == (int64_t{1} << 31)) {
    fixed /= 2;
    ++exponent;
  }
  const int right = 31 - exponent;
  if (right > kMaxRightShift) return q;  // underflows to 0
  q.multiplier = static_cast<int32_t>(fixed);
  q.right_shift = right;
  return q;
}

inline double multiplier_value(FixedPointMultiplier m) { return std::ldexp(static_cast<double>(m.multiplier), -m.right_shift); }

// Whether v * multiplier / 2^right_shift can be a tie (exactly halfway between integers) for some
// int32 v != 0 (v = 0 gives 0). A tie needs the product's lowest set bit at bit right_shift - 1, and
// that bit is ctz(v) + ctz(multiplier) <= 31 + ctz(multiplier). Trained models' multipliers
// (mantissas in [2^30, 2^31), shifts near 50) make ties impossible: vector kernels then skip the
// tie test (quant/requantize_avx512.h).
inline bool ties_possible(int64_t multiplier, int32_t right_shift) {
  return multiplier == 0 || 31 + __builtin_ctzll(static_cast<uint64_t>(multiplier)) >= right_shift - 1;
}

// requantize with the bias and acc_shift folded into one constant, the form the vector kernels run
// (quant/requantize_avx512.h): with f = acc_shift, s = right_shift, M = multiplier and
// C = bias * M + 2^(s-1) = C1 * 2^f + C0 (0 <= C0 < 2^f),
//   floor(((acc * 2^f + bias) * M + 2^(s-1)) / 2^s) = floor(((acc * M + C1) * 2^f + C0) / 2^s)
//                                                 = floor((acc * M + C1) / 2^(s-f)),
// since adding C0 < 2^f to a multiple of 2^f changes no bit at or above f. That is requantize's
// rounding half up; it is requantize itself where no product can be a tie. fold_requantization
// folds where that holds and s - f >= 32 (the kernels' condition: the rounded value then fits
// 32 bits of the shifted product), and returns false elsewhere.
struct FoldedRequant {
  int64_t multiplier = 0, constant = 0;  // M and C1
  int32_t shift = 0;                     // s - f
};

inline bool fold_requantization(int32_t acc_shift, int32_t bias, FixedPointMultiplier m, FoldedRequant* out) {
  if (m.multiplier == 0 || m.right_shift > kMaxRightShift || m.right_shift - acc_shift < 32 ||
      ties_possible(m.multiplier, m.right_shift))
    return false;
  const int64_t c = int64_t{bias} * m.multiplier + (int64_t{1} << (m.right_shift - 1));  // |c| < 2^62 + 2^61
  *out = {m.multiplier, c >> acc_shift, m.right_shift - acc_shift};  // >>: floor (arithmetic shift)
  return true;
}

// The folded form evaluated in scalars (the tests compare it with requantize).
inline int32_t requantize_folded(int64_t acc, const FoldedRequant& f, int32_t lo, int32_t hi) {
  return static_cast<int32_t>(saturate<int64_t>((acc * f.multiplier + f.constant) >> f.shift, lo, hi));
}

// Short multipliers (quant.requant: short | power_of_two): the nearest multiplier with at most
// `bits` significant bits, in the same mantissa-and-shift form, so every kernel runs it unchanged.
// One bit is a power of two: the requantization is then a rounding shift, no multiply. Ties of
// the mantissa round to even. A result whose shift would drop below 1 is returned as 0 (callers
// check `representable_multiplier` on multiplier_value and refuse the layer).
inline FixedPointMultiplier shorten_multiplier(FixedPointMultiplier m, int bits) {
  if (m.multiplier == 0 || bits >= 31) return m;
  const int drop = 31 - bits;  // the mantissa is in [2^30, 2^31): keep its top `bits`
  int64_t kept = rounding_shift_right(m.multiplier, drop);  // in [2^(bits-1), 2^bits]
  if (kept == (int64_t{1} << bits)) {  // rounded up to the next power of two
    kept >>= 1;
    m.right_shift -= 1;
  }
  if (m.right_shift < 1) return FixedPointMultiplier{};
  m.multiplier = static_cast<int32_t>(kept << drop);
  return m;
}

// The nearest integer to v >= 0 with at most `bits` significant bits (residual-add multipliers).
inline int64_t shorten_integer(int64_t v, int bits) {
  int length = 0;
  while (length < 63 && (v >> length) > 0) ++length;
  if (length <= bits) return v;
  const int drop = length - bits;
  return rounding_shift_right(v, drop) << drop;  // a carry to 2^bits still has one significant bit
}

// Requantization of one accumulator: round((acc * 2^acc_shift + bias) * M), ties to even, then
// saturated to [lo, hi]. acc * 2^acc_shift + bias fits int32 by construction (lowering checks it),
// so the product fits int64 exactly.
inline int32_t requantize(int64_t acc, int acc_shift, int32_t bias, FixedPointMultiplier m, int32_t lo, int32_t hi) {
  const int64_t v = acc * (int64_t{1} << acc_shift) + bias;
  const int64_t r = rounding_shift_right(v * m.multiplier, m.right_shift);
  return static_cast<int32_t>(saturate<int64_t>(r, lo, hi));
}

// Residual add of two code tensors into the output grid: round((a * mult_a + b * mult_b) / 2^shift).
inline int32_t add_requantize(int64_t a, int64_t b, int64_t mult_a, int64_t mult_b, int shift, int32_t lo, int32_t hi) {
  return static_cast<int32_t>(saturate<int64_t>(rounding_shift_right(a * mult_a + b * mult_b, shift), lo, hi));
}

// Squeeze-and-excitation scaling of a feature code by a gate code: round(x * g * M), ties to even,
// saturated to [lo, hi]. |x * g| < 2^16, so the product with a 31-bit multiplier fits int64.
inline int32_t mul_requantize(int64_t x, int64_t g, FixedPointMultiplier m, int32_t lo, int32_t hi) {
  return requantize(x * g, 0, 0, m, lo, hi);
}

// Largest fractional shift for a residual add whose multipliers (ratios of scales) stay below 2^31.
constexpr int kMaxAddShift = 30;
inline int add_shift_for(double ratio_a, double ratio_b) {
  int shift = kMaxAddShift;
  const double r = ratio_a > ratio_b ? ratio_a : ratio_b;
  while (shift > 0 && r * std::ldexp(1.0, shift) >= std::ldexp(1.0, 31)) --shift;
  return shift;
}

// The upper clamp of a ReLU6 on a grid with step `scale`: the code of 6.0 (ReLU6 then rounding equals
// rounding then clamping at this code, since rounding is monotonic).
inline int32_t relu6_code(double scale, CodeGrid g) { return quantize_to_code(6.0f, 1.0f / static_cast<float>(scale), g); }

}  // namespace prom::quant::arith
