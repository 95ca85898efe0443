#include "infer/pointwise_dot.h"

#include <algorithm>
#include <cstdint>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define PROM_X86 1
#include "quant/requantize_avx512.h"
#endif

namespace prom::infer::kernels {

#ifdef PROM_X86
using quant::arith::acc_lanes512;
using quant::arith::AccLanes512;
using quant::arith::requantize_acc32;
using quant::arith::store_code_bytes32;
using quant::arith::store_codes32;
#endif

void pack_input_pairs(const int16_t* x, int64_t plane, int64_t in_channels, int64_t p0, int64_t count, int16_t* xp) {
  const int64_t padded = padded_pixels(count);
  for (int64_t k = 0; k < channel_pairs(in_channels); ++k) {
    int16_t* out = xp + k * padded * 2;
    const int16_t* a = x + 2 * k * plane + p0;
    if (2 * k + 1 < in_channels) {
      const int16_t* b = a + plane;
      for (int64_t p = 0; p < count; ++p) out[2 * p] = a[p], out[2 * p + 1] = b[p];
    } else {
      for (int64_t p = 0; p < count; ++p) out[2 * p] = a[p], out[2 * p + 1] = 0;
    }
    std::fill(out + 2 * count, out + 2 * padded, 0);
  }
}

std::vector<int32_t> pack_weight_pairs(const int8_t* w, int64_t out_channels, int64_t in_channels) {
  const int64_t blocks = (out_channels + kTileRows - 1) / kTileRows, pairs = channel_pairs(in_channels);
  std::vector<int32_t> packed(blocks * pairs * kTileRows, 0);
  for (int64_t row = 0; row < out_channels; ++row)
    for (int64_t k = 0; k < pairs; ++k) {
      const int8_t lo = w[row * in_channels + 2 * k];
      const int8_t hi = 2 * k + 1 < in_channels ? w[row * in_channels + 2 * k + 1] : 0;
      packed[((row / kTileRows) * pairs + k) * kTileRows + row % kTileRows] = int16_pair(lo, hi);
    }
  return packed;
}

namespace {

// Quad k of the pixels [0, count) of planes that start at x and are `plane` values apart.
void pack_quads_portable(const int16_t* x, int64_t plane, int64_t count, int64_t in_channels, bool offset, int64_t k,
                         uint8_t* out) {
  const int32_t add = offset ? 128 : 0;
  for (int64_t j = 0; j < 4; ++j) {
    if (4 * k + j >= in_channels) {  // the channels past the last: zeros (their weights are zero too)
      for (int64_t p = 0; p < count; ++p) out[4 * p + j] = 0;
      continue;
    }
    const int16_t* a = x + (4 * k + j) * plane;
    for (int64_t p = 0; p < count; ++p) out[4 * p + j] = static_cast<uint8_t>(a[p] + add);
  }
}

#ifdef PROM_X86
// 32 codes of channel j of the quad's planes; zeros past the last channel.
__attribute__((target("avx512f"))) inline __m512i channel32(const int16_t* a, int64_t plane, int64_t channels, int64_t j,
                                                          int64_t p) {
  return j < channels ? _mm512_loadu_si512(a + j * plane + p) : _mm512_setzero_si512();
}

// 32 pixels at a time: two channels' low bytes merged into one word per pixel (c0 | c1 << 8, and
// c2 | c3 << 8), the two words of each pixel interleaved by vpermt2w into its 4-byte quad, signed
// codes offset by an exclusive or with 0x80 (which adds 128 modulo 256). 16-pixel steps widened to
// int32 lanes take the rest but the last few.
__attribute__((target("avx512f,avx512bw"))) void pack_quads_avx512(const int16_t* x, int64_t plane, int64_t count,
                                                                   int64_t in_channels, bool offset, int64_t k,
                                                                   uint8_t* out) {
  const int64_t channels = std::min<int64_t>(4, in_channels - 4 * k);
  const int16_t* a = x + 4 * k * plane;
  const auto flip_of = [&](int64_t j) { return offset && j < channels ? 0x80 << (8 * (j % 2)) : 0; };
  const __m512i flip01 = _mm512_set1_epi16(static_cast<int16_t>(flip_of(0) | flip_of(1)));
  const __m512i flip23 = _mm512_set1_epi16(static_cast<int16_t>(flip_of(2) | flip_of(3)));
  const __m512i low_byte16 = _mm512_set1_epi16(0xFF);
  // Pixel i's two words, w01[i] and w23[i] (index 32 + i), for pixels 0-15 and 16-31.
  alignas(64) static constexpr int16_t kOrderLo[32] = {0, 32, 1, 33, 2,  34, 3,  35, 4,  36, 5,  37, 6,  38, 7,  39,
                                                       8, 40, 9, 41, 10, 42, 11, 43, 12, 44, 13, 45, 14, 46, 15, 47};
  alignas(64) static constexpr int16_t kOrderHi[32] = {16, 48, 17, 49, 18, 50, 19, 51, 20, 52, 21, 53, 22, 54, 23, 55,
                                                       24, 56, 25, 57, 26, 58, 27, 59, 28, 60, 29, 61, 30, 62, 31, 63};
  const __m512i lo_order = _mm512_load_si512(kOrderLo), hi_order = _mm512_load_si512(kOrderHi);
  int64_t p = 0;
  for (; p + 32 <= count; p += 32) {
    const __m512i c0 = channel32(a, plane, channels, 0, p), c1 = channel32(a, plane, channels, 1, p);
    const __m512i c2 = channel32(a, plane, channels, 2, p), c3 = channel32(a, plane, channels, 3, p);
    const __m512i w01 = _mm512_xor_si512(_mm512_or_si512(_mm512_and_si512(c0, low_byte16), _mm512_slli_epi16(c1, 8)), flip01);
    const __m512i w23 = _mm512_xor_si512(_mm512_or_si512(_mm512_and_si512(c2, low_byte16), _mm512_slli_epi16(c3, 8)), flip23);
    _mm512_storeu_si512(out + 4 * p, _mm512_permutex2var_epi16(w01, lo_order, w23));
    _mm512_storeu_si512(out + 4 * p + 64, _mm512_permutex2var_epi16(w01, hi_order, w23));
  }
  const __m512i low_byte = _mm512_set1_epi32(0xFF), flip = _mm512_set1_epi32(offset ? 0x80 : 0);
  for (; p + 16 <= count; p += 16) {
    __m512i word = _mm512_setzero_si512();
    for (int64_t j = 0; j < channels; ++j) {
      const __m512i v = _mm512_cvtepi16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(a + j * plane + p)));
      word = _mm512_or_si512(word, _mm512_slli_epi32(_mm512_and_si512(_mm512_xor_si512(v, flip), low_byte), 8 * j));
    }
    _mm512_storeu_si512(out + 4 * p, word);
  }
  for (; p < count; ++p)
    for (int64_t j = 0; j < 4; ++j) out[4 * p + j] = j < channels ? static_cast<uint8_t>(a[j * plane + p] + (offset ? 128 : 0)) : 0;
}
#endif

}  // namespace

