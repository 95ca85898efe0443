// A fast path for the common case, baseline/progressive YCbCr or grayscale JPEG: libjpeg-turbo
// straight into BGR. Debian's OpenCV 4.6 decodes JPEG to RGB and swaps the channels in a scalar loop
// afterwards, which makes cv::imdecode about 2x slower than libjpeg-turbo itself on a 500x375 photo.
// Same library, same settings as PIL (islow DCT, fancy upsampling), so the pixels are identical to
// both cv::imdecode's and PIL's; anything else (CMYK, YCCK, 12-bit, a libjpeg error) is left to
// cv::imdecode, which decides whether the file is bad.
#pragma once
#include <opencv2/core.hpp>
#include <cstdint>
#include <vector>

namespace prom::data {

// Decodes `bytes` into `out` (CV_8UC3, BGR) and returns true, or returns false (out unspecified)
// when the file should go through cv::imdecode instead.
bool decode_jpeg_fast(const std::vector<uchar>& bytes, cv::Mat& out);

// The width and height a JPEG's header declares, read without decoding anything; false when the
// header cannot be read.
bool read_jpeg_size(const std::vector<uchar>& bytes, int64_t* width, int64_t* height);

}  // namespace prom::data
