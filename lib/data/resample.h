// Pillow-exact bilinear resizing (Image.resize(..., BILINEAR), which torchvision's Resize and
// RandomResizedCrop use on PIL images). Pillow widens the triangle filter by the shrink factor, i.e.
// it antialiases; OpenCV's INTER_LINEAR does not and INTER_AREA is a box filter that misses the
// torchvision reference by ~0.015 (normalised MAD) and is slower for non-integer factors. So this is
// Pillow's two-pass fixed-point algorithm (Resample.c: horizontal pass first, 8-bit intermediate,
// 22-bit coefficients), which reproduces Pillow bit for bit.
#pragma once
#include <opencv2/core.hpp>

namespace prom::data {

// Resizes `src` (CV_8UC3, may be a ROI) to `out_size` and writes only the output pixels inside
// `window` (in output coordinates, must lie inside out_size) to `out` (reallocated only when its size
// changes): a centre crop after a resize costs only the cropped pixels.
void resize_bilinear_pil(const cv::Mat& src, cv::Size out_size, cv::Rect window, cv::Mat& out);

}  // namespace prom::data