void pack_input_quads(const int16_t* x, int64_t plane, int64_t in_channels, bool offset, int64_t p0, int64_t count,
                      uint8_t* xq, Isa isa) {
  const int64_t padded = padded_pixels(count);
  for (int64_t k = 0; k < channel_quads(in_channels); ++k) {
    uint8_t* out = xq + k * padded * 4;
#ifdef PROM_X86
    if (isa == Isa::kAvx512Vnni) pack_quads_avx512(x + p0, plane, count, in_channels, offset, k, out);
    else pack_quads_portable(x + p0, plane, count, in_channels, offset, k, out);
#else
    (void)isa;
    pack_quads_portable(x + p0, plane, count, in_channels, offset, k, out);
#endif
    std::fill(out + 4 * count, out + 4 * padded, 0);
  }
}

QuadWeights pack_weight_quads(const int8_t* w, int64_t out_channels, int64_t in_channels, bool offset) {
  const int64_t blocks = (out_channels + kTileRows - 1) / kTileRows, quads = channel_quads(in_channels);
  QuadWeights packed{std::vector<int32_t>(blocks * quads * kTileRows, 0), std::vector<int32_t>(blocks * kTileRows, 0)};
  for (int64_t row = 0; row < out_channels; ++row) {
    int64_t sum = 0;
    for (int64_t k = 0; k < quads; ++k) {
      uint32_t word = 0;
      for (int64_t j = 0; j < 4 && 4 * k + j < in_channels; ++j) {
        const int8_t v = w[row * in_channels + 4 * k + j];
        sum += v;
        word |= static_cast<uint32_t>(static_cast<uint8_t>(v)) << (8 * j);
      }
      packed.words[((row / kTileRows) * quads + k) * kTileRows + row % kTileRows] = static_cast<int32_t>(word);
    }
    packed.start[row] = offset ? static_cast<int32_t>(-128 * sum) : 0;
  }
  return packed;
}

