#include "data/photo_like.h"

#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include "core/error.h"

namespace prom::data {

cv::Mat photo_like_image(int width, int height, uint64_t seed) {
  cv::RNG rng(seed * 0x9e3779b97f4a7c15ULL + 1);
  // Smooth colour fields: coarse random colours, bicubically enlarged.
  cv::Mat coarse(std::max(2, height / 24), std::max(2, width / 24), CV_8UC3);
  rng.fill(coarse, cv::RNG::UNIFORM, 0, 256);
  cv::Mat img;
  cv::resize(coarse, img, cv::Size(width, height), 0, 0, cv::INTER_CUBIC);
  img.convertTo(img, CV_32FC3);
  // A lighting gradient.
  cv::Mat ramp(height, width, CV_32FC3);
  for (int y = 0; y < height; ++y)
    for (int x = 0; x < width; ++x)
      ramp.at<cv::Vec3f>(y, x) = cv::Vec3f(50.f * x / width, 30.f * (x + y) / (width + height), 50.f * y / height);
  img += ramp;
  // Sensor-like noise.
  cv::Mat noise(height, width, CV_32FC3);
  rng.fill(noise, cv::RNG::NORMAL, 0, 18);
  img += noise;
  img.convertTo(img, CV_8UC3);  // saturating
  // Some text: sharp edges, as in real photos' details.
  for (int i = 0; i < 6; ++i) {
    cv::Point at(rng.uniform(0, std::max(1, width - 40)), rng.uniform(12, std::max(13, height)));
    cv::putText(img, "prom " + std::to_string(i), at, cv::FONT_HERSHEY_SIMPLEX, 0.3 + 0.2 * (i % 3),
                cv::Scalar(rng.uniform(0, 256), rng.uniform(0, 256), rng.uniform(0, 256)), 1 + i % 2, cv::LINE_AA);
  }
  return img;
}

std::vector<uchar> encode_image(const cv::Mat& image, const std::string& ext, int jpeg_quality) {
  std::vector<uchar> bytes;
  if (!cv::imencode(ext, image, bytes, {cv::IMWRITE_JPEG_QUALITY, jpeg_quality}))
    throw Error("cannot encode an image as " + ext);
  return bytes;
}

}  // namespace prom::data
