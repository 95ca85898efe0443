#include "data/resample.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

namespace prom::data {
namespace {

constexpr int kPrecisionBits = 32 - 8 - 2;  // Pillow's PRECISION_BITS for 8-bit images

// The filter taps of a run of output pixels along one axis (Pillow's precompute_coeffs followed by
// normalize_coeffs_8bpc), for output indices [first, first + count).
struct Taps {
  int ksize = 0;
  std::vector<int> start, length;  // first input index and number of taps, per output pixel
  std::vector<int32_t> weights;    // ksize per output pixel, fixed point
};

Taps make_taps(int in_size, int out_size, int first, int count) {
  const double scale = static_cast<double>(in_size) / out_size;
  const double filterscale = std::max(scale, 1.0);
  const double support = 1.0 * filterscale;  // the bilinear (triangle) filter has support 1
  Taps t;
  t.ksize = static_cast<int>(std::ceil(support)) * 2 + 1;
  t.start.resize(count);
  t.length.resize(count);
  t.weights.assign(static_cast<size_t>(count) * t.ksize, 0);
  std::vector<double> w(t.ksize);
  for (int i = 0; i < count; ++i) {
    const int xx = first + i;
    const double center = (xx + 0.5) * scale;
    const double ss = 1.0 / filterscale;
    int xmin = static_cast<int>(center - support + 0.5);  // truncation, as in Pillow
    xmin = std::max(xmin, 0);
    int xmax = static_cast<int>(center + support + 0.5);
    xmax = std::min(xmax, in_size) - xmin;
    double ww = 0.0;
    for (int x = 0; x < xmax; ++x) {
      double d = std::abs((x + xmin - center + 0.5) * ss);
      w[x] = d < 1.0 ? 1.0 - d : 0.0;
      ww += w[x];
    }
    for (int x = 0; x < xmax; ++x) {
      double k = ww != 0.0 ? w[x] / ww : w[x];
      t.weights[static_cast<size_t>(i) * t.ksize + x] =
          static_cast<int32_t>(k < 0 ? -0.5 + k * (1 << kPrecisionBits) : 0.5 + k * (1 << kPrecisionBits));
    }
    t.start[i] = xmin;
    t.length[i] = xmax;
  }
  return t;
}

inline uint8_t clip8(int32_t v) {
  v >>= kPrecisionBits;
  return static_cast<uint8_t>(v < 0 ? 0 : (v > 255 ? 255 : v));
}

// src rows are input rows offset by `row0`; resampled vertically with `taps` into `out`. Row-at-a-time
// accumulation so the inner loop runs along contiguous memory and vectorises (an AVX2 clone where the
// CPU has it: 32-bit multiplies are slow in baseline SSE2).
__attribute__((target_clones("avx2", "default"))) void vertical(const cv::Mat& src, int row0, const Taps& taps,
                                                                cv::Mat& out) {
  const int out_h = static_cast<int>(taps.start.size());
  const int n = src.cols * 3;
  out.create(out_h, src.cols, CV_8UC3);
  thread_local std::vector<int32_t> acc;
  acc.resize(static_cast<size_t>(n));
  for (int yy = 0; yy < out_h; ++yy) {
    std::fill(acc.begin(), acc.end(), 1 << (kPrecisionBits - 1));
    const int32_t* k = &taps.weights[static_cast<size_t>(yy) * taps.ksize];
    int32_t* a = acc.data();
    for (int y = 0, m = taps.length[yy]; y < m; ++y) {
      const uint8_t* in = src.ptr<uint8_t>(taps.start[yy] + y - row0);
      const int32_t w = k[y];
      for (int x = 0; x < n; ++x) a[x] += in[x] * w;
    }
    uint8_t* o = out.ptr<uint8_t>(yy);
    for (int x = 0; x < n; ++x) o[x] = clip8(a[x]);
  }
}

}  // namespace

void resize_bilinear_pil(const cv::Mat& src, cv::Size out_size, cv::Rect window, cv::Mat& out) {
  CV_Assert(src.type() == CV_8UC3 && !src.empty());
  CV_Assert(window.x >= 0 && window.y >= 0 && window.x + window.width <= out_size.width &&
            window.y + window.height <= out_size.height && window.width > 0 && window.height > 0);
  const bool need_h = out_size.width != src.cols;
  const bool need_v = out_size.height != src.rows;
  // Input rows the vertical pass reads (all rows of the window when there is no vertical pass).
  Taps vt;
  int row0 = window.y, rows = window.height;
  if (need_v) {
    vt = make_taps(src.rows, out_size.height, window.y, window.height);
    row0 = vt.start.front();
    rows = vt.start.back() + vt.length.back() - row0;
  }
  // Scratch images live per thread: fresh large buffers would cost a page fault per 4 KB each time.
  thread_local cv::Mat transposed, transposed_out, mid;
  if (need_h) {
    // The horizontal pass as a vertical pass on the transpose: cv::transpose is vectorised, and the
    // vertical pass runs along contiguous memory, so this is ~3x faster than a direct per-pixel
    // gather, with identical results (the same taps, the same 8-bit rounding).
    Taps ht = make_taps(src.cols, out_size.width, window.x, window.width);
    const int col0 = ht.start.front(), cols = ht.start.back() + ht.length.back() - col0;
    cv::transpose(src(cv::Rect(col0, row0, cols, rows)), transposed);
    vertical(transposed, col0, ht, transposed_out);
    cv::transpose(transposed_out, need_v ? mid : out);
    if (need_v) vertical(mid, row0, vt, out);
  } else if (need_v) {
    vertical(src(cv::Rect(window.x, 0, window.width, src.rows)), 0, vt, out);
  } else {
    src(window).copyTo(out);
  }
}

}  // namespace prom::data
