// Reading and decoding one image file into 8-bit BGR (OpenCV's channel order), whatever it holds:
// grayscale, CMYK JPEG, 16-bit, alpha, or a PNG named .JPEG (decoders go by content, not extension).
#pragma once
#include <opencv2/core.hpp>
#include <string>
#include <vector>

#include "core/error.h"

namespace prom::data {

// A file that is not a readable image (zero-byte, truncated, corrupt, unreadable). The message is
// "path: problem". The bad-file policy (data.bad_files) decides whether it skips or fails the run.
class BadImage : public Error {
 public:
  explicit BadImage(const std::string& what) : Error(what) {}
};

// The file's bytes; throws BadImage when it cannot be read (missing, a directory, a dangling link).
std::vector<uchar> read_image_bytes(const std::string& path);

// CV_8UC3 BGR, EXIF orientation ignored (as PIL and torchvision do). Throws BadImage.
// (Not cv::imdecode's decode-into-dst overload: when decoding fails it returns dst's old image.)
cv::Mat decode_image(const std::vector<uchar>& bytes, const std::string& path);
cv::Mat decode_image_file(const std::string& path);

}  // namespace prom::data