namespace {

void tile_portable(const int16_t* xp, int64_t padded, int64_t pairs, const int32_t* weights, int64_t p0, int vectors,
                   int32_t* acc) {
  const int64_t n = 16 * vectors;
  for (int64_t r = 0; r < kTileRows; ++r) std::fill(acc + r * kTilePixels, acc + r * kTilePixels + n, 0);
  for (int64_t k = 0; k < pairs; ++k) {
    const int16_t* row = xp + (k * padded + p0) * 2;
    for (int64_t r = 0; r < kTileRows; ++r) {
      const uint32_t word = static_cast<uint32_t>(weights[k * kTileRows + r]);
      const int32_t w0 = static_cast<int16_t>(word & 0xFFFF), w1 = static_cast<int16_t>(word >> 16);
      int32_t* a = acc + r * kTilePixels;
      for (int64_t j = 0; j < n; ++j) a[j] += w0 * row[2 * j] + w1 * row[2 * j + 1];
    }
  }
}

void quad_tile_portable(const uint8_t* xq, int64_t padded, int64_t quads, const int32_t* weights, const int32_t* start,
                        int64_t p0, int vectors, int32_t* acc) {
  const int64_t n = 16 * vectors;
  for (int64_t r = 0; r < kTileRows; ++r) std::fill(acc + r * kTilePixels, acc + r * kTilePixels + n, start[r]);
  for (int64_t k = 0; k < quads; ++k) {
    const uint8_t* row = xq + (k * padded + p0) * 4;
    for (int64_t r = 0; r < kTileRows; ++r) {
      const uint32_t word = static_cast<uint32_t>(weights[k * kTileRows + r]);
      int32_t* a = acc + r * kTilePixels;
      for (int64_t j = 0; j < n; ++j)
        for (int64_t b = 0; b < 4; ++b)
          a[j] += static_cast<int8_t>(static_cast<uint8_t>(word >> (8 * b))) * static_cast<int32_t>(row[4 * j + b]);
    }
  }
}

#ifdef PROM_X86
// 4 rows x 16 pixels per pass: 8 accumulators, 2 input vectors and a broadcast weight pair in 16 ymm.
__attribute__((target("avx2"))) void tile_avx2(const int16_t* xp, int64_t padded, int64_t pairs, const int32_t* weights,
                                               int64_t p0, int vectors, int32_t* acc) {
  for (int v = 0; v < vectors; ++v) {
    __m256i a[kTileRows][2];
    for (auto& row : a) row[0] = row[1] = _mm256_setzero_si256();
    const int16_t* x = xp + (p0 + 16 * v) * 2;
    for (int64_t k = 0; k < pairs; ++k) {
      const __m256i* row = reinterpret_cast<const __m256i*>(x + k * padded * 2);
      const __m256i x0 = _mm256_loadu_si256(row), x1 = _mm256_loadu_si256(row + 1);
      const int32_t* w = weights + k * kTileRows;
      for (int r = 0; r < kTileRows; ++r) {
        const __m256i b = _mm256_set1_epi32(w[r]);
        a[r][0] = _mm256_add_epi32(a[r][0], _mm256_madd_epi16(x0, b));
        a[r][1] = _mm256_add_epi32(a[r][1], _mm256_madd_epi16(x1, b));
      }
    }
    for (int r = 0; r < kTileRows; ++r) {
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(acc + r * kTilePixels + 16 * v), a[r][0]);
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(acc + r * kTilePixels + 16 * v + 8), a[r][1]);
    }
  }
}

// The two AVX-512 VNNI dot products: vpdpwssd adds the 2 products of int16 pairs to each int32 lane,
// vpdpbusd the 4 products of unsigned by signed bytes; neither saturates.
#define PROM_VNNI __attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni")))
struct PairDot {
  using Code = int16_t;
  static constexpr int kPerLane = 2;  // channels per int32 lane
  PROM_VNNI static __m512i dot(__m512i acc, __m512i x, __m512i w) {
    asm("vpdpwssd %2, %1, %0" : "+v"(acc) : "v"(x), "v"(w));  // see QuadDot
    return acc;
  }
};
struct QuadDot {
  using Code = uint8_t;
  static constexpr int kPerLane = 4;
  PROM_VNNI static __m512i dot(__m512i acc, __m512i x, __m512i w) {
    // Written as asm with the accumulator tied ("+v"): GCC 12 compiles _mm512_dpbusd_epi32 in the
    // 16-accumulator tile with two register moves per product and reloads (a third of the loop).
    asm("vpdpbusd %2, %1, %0" : "+v"(acc) : "v"(x), "v"(w));
    return acc;
  }
};

