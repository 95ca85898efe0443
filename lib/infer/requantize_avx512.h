// quant::arith::requantize and add_requantize on AVX-512 lanes, shared by the engine's kernels
// (kernels.cpp, pointwise_dot.cpp). A product p (|p| < 2^62) in an int64 lane becomes
// floor((p + 2^(s-1) - 1 + bit) / 2^s) with bit = floor(p / 2^s) & 1, which is p / 2^s rounded to
// nearest with ties to even (AVX-512's arithmetic shift vpsraq makes this exact for negative p),
// then clamped to [lo, hi]. Include only in files that compile these functions for AVX-512.
#pragma once
#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>

#include <cstdint>

namespace prom::infer::kernels {

struct RequantLanes512 {
  __m512i multiplier, round, one, lo, hi;
  __m128i shift;
};

// Valid for 1 <= right_shift <= 62.
__attribute__((target("avx512f"))) inline RequantLanes512 requant_lanes512(int64_t multiplier, int32_t right_shift,
                                                                         int32_t lo, int32_t hi) {
  return {_mm512_set1_epi64(multiplier), _mm512_set1_epi64((int64_t{1} << (right_shift - 1)) - 1), _mm512_set1_epi64(1),
          _mm512_set1_epi64(lo),         _mm512_set1_epi64(hi),                                    _mm_cvtsi32_si128(right_shift)};
}

// The rounding shift and clamp of int64 lanes.
__attribute__((target("avx512f"))) inline __m512i round_shift_clamp512(__m512i prod, const RequantLanes512& k) {
  const __m512i bit = _mm512_and_si512(_mm512_sra_epi64(prod, k.shift), k.one);
  const __m512i q = _mm512_sra_epi64(_mm512_add_epi64(prod, _mm512_add_epi64(k.round, bit)), k.shift);
  return _mm512_min_epi64(_mm512_max_epi64(q, k.lo), k.hi);
}

// 16 int32 values v (acc * 2^acc_shift + bias) -> 16 codes in int32 lanes: the even lanes and then
// the odd ones (moved down) multiplied in int64 by mul_epi32, which sign-extends the low int32.
__attribute__((target("avx512f"))) inline __m512i requantize16(__m512i v, const RequantLanes512& k) {
  const __m512i even = round_shift_clamp512(_mm512_mul_epi32(v, k.multiplier), k);
  const __m512i odd = round_shift_clamp512(_mm512_mul_epi32(_mm512_srli_epi64(v, 32), k.multiplier), k);
  return _mm512_mask_blend_epi32(0xAAAA, even, _mm512_slli_epi64(odd, 32));
}

}  // namespace prom::infer::kernels
#endif
