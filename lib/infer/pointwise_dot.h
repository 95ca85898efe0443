// Dense dot-product kernels for 1x1 convolutions, ternary and int8 weights alike: the fast paths the
// engine runs on CPUs with AVX2 or AVX-512 VNNI. Inputs are int16 codes with pairs of input channels
// interleaved per pixel, so one madd (AVX2) or vpdpwssd (AVX-512 VNNI) instruction multiplies two
// channels in every pixel lane. Products and sums are exact int32 (|x| <= 255, |w| <= 127, and the
// engine refuses layers whose worst-case sum does not fit), so every kernel here gives the reference
// kernels' integers: the multiplication-free ternary kernel (kernels.h) stays what the op counts and
// the energy report describe, and tests check the fast paths against it bit for bit.
#pragma once
#include <cstdint>
#include <vector>

#include "infer/kernels.h"
#include "quant/arithmetic.h"

namespace prom::infer::kernels {

constexpr int64_t kTileRows = 4;     // output channels per tile
constexpr int64_t kTilePixels = 64;  // pixels per tile (4 vectors of 16)
inline int64_t padded_pixels(int64_t pixels) { return (pixels + 15) / 16 * 16; }
inline int64_t channel_pairs(int64_t channels) { return (channels + 1) / 2; }

// Pixels [p0, p0 + count) of planes x [in_channels][plane] -> xp [pair][padded_pixels(count)][2]:
// xp[k][p] = (x[2k][p0 + p], x[2k+1][p0 + p]), zero beyond in_channels and beyond count. The engine
// packs one block of pixels at a time, just before the tiles that read it (the block stays in cache).
void pack_input_pairs(const int16_t* x, int64_t plane, int64_t in_channels, int64_t p0, int64_t count, int16_t* xp);

// Weights w [out_channels][in_channels] -> [row block][pair][kTileRows] int32 words, each holding
// (w[2k], w[2k+1]) as two int16 halves (low half first); rows beyond out_channels are zero.
std::vector<int32_t> pack_weight_pairs(const int8_t* w, int64_t out_channels, int64_t in_channels);

// One tile: acc[r * kTilePixels + j] = sum_i w[row0 + r][i] * x[i][p0 + j] for r < kTileRows and
// j < 16 * vectors (1 <= vectors <= 4), where `weights` points at the row block of row0 in the packed
// weights and xp at the packed input (row length `padded` pixels).
void pointwise_tile(const int16_t* xp, int64_t padded, int64_t pairs, const int32_t* weights, int64_t p0, int vectors,
                    int32_t* acc, Isa isa);

// Where a tile's requantized codes go, and how (quant::arith::requantize per value, channel r of the
// tile using bias[r], multiplier[r], right_shift[r]).
struct TileOutput {
  const int32_t *bias, *multiplier, *right_shift;  // at the tile's first output channel
  int32_t acc_shift, lo, hi;
  int16_t* out;          // the tile's first output channel's plane, at pixel p0
  int64_t plane;         // values per output plane
  int64_t rows, pixels;  // valid output channels (<= kTileRows) and pixels (<= 16 * vectors)
  // The tile's channels' requantizations folded (quant::arith::fold_requantization), precomputed
  // where every channel of the layer folds; nullptr: AVX-512 VNNI folds (or not) per tile.
  const quant::arith::FoldedRequant* folded = nullptr;
  // Where set, the codes go here as bytes instead of to `out` (same plane layout): unsigned codes as
  // they are, signed ones + 128 (byte_offset), as the 8-bit kernels read them. conv_expand_depthwise
  // writes its block of expanded planes so, for the depthwise layer to read from cache.
  uint8_t* out_bytes = nullptr;
  bool byte_offset = false;
};

// pointwise_tile, then requantization into `out`. AVX-512 VNNI requantizes from the registers.
void pointwise_tile_requantized(const int16_t* xp, int64_t padded, int64_t pairs, const int32_t* weights, int64_t p0,
                                int vectors, const TileOutput& out, Isa isa);

// The 8-bit path (AVX-512 VNNI): vpdpbusd multiplies 4 unsigned bytes by 4 signed bytes in every
// int32 lane, twice vpdpwssd's products per instruction from half its input bytes. Inputs are packed
// as unsigned bytes, four channels per pixel: uint8 codes as they are, int8 codes offset by +128;
// each output channel's accumulators then start at -128 * sum(w) instead of 0, so the int32 sums
// (modular on the way, exact at the end as the engine's range check proves) are the integers the
// int16 path and the reference kernels compute.
inline int64_t channel_quads(int64_t channels) { return (channels + 3) / 4; }

// Pixels [p0, p0 + count) of planes x [in_channels][plane] -> xq [quad][padded_pixels(count)][4]
// bytes: xq[k][p][j] = x[4k + j][p0 + p] + (offset ? 128 : 0), zero beyond in_channels and count;
// the same bytes on every path.
void pack_input_quads(const int16_t* x, int64_t plane, int64_t in_channels, bool offset, int64_t p0, int64_t count,
                      uint8_t* xq, Isa isa);

// Weights w [out_channels][in_channels] -> words [row block][quad][kTileRows], each holding
// (w[4k], ..., w[4k+3]) as bytes (lowest first), and `start` [row blocks * kTileRows]: the
// accumulators' first value per output channel, -128 * sum(w) when the input is offset, else 0.
struct QuadWeights {
  std::vector<int32_t> words, start;
};
QuadWeights pack_weight_quads(const int8_t* w, int64_t out_channels, int64_t in_channels, bool offset);

// pointwise_tile and pointwise_tile_requantized on the 8-bit layout: `weights` and `start` point at
// the row block of the tile's first output channel. AVX-512 VNNI, or a portable loop on other paths.
void pointwise_quad_tile(const uint8_t* xq, int64_t padded, int64_t quads, const int32_t* weights, const int32_t* start,
                         int64_t p0, int vectors, int32_t* acc, Isa isa);
void pointwise_quad_tile_requantized(const uint8_t* xq, int64_t padded, int64_t quads, const int32_t* weights,
                                     const int32_t* start, int64_t p0, int vectors, const TileOutput& out, Isa isa);

// The classifier of one image on the 8-bit layout (AVX-512 VNNI): classes are the vector lanes,
// and each quad of the image's codes, broadcast as 4 unsigned bytes, meets every class's 4 signed
// weights in one vpdpbusd lane; one image fills whole vectors (the tiles above would leave 3 of 4
// rows empty). Weights w [classes][in_channels] -> words [quad][padded_pixels(classes)], each
// holding (w[c][4k], ..., w[c][4k+3]) as bytes; `start` per class is -128 * sum(w[c]) when the
// codes are offset by +128 (signed inputs), else 0, as pack_weight_quads.
struct ClassifierQuads {
  std::vector<int32_t> words, start;
  int64_t classes = 0, in_channels = 0;
  bool offset = false;
};
ClassifierQuads pack_classifier_quads(const int8_t* w, int64_t classes, int64_t in_channels, bool offset);

// acc[c] = sum_i w[c][i] * x[i * x_stride] for c < classes (acc holds padded_pixels(classes)
// values): the image's codes are `x_stride` apart ([channel][image] activations). The same int32
// sums on every path (portable: a scalar loop).
void classifier_quads(const ClassifierQuads& q, const int16_t* x, int64_t x_stride, int32_t* acc, Isa isa);

}  // namespace prom::infer::kernels