// 4 rows x V vectors of 16 pixels: up to 16 zmm accumulators, each row's starting at start[r] (0
// without `start`), over `groups` packed channel groups (pairs or quads).
template <typename Dot, int V>
PROM_VNNI __attribute__((always_inline)) inline void accumulate_tile_avx512(const typename Dot::Code* packed, int64_t padded,
                                                                            int64_t groups, const int32_t* weights,
                                                                            const int32_t* start, int64_t p0,
                                                                            __m512i (&a)[kTileRows][V]) {
  for (int r = 0; r < kTileRows; ++r)
    for (auto& v : a[r]) v = _mm512_set1_epi32(start != nullptr ? start[r] : 0);
  const typename Dot::Code* x = packed + p0 * Dot::kPerLane;
  for (int64_t k = 0; k < groups; ++k) {
    const typename Dot::Code* row = x + k * padded * Dot::kPerLane;
    __m512i xv[V];
    for (int v = 0; v < V; ++v) xv[v] = _mm512_loadu_si512(row + 16 * Dot::kPerLane * v);
    const int32_t* w = weights + k * kTileRows;
    for (int r = 0; r < kTileRows; ++r) {
      const __m512i b = _mm512_set1_epi32(w[r]);
      for (int v = 0; v < V; ++v) a[r][v] = Dot::dot(a[r][v], xv[v], b);
    }
  }
}

template <typename Dot, int V>
PROM_VNNI void tile_avx512(const typename Dot::Code* packed, int64_t padded, int64_t groups, const int32_t* weights,
                           const int32_t* start, int64_t p0, int32_t* acc) {
  __m512i a[kTileRows][V];
  accumulate_tile_avx512<Dot, V>(packed, padded, groups, weights, start, p0, a);
  for (int r = 0; r < kTileRows; ++r)
    for (int v = 0; v < V; ++v) _mm512_storeu_si512(acc + r * kTilePixels + 16 * v, a[r][v]);
}

// A tile's accumulators requantized in registers (quant::arith::requantize, quant/requantize_avx512.h),
// narrowed to int16 and stored with the tail of valid pixels masked.
template <int V>
PROM_VNNI __attribute__((always_inline)) inline void store_requantized_avx512(__m512i (&a)[kTileRows][V], const TileOutput& o) {
  for (int r = 0; r < kTileRows && r < o.rows; ++r) {
    const AccLanes512 l = o.folded != nullptr ? acc_lanes512(o.folded[r], o.lo, o.hi)
                                              : acc_lanes512(o.acc_shift, o.bias[r], o.multiplier[r], o.right_shift[r], o.lo, o.hi);
    for (int v = 0; v < V && 16 * v < o.pixels; v += 2) {  // two vectors per requantization (an odd last one twice)
      const __m512i codes = requantize_acc32<false>(a[r][v], a[r][v + 1 < V ? v + 1 : v], l);
      const int64_t count = std::min<int64_t>(o.pixels - 16 * v, 16 * (V - v));
      if (o.out_bytes != nullptr) store_code_bytes32(o.out_bytes + r * o.plane + 16 * v, codes, o.byte_offset, count);
      else store_codes32(o.out + r * o.plane + 16 * v, codes, count);
    }
  }
}

template <typename Dot, int V>
PROM_VNNI void tile_requantized_avx512(const typename Dot::Code* packed, int64_t padded, int64_t groups,
                                       const int32_t* weights, const int32_t* start, int64_t p0, const TileOutput& o) {
  __m512i a[kTileRows][V];
  accumulate_tile_avx512<Dot, V>(packed, padded, groups, weights, start, p0, a);
  store_requantized_avx512<V>(a, o);
}
#undef PROM_VNNI

