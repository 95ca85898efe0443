#include "infer/kernels.h"

#include <algorithm>
#include <cstdint>
#include <cstring>

#include "quant/arithmetic.h"
#include "quant/requantize_avx512.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define PROM_X86 1
#endif

namespace prom::infer::kernels {

#ifdef PROM_X86
using quant::arith::acc_lanes512;
using quant::arith::AccLanes512;
using quant::arith::requant_lanes512;
using quant::arith::RequantLanes512;
using quant::arith::requantize_acc32;
using quant::arith::round_shift_clamp512;
using quant::arith::store_codes32;
#endif

Isa best_isa() {
#ifdef PROM_X86
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl") &&
      __builtin_cpu_supports("avx512vnni"))
    return Isa::kAvx512Vnni;
  if (__builtin_cpu_supports("avx2")) return Isa::kAvx2;
#endif
  return Isa::kPortable;
}

const char* isa_name(Isa isa) {
  switch (isa) {
    case Isa::kAvx512Vnni: return "avx512-vnni";
    case Isa::kAvx2: return "avx2";
    case Isa::kPortable: break;
  }
  return "portable";
}

namespace {

void ternary_pointwise_portable(const int16_t* x, int64_t pixels, const int32_t* plus, int64_t n_plus,
                                const int32_t* minus, int64_t n_minus, int32_t* acc) {
  std::fill(acc, acc + pixels, 0);
  for (int64_t k = 0; k < n_plus; ++k) {
    const int16_t* row = x + static_cast<int64_t>(plus[k]) * pixels;
    for (int64_t p = 0; p < pixels; ++p) acc[p] += row[p];
  }
  for (int64_t k = 0; k < n_minus; ++k) {
    const int16_t* row = x + static_cast<int64_t>(minus[k]) * pixels;
    for (int64_t p = 0; p < pixels; ++p) acc[p] -= row[p];
  }
}

void int8_pointwise_portable(const int16_t* x, int64_t pixels, int64_t in_channels, const int8_t* w, int32_t* acc) {
  std::fill(acc, acc + pixels, 0);
  for (int64_t i = 0; i < in_channels; ++i) {
    const int32_t wi = w[i];  // dense: zero weights are multiplied too, as the op counts say
    const int16_t* row = x + i * pixels;
    for (int64_t p = 0; p < pixels; ++p) acc[p] += wi * row[p];
  }
}

// Row by row, one weight at a time over a whole output row: the inner loops are contiguous (stride
// 1) or evenly strided, which the compiler vectorizes; the AVX2 variant is the same source compiled
// for AVX2. Integer sums, so any order gives the same result.
template <int64_t S>
__attribute__((always_inline)) inline void conv_plane_rows(const int16_t* x, int64_t width, const int8_t* w, int64_t k,
                                                           int64_t stride, int64_t out_h, int64_t out_w, int32_t* acc) {
  const int64_t s = S > 0 ? S : stride;
  for (int64_t oy = 0; oy < out_h; ++oy) {
    int32_t* a = acc + oy * out_w;
    for (int64_t ky = 0; ky < k; ++ky) {
      const int16_t* row = x + (oy * s + ky) * width;
      for (int64_t kx = 0; kx < k; ++kx) {
        const int32_t wv = w[ky * k + kx];
        const int16_t* r = row + kx;
        for (int64_t ox = 0; ox < out_w; ++ox) a[ox] += wv * static_cast<int32_t>(r[ox * s]);
      }
    }
  }
}

__attribute__((always_inline)) inline void conv_plane_dispatch(const int16_t* x, int64_t width, const int8_t* w,
                                                               int64_t k, int64_t stride, int64_t out_h, int64_t out_w,
                                                               int32_t* acc) {
  if (stride == 1) return conv_plane_rows<1>(x, width, w, k, stride, out_h, out_w, acc);
  if (stride == 2) return conv_plane_rows<2>(x, width, w, k, stride, out_h, out_w, acc);
  conv_plane_rows<0>(x, width, w, k, stride, out_h, out_w, acc);
}

__attribute__((always_inline)) inline void conv_plane_images(const int16_t* x, int64_t width, int64_t images,
                                                             const int8_t* w, int64_t k, int64_t stride, int64_t out_h,
                                                             int64_t out_w, int32_t* acc) {
  for (int64_t oy = 0; oy < out_h; ++oy)
    for (int64_t ox = 0; ox < out_w; ++ox) {
      int32_t* a = acc + (oy * out_w + ox) * images;
      for (int64_t ky = 0; ky < k; ++ky)
        for (int64_t kx = 0; kx < k; ++kx) {
          const int32_t wv = w[ky * k + kx];
          const int16_t* r = x + ((oy * stride + ky) * width + ox * stride + kx) * images;
          for (int64_t b = 0; b < images; ++b) a[b] += wv * static_cast<int32_t>(r[b]);
        }
    }
}

void conv_plane_portable(const int16_t* x, int64_t width, const int8_t* w, int64_t k, int64_t stride, int64_t out_h,
                         int64_t out_w, int32_t* acc) {
  conv_plane_dispatch(x, width, w, k, stride, out_h, out_w, acc);
}

#ifdef PROM_X86
__attribute__((target("avx2"))) void conv_plane_avx2(const int16_t* x, int64_t width, const int8_t* w, int64_t k,
                                                     int64_t stride, int64_t out_h, int64_t out_w, int32_t* acc) {
  conv_plane_dispatch(x, width, w, k, stride, out_h, out_w, acc);
}

__attribute__((target("avx512f,avx512bw"))) void conv_plane_images_avx512(const int16_t* x, int64_t width,
                                                                          int64_t images, const int8_t* w, int64_t k,
                                                                          int64_t stride, int64_t out_h, int64_t out_w,
                                                                          int32_t* acc) {
  conv_plane_images(x, width, images, w, k, stride, out_h, out_w, acc);
}

__attribute__((target("avx2"))) void conv_plane_images_avx2(const int16_t* x, int64_t width, int64_t images,
                                                            const int8_t* w, int64_t k, int64_t stride, int64_t out_h,
                                                            int64_t out_w, int32_t* acc) {
  conv_plane_images(x, width, images, w, k, stride, out_h, out_w, acc);
}

// Adds (or subtracts) the selected rows at 16 pixels per step in int16 lanes; |x| <= 255, so 128
// terms fit in int16 before widening to the int32 accumulators lo (pixels 0-7) and hi (8-15).
__attribute__((target("avx2"))) void accumulate_rows_avx2(const int16_t* x, int64_t pixels, int64_t p,
                                                          const int32_t* idx, int64_t n, bool subtract, __m256i* lo,
                                                          __m256i* hi) {
  constexpr int64_t kFlush = 128;
  for (int64_t k0 = 0; k0 < n; k0 += kFlush) {
    __m256i s = _mm256_setzero_si256();
    int64_t k1 = std::min(n, k0 + kFlush);
    for (int64_t k = k0; k < k1; ++k)
      s = _mm256_add_epi16(s, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x + static_cast<int64_t>(idx[k]) * pixels + p)));
    __m256i s_lo = _mm256_cvtepi16_epi32(_mm256_castsi256_si128(s));
    __m256i s_hi = _mm256_cvtepi16_epi32(_mm256_extracti128_si256(s, 1));
    *lo = subtract ? _mm256_sub_epi32(*lo, s_lo) : _mm256_add_epi32(*lo, s_lo);
    *hi = subtract ? _mm256_sub_epi32(*hi, s_hi) : _mm256_add_epi32(*hi, s_hi);
  }
}

