#pragma once
#include <string>

namespace prom::data {

// OpenCV's version and the image codecs it was built with, for --version.
std::string opencv_info();

}  // namespace prom::data