// The tile functions above for 1 to 4 vectors of pixels.
template <typename Dot>
void tile_avx512(const typename Dot::Code* packed, int64_t padded, int64_t groups, const int32_t* weights,
                 const int32_t* start, int64_t p0, int vectors, int32_t* acc) {
  switch (vectors) {
    case 1: return tile_avx512<Dot, 1>(packed, padded, groups, weights, start, p0, acc);
    case 2: return tile_avx512<Dot, 2>(packed, padded, groups, weights, start, p0, acc);
    case 3: return tile_avx512<Dot, 3>(packed, padded, groups, weights, start, p0, acc);
    default: return tile_avx512<Dot, 4>(packed, padded, groups, weights, start, p0, acc);
  }
}
template <typename Dot>
void tile_requantized_avx512(const typename Dot::Code* packed, int64_t padded, int64_t groups, const int32_t* weights,
                             const int32_t* start, int64_t p0, int vectors, const TileOutput& o) {
  switch (vectors) {
    case 1: return tile_requantized_avx512<Dot, 1>(packed, padded, groups, weights, start, p0, o);
    case 2: return tile_requantized_avx512<Dot, 2>(packed, padded, groups, weights, start, p0, o);
    case 3: return tile_requantized_avx512<Dot, 3>(packed, padded, groups, weights, start, p0, o);
    default: return tile_requantized_avx512<Dot, 4>(packed, padded, groups, weights, start, p0, o);
  }
}
#endif

// Requantization runs in registers when the path is AVX-512 VNNI and every row's multiplier takes
// the vector rounding (as requantize's own rule).
bool requantize_in_registers(const TileOutput& o, Isa isa) {
  bool fused = isa == Isa::kAvx512Vnni && o.lo >= INT16_MIN && o.hi <= INT16_MAX;
  for (int64_t r = 0; r < o.rows && fused; ++r)
    fused = o.multiplier[r] != 0 && o.right_shift[r] >= 1 && o.right_shift[r] <= 62;
  return fused;
}

void requantize_tile(const int32_t* acc, const TileOutput& o, Isa isa) {
  alignas(64) int16_t codes[kTilePixels];  // a row's codes on their way to out_bytes
  for (int64_t r = 0; r < o.rows; ++r) {
    int16_t* row = o.out_bytes != nullptr ? codes : o.out + r * o.plane;
    requantize(acc + r * kTilePixels, o.pixels, o.acc_shift, o.bias[r], o.multiplier[r], o.right_shift[r], o.lo, o.hi,
               row, isa);
    if (o.out_bytes == nullptr) continue;
    for (int64_t j = 0; j < o.pixels; ++j)
      o.out_bytes[r * o.plane + j] = static_cast<uint8_t>(codes[j] + (o.byte_offset ? 128 : 0));
  }
}

}  // namespace

void pointwise_tile_requantized(const int16_t* xp, int64_t padded, int64_t pairs, const int32_t* weights, int64_t p0,
                                int vectors, const TileOutput& o, Isa isa) {
#ifdef PROM_X86
  if (requantize_in_registers(o, isa))
    return tile_requantized_avx512<PairDot>(xp, padded, pairs, weights, nullptr, p0, vectors, o);
#endif
  alignas(64) int32_t acc[kTileRows * kTilePixels];
  pointwise_tile(xp, padded, pairs, weights, p0, vectors, acc, isa);
  requantize_tile(acc, o, isa);
}

void pointwise_quad_tile(const uint8_t* xq, int64_t padded, int64_t quads, const int32_t* weights, const int32_t* start,
                         int64_t p0, int vectors, int32_t* acc, Isa isa) {
#ifdef PROM_X86
  if (isa == Isa::kAvx512Vnni) return tile_avx512<QuadDot>(xq, padded, quads, weights, start, p0, vectors, acc);
#endif
  quad_tile_portable(xq, padded, quads, weights, start, p0, vectors, acc);
}

void pointwise_quad_tile_requantized(const uint8_t* xq, int64_t padded, int64_t quads, const int32_t* weights,
                                     const int32_t* start, int64_t p0, int vectors, const TileOutput& o, Isa isa) {
#ifdef PROM_X86
  if (requantize_in_registers(o, isa))
    return tile_requantized_avx512<QuadDot>(xq, padded, quads, weights, start, p0, vectors, o);
#endif
  alignas(64) int32_t acc[kTileRows * kTilePixels];
  pointwise_quad_tile(xq, padded, quads, weights, start, p0, vectors, acc, isa);
  requantize_tile(acc, o, isa);
}

