// The transform presets against torchvision's PIL presets (test/python/make_pil_transforms.py), on
// photo-like images of several sizes and kinds: normalised mean absolute difference <= 0.02.
#include "support/catch.h"

#include <cstdio>
#include <cstdlib>
#include <sstream>

#include "data/decode.h"
#include "data/transforms.h"
#include "io/safetensors.h"

using namespace prom;
using namespace prom::data;

TEST_CASE("transforms: eval and train presets match torchvision's PIL presets", "[pil]") {
  const char* dir = std::getenv("PROM_CROSSCHECK_DIR");
  REQUIRE(dir != nullptr);
  auto ref = io::read_safetensors(std::string(dir) + "/pil_transforms.safetensors");
  config::DataConfig cfg;  // the defaults: resize 256, crop 224, ImageNet mean and std
  Transform eval(cfg, false), train(cfg, true);
  std::stringstream files(ref.metadata.at("files"));
  int n = 0;
  for (std::string name; std::getline(files, name, ',');) {
    INFO(name);
    cv::Mat bgr = decode_image_file(std::string(dir) + "/images/" + name);
    auto out = torch::empty({3, 224, 224});
    TensorSlot slot{out.data_ptr<float>(), 224 * 224, 1};
    Rng unused({0});
    eval.apply(bgr, unused, slot);
    const double mad_eval = (out - ref.tensors.at(name + ".eval")).abs().mean().item<double>();
    auto box_t = ref.tensors.at(name + ".box");
    CropBox box{int(box_t[0].item<int64_t>()), int(box_t[1].item<int64_t>()), int(box_t[2].item<int64_t>()),
                int(box_t[3].item<int64_t>())};
    train.apply_crop(bgr, box, box_t[4].item<int64_t>() != 0, slot);
    const double mad_train = (out - ref.tensors.at(name + ".train")).abs().mean().item<double>();
    std::printf("pil cross-check %-20s eval MAD %.6f  train MAD %.6f\n", name.c_str(), mad_eval, mad_train);
    CHECK(mad_eval <= 0.02);
    CHECK(mad_train <= 0.02);
    ++n;
  }
  CHECK(n >= 8);
}