// 64 pixels per pass over the index lists (4 int16 vectors in flight), same flush rule.
__attribute__((target("avx2"))) void accumulate_rows4_avx2(const int16_t* x, int64_t pixels, int64_t p,
                                                           const int32_t* idx, int64_t n, bool subtract, __m256i* acc) {
  constexpr int64_t kFlush = 128;
  for (int64_t k0 = 0; k0 < n; k0 += kFlush) {
    __m256i s[4] = {_mm256_setzero_si256(), _mm256_setzero_si256(), _mm256_setzero_si256(), _mm256_setzero_si256()};
    const int64_t k1 = std::min(n, k0 + kFlush);
    for (int64_t k = k0; k < k1; ++k) {
      const __m256i* row = reinterpret_cast<const __m256i*>(x + static_cast<int64_t>(idx[k]) * pixels + p);
      for (int j = 0; j < 4; ++j) s[j] = _mm256_add_epi16(s[j], _mm256_loadu_si256(row + j));
    }
    for (int j = 0; j < 4; ++j) {
      const __m256i lo = _mm256_cvtepi16_epi32(_mm256_castsi256_si128(s[j]));
      const __m256i hi = _mm256_cvtepi16_epi32(_mm256_extracti128_si256(s[j], 1));
      acc[2 * j] = subtract ? _mm256_sub_epi32(acc[2 * j], lo) : _mm256_add_epi32(acc[2 * j], lo);
      acc[2 * j + 1] = subtract ? _mm256_sub_epi32(acc[2 * j + 1], hi) : _mm256_add_epi32(acc[2 * j + 1], hi);
    }
  }
}

__attribute__((target("avx2"))) void ternary_pointwise_avx2(const int16_t* x, int64_t pixels, const int32_t* plus,
                                                            int64_t n_plus, const int32_t* minus, int64_t n_minus,
                                                            int32_t* acc) {
  int64_t p = 0;
  for (; p + 64 <= pixels; p += 64) {
    __m256i a[8];
    for (auto& v : a) v = _mm256_setzero_si256();
    accumulate_rows4_avx2(x, pixels, p, plus, n_plus, false, a);
    accumulate_rows4_avx2(x, pixels, p, minus, n_minus, true, a);
    for (int j = 0; j < 8; ++j) _mm256_storeu_si256(reinterpret_cast<__m256i*>(acc + p + 8 * j), a[j]);
  }
  for (; p + 16 <= pixels; p += 16) {
    __m256i lo = _mm256_setzero_si256(), hi = _mm256_setzero_si256();
    accumulate_rows_avx2(x, pixels, p, plus, n_plus, false, &lo, &hi);
    accumulate_rows_avx2(x, pixels, p, minus, n_minus, true, &lo, &hi);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(acc + p), lo);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(acc + p + 8), hi);
  }
  if (p < pixels) {  // tail
    for (int64_t q = p; q < pixels; ++q) acc[q] = 0;
    for (int64_t k = 0; k < n_plus; ++k)
      for (int64_t q = p; q < pixels; ++q) acc[q] += x[static_cast<int64_t>(plus[k]) * pixels + q];
    for (int64_t k = 0; k < n_minus; ++k)
      for (int64_t q = p; q < pixels; ++q) acc[q] -= x[static_cast<int64_t>(minus[k]) * pixels + q];
  }
}

// quant::arith::requantize on 4 int64 lanes: p = v * multiplier exactly (|p| < 2^62), then
// p / 2^s rounded to nearest, ties to even, from a logical shift of p + 2^62 (non-negative, and
// 2^62 is a multiple of 2^s, so the remainder is p's), then clamped to [lo, hi].
struct RequantLanes {
  __m256i multiplier, offset, base, rem_mask, half, one, lo, hi;
  __m128i shift;
};

__attribute__((target("avx2"))) inline __m256i requantize_lanes(__m256i v, const RequantLanes& k) {
  const __m256i biased = _mm256_add_epi64(_mm256_mul_epi32(v, k.multiplier), k.offset);
  __m256i q = _mm256_sub_epi64(_mm256_srl_epi64(biased, k.shift), k.base);
  const __m256i rem = _mm256_and_si256(biased, k.rem_mask);
  const __m256i odd = _mm256_cmpeq_epi64(_mm256_and_si256(q, k.one), k.one);
  const __m256i up = _mm256_or_si256(_mm256_cmpgt_epi64(rem, k.half),
                                     _mm256_and_si256(_mm256_cmpeq_epi64(rem, k.half), odd));
  q = _mm256_add_epi64(q, _mm256_and_si256(up, k.one));
  q = _mm256_blendv_epi8(q, k.lo, _mm256_cmpgt_epi64(k.lo, q));
  return _mm256_blendv_epi8(q, k.hi, _mm256_cmpgt_epi64(q, k.hi));
}

