// `prom-data fashion-mnist`: Fashion-MNIST's IDX files (Debian's dataset-fashion-mnist) as an image
// folder, so the default dataset goes through the same OpenCV path as ImageNet:
//   OUT/train/<class>/<index>.png (60,000) and OUT/test/<class>/<index>.png (10,000)
// Class folders are "<label>_<name>", so their sorted order is the original label order.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace prom::data {

struct FashionMnistOptions {
  std::string source = "/usr/share/datasets/fashion-mnist";  // *-ubyte.gz (or uncompressed *-ubyte)
  std::string out;
};

struct FashionMnistResult {
  int64_t train = 0, test = 0;
  bool up_to_date = false;  // the output was already complete: nothing was written
};

// The ten class folder names, index = label.
const std::vector<std::string>& fashion_mnist_classes();

// Converts, or does nothing when OUT already holds a complete conversion of the same source files
// (OUT/fashion-mnist.json records them). Each split is written into a hidden staging folder, synced,
// then renamed into place, and the record is written last (atomically): an interrupted run leaves
// either the old complete output or a staging folder that the next run replaces.
// Throws prom::Error naming the file for any IDX problem.
FashionMnistResult convert_fashion_mnist(const FashionMnistOptions& options);

}  // namespace prom::data
