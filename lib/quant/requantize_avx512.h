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

#include "quant/arithmetic.h"

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

// Requantization straight from int32 accumulators: requantize(acc, acc_shift, bias, M, s) of 32 at
// a time, clamped and narrowed to int16 codes. Where arith::fold_requantization folds (the usual
// case) that is a multiply, an add and a shift per 8 lanes: even lanes shifted by s - f leave q in
// their low half, odd lanes shifted by s - f - 32 leave it in their high half (|q| <= 2^30: a
// product of two int32 values over 2^32 or more), so one blend joins 16. Other cases take
// requantize16 on acc * 2^f + bias.
struct AccLanes512 {
  bool folded;
  __m512i multiplier, constant;  // folded: M and C1 in int64 lanes
  __m128i shift, shift_high;     // folded: s - f and s - f - 32
  __m512i lo16, hi16;            // the clamp in int16 lanes
  RequantLanes512 k;             // not folded: requantize16's lanes, with
  __m128i acc_shift;             // f and
  __m512i bias;                  // the bias
};

// From a folded requantization (lo and hi within int16: callers check).
__attribute__((target("avx512f,avx512bw"))) inline AccLanes512 acc_lanes512(const FoldedRequant& f, int32_t lo,
                                                                           int32_t hi) {
  AccLanes512 l;
  l.folded = true;
  l.multiplier = _mm512_set1_epi64(f.multiplier);
  l.constant = _mm512_set1_epi64(f.constant);
  l.shift = _mm_cvtsi32_si128(f.shift);
  l.shift_high = _mm_cvtsi32_si128(f.shift - 32);
  l.lo16 = _mm512_set1_epi16(static_cast<int16_t>(lo));
  l.hi16 = _mm512_set1_epi16(static_cast<int16_t>(hi));
  return l;
}

// Valid for 1 <= right_shift <= 62 and lo, hi within int16 (callers check).
__attribute__((target("avx512f,avx512bw"))) inline AccLanes512 acc_lanes512(int32_t acc_shift, int32_t bias,
                                                                           int32_t multiplier, int32_t right_shift,
                                                                           int32_t lo, int32_t hi) {
  FoldedRequant f;
  if (fold_requantization(acc_shift, bias, {multiplier, right_shift}, &f)) return acc_lanes512(f, lo, hi);
  AccLanes512 l;
  l.folded = false;
  l.lo16 = _mm512_set1_epi16(static_cast<int16_t>(lo));
  l.hi16 = _mm512_set1_epi16(static_cast<int16_t>(hi));
  l.k = requant_lanes512(multiplier, right_shift, lo, hi);
  l.acc_shift = _mm_cvtsi32_si128(acc_shift);
  l.bias = _mm512_set1_epi32(bias);
  return l;
}

// 16 accumulators -> 16 codes in int32 lanes (folded: unclamped, |q| <= 2^30).
__attribute__((target("avx512f"))) inline __m512i requantize_acc16(__m512i acc, const AccLanes512& l) {
  if (!l.folded) return requantize16(_mm512_add_epi32(_mm512_sll_epi32(acc, l.acc_shift), l.bias), l.k);
  const __m512i even = _mm512_sra_epi64(_mm512_add_epi64(_mm512_mul_epi32(acc, l.multiplier), l.constant), l.shift);
  const __m512i odd_product = _mm512_mul_epi32(_mm512_srli_epi64(acc, 32), l.multiplier);
  const __m512i odd = _mm512_sra_epi64(_mm512_add_epi64(odd_product, l.constant), l.shift_high);
  return _mm512_mask_blend_epi32(0xAAAA, even, odd);
}

// 32 accumulators, a's 16 then b's 16, -> 32 int16 codes: in that order, or with kInterleave as
// a0 b0 a1 b1 ... (a depthwise row's even and odd outputs). vpackssdw saturates to int16, which with
// lo and hi inside int16 leaves clamp(q, lo, hi) unchanged, so one clamp in int16 lanes serves 32
// codes; one permutation undoes the pack's 128-bit lane order (and interleaves).
template <bool kInterleave>
__attribute__((target("avx512f,avx512bw"))) inline __m512i requantize_acc32(__m512i a, __m512i b, const AccLanes512& l) {
  // The pack's words: 128-bit lane L holds a's q[4L .. 4L+3] at 8L and b's at 8L + 4.
  alignas(64) static constexpr int16_t kInterleaved[32] = {0,  4,  1,  5,  2,  6,  3,  7,  8,  12, 9,  13, 10, 14, 11, 15,
                                                           16, 20, 17, 21, 18, 22, 19, 23, 24, 28, 25, 29, 26, 30, 27, 31};
  const __m512i packed = _mm512_packs_epi32(requantize_acc16(a, l), requantize_acc16(b, l));
  const __m512i ordered = kInterleave ? _mm512_permutexvar_epi16(_mm512_load_si512(kInterleaved), packed)
                                      : _mm512_permutexvar_epi64(_mm512_setr_epi64(0, 2, 4, 6, 1, 3, 5, 7), packed);
  return _mm512_min_epi16(_mm512_max_epi16(ordered, l.lo16), l.hi16);
}

// The first `count` of 32 int16 codes (all when count >= 32) stored.
__attribute__((target("avx512f,avx512bw"))) inline void store_codes32(int16_t* out, __m512i codes, int64_t count) {
  if (count >= 32) _mm512_storeu_si512(out, codes);
  else if (count > 0) _mm512_mask_storeu_epi16(out, static_cast<__mmask32>((uint32_t{1} << count) - 1), codes);
}

// The same as bytes: the codes + 128 where `offset` (signed codes; unsigned ones are bytes as they
// are), narrowed by vpmovwb (which keeps the low byte: the value itself, 0-255).
__attribute__((target("avx512f,avx512bw"))) inline void store_code_bytes32(uint8_t* out, __m512i codes, bool offset,
                                                                          int64_t count) {
  if (count <= 0) return;
  const __mmask32 mask = count >= 32 ? ~__mmask32{0} : static_cast<__mmask32>((uint32_t{1} << count) - 1);
  _mm512_mask_cvtepi16_storeu_epi8(out, mask, _mm512_add_epi16(codes, _mm512_set1_epi16(offset ? 128 : 0)));
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