__attribute__((target("avx2"))) int64_t requantize_avx2(const int32_t* acc, int64_t n, int32_t acc_shift, int32_t bias,
                                                        int32_t multiplier, int32_t right_shift, int32_t lo, int32_t hi,
                                                        int16_t* out) {
  const RequantLanes k{_mm256_set1_epi64x(multiplier),
                       _mm256_set1_epi64x(int64_t{1} << 62),
                       _mm256_set1_epi64x(int64_t{1} << (62 - right_shift)),
                       _mm256_set1_epi64x((int64_t{1} << right_shift) - 1),
                       _mm256_set1_epi64x(int64_t{1} << (right_shift - 1)),
                       _mm256_set1_epi64x(1),
                       _mm256_set1_epi64x(lo),
                       _mm256_set1_epi64x(hi),
                       _mm_cvtsi32_si128(right_shift)};
  const __m128i acc_shift_count = _mm_cvtsi32_si128(acc_shift);
  const __m256i bias_v = _mm256_set1_epi32(bias);
  int64_t p = 0;
  for (; p + 8 <= n; p += 8) {
    // acc * 2^acc_shift + bias fits int32 (lowering checks it), as in the scalar version.
    const __m256i v = _mm256_add_epi32(
        _mm256_sll_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(acc + p)), acc_shift_count), bias_v);
    const __m256i even = requantize_lanes(v, k);                          // lanes 0, 2, 4, 6
    const __m256i odd = requantize_lanes(_mm256_srli_epi64(v, 32), k);  // lanes 1, 3, 5, 7
    const __m256i r = _mm256_blend_epi32(even, _mm256_slli_epi64(odd, 32), 0xAA);  // 8 int32 in order
    const __m256i packed = _mm256_permute4x64_epi64(_mm256_packs_epi32(r, r), 0x08);  // results fit int16
    _mm_storeu_si128(reinterpret_cast<__m128i*>(out + p), _mm256_castsi256_si128(packed));
  }
  return p;
}

// quant::arith::requantize, 32 values per step and a last 16 (quant/requantize_avx512.h).
__attribute__((target("avx512f,avx512bw,avx512vl"))) int64_t requantize_avx512(const int32_t* acc, int64_t n, int32_t acc_shift,
                                                                      int32_t bias, int32_t multiplier,
                                                                      int32_t right_shift, int32_t lo, int32_t hi,
                                                                      int16_t* out) {
  const AccLanes512 l = acc_lanes512(acc_shift, bias, multiplier, right_shift, lo, hi);
  int64_t p = 0;
  for (; p + 32 <= n; p += 32)
    store_codes32(out + p, requantize_acc32<false>(_mm512_loadu_si512(acc + p), _mm512_loadu_si512(acc + p + 16), l), 32);
  if (p + 16 <= n) {
    const __m512i last = _mm512_loadu_si512(acc + p);
    store_codes32(out + p, requantize_acc32<false>(last, last, l), 16);
    p += 16;
  }
  return p;
}

// quant::arith::add_requantize, 8 values per step: a * mult_a + b * mult_b in int64 lanes (|sum| <
// 2^40), rounded and clamped as in quant/requantize_avx512.h. Multipliers in [0, 2^31), shift >= 1.
__attribute__((target("avx512f,avx512bw"))) int64_t add_requantize_avx512(const int16_t* a, const int16_t* b,
                                                                          int64_t n, int64_t mult_a, int64_t mult_b,
                                                                          int shift, int32_t lo, int32_t hi,
                                                                          int16_t* out) {
  const __m512i ma = _mm512_set1_epi64(mult_a), mb = _mm512_set1_epi64(mult_b);
  const RequantLanes512 k = requant_lanes512(0, shift, lo, hi);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m512i av = _mm512_cvtepi16_epi64(_mm_loadu_si128(reinterpret_cast<const __m128i*>(a + i)));
    const __m512i bv = _mm512_cvtepi16_epi64(_mm_loadu_si128(reinterpret_cast<const __m128i*>(b + i)));
    const __m512i q = round_shift_clamp512(_mm512_add_epi64(_mm512_mul_epi32(av, ma), _mm512_mul_epi32(bv, mb)), k);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(out + i), _mm512_cvtepi64_epi16(q));  // fits int16
  }
  return i;
}

// Stride-1 3x3 kernels compute "virtual" outputs q = oy * width + ox for every column of the padded
// row, so that vectors run across row ends (small planes fill them); the k - 1 columns past out_w
// are discarded when the rows are added to acc.
int32_t* flat_scratch(int64_t n) {
  thread_local std::vector<int32_t> scratch;
  if (static_cast<int64_t>(scratch.size()) < n) scratch.resize(n);
  return scratch.data();
}

void add_flat_rows(const int32_t* flat, int64_t width, int64_t out_h, int64_t out_w, int32_t* acc) {
  for (int64_t oy = 0; oy < out_h; ++oy)
    for (int64_t ox = 0; ox < out_w; ++ox) acc[oy * out_w + ox] += flat[oy * width + ox];
}

__attribute__((target("avx2"))) inline __m256i load_avx2(const int16_t* p) {
  return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
}

// conv_plane3_avx512's scheme (below) on 8 lanes: madd multiplies each lane's pair of int16 inputs
// by a weight pair and adds the two products. Tails go through a small buffer.
__attribute__((target("avx2"))) inline void accumulate_avx2(int32_t* a, int64_t n, __m256i v) {
  if (n >= 8) {
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(a), _mm256_add_epi32(_mm256_loadu_si256(reinterpret_cast<__m256i*>(a)), v));
    return;
  }
  alignas(32) int32_t lanes[8];
  _mm256_store_si256(reinterpret_cast<__m256i*>(lanes), v);
  for (int64_t i = 0; i < n; ++i) a[i] += lanes[i];
}

// stride1_step512 (below) on 8 lanes: 16 outputs.
__attribute__((target("avx2"), always_inline)) inline void stride1_step_avx2(const int16_t* x, int64_t width,
                                                                             const __m256i* taps, __m256i* out) {
  __m256i even = _mm256_setzero_si256(), odd = _mm256_setzero_si256();
  for (int ky = 0; ky < 3; ++ky) {
    const int16_t* r = x + ky * width;
    even = _mm256_add_epi32(even, _mm256_madd_epi16(load_avx2(r), taps[2 * ky]));
    even = _mm256_add_epi32(even, _mm256_madd_epi16(load_avx2(r + 2), taps[2 * ky + 1]));
    odd = _mm256_add_epi32(odd, _mm256_madd_epi16(load_avx2(r + 1), taps[2 * ky]));
    odd = _mm256_add_epi32(odd, _mm256_madd_epi16(load_avx2(r + 3), taps[2 * ky + 1]));
  }
  // unpack interleaves within 128-bit halves: lo = outputs 0-3 | 8-11, hi = 4-7 | 12-15.
  const __m256i lo = _mm256_unpacklo_epi32(even, odd), hi = _mm256_unpackhi_epi32(even, odd);
  out[0] = _mm256_permute2x128_si256(lo, hi, 0x20);
  out[1] = _mm256_permute2x128_si256(lo, hi, 0x31);
}

