#include "data/opencv_info.h"

#include <opencv2/core.hpp>

namespace prom::data {

std::string opencv_info() {
  return std::string(CV_VERSION) + " (" + std::to_string(cv::getNumThreads()) + " threads)";
}

}  // namespace prom::data
