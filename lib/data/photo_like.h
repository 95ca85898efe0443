// Photo-like test images (smooth colour fields + gradients + sensor-like noise + text), for the
// tests and the loader benchmark: they compress and decode like real photos (~100 KB for a 500x375
// JPEG at quality 90), unlike flat or pure-noise images. A pure function of the seed.
#pragma once
#include <cstdint>
#include <opencv2/core.hpp>
#include <string>
#include <vector>

namespace prom::data {

// CV_8UC3, BGR.
cv::Mat photo_like_image(int width, int height, uint64_t seed);

// Encoded with OpenCV (".jpg", ".png", ...); throws prom::Error when encoding fails.
std::vector<uchar> encode_image(const cv::Mat& image, const std::string& ext, int jpeg_quality = 90);

}  // namespace prom::data