__attribute__((target("avx2"))) void conv_plane3_avx2(const int16_t* x, int64_t width, const int8_t* w, int64_t stride,
                                                      int64_t out_h, int64_t out_w, int32_t* acc) {
  __m256i taps[6];  // per kernel row: (w0, w1) and (w2, 0)
  for (int ky = 0; ky < 3; ++ky) {
    taps[2 * ky] = _mm256_set1_epi32(int16_pair(w[3 * ky], w[3 * ky + 1]));
    taps[2 * ky + 1] = _mm256_set1_epi32(int16_pair(w[3 * ky + 2], 0));
  }
  if (stride == 2) {
    for (int64_t oy = 0; oy < out_h; ++oy)
      for (int64_t ox = 0; ox < out_w; ox += 8) {
        __m256i s = _mm256_setzero_si256();
        for (int ky = 0; ky < 3; ++ky) {
          const int16_t* r = x + (2 * oy + ky) * width + 2 * ox;
          s = _mm256_add_epi32(s, _mm256_madd_epi16(load_avx2(r), taps[2 * ky]));
          s = _mm256_add_epi32(s, _mm256_madd_epi16(load_avx2(r + 2), taps[2 * ky + 1]));
        }
        accumulate_avx2(acc + oy * out_w + ox, out_w - ox, s);
      }
    return;
  }
  if (out_w > 8) {  // wide rows fill the vectors: row by row, straight into acc
    for (int64_t oy = 0; oy < out_h; ++oy)
      for (int64_t ox = 0; ox < out_w; ox += 16) {
        __m256i out[2];
        stride1_step_avx2(x + oy * width + ox, width, taps, out);
        int32_t* a = acc + oy * out_w + ox;
        accumulate_avx2(a, out_w - ox, out[0]);
        if (out_w - ox > 8) accumulate_avx2(a + 8, out_w - ox - 8, out[1]);
      }
    return;
  }
  int32_t* flat = flat_scratch(out_h * width + 16);
  for (int64_t q = 0; q < out_h * width; q += 16) {
    __m256i out[2];
    stride1_step_avx2(x + q, width, taps, out);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(flat + q), out[0]);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(flat + q + 8), out[1]);
  }
  add_flat_rows(flat, width, out_h, out_w, acc);
}

// a[i] += v[i] for the lanes in m.
__attribute__((target("avx512f"))) inline void accumulate_masked(int32_t* a, __mmask16 m, __m512i v) {
  _mm512_mask_storeu_epi32(a, m, _mm512_add_epi32(_mm512_maskz_loadu_epi32(m, a), v));
}

// 32 stride-1 outputs of a 3x3 plane from the row at x (and the 2 below): the even outputs (0, 2,
// .., 30) from the loads at columns 0 and 2 into sums[0], the odd ones from 1 and 3 into sums[1].
__attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni"), always_inline)) inline void stride1_sums512(
    const int16_t* x, int64_t width, const __m512i* taps, __m512i* sums) {
  __m512i even = _mm512_setzero_si512(), odd = _mm512_setzero_si512();
  for (int ky = 0; ky < 3; ++ky) {
    const int16_t* r = x + ky * width;
    even = _mm512_dpwssd_epi32(even, _mm512_loadu_si512(r), taps[2 * ky]);
    even = _mm512_dpwssd_epi32(even, _mm512_loadu_si512(r + 2), taps[2 * ky + 1]);
    odd = _mm512_dpwssd_epi32(odd, _mm512_loadu_si512(r + 1), taps[2 * ky]);
    odd = _mm512_dpwssd_epi32(odd, _mm512_loadu_si512(r + 3), taps[2 * ky + 1]);
  }
  sums[0] = even;
  sums[1] = odd;
}

// The same interleaved back into output order in out[0..1].
__attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni"), always_inline)) inline void stride1_step512(
    const int16_t* x, int64_t width, const __m512i* taps, __m512i* out) {
  __m512i sums[2];
  stride1_sums512(x, width, taps, sums);
  const __m512i even = sums[0], odd = sums[1];
  out[0] = _mm512_permutex2var_epi32(even, _mm512_set_epi32(23, 7, 22, 6, 21, 5, 20, 4, 19, 3, 18, 2, 17, 1, 16, 0), odd);
  out[1] = _mm512_permutex2var_epi32(even, _mm512_set_epi32(31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24, 8), odd);
}

#define PROM_AVX512_VNNI __attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni")))
#define PROM_AVX512_VNNI_LAMBDA __attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni"), always_inline))
// The 3x3 weights as vpdpwssd operands, per kernel row: (w0, w1) and (w2, 0).
PROM_AVX512_VNNI __attribute__((always_inline)) inline void taps3_512(const int8_t* w, __m512i (&taps)[6]) {
  for (int ky = 0; ky < 3; ++ky) {
    taps[2 * ky] = _mm512_set1_epi32(int16_pair(w[3 * ky], w[3 * ky + 1]));
    taps[2 * ky + 1] = _mm512_set1_epi32(int16_pair(w[3 * ky + 2], 0));
  }
}

// The 16 stride-2 outputs (oy, ox .. ox + 15).
PROM_AVX512_VNNI __attribute__((always_inline)) inline __m512i stride2_step512(const int16_t* x, int64_t width,
                                                                                const __m512i (&taps)[6], int64_t oy,
                                                                                int64_t ox) {
  __m512i s01 = _mm512_setzero_si512(), s2 = _mm512_setzero_si512();  // two dependency chains
  for (int ky = 0; ky < 3; ++ky) {
    const int16_t* r = x + (2 * oy + ky) * width + 2 * ox;
    s01 = _mm512_dpwssd_epi32(s01, _mm512_loadu_si512(r), taps[2 * ky]);
    s2 = _mm512_dpwssd_epi32(s2, _mm512_loadu_si512(r + 2), taps[2 * ky + 1]);
  }
  return _mm512_add_epi32(s01, s2);
}

inline __mmask16 tail_mask(int64_t left) {
  return left >= 16 ? __mmask16(0xFFFF) : left <= 0 ? __mmask16(0) : static_cast<__mmask16>((1u << left) - 1);
}

