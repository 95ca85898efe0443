// arith::requantize and add_requantize on AVX-512 lanes, shared by the engine's kernels
// (infer/kernels.cpp, infer/pointwise_dot.cpp) and the exact forward's requantize_codes
// (int_tensor_ops.cpp), so that one vector rounding stands beside its scalar reference
// (arithmetic.h) and the tests of either path check both. A product p (|p| < 2^62) in an int64 lane becomes
// floor((p + 2^(s-1) - 1 + bit) / 2^s) with bit = floor(p / 2^s) & 1, which is p / 2^s rounded to
// nearest with ties to even (AVX-512's arithmetic shift vpsraq makes this exact for negative p),
// then clamped to [lo, hi]. Include only in files that compile these functions for AVX-512.
#pragma once
#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>

#include <cstdint>

namespace prom::quant::arith {

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

// arith::rounding_shift_right with a shift per lane, any |p| < 2^63: floor(p / 2^s) rounded up when
// the remainder passes half or equals it with the floor odd (ties to even); p where s == 0, 0 where
// s >= 63 (the scalar reference's cases). For callers whose lanes hold different channels.
__attribute__((target("avx512f"))) inline __m512i rounding_shift_right_lanes512(__m512i p, __m512i s) {
  const __m512i one = _mm512_set1_epi64(1);
  const __m512i q = _mm512_srav_epi64(p, s);
  const __m512i rem = _mm512_and_si512(p, _mm512_sub_epi64(_mm512_sllv_epi64(one, s), one));
  const __m512i half = _mm512_sllv_epi64(one, _mm512_sub_epi64(s, one));
  const __mmask8 shifted = _mm512_cmpgt_epi64_mask(s, _mm512_setzero_si512());
  const __mmask8 up = shifted & (_mm512_cmpgt_epi64_mask(rem, half) |
                                 (_mm512_cmpeq_epi64_mask(rem, half) & _mm512_test_epi64_mask(q, one)));
  const __m512i r = _mm512_mask_add_epi64(q, up, q, one);
  return _mm512_mask_mov_epi64(r, _mm512_cmpge_epi64_mask(s, _mm512_set1_epi64(63)), _mm512_setzero_si512());
}

}  // namespace prom::quant::arith
#endif
