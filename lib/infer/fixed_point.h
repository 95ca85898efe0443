// Fixed-point requantization as gemmlowp and TFLite define it: a real multiplier M > 0 is stored as
// an int32 Q31 mantissa in [2^30, 2^31) and a power-of-two exponent; applying it needs one 64-bit
// product and shifts, no floating point. scripts/read_prom_model.py implements the same functions.
#pragma once
#include <cmath>
#include <cstdint>
#include <limits>

namespace prom::infer {

struct QuantizedMultiplier {
  int32_t multiplier = 0;  // Q31 mantissa; 0 means M == 0
  int32_t shift = 0;       // M = multiplier * 2^(shift - 31)
};

// TFLite's QuantizeMultiplier.
inline QuantizedMultiplier quantize_multiplier(double m) {
  QuantizedMultiplier q;
  if (m <= 0) return q;
  int exponent = 0;
  double mantissa = std::frexp(m, &exponent);  // m = mantissa * 2^exponent, mantissa in [0.5, 1)
  int64_t fixed = static_cast<int64_t>(std::llround(mantissa * (1ll << 31)));
  if (fixed == (1ll << 31)) {
    fixed /= 2;
    ++exponent;
  }
  if (exponent < -31) return q;  // underflows to 0
  q.multiplier = static_cast<int32_t>(fixed);
  q.shift = exponent;
  return q;
}

// gemmlowp's SaturatingRoundingDoublingHighMul: round(a * b / 2^31), saturating.
inline int32_t rounding_doubling_high_mul(int32_t a, int32_t b) {
  if (a == b && a == std::numeric_limits<int32_t>::min()) return std::numeric_limits<int32_t>::max();
  int64_t ab = static_cast<int64_t>(a) * static_cast<int64_t>(b);
  int64_t nudge = ab >= 0 ? (1ll << 30) : (1 - (1ll << 30));
  return static_cast<int32_t>((ab + nudge) / (1ll << 31));
}

// gemmlowp's RoundingDivideByPOT: x / 2^exponent, rounding half away from zero.
inline int32_t rounding_divide_by_pot(int32_t x, int exponent) {
  if (exponent <= 0) return x;
  int32_t mask = static_cast<int32_t>((1ll << exponent) - 1);
  int32_t remainder = x & mask;
  int32_t threshold = (mask >> 1) + (x < 0 ? 1 : 0);
  return (x >> exponent) + (remainder > threshold ? 1 : 0);
}

// TFLite's MultiplyByQuantizedMultiplier: round(x * M).
inline int32_t multiply_by_quantized_multiplier(int32_t x, QuantizedMultiplier m) {
  int left = m.shift > 0 ? m.shift : 0;
  int right = m.shift > 0 ? 0 : -m.shift;
  int64_t shifted = static_cast<int64_t>(x) * (1ll << left);
  if (shifted > std::numeric_limits<int32_t>::max()) shifted = std::numeric_limits<int32_t>::max();
  if (shifted < std::numeric_limits<int32_t>::min()) shifted = std::numeric_limits<int32_t>::min();
  return rounding_divide_by_pot(rounding_doubling_high_mul(static_cast<int32_t>(shifted), m.multiplier), right);
}

// Integer division rounding half to even (as torch's fake quantization rounds averages).
inline int32_t divide_round_half_even(int64_t num, int64_t den) {
  int64_t q = num / den, r = num % den;
  if (r < 0) {  // floor division
    r += den;
    --q;
  }
  int64_t twice = 2 * r;
  if (twice > den || (twice == den && (q & 1))) ++q;
  return static_cast<int32_t>(q);
}

}  // namespace prom::infer