// 3x3 planes with AVX-512 VNNI, the row's tail masked. A weight pair (w_a, w_b) sits in an int32
// word as two int16 halves: vpdpwssd adds both products of each lane's pair of inputs. 32 int16
// loaded from column c are the pairs (x[c + 2j], x[c + 2j + 1]) in lane j, so
//  - stride 2 (16 outputs per step): the load from column 2*ox gives taps kx = 0, 1 of output
//    ox + j, the load 2 columns on tap kx = 2 with the pair (w2, 0);
//  - stride 1 (32 outputs per step): loads from columns ox and ox + 2 do the same for the even
//    outputs ox + 2j, loads from ox + 1 and ox + 3 for the odd ones, then the two halves are
//    interleaved back into output order. Narrow planes (out_w <= 16) run over the flattened
//    plane (flat_scratch), so vectors cross row ends and a 7x7 plane takes 2 steps, not 7.
PROM_AVX512_VNNI void conv_plane3_avx512(const int16_t* x, int64_t width, const int8_t* w, int64_t stride,
                                         int64_t out_h, int64_t out_w, int32_t* acc) {
  __m512i taps[6];
  taps3_512(w, taps);
  if (stride == 2) {
    for (int64_t oy = 0; oy < out_h; ++oy)
      for (int64_t ox = 0; ox < out_w; ox += 16)
        accumulate_masked(acc + oy * out_w + ox, tail_mask(out_w - ox), stride2_step512(x, width, taps, oy, ox));
    return;
  }
  if (out_w > 16) {  // wide rows fill the vectors: row by row, straight into acc
    for (int64_t oy = 0; oy < out_h; ++oy)
      for (int64_t ox = 0; ox < out_w; ox += 32) {
        __m512i out[2];
        stride1_step512(x + oy * width + ox, width, taps, out);
        int32_t* a = acc + oy * out_w + ox;
        accumulate_masked(a, tail_mask(out_w - ox), out[0]);
        if (out_w - ox > 16) accumulate_masked(a + 16, tail_mask(out_w - ox - 16), out[1]);
      }
    return;
  }
  int32_t* flat = flat_scratch(out_h * width + 32);
  for (int64_t q = 0; q < out_h * width; q += 32) {
    __m512i out[2];
    stride1_step512(x + q, width, taps, out);
    _mm512_storeu_si512(flat + q, out[0]);
    _mm512_storeu_si512(flat + q + 16, out[1]);
  }
  add_flat_rows(flat, width, out_h, out_w, acc);
}

// Requantizes 32 accumulators in registers (requantize_acc32: a's then b's, or interleaved) and
// stores the first `left` codes as int16.
template <bool kInterleave>
PROM_AVX512_VNNI __attribute__((always_inline)) inline void store_requantized32(int16_t* out, int64_t left, __m512i a,
                                                                                 __m512i b, const AccLanes512& l) {
  store_codes32(out, requantize_acc32<kInterleave>(a, b, l), left);
}

// Rows of int16 copied with masked 32-lane moves: the planes' rows are short (7 to 112 values), where
// a memmove call per row costs more than the copy.
__attribute__((target("avx512f,avx512bw"))) void copy_rows_avx512(const int16_t* src, int64_t src_stride, int64_t rows,
                                                                  int64_t cols, int16_t* dst, int64_t dst_stride) {
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; c += 32) {
      const __mmask32 m = cols - c >= 32 ? ~__mmask32{0} : (__mmask32{1} << (cols - c)) - 1;
      _mm512_mask_storeu_epi16(dst + r * dst_stride + c, m, _mm512_maskz_loadu_epi16(m, src + r * src_stride + c));
    }
}

// The same with AVX2, which has no 16-bit masked moves: 16 values per step, the tail's pairs with
// a 32-bit masked move and an odd last value on its own.
__attribute__((target("avx2"))) void copy_rows_avx2(const int16_t* src, int64_t src_stride, int64_t rows, int64_t cols,
                                                    int16_t* dst, int64_t dst_stride) {
  const __m256i lanes = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  for (int64_t r = 0; r < rows; ++r) {
    const int16_t* a = src + r * src_stride;
    int16_t* b = dst + r * dst_stride;
    int64_t c = 0;
    for (; c + 16 <= cols; c += 16) _mm256_storeu_si256(reinterpret_cast<__m256i*>(b + c), load_avx2(a + c));
    const int64_t left = cols - c;  // 0 to 15
    const __m256i pairs = _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(left / 2)), lanes);
    _mm256_maskstore_epi32(reinterpret_cast<int*>(b + c), pairs,
                           _mm256_maskload_epi32(reinterpret_cast<const int*>(a + c), pairs));
    if (left % 2) b[cols - 1] = a[cols - 1];
  }
}

int16_t* flat_codes(int64_t n) {
  thread_local std::vector<int16_t> scratch;
  if (static_cast<int64_t>(scratch.size()) < n) scratch.resize(n);
  return scratch.data();
}

// conv_plane3_avx512's steps summed over P input planes (plane_stride values apart, weights w[P][9])
// and requantized in registers: no int32 plane between a convolution and its requantization.
// Narrow stride-1 planes are requantized flattened (virtual outputs included) into a scratch whose
// rows are then copied out. P = 1: a depthwise plane; P = 3: the stem's output channel.
template <int P>
PROM_AVX512_VNNI void planes3_requantized_avx512(const int16_t* x, int64_t plane_stride, int64_t width, const int8_t* w,
                                                 int64_t stride, int64_t out_h, int64_t out_w, const PlaneRequant& r,
                                                 int16_t* out) {
  __m512i taps[P][6];
  for (int i = 0; i < P; ++i) taps3_512(w + 9 * i, taps[i]);
  const AccLanes512 lanes = acc_lanes512(r.acc_shift, r.bias, r.multiplier, r.right_shift, r.lo, r.hi);
  // The even and odd stride-1 sums of 32 outputs from the row at x, over the planes.
  const auto sums1 = [&](const int16_t* at, __m512i* sums) PROM_AVX512_VNNI_LAMBDA {
    stride1_sums512(at, width, taps[0], sums);
    for (int i = 1; i < P; ++i) {
      __m512i more[2];
      stride1_sums512(at + i * plane_stride, width, taps[i], more);
      sums[0] = _mm512_add_epi32(sums[0], more[0]);
      sums[1] = _mm512_add_epi32(sums[1], more[1]);
    }
  };
  const auto sum2 = [&](int64_t oy, int64_t ox) PROM_AVX512_VNNI_LAMBDA {  // 16 stride-2 outputs
    __m512i sum = stride2_step512(x, width, taps[0], oy, ox);
    for (int i = 1; i < P; ++i) sum = _mm512_add_epi32(sum, stride2_step512(x + i * plane_stride, width, taps[i], oy, ox));
    return sum;
  };
  __m512i sums[2];
  if (stride == 1 && out_w <= 16) {
    int16_t* flat = flat_codes(out_h * width + 32);
    for (int64_t q = 0; q < out_h * width; q += 32) {
      sums1(x + q, sums);
      store_requantized32<true>(flat + q, 32, sums[0], sums[1], lanes);
    }
    copy_rows_avx512(flat, width, out_h, out_w, out, out_w);
    return;
  }
  for (int64_t oy = 0; oy < out_h; ++oy) {
    int16_t* o = out + oy * out_w;
    if (stride == 2) {  // 16 outputs per step, two steps per requantization
      for (int64_t ox = 0; ox < out_w; ox += 32) {
        const __m512i first = sum2(oy, ox);
        const __m512i second = out_w - ox > 16 ? sum2(oy, ox + 16) : first;
        store_requantized32<false>(o + ox, out_w - ox, first, second, lanes);
      }
      continue;
    }
    for (int64_t ox = 0; ox < out_w; ox += 32) {
      sums1(x + oy * width + ox, sums);
      store_requantized32<true>(o + ox, out_w - ox, sums[0], sums[1], lanes);
    }
  }
}
// ---- depthwise 3x3 on 8-bit codes ----
// vpdpbusd multiplies 4 unsigned bytes by 4 signed bytes per int32 lane: a kernel row's 3 weights
// and a zero meet 4 consecutive codes of a row, so a 64-byte load at column c gives each lane j the
// row's part of the output whose window starts at c + 4j: 3 instructions (one per kernel row) per 16
// outputs, half of vpdpwssd's 6 on int16 pairs, from half the bytes. Codes are bytes as in the 1x1
// quads: uint8 as they are, int8 offset by +128 with the padding at 128 (the offset zero), and the
// accumulators start at -128 * sum(w) (pointwise_dot.h).

