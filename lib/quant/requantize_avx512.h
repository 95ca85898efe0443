// arith::requantize and add_requantize on AVX-512 lanes, shared by the engine's kernels
// (infer/kernels.cpp, infer/pointwise_dot.cpp) and the exact forward's requantize_codes
// (int_tensor_ops.cpp), so that one vector rounding stands beside its scalar reference
// (arithmetic.h) and the tests of either path check both. A product p (|p| < 2^62) in an int64 lane becomes
// p / 2^s rounded to nearest with ties to even (round_shift512; AVX-512's arithmetic shift vpsraq
// makes it exact for negative p), then clamped to [lo, hi]. Include only in files that compile
// these functions for AVX-512.
#pragma once
#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>

#include <cstdint>

namespace prom::quant::arith {

struct RequantLanes512 {
  __m512i multiplier, half, low_bits, even, lo, hi;  // int64 lanes
  __m512i lo32, hi32;                                // the clamp in int32 lanes
  __m128i shift;
  bool narrow;  // right_shift >= 32: every rounded product of int32 values fits int32 before the clamp
};

// Valid for 1 <= right_shift <= 62.
__attribute__((target("avx512f"))) inline RequantLanes512 requant_lanes512(int64_t multiplier, int32_t right_shift,
                                                                         int32_t lo, int32_t hi) {
  return {_mm512_set1_epi64(multiplier),
          _mm512_set1_epi64(int64_t{1} << (right_shift - 1)),
          _mm512_set1_epi64((int64_t{1} << right_shift) - 1),
          _mm512_set1_epi64(~int64_t{1}),
          _mm512_set1_epi64(lo),
          _mm512_set1_epi64(hi),
          _mm512_set1_epi32(lo),
          _mm512_set1_epi32(hi),
          _mm_cvtsi32_si128(right_shift),
          right_shift >= 32};
}

// The rounding shift of int64 lanes (|p| < 2^62): t = p + 2^(s-1), q = floor(t / 2^s) is p / 2^s
// rounded half up; a tie (t's low s bits all zero) rounds to the even of q - 1 and q, q & ~1.
__attribute__((target("avx512f"))) inline __m512i round_shift512(__m512i prod, const RequantLanes512& k) {
  const __m512i t = _mm512_add_epi64(prod, k.half);
  const __m512i q = _mm512_sra_epi64(t, k.shift);
  return _mm512_mask_and_epi64(q, _mm512_testn_epi64_mask(t, k.low_bits), q, k.even);
}

// The rounding shift and clamp of int64 lanes.
__attribute__((target("avx512f"))) inline __m512i round_shift_clamp512(__m512i prod, const RequantLanes512& k) {
  return _mm512_min_epi64(_mm512_max_epi64(round_shift512(prod, k), k.lo), k.hi);
}

// 16 int32 values v (acc * 2^acc_shift + bias) -> 16 codes in int32 lanes: the even lanes and then
// the odd ones (moved down) multiplied in int64 by mul_epi32, which sign-extends the low int32.
// With right_shift >= 32 (|v * M| < 2^62, so |q| <= 2^30) the two halves are joined first and
// clamped once in int32 lanes.
__attribute__((target("avx512f"))) inline __m512i requantize16(__m512i v, const RequantLanes512& k) {
  const __m512i even = round_shift512(_mm512_mul_epi32(v, k.multiplier), k);
  const __m512i odd = round_shift512(_mm512_mul_epi32(_mm512_srli_epi64(v, 32), k.multiplier), k);
  if (k.narrow) {
    const __m512i q = _mm512_mask_blend_epi32(0xAAAA, even, _mm512_slli_epi64(odd, 32));
    return _mm512_min_epi32(_mm512_max_epi32(q, k.lo32), k.hi32);
  }
  const __m512i even_clamped = _mm512_min_epi64(_mm512_max_epi64(even, k.lo), k.hi);
  const __m512i odd_clamped = _mm512_min_epi64(_mm512_max_epi64(odd, k.lo), k.hi);
  return _mm512_mask_blend_epi32(0xAAAA, even_clamped, _mm512_slli_epi64(odd_clamped, 32));
}

// 16 codes in int32 lanes (each within int16) narrowed to int16, and the first `count` of them
// (1 to 16) stored. Narrowed in registers (vpackssdw, vpermq): cvtepi32_epi16 followed by a store
// compiles to vpmovdw with a memory operand, which AMD Zen runs microcoded; in the engine's profile
// (MobileNetV2, batch 32) that one store took 16% of the 1x1 tiles' samples.
__attribute__((target("avx512f,avx512bw,avx512vl"))) inline void store_codes16(int16_t* out, __m512i codes,
                                                                                 int64_t count) {
  const __m256i in_order = _mm512_castsi512_si256(
      _mm512_permutexvar_epi64(_mm512_setr_epi64(0, 2, 4, 6, 1, 3, 5, 7), _mm512_packs_epi32(codes, codes)));
  if (count >= 16) _mm256_storeu_si256(reinterpret_cast<__m256i*>(out), in_order);
  else _mm256_mask_storeu_epi16(out, static_cast<__mmask16>((1u << count) - 1), in_order);
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
