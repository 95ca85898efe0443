// libFuzzer target: the image-decode wrapper (lib/data/decode.h: libjpeg-turbo fast path, then
// OpenCV) on arbitrary file bytes. prom::data::BadImage (a prom::Error) is the expected outcome for
// a bad file; anything else is a finding, and so is a decoded image that is not 8-bit BGR.
#include <cstdint>
#include <cstdlib>
#include <vector>

#include "data/decode.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::vector<uchar> bytes(data, data + size);
  try {
    cv::Mat image = prom::data::decode_image(bytes, "fuzz.img");
    if (image.empty() || image.type() != CV_8UC3) std::abort();
  } catch (const prom::Error&) {
  }
  return 0;
}