// Per kernel row, (w0, w1, w2, 0) as signed bytes.
PROM_AVX512_VNNI inline void taps3_bytes512(const int8_t* w, __m512i (&taps)[3]) {
  for (int ky = 0; ky < 3; ++ky)
    taps[ky] = _mm512_set1_epi32(static_cast<int32_t>(static_cast<uint32_t>(static_cast<uint8_t>(w[3 * ky])) |
                                                      static_cast<uint32_t>(static_cast<uint8_t>(w[3 * ky + 1])) << 8 |
                                                      static_cast<uint32_t>(static_cast<uint8_t>(w[3 * ky + 2])) << 16));
}

// 64 stride-1 outputs from the padded row at x (and the 2 below), added to sums: sums[d] lane j is
// output 4j + d.
PROM_AVX512_VNNI __attribute__((always_inline)) inline void stride1_byte_sums512(const uint8_t* x, int64_t width,
                                                                                  const __m512i (&taps)[3],
                                                                                  __m512i (&sums)[4]) {
  for (int d = 0; d < 4; ++d)
    for (int ky = 0; ky < 3; ++ky) sums[d] = _mm512_dpbusd_epi32(sums[d], _mm512_loadu_si512(x + ky * width + d), taps[ky]);
}

// 32 stride-2 outputs ox .. ox + 31 of row oy, added to sums: sums[0] lane j is output ox + 2j,
// sums[1] ox + 2j + 1.
PROM_AVX512_VNNI __attribute__((always_inline)) inline void stride2_byte_sums512(const uint8_t* x, int64_t width,
                                                                                  const __m512i (&taps)[3], int64_t oy,
                                                                                  int64_t ox, __m512i (&sums)[2]) {
  for (int h = 0; h < 2; ++h)
    for (int ky = 0; ky < 3; ++ky)
      sums[h] = _mm512_dpbusd_epi32(sums[h], _mm512_loadu_si512(x + (2 * oy + ky) * width + 2 * ox + 2 * h), taps[ky]);
}

// stride1_byte_sums512's 64 accumulators requantized into output order, codes[0] outputs 0-31 and
// codes[1] 32-63: the packs of (0, 1) and (2, 3) hold sums[d]'s q[4L .. 4L+3] at word 8L + 4 (d % 2)
// of their 128-bit lane L; vpermt2w gathers output 4j + d from there.
PROM_AVX512_VNNI __attribute__((always_inline)) inline void requantized64(const __m512i (&sums)[4], const AccLanes512& l,
                                                                           __m512i (&codes)[2]) {
  alignas(64) static constexpr int16_t kFirst[32] = {0, 4, 32, 36, 1, 5, 33, 37, 2, 6, 34, 38, 3, 7, 35, 39, 8, 12, 40, 44, 9, 13, 41, 45, 10, 14, 42, 46, 11, 15, 43, 47};
  alignas(64) static constexpr int16_t kSecond[32] = {16, 20, 48, 52, 17, 21, 49, 53, 18, 22, 50, 54, 19, 23, 51, 55, 24, 28, 56, 60, 25, 29, 57, 61, 26, 30, 58, 62, 27, 31, 59, 63};
  const __m512i p01 = _mm512_packs_epi32(requantize_acc16(sums[0], l), requantize_acc16(sums[1], l));
  const __m512i p23 = _mm512_packs_epi32(requantize_acc16(sums[2], l), requantize_acc16(sums[3], l));
  const auto clamp = [&](__m512i v) PROM_AVX512_VNNI_LAMBDA { return _mm512_min_epi16(_mm512_max_epi16(v, l.lo16), l.hi16); };
  codes[0] = clamp(_mm512_permutex2var_epi16(p01, _mm512_load_si512(kFirst), p23));
  codes[1] = clamp(_mm512_permutex2var_epi16(p01, _mm512_load_si512(kSecond), p23));
}

// requantized64's codes, the first `left` stored.
PROM_AVX512_VNNI __attribute__((always_inline)) inline void store_requantized64(int16_t* out, int64_t left,
                                                                                 const __m512i (&sums)[4],
                                                                                 const AccLanes512& l) {
  __m512i codes[2];
  requantized64(sums, l, codes);
  store_codes32(out, codes[0], left);
  if (left > 32) store_codes32(out + 32, codes[1], left - 32);
}

// 32 codes of a plane computed flattened, `width` values per row of which the first out_w are
// outputs, at flat positions f .. f + 31: each row's segment stored into out [out_h][out_w] by a
// masked store straight from the register (lanes j .. j + len - 1 to the segment's place). A flat
// buffer copied row by row instead stalled on store forwarding (its rows were read back at once).
PROM_AVX512_VNNI __attribute__((always_inline)) inline void store_flat_rows32(int16_t* out, int64_t out_w, int64_t width,
                                                                               int64_t out_h, int64_t f, __m512i codes) {
  int64_t row = f / width, col = f % width, j = 0;
  while (j < 32 && row < out_h) {
    if (col >= out_w) {  // the row's padding columns
      j += width - col, ++row, col = 0;
      continue;
    }
    const int64_t len = std::min(out_w - col, 32 - j);
    const auto mask = static_cast<__mmask32>(((uint64_t{1} << len) - 1) << j);
    // Lane j lands on (row, col): the base is j values before it (only the masked lanes are written).
    auto* base = reinterpret_cast<int16_t*>(reinterpret_cast<uintptr_t>(out + row * out_w + col) - 2 * j);
    _mm512_mask_storeu_epi16(base, mask, codes);
    j += len, col += len;
  }
}

