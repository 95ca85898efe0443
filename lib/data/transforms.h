// The two presets, each equal to torchvision's on PIL images:
//   train: RandomResizedCrop(crop, scale, ratio) + RandomHorizontalFlip(hflip) + ToTensor + Normalize
//   eval:  Resize(resize) (shorter side, antialiased) + CenterCrop(crop) + ToTensor + Normalize
// Resizing is Pillow-exact (resample.h), so the only difference from torchvision is the JPEG decoder
// build, i.e. none when both use the system libjpeg-turbo.
#pragma once
#include <opencv2/core.hpp>

#include <array>
#include <cstdint>

#include "config/config.h"
#include "data/rng.h"

namespace prom::data {

// A crop in source pixels (torchvision's i, j, h, w).
struct CropBox {
  int top = 0, left = 0, height = 0, width = 0;
};

// torchvision's RandomResizedCrop.get_params: 10 tries of (area scale, log-uniform aspect), then the
// centre crop clamped to the ratio range. Draws from `rng` in a fixed order.
CropBox random_resized_crop_box(int height, int width, const config::TrainTransformConfig& t, Rng& rng);

// torchvision's Resize(int) output size: the shorter side becomes `size`, the longer one is scaled and
// truncated.
cv::Size resized_size(int height, int width, int64_t size);

// Where a sample's floats go: 3 x height x width, at `data`, with channel stride and pixel stride
// (NCHW: plane, 1; NHWC: 1, 3) in floats.
struct TensorSlot {
  float* data = nullptr;
  int64_t channel_stride = 0, pixel_stride = 1;
};

class Transform {
 public:
  Transform(const config::DataConfig& data, bool train);
  int out_height() const { return out_h_; }
  int out_width() const { return out_w_; }
  // Runs the preset on a decoded BGR image; `rng` is the sample's own stream (train only).
  void apply(const cv::Mat& bgr, Rng& rng, const TensorSlot& out) const;
  // The train preset with the random choices given (tests compare it with torchvision).
  void apply_crop(const cv::Mat& bgr, const CropBox& box, bool flip, const TensorSlot& out) const;
  // The eval preset's 8-bit BGR result before normalisation. Valid until the thread's next call.
  cv::Mat eval_pixels(const cv::Mat& bgr) const;
  // ToTensor + Normalize of an 8-bit BGR image of the output size, optionally mirrored.
  void write(const cv::Mat& bgr, bool flip, const TensorSlot& out) const;

 private:
  bool train_;
  config::TrainTransformConfig train_cfg_;
  config::EvalTransformConfig eval_cfg_;
  int out_h_, out_w_;
  std::array<std::array<float, 256>, 3> lut_;  // per RGB channel: (v / 255 - mean) / std, in float32
};

}  // namespace prom::data