ClassifierQuads pack_classifier_quads(const int8_t* w, int64_t classes, int64_t in_channels, bool offset) {
  const int64_t quads = channel_quads(in_channels), padded = padded_pixels(classes);
  ClassifierQuads q{std::vector<int32_t>(quads * padded, 0), std::vector<int32_t>(padded, 0), classes, in_channels, offset};
  for (int64_t c = 0; c < classes; ++c) {
    int64_t sum = 0;
    for (int64_t i = 0; i < in_channels; ++i) {
      sum += w[c * in_channels + i];
      q.words[(i / 4) * padded + c] |= static_cast<int32_t>(static_cast<uint32_t>(static_cast<uint8_t>(w[c * in_channels + i]))
                                                            << (8 * (i % 4)));
    }
    q.start[c] = offset ? static_cast<int32_t>(-128 * sum) : 0;
  }
  return q;
}

namespace {

// The image's quad k as the unsigned bytes vpdpbusd broadcasts (codes offset by +128 when signed).
uint32_t image_quad(const ClassifierQuads& q, const int16_t* x, int64_t x_stride, int64_t k) {
  uint32_t word = 0;
  for (int64_t j = 0; j < 4 && 4 * k + j < q.in_channels; ++j)
    word |= static_cast<uint32_t>(static_cast<uint8_t>(x[(4 * k + j) * x_stride] + (q.offset ? 128 : 0))) << (8 * j);
  return word;
}

#ifdef PROM_X86
// 16 vectors of classes (256) per pass: 16 accumulators, the broadcast quad and one weight vector.
__attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni"))) void classifier_quads_avx512(
    const ClassifierQuads& q, const int16_t* x, int64_t x_stride, int32_t* acc) {
  const int64_t quads = channel_quads(q.in_channels), padded = padded_pixels(q.classes);
  thread_local std::vector<uint32_t> image;
  image.resize(quads);
  for (int64_t k = 0; k < quads; ++k) image[k] = image_quad(q, x, x_stride, k);
  constexpr int64_t kBlock = 16;
  for (int64_t v0 = 0; v0 < padded / 16; v0 += kBlock) {
    const int64_t vectors = std::min(kBlock, padded / 16 - v0);
    __m512i a[kBlock];
    for (int64_t v = 0; v < vectors; ++v) a[v] = _mm512_loadu_si512(q.start.data() + 16 * (v0 + v));
    for (int64_t k = 0; k < quads; ++k) {
      const __m512i codes = _mm512_set1_epi32(static_cast<int32_t>(image[k]));
      const int32_t* w = q.words.data() + k * padded + 16 * v0;
      for (int64_t v = 0; v < vectors; ++v) a[v] = QuadDot::dot(a[v], codes, _mm512_loadu_si512(w + 16 * v));
    }
    for (int64_t v = 0; v < vectors; ++v) _mm512_storeu_si512(acc + 16 * (v0 + v), a[v]);
  }
}
#endif

}  // namespace

void classifier_quads(const ClassifierQuads& q, const int16_t* x, int64_t x_stride, int32_t* acc, Isa isa) {
#ifdef PROM_X86
  if (isa == Isa::kAvx512Vnni) return classifier_quads_avx512(q, x, x_stride, acc);
#endif
  const int64_t padded = padded_pixels(q.classes);
  std::copy(q.start.begin(), q.start.end(), acc);
  for (int64_t k = 0; k < channel_quads(q.in_channels); ++k) {
    const uint32_t codes = image_quad(q, x, x_stride, k);
    for (int64_t c = 0; c < q.classes; ++c)
      for (int64_t j = 0; j < 4; ++j)
        acc[c] += static_cast<int32_t>((codes >> (8 * j)) & 0xFF) *
                  static_cast<int8_t>(static_cast<uint8_t>(static_cast<uint32_t>(q.words[k * padded + c]) >> (8 * j)));
  }
}

void pointwise_tile(const int16_t* xp, int64_t padded, int64_t pairs, const int32_t* weights, int64_t p0, int vectors,
                    int32_t* acc, Isa isa) {
#ifdef PROM_X86
  if (isa == Isa::kAvx512Vnni) return tile_avx512<PairDot>(xp, padded, pairs, weights, nullptr, p0, vectors, acc);
  if (isa == Isa::kAvx2) return tile_avx2(xp, padded, pairs, weights, p0, vectors, acc);
#endif
  tile_portable(xp, padded, pairs, weights, p0, vectors, acc);
}

}  // namespace prom::infer::kernels
