// The integer kernels. Activations are planes of int16 holding uint8 or int8 values (one layout for
// both signs), accumulators int32. Each kernel has a portable version and, where it pays, AVX2 and
// AVX-512 versions chosen at run time (`isa`: a kernel without a version for it runs the next lower
// one); tests run every path against the portable one.
#pragma once
#include <cstdint>
#include <vector>

namespace prom::infer::kernels {

// The instruction sets the engine dispatches on at run time, from slowest to fastest.
enum class Isa { kPortable, kAvx2, kAvx512Vnni };
Isa best_isa();  // the fastest this CPU runs
const char* isa_name(Isa isa);

// Two int16 values in one int32 word, `lo` in the low half: the operand layout of madd / vpdpwssd,
// which multiply each lane's pair of int16 by another pair and add both products.
inline int32_t int16_pair(int32_t lo, int32_t hi) {
  return static_cast<int32_t>(static_cast<uint32_t>(static_cast<uint16_t>(lo)) |
                              (static_cast<uint32_t>(static_cast<uint16_t>(hi)) << 16));
}

// Ternary 1x1 convolution for one output channel: acc[p] = sum_{i in plus} x[i][p] - sum_{i in minus} x[i][p].
// Additions and subtractions only. `x` holds `in_channels` planes of `pixels` values.
void ternary_pointwise(const int16_t* x, int64_t pixels, const int32_t* plus, int64_t n_plus, const int32_t* minus,
                       int64_t n_minus, int32_t* acc, Isa isa);

// int8 1x1 convolution for one output channel: acc[p] = sum_i w[i] * x[i][p]. The reference (portable)
// kernel; the AVX2 and AVX-512 paths run 1x1 layers on the dot-product tiles of pointwise_dot.h.
void int8_pointwise(const int16_t* x, int64_t pixels, int64_t in_channels, const int8_t* w, int32_t* acc);

// One k x k input plane of a stem/depthwise convolution, accumulated: acc[oy][ox] +=
// sum_{ky,kx} w[ky*k + kx] * x[(oy*stride + ky) * width + ox*stride + kx], where x is the zero-padded plane
// (row length `width`) and acc holds out_h x out_w values. The AVX2 and AVX-512 versions for 3x3,
// stride 1 or 2, read up to kPlaneSlack values past the plane's last row: callers leave them
// readable (and initialized).
constexpr int64_t kPlaneSlack = 64;
void conv_plane(const int16_t* x, int64_t width, const int8_t* w, int64_t k, int64_t stride, int64_t out_h,
                int64_t out_w, int32_t* acc, Isa isa);

// quant::arith::requantize's parameters for one output channel.
struct PlaneRequant {
  int32_t acc_shift, bias, multiplier, right_shift, lo, hi;
};

// One plane of a depthwise convolution (one input plane per output plane), requantized: out =
// requantize(conv_plane of x into zeros). AVX-512 VNNI requantizes 3x3 planes (stride 1 or 2) in
// registers; other cases run conv_plane into `acc` (out_h x out_w scratch) and requantize. The same
// codes on every path. Reads kPlaneSlack values past the plane, as conv_plane.
void depthwise_plane(const int16_t* x, int64_t width, const int8_t* w, int64_t k, int64_t stride, int64_t out_h,
                     int64_t out_w, const PlaneRequant& r, int32_t* acc, int16_t* out, Isa isa);

// Depthwise 3x3 planes on 8-bit codes (AVX-512 VNNI, vpdpbusd, stride 1 or 2): the codes as bytes,
// uint8 as they are and int8 offset by +128 (`offset`), in a padded plane of row length `width`
// whose padding is 0, or 128 with `offset`, followed by kByteSlack readable bytes. The same codes
// as depthwise_plane. depthwise_bytes_apply says where it runs; elsewhere depthwise_plane3_bytes
// returns false and computes nothing.
constexpr int64_t kByteSlack = 192;
bool depthwise_bytes_apply(int64_t stride, const PlaneRequant& r, Isa isa);
bool depthwise_plane3_bytes(const uint8_t* x, int64_t width, const int8_t* w, bool offset, int64_t stride,
                            int64_t out_h, int64_t out_w, const PlaneRequant& r, int16_t* out, Isa isa);
// The same summed over `planes` (1 to 4) padded byte planes, plane_stride bytes apart, with weights
// w[plane][9]: a stem output channel, as conv_planes_requantized (where it runs: as above).
bool conv_planes3_bytes(const uint8_t* x, int64_t plane_stride, int64_t planes, int64_t width, const int8_t* w,
                        bool offset, int64_t stride, int64_t out_h, int64_t out_w, const PlaneRequant& r, int16_t* out,
                        Isa isa);
// copy_rows into bytes (+128 with `offset`), e.g. a plane into its padded byte copy.
void copy_rows_bytes(const int16_t* src, int64_t src_stride, int64_t rows, int64_t cols, uint8_t* dst,
                     int64_t dst_stride, bool offset, Isa isa);

// The sum of conv_plane over `planes` zero-padded input planes, plane_stride values apart, with
// weights w[plane][k * k], requantized into out (out_h x out_w): a stem output channel. AVX-512 VNNI
// sums and requantizes 3x3 convolutions (stride 1 or 2, up to 4 planes) in registers; other cases
// accumulate into `acc` (out_h x out_w scratch) and requantize. Reads kPlaneSlack values past each
// plane, as conv_plane. depthwise_plane is the case of one plane.
void conv_planes_requantized(const int16_t* x, int64_t plane_stride, int64_t planes, int64_t width, const int8_t* w,
                             int64_t k, int64_t stride, int64_t out_h, int64_t out_w, const PlaneRequant& r,
                             int32_t* acc, int16_t* out, Isa isa);

// rows x cols values from src (rows `src_stride` apart) to dst (rows `dst_stride` apart), e.g. a
// plane into its zero-padded copy.
void copy_rows(const int16_t* src, int64_t src_stride, int64_t rows, int64_t cols, int16_t* dst, int64_t dst_stride,
               Isa isa);

// The same over a batch with images innermost, for small planes (vectors run over images, not over a
// few output columns): x holds the zero-padded planes as [row][column][image] (row length `width`),
// acc is [out_h][out_w][image], accumulated.
void conv_plane_batched(const int16_t* x, int64_t width, int64_t images, const int8_t* w, int64_t k, int64_t stride,
                        int64_t out_h, int64_t out_w, int32_t* acc, Isa isa);

// acc[p] requantized with quant::arith::requantize (one rounding, ties to even) into out; the AVX2
// and AVX-512 versions compute the same int64 products and rounding shifts 4 or 8 lanes at a time.
void requantize(const int32_t* acc, int64_t n, int32_t acc_shift, int32_t bias, int32_t multiplier,
                int32_t right_shift, int32_t lo, int32_t hi, int16_t* out, Isa isa);


// Residual add: out[i] = quant::arith::add_requantize(a[i], b[i], mult_a, mult_b, shift, lo, hi).
void add_requantize(const int16_t* a, const int16_t* b, int64_t n, int64_t mult_a, int64_t mult_b, int shift, int32_t lo,
                    int32_t hi, int16_t* out, Isa isa);

}  // namespace prom::infer::kernels
