#include "data/transforms.h"

#include <algorithm>
#include <cmath>

#include "core/error.h"
#include "data/resample.h"

namespace prom::data {

CropBox random_resized_crop_box(int height, int width, const config::TrainTransformConfig& t, Rng& rng) {
  const double area = static_cast<double>(height) * width;
  const double log_lo = std::log(t.ratio_min), log_hi = std::log(t.ratio_max);
  for (int attempt = 0; attempt < 10; ++attempt) {
    const double target_area = area * rng.uniform(t.scale_min, t.scale_max);
    const double aspect = std::exp(rng.uniform(log_lo, log_hi));
    // Python's round() is round-half-even, which is what nearbyint does in the default mode.
    const int w = static_cast<int>(std::nearbyint(std::sqrt(target_area * aspect)));
    const int h = static_cast<int>(std::nearbyint(std::sqrt(target_area / aspect)));
    if (w > 0 && w <= width && h > 0 && h <= height) {
      CropBox b;
      b.height = h;
      b.width = w;
      b.top = static_cast<int>(rng.integer(0, height - h));
      b.left = static_cast<int>(rng.integer(0, width - w));
      return b;
    }
  }
  // Fallback: the centre crop with the aspect ratio clamped into [ratio_min, ratio_max].
  const double in_ratio = static_cast<double>(width) / height;
  CropBox b{0, 0, height, width};
  if (in_ratio < std::min(t.ratio_min, t.ratio_max)) {
    b.height = static_cast<int>(std::nearbyint(width / std::min(t.ratio_min, t.ratio_max)));
  } else if (in_ratio > std::max(t.ratio_min, t.ratio_max)) {
    b.width = static_cast<int>(std::nearbyint(height * std::max(t.ratio_min, t.ratio_max)));
  }
  b.top = (height - b.height) / 2;
  b.left = (width - b.width) / 2;
  return b;
}

cv::Size resized_size(int height, int width, int64_t size) {
  const int s = static_cast<int>(size);
  if (width <= height) return {s, static_cast<int>(static_cast<double>(s) * height / width)};
  return {static_cast<int>(static_cast<double>(s) * width / height), s};
}

Transform::Transform(const config::DataConfig& data, bool train)
    : train_(train), train_cfg_(data.train_transform), eval_cfg_(data.eval_transform) {
  if (data.mean.size() != 3 || data.std.size() != 3)
    throw ConfigKeyError("data.mean and data.std: expected 3 values (R, G, B)");
  out_h_ = out_w_ = static_cast<int>(train ? train_cfg_.crop : eval_cfg_.crop);
  for (int c = 0; c < 3; ++c) {
    const float mean = static_cast<float>(data.mean[c]), sd = static_cast<float>(data.std[c]);
    // The same float32 operations as ToTensor (div 255) and Normalize (sub mean, div std).
    for (int v = 0; v < 256; ++v) lut_[c][v] = (static_cast<float>(v) / 255.0f - mean) / sd;
  }
}

void Transform::write(const cv::Mat& bgr, bool flip, const TensorSlot& out) const {
  CV_Assert(bgr.type() == CV_8UC3 && bgr.rows == out_h_ && bgr.cols == out_w_);
  for (int c = 0; c < 3; ++c) {
    const float* lut = lut_[c].data();
    const int src_c = 2 - c;  // BGR -> RGB
    float* plane = out.data + c * out.channel_stride;
    for (int y = 0; y < out_h_; ++y) {
      const uint8_t* row = bgr.ptr<uint8_t>(y);
      float* o = plane + static_cast<int64_t>(y) * out_w_ * out.pixel_stride;
      if (flip) {
        for (int x = 0; x < out_w_; ++x) o[x * out.pixel_stride] = lut[row[(out_w_ - 1 - x) * 3 + src_c]];
      } else {
        for (int x = 0; x < out_w_; ++x) o[x * out.pixel_stride] = lut[row[x * 3 + src_c]];
      }
    }
  }
}

void Transform::apply_crop(const cv::Mat& bgr, const CropBox& box, bool flip, const TensorSlot& out) const {
  thread_local cv::Mat pixels;  // reused: no page faults for a fresh buffer per sample
  resize_bilinear_pil(bgr(cv::Rect(box.left, box.top, box.width, box.height)), {out_w_, out_h_},
                      cv::Rect(0, 0, out_w_, out_h_), pixels);
  write(pixels, flip, out);
}

cv::Mat Transform::eval_pixels(const cv::Mat& bgr) const {
  const cv::Size size = resized_size(bgr.rows, bgr.cols, eval_cfg_.resize);
  // torchvision's CenterCrop: offsets int(round((size - crop) / 2)); a crop larger than the image is
  // padded with zeros around it.
  const int top = static_cast<int>(std::nearbyint((size.height - out_h_) / 2.0));
  const int left = static_cast<int>(std::nearbyint((size.width - out_w_) / 2.0));
  const cv::Rect window = cv::Rect(left, top, out_w_, out_h_) & cv::Rect(0, 0, size.width, size.height);
  thread_local cv::Mat pixels;
  resize_bilinear_pil(bgr, size, window, pixels);
  if (window.width == out_w_ && window.height == out_h_) return pixels;
  // Padding: torchvision pads by ((crop - size) // 2) before, the rest after.
  cv::Mat padded(out_h_, out_w_, CV_8UC3, cv::Scalar::all(0));
  const int pad_top = size.height < out_h_ ? (out_h_ - size.height) / 2 : 0;
  const int pad_left = size.width < out_w_ ? (out_w_ - size.width) / 2 : 0;
  const int y0 = size.height < out_h_ ? pad_top : 0, x0 = size.width < out_w_ ? pad_left : 0;
  pixels.copyTo(padded(cv::Rect(x0, y0, window.width, window.height)));
  return padded;
}

void Transform::apply(const cv::Mat& bgr, Rng& rng, const TensorSlot& out) const {
  if (!train_) {
    write(eval_pixels(bgr), false, out);
    return;
  }
  const CropBox box = random_resized_crop_box(bgr.rows, bgr.cols, train_cfg_, rng);
  const bool flip = rng.bernoulli(train_cfg_.hflip);
  apply_crop(bgr, box, flip, out);
}

}  // namespace prom::data