// P padded planes of bytes (row length `width`, plane_stride bytes apart, weights w[P][9]) -> the
// out_h x out_w codes of their summed convolutions (P = 1: a depthwise plane; P = 3: the stem's
// output channel). Stride-1 planes narrower than 48 outputs run flattened (vectors across row
// ends, as planes3_requantized_avx512).
template <int P>
PROM_AVX512_VNNI void planes3_bytes_avx512(const uint8_t* x, int64_t plane_stride, int64_t width, const int8_t* w,
                                           bool offset, int64_t stride, int64_t out_h, int64_t out_w,
                                           const PlaneRequant& r, int16_t* out) {
  __m512i taps[P][3];
  int32_t weight_sum = 0;
  for (int i = 0; i < P; ++i) {
    taps3_bytes512(w + 9 * i, taps[i]);
    for (int j = 0; j < 9; ++j) weight_sum += w[9 * i + j];
  }
  const __m512i start = _mm512_set1_epi32(offset ? -128 * weight_sum : 0);
  const AccLanes512 lanes = acc_lanes512(r.acc_shift, r.bias, r.multiplier, r.right_shift, r.lo, r.hi);
  if (stride == 2) {
    for (int64_t oy = 0; oy < out_h; ++oy)
      for (int64_t ox = 0; ox < out_w; ox += 32) {
        __m512i sums[2] = {start, start};
        for (int i = 0; i < P; ++i) stride2_byte_sums512(x + i * plane_stride, width, taps[i], oy, ox, sums);
        store_codes32(out + oy * out_w + ox, requantize_acc32<true>(sums[0], sums[1], lanes), out_w - ox);
      }
    return;
  }
  const auto sums1 = [&](int64_t at, __m512i(&sums)[4]) PROM_AVX512_VNNI_LAMBDA {
    for (int d = 0; d < 4; ++d) sums[d] = start;
    for (int i = 0; i < P; ++i) stride1_byte_sums512(x + i * plane_stride + at, width, taps[i], sums);
  };
  __m512i sums[4];
  if (out_w < 48) {
    __m512i codes[2];
    for (int64_t q = 0; q < out_h * width; q += 64) {
      sums1(q, sums);
      requantized64(sums, lanes, codes);
      store_flat_rows32(out, out_w, width, out_h, q, codes[0]);
      store_flat_rows32(out, out_w, width, out_h, q + 32, codes[1]);
    }
    return;
  }
  for (int64_t oy = 0; oy < out_h; ++oy)
    for (int64_t ox = 0; ox < out_w; ox += 64) {
      sums1(oy * width + ox, sums);
      store_requantized64(out + oy * out_w + ox, out_w - ox, sums, lanes);
    }
}

// copy_rows into bytes: 64 codes per step, offset by +128 where signed, narrowed by vpackuswb (the
// codes fit a byte, so it saturates nothing) with the lane order restored by vpermq.
__attribute__((target("avx512f,avx512bw"))) void copy_rows_bytes_avx512(const int16_t* src, int64_t src_stride,
                                                                        int64_t rows, int64_t cols, uint8_t* dst,
                                                                        int64_t dst_stride, bool offset) {
  const __m512i add = _mm512_set1_epi16(offset ? 128 : 0);
  const __m512i order = _mm512_setr_epi64(0, 2, 4, 6, 1, 3, 5, 7);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; c += 64) {
      const int64_t left = cols - c;
      const __mmask32 m0 = left >= 32 ? ~__mmask32{0} : (__mmask32{1} << left) - 1;
      const __mmask32 m1 = left >= 64 ? ~__mmask32{0} : left <= 32 ? __mmask32{0} : (__mmask32{1} << (left - 32)) - 1;
      const int16_t* a = src + r * src_stride + c;
      const __m512i v0 = _mm512_add_epi16(_mm512_maskz_loadu_epi16(m0, a), add);
      const __m512i v1 = _mm512_add_epi16(_mm512_maskz_loadu_epi16(m1, a + 32), add);
      const __mmask64 m = left >= 64 ? ~__mmask64{0} : (__mmask64{1} << left) - 1;
      _mm512_mask_storeu_epi8(dst + r * dst_stride + c, m, _mm512_permutexvar_epi64(order, _mm512_packus_epi16(v0, v1)));
    }
}
#undef PROM_AVX512_VNNI
#undef PROM_AVX512_VNNI_LAMBDA
#endif

}  // namespace

void ternary_pointwise(const int16_t* x, int64_t pixels, const int32_t* plus, int64_t n_plus, const int32_t* minus,
                       int64_t n_minus, int32_t* acc, Isa isa) {
#ifdef PROM_X86
  if (isa != Isa::kPortable) return ternary_pointwise_avx2(x, pixels, plus, n_plus, minus, n_minus, acc);
#endif
  ternary_pointwise_portable(x, pixels, plus, n_plus, minus, n_minus, acc);
}

void int8_pointwise(const int16_t* x, int64_t pixels, int64_t in_channels, const int8_t* w, int32_t* acc) {
  int8_pointwise_portable(x, pixels, in_channels, w, acc);
}

void conv_plane(const int16_t* x, int64_t width, const int8_t* w, int64_t k, int64_t stride, int64_t out_h,
                int64_t out_w, int32_t* acc, Isa isa) {
#ifdef PROM_X86
  if (isa == Isa::kAvx512Vnni && k == 3 && (stride == 1 || stride == 2))
    return conv_plane3_avx512(x, width, w, stride, out_h, out_w, acc);
  if (isa == Isa::kAvx2 && k == 3 && (stride == 1 || stride == 2))
    return conv_plane3_avx2(x, width, w, stride, out_h, out_w, acc);
  if (isa != Isa::kPortable) return conv_plane_avx2(x, width, w, k, stride, out_h, out_w, acc);
#endif
  conv_plane_portable(x, width, w, k, stride, out_h, out_w, acc);
}

void conv_planes_requantized(const int16_t* x, int64_t plane_stride, int64_t planes, int64_t width, const int8_t* w,
                             int64_t k, int64_t stride, int64_t out_h, int64_t out_w, const PlaneRequant& r,
                             int32_t* acc, int16_t* out, Isa isa) {
#ifdef PROM_X86
  // In registers where the multiplier takes the vector rounding (as requantize's rule).
  if (isa == Isa::kAvx512Vnni && k == 3 && (stride == 1 || stride == 2) && planes >= 1 && planes <= 4 &&
      r.multiplier != 0 && r.right_shift >= 1 && r.right_shift <= 62 && r.lo >= INT16_MIN && r.hi <= INT16_MAX) {
    switch (planes) {
      case 1: return planes3_requantized_avx512<1>(x, plane_stride, width, w, stride, out_h, out_w, r, out);
      case 2: return planes3_requantized_avx512<2>(x, plane_stride, width, w, stride, out_h, out_w, r, out);
      case 3: return planes3_requantized_avx512<3>(x, plane_stride, width, w, stride, out_h, out_w, r, out);
      default: return planes3_requantized_avx512<4>(x, plane_stride, width, w, stride, out_h, out_w, r, out);
    }
  }
#endif
  std::fill(acc, acc + out_h * out_w, 0);
  for (int64_t i = 0; i < planes; ++i) conv_plane(x + i * plane_stride, width, w + i * k * k, k, stride, out_h, out_w, acc, isa);
  requantize(acc, out_h * out_w, r.acc_shift, r.bias, r.multiplier, r.right_shift, r.lo, r.hi, out, isa);
}

