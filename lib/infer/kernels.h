// The integer kernels. Activations are planes of int16 holding uint8 or int8 values (one layout for
// both signs), accumulators int32. Each kernel has a portable version and, where it pays, an AVX2
// version chosen at run time; tests run both.
#pragma once
#include <cstdint>
#include <vector>

namespace prom::infer::kernels {

// Ternary 1x1 convolution for one output channel: acc[p] = sum_{i in plus} x[i][p] - sum_{i in minus} x[i][p].
// Additions and subtractions only. `x` holds `in_channels` planes of `pixels` values.
void ternary_pointwise(const int16_t* x, int64_t pixels, const int32_t* plus, int64_t n_plus, const int32_t* minus,
                       int64_t n_minus, int32_t* acc, bool avx2);

// int8 1x1 convolution for one output channel: acc[p] = sum_i w[i] * x[i][p].
void int8_pointwise(const int16_t* x, int64_t pixels, int64_t in_channels, const int8_t* w, int32_t* acc, bool avx2);

// One k x k input plane of a stem/depthwise convolution, accumulated: acc[oy][ox] +=
// sum_{ky,kx} w[ky*k + kx] * x[(oy*stride + ky) * width + ox*stride + kx], where x is the zero-padded plane
// (row length `width`) and acc holds out_h x out_w values.
void conv_plane(const int16_t* x, int64_t width, const int8_t* w, int64_t k, int64_t stride, int64_t out_h,
                int64_t out_w, int32_t* acc, bool avx2);

// The same over a batch with images innermost, for small planes (vectors run over images, not over a
// few output columns): x holds the zero-padded planes as [row][column][image] (row length `width`),
// acc is [out_h][out_w][image], accumulated.
void conv_plane_batched(const int16_t* x, int64_t width, int64_t images, const int8_t* w, int64_t k, int64_t stride,
                        int64_t out_h, int64_t out_w, int32_t* acc, bool avx2);

// acc[p] requantized with quant::arith::requantize (one rounding, ties to even) into out; the AVX2
// version computes the same int64 products and rounding shifts 4 lanes at a time.
void requantize(const int32_t* acc, int64_t n, int32_t acc_shift, int32_t bias, int32_t multiplier,
                int32_t right_shift, int32_t lo, int32_t hi, int16_t* out, bool avx2);

bool cpu_has_avx2();

}  // namespace prom::infer::kernels
