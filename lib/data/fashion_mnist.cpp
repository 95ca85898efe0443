#include "data/fashion_mnist.h"

#include <fcntl.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <opencv2/imgcodecs.hpp>

#include "core/error.h"
#include "data/idx.h"
#include "io/atomic_file.h"

namespace prom::data {
namespace fs = std::filesystem;

namespace {

struct SplitFiles {
  const char* split;   // output folder
  const char* images;  // IDX base names
  const char* labels;
};
constexpr SplitFiles kSplits[] = {
    {"train", "train-images-idx3-ubyte", "train-labels-idx1-ubyte"},
    {"test", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"},
};
constexpr const char* kRecord = "fashion-mnist.json";

// name.gz when present, else the uncompressed name (zlib reads both).
std::string source_file(const std::string& dir, const std::string& base) {
  std::string gz = (fs::path(dir) / (base + ".gz")).string();
  std::error_code ec;
  if (fs::exists(gz, ec)) return gz;
  std::string plain = (fs::path(dir) / base).string();
  if (fs::exists(plain, ec)) return plain;
  throw Error(at_path(gz, "Fashion-MNIST file not found (install dataset-fashion-mnist or pass --source DIR)"));
}

// What identifies the inputs: names, sizes and modification times.
nlohmann::json source_identity(const std::vector<std::string>& files) {
  nlohmann::json j = nlohmann::json::object();
  for (const auto& f : files) {
    std::error_code ec;
    auto size = fs::file_size(f, ec);
    auto mtime = fs::last_write_time(f, ec).time_since_epoch().count();
    j[fs::path(f).filename().string()] = {{"size", size}, {"mtime", static_cast<int64_t>(mtime)}};
  }
  return j;
}

// Files per class folder of a split as it is on disk now.
std::vector<int64_t> count_files(const std::string& dir) {
  std::vector<int64_t> counts;
  for (const auto& cls : fashion_mnist_classes()) {
    int64_t n = 0;
    std::error_code ec;
    for (fs::directory_iterator it(fs::path(dir) / cls, ec), end; !ec && it != end; it.increment(ec)) ++n;
    counts.push_back(ec ? -1 : n);
  }
  return counts;
}

void sync_tree(const std::string& dir) {
  int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) throw Error(at_path(dir, "cannot open for syncing"));
  ::syncfs(fd);  // one call for the whole tree instead of an fsync per file
  ::close(fd);
}

struct SplitData {
  IdxArray images, labels;
};

// Reads and checks one split's pair of IDX files.
SplitData load_split(const std::string& images_path, const std::string& labels_path) {
  IdxArray images = read_idx(images_path, 3);
  IdxArray labels = read_idx(labels_path, 1);
  if (images.dims[0] != labels.dims[0])
    throw Error(at_path(images_path, "count mismatch: " + std::to_string(images.dims[0]) + " images but " +
                                         std::to_string(labels.dims[0]) + " labels in " + labels_path));
  if (images.dims[0] == 0) throw Error(at_path(images_path, "no images"));
  const auto& classes = fashion_mnist_classes();
  for (size_t i = 0; i < labels.data.size(); ++i)
    if (labels.data[i] >= classes.size())
      throw Error(at_path(labels_path, "label " + std::to_string(labels.data[i]) + " of item " + std::to_string(i) +
                                           " is not in 0-9"));
  return {std::move(images), std::move(labels)};
}

// Writes one split into a staging folder and renames it into place; returns images per class.
std::vector<int64_t> write_split(const std::string& out, const SplitFiles& s, const SplitData& data) {
  const IdxArray& images = data.images;
  const IdxArray& labels = data.labels;
  const auto& classes = fashion_mnist_classes();
  const std::string final_dir = (fs::path(out) / s.split).string();
  const std::string staging = (fs::path(out) / ("." + std::string(s.split) + ".partial")).string();
  std::error_code ec;
  fs::remove_all(staging, ec);
  for (const auto& c : classes) fs::create_directories(fs::path(staging) / c);
  const int rows = static_cast<int>(images.dims[1]), cols = static_cast<int>(images.dims[2]);
  const size_t plane = static_cast<size_t>(rows) * cols;
  std::vector<int64_t> counts(classes.size(), 0);
  std::vector<uchar> png;
  char name[32];
  for (int64_t i = 0; i < images.dims[0]; ++i) {
    cv::Mat img(rows, cols, CV_8UC1, const_cast<uint8_t*>(images.data.data()) + static_cast<size_t>(i) * plane);
    if (!cv::imencode(".png", img, png)) throw Error(at_path(staging, "PNG encoding failed"));
    const int label = labels.data[static_cast<size_t>(i)];
    std::snprintf(name, sizeof name, "%05lld.png", static_cast<long long>(i));
    const auto path = fs::path(staging) / classes[label] / name;
    std::ofstream f(path, std::ios::binary);
    f.write(reinterpret_cast<const char*>(png.data()), static_cast<std::streamsize>(png.size()));
    if (!f) throw Error(at_path(path.string(), "write failed"));
    ++counts[label];
  }
  sync_tree(staging);
  const std::string old = (fs::path(out) / ("." + std::string(s.split) + ".old")).string();
  fs::remove_all(old, ec);
  if (fs::exists(final_dir, ec)) fs::rename(final_dir, old);
  fs::rename(staging, final_dir);
  fs::remove_all(old, ec);
  return counts;
}

}  // namespace

const std::vector<std::string>& fashion_mnist_classes() {
  static const std::vector<std::string> kClasses = {"0_tshirt_top", "1_trouser", "2_pullover", "3_dress",
                                                    "4_coat",       "5_sandal",  "6_shirt",    "7_sneaker",
                                                    "8_bag",        "9_ankle_boot"};
  return kClasses;
}

FashionMnistResult convert_fashion_mnist(const FashionMnistOptions& options) {
  if (options.out.empty()) throw ConfigError("fashion-mnist: --out DIR is required");
  std::vector<std::string> files;
  for (const auto& s : kSplits) {
    files.push_back(source_file(options.source, s.images));
    files.push_back(source_file(options.source, s.labels));
  }
  const nlohmann::json sources = source_identity(files);
  const std::string record_path = (fs::path(options.out) / kRecord).string();
  FashionMnistResult result;
  // Up to date: the record names the same inputs and every class folder holds what it says.
  std::error_code ec;
  if (fs::exists(record_path, ec)) {
    try {
      auto record = nlohmann::json::parse(io::read_file(record_path));
      bool same = record.at("sources") == sources;
      for (const auto& s : kSplits)
        same = same && record.at("counts").at(s.split).get<std::vector<int64_t>>() ==
                           count_files((fs::path(options.out) / s.split).string());
      if (same) {
        result.up_to_date = true;
        result.train = record.at("total").at("train").get<int64_t>();
        result.test = record.at("total").at("test").get<int64_t>();
        return result;
      }
    } catch (const nlohmann::json::exception&) {
      // An unreadable record means an incomplete output: convert again.
    }
  }
  fs::create_directories(options.out, ec);
  if (ec) throw Error(at_path(options.out, "cannot create output directory: " + ec.message()));
  // Read and check every input before replacing anything.
  std::vector<SplitData> splits;
  for (const auto& s : kSplits)
    splits.push_back(load_split(source_file(options.source, s.images), source_file(options.source, s.labels)));
  fs::remove(record_path, ec);  // the output is about to change: no longer a complete conversion
  nlohmann::json record = {{"format", 1}, {"sources", sources}, {"classes", fashion_mnist_classes()}};
  for (size_t k = 0; k < splits.size(); ++k) {
    const SplitFiles& s = kSplits[k];
    auto counts = write_split(options.out, s, splits[k]);
    int64_t total = 0;
    for (auto n : counts) total += n;
    record["counts"][s.split] = counts;
    record["total"][s.split] = total;
    (std::string(s.split) == "train" ? result.train : result.test) = total;
  }
  io::write_file_atomic(record_path, record.dump(2) + "\n");
  return result;
}

}  // namespace prom::data