bool conv_planes3_bytes(const uint8_t* x, int64_t plane_stride, int64_t planes, int64_t width, const int8_t* w,
                        bool offset, int64_t stride, int64_t out_h, int64_t out_w, const PlaneRequant& r, int16_t* out,
                        Isa isa) {
  if (!depthwise_bytes_apply(stride, r, isa) || planes < 1 || planes > 4) return false;
#ifdef PROM_X86
  switch (planes) {
    case 1: planes3_bytes_avx512<1>(x, plane_stride, width, w, offset, stride, out_h, out_w, r, out); break;
    case 2: planes3_bytes_avx512<2>(x, plane_stride, width, w, offset, stride, out_h, out_w, r, out); break;
    case 3: planes3_bytes_avx512<3>(x, plane_stride, width, w, offset, stride, out_h, out_w, r, out); break;
    default: planes3_bytes_avx512<4>(x, plane_stride, width, w, offset, stride, out_h, out_w, r, out); break;
  }
#else
  (void)x, (void)plane_stride, (void)width, (void)w, (void)offset, (void)out_h, (void)out_w, (void)out;
#endif
  return true;
}

bool depthwise_plane3_bytes(const uint8_t* x, int64_t width, const int8_t* w, bool offset, int64_t stride,
                            int64_t out_h, int64_t out_w, const PlaneRequant& r, int16_t* out, Isa isa) {
  return conv_planes3_bytes(x, 0, 1, width, w, offset, stride, out_h, out_w, r, out, isa);
}

bool depthwise_bytes_apply(int64_t stride, const PlaneRequant& r, Isa isa) {
  return isa == Isa::kAvx512Vnni && (stride == 1 || stride == 2) && r.multiplier != 0 && r.right_shift >= 1 &&
         r.right_shift <= 62 && r.lo >= INT16_MIN && r.hi <= INT16_MAX;
}

void copy_rows_bytes(const int16_t* src, int64_t src_stride, int64_t rows, int64_t cols, uint8_t* dst,
                     int64_t dst_stride, bool offset, Isa isa) {
#ifdef PROM_X86
  if (isa == Isa::kAvx512Vnni) return copy_rows_bytes_avx512(src, src_stride, rows, cols, dst, dst_stride, offset);
#endif
  (void)isa;
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) dst[r * dst_stride + c] = static_cast<uint8_t>(src[r * src_stride + c] + (offset ? 128 : 0));
}

void depthwise_plane(const int16_t* x, int64_t width, const int8_t* w, int64_t k, int64_t stride, int64_t out_h,
                     int64_t out_w, const PlaneRequant& r, int32_t* acc, int16_t* out, Isa isa) {
  conv_planes_requantized(x, 0, 1, width, w, k, stride, out_h, out_w, r, acc, out, isa);
}

void copy_rows(const int16_t* src, int64_t src_stride, int64_t rows, int64_t cols, int16_t* dst, int64_t dst_stride,
               Isa isa) {
#ifdef PROM_X86
  if (isa == Isa::kAvx512Vnni) return copy_rows_avx512(src, src_stride, rows, cols, dst, dst_stride);
  if (isa == Isa::kAvx2) return copy_rows_avx2(src, src_stride, rows, cols, dst, dst_stride);
#endif
  for (int64_t r = 0; r < rows; ++r) std::copy(src + r * src_stride, src + r * src_stride + cols, dst + r * dst_stride);
}

void conv_plane_batched(const int16_t* x, int64_t width, int64_t images, const int8_t* w, int64_t k, int64_t stride,
                        int64_t out_h, int64_t out_w, int32_t* acc, Isa isa) {
#ifdef PROM_X86
  if (isa == Isa::kAvx512Vnni) return conv_plane_images_avx512(x, width, images, w, k, stride, out_h, out_w, acc);
  if (isa != Isa::kPortable) return conv_plane_images_avx2(x, width, images, w, k, stride, out_h, out_w, acc);
#endif
  conv_plane_images(x, width, images, w, k, stride, out_h, out_w, acc);
}

void requantize(const int32_t* acc, int64_t n, int32_t acc_shift, int32_t bias, int32_t multiplier,
                int32_t right_shift, int32_t lo, int32_t hi, int16_t* out, Isa isa) {
  int64_t done = 0;
#ifdef PROM_X86
  // A zero multiplier (shift 0) and clamps beyond int16 stay on the scalar path.
  if (isa != Isa::kPortable && multiplier != 0 && right_shift >= 1 && right_shift <= 62 && lo >= INT16_MIN &&
      hi <= INT16_MAX) {
    if (isa == Isa::kAvx512Vnni) done = requantize_avx512(acc, n, acc_shift, bias, multiplier, right_shift, lo, hi, out);
    done += requantize_avx2(acc + done, n - done, acc_shift, bias, multiplier, right_shift, lo, hi, out + done);
  }
#endif
  const quant::arith::FixedPointMultiplier m{multiplier, right_shift};
  for (int64_t p = done; p < n; ++p)
    out[p] = static_cast<int16_t>(quant::arith::requantize(acc[p], acc_shift, bias, m, lo, hi));
}

void add_requantize(const int16_t* a, const int16_t* b, int64_t n, int64_t mult_a, int64_t mult_b, int shift, int32_t lo,
                    int32_t hi, int16_t* out, Isa isa) {
  int64_t done = 0;
#ifdef PROM_X86
  if (isa == Isa::kAvx512Vnni && shift >= 1 && shift <= 62 && mult_a >= 0 && mult_a <= INT32_MAX && mult_b >= 0 &&
      mult_b <= INT32_MAX && lo >= INT16_MIN && hi <= INT16_MAX)
    done = add_requantize_avx512(a, b, n, mult_a, mult_b, shift, lo, hi, out);
#endif
  for (int64_t i = done; i < n; ++i)
    out[i] = static_cast<int16_t>(quant::arith::add_requantize(a[i], b[i], mult_a, mult_b, shift, lo, hi));
}

}  // namespace prom::infer::kernels
