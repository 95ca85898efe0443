// Fashion-MNIST conversion: IDX parsing errors and `prom-data fashion-mnist` on small synthetic IDX
// files (never the real 30 MB set: the tests stay fast and need no package), and a smoke run of
// `prom-bench loader`.
#include "support/catch.h"
#include <zlib.h>

#include <filesystem>

#include "core/error.h"
#include "data/dataset.h"
#include "data/decode.h"
#include "data/fashion_mnist.h"
#include "data/idx.h"
#include "data/image_source.h"
#include "io/atomic_file.h"
#include "unit/data_fixtures.h"

using namespace prom;
using Catch::Matchers::Contains;
namespace fs = std::filesystem;

namespace {

std::string be32(uint32_t v) {
  return {char(v >> 24), char((v >> 16) & 0xff), char((v >> 8) & 0xff), char(v & 0xff)};
}
std::string idx_images(uint32_t n, uint32_t rows = 28, uint32_t cols = 28) {
  std::string s = std::string("\0\0\x08\x03", 4) + be32(n) + be32(rows) + be32(cols);
  for (uint32_t i = 0; i < n * rows * cols; ++i) s += char((i * 31 + i / 784) & 0xff);
  return s;
}
std::string idx_labels(uint32_t n) {
  std::string s = std::string("\0\0\x08\x01", 4) + be32(n);
  for (uint32_t i = 0; i < n; ++i) s += char(i % 10);
  return s;
}
void write_gz(const std::string& path, const std::string& bytes) {
  gzFile f = gzopen(path.c_str(), "wb");
  REQUIRE(f != nullptr);
  REQUIRE(gzwrite(f, bytes.data(), static_cast<unsigned>(bytes.size())) == static_cast<int>(bytes.size()));
  gzclose(f);
}
// A complete small source: 30 train and 20 test items.
void write_source(const std::string& dir) {
  fs::create_directories(dir);
  write_gz(dir + "/train-images-idx3-ubyte.gz", idx_images(30));
  write_gz(dir + "/train-labels-idx1-ubyte.gz", idx_labels(30));
  write_gz(dir + "/t10k-images-idx3-ubyte.gz", idx_images(20));
  write_gz(dir + "/t10k-labels-idx1-ubyte.gz", idx_labels(20));
}
std::string convert_error(const std::string& source, const std::string& out) {
  try {
    data::convert_fashion_mnist({source, out});
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST_CASE("idx: bad magic, truncation and count mismatch name the file", "[data]") {
  test::TempDir dir("idx");
  write_source(dir.file("src"));
  const std::string images = dir.file("src/train-images-idx3-ubyte.gz");
  const std::string labels = dir.file("src/train-labels-idx1-ubyte.gz");
  // Bad magic.
  write_gz(images, std::string("\x12\x34\x08\x03", 4) + idx_images(30).substr(4));
  CHECK_THAT(convert_error(dir.file("src"), dir.file("out")), Contains(images + ": not an IDX file (bad magic"));
  // Wrong dimension count (a labels file where images belong).
  write_gz(images, idx_labels(30));
  CHECK_THAT(convert_error(dir.file("src"), dir.file("out")), Contains(images + ": expected 3 dimensions"));
  // Truncated data.
  std::string full = idx_images(30);
  write_gz(images, full.substr(0, full.size() - 100));
  CHECK_THAT(convert_error(dir.file("src"), dir.file("out")), Contains(images + ": truncated IDX file"));
  // Truncated gzip stream.
  write_gz(images, full);
  std::string gz = io::read_file(images);
  { std::ofstream(images, std::ios::binary) << gz.substr(0, gz.size() / 2); }
  CHECK_THAT(convert_error(dir.file("src"), dir.file("out")), Contains(images + ": truncated"));
  // Count mismatch between images and labels.
  write_gz(images, idx_images(30));
  write_gz(labels, idx_labels(29));
  CHECK_THAT(convert_error(dir.file("src"), dir.file("out")),
             Contains(images + ": count mismatch: 30 images but 29 labels in " + labels));
  // A label outside 0-9.
  std::string l = idx_labels(30);
  l.back() = 12;
  write_gz(labels, l);
  CHECK_THAT(convert_error(dir.file("src"), dir.file("out")), Contains(labels + ": label 12 of item 29"));
  // Missing file.
  fs::remove(labels);
  CHECK_THAT(convert_error(dir.file("src"), dir.file("out")), Contains("train-labels-idx1-ubyte.gz: Fashion-MNIST file not found"));
  CHECK_FALSE(fs::exists(dir.file("out/train")));  // nothing written on errors
  // Uncompressed IDX files are read too.
  { std::ofstream(dir.file("plain-idx3-ubyte"), std::ios::binary) << idx_images(3); }
  auto a = data::read_idx(dir.file("plain-idx3-ubyte"), 3);
  CHECK(a.dims == std::vector<int64_t>{3, 28, 28});
  CHECK(a.data.size() == 3u * 784u);
}

TEST_CASE("prom-data fashion-mnist converts IDX into PNG class folders, idempotently", "[data]") {
  test::TempDir dir("idx");
  write_source(dir.file("src"));
  const std::string out = dir.file("out");
  auto r = test::run_command(test::bin("prom-data") + " fashion-mnist --source " + dir.file("src") + " --out " + out);
  INFO(r.output);
  REQUIRE(r.exit_code == 0);
  CHECK_THAT(r.output, Contains("30 train, 20 test images in 10 classes"));
  const auto& classes = data::fashion_mnist_classes();
  // Sorted folder order is the label order, and the dataset scanner agrees.
  auto train = data::scan_image_folder(out + "/train", {});
  CHECK(train.classes == classes);
  CHECK(train.samples.size() == 30);
  CHECK(data::scan_image_folder(out + "/test", {}).samples.size() == 20);
  for (const auto& s : train.samples) {
    // Item i has label i % 10 and is named by its index.
    int i = std::stoi(fs::path(s.path).stem().string());
    CHECK(s.label == i % 10);
  }
  // The pixels survive: item 7 of train, decoded (gray -> 3 equal channels).
  cv::Mat m = data::decode_image_file(out + "/train/" + classes[7] + "/00007.png");
  REQUIRE(m.rows == 28);
  std::string img = idx_images(30);
  CHECK(m.at<cv::Vec3b>(3, 5)[0] == static_cast<uchar>(img[16 + 7 * 784 + 3 * 28 + 5]));
  CHECK(m.at<cv::Vec3b>(3, 5)[2] == m.at<cv::Vec3b>(3, 5)[0]);
  // The converted folders feed the image pipeline: 28 px gray PNGs become 3 equal channels.
  {
    config::Config c;
    c.data.root = out;
    c.data.val_dir = "test";
    c.data.workers = 2;
    c.data.eval_transform.resize = 28;
    c.data.eval_transform.crop = 28;
    c.data.mean = {0.5, 0.5, 0.5};
    c.data.std = {0.5, 0.5, 0.5};
    data::ImageSourceOptions o;
    o.split = data::Split::kEval;
    o.batch_size = 8;
    auto source = data::make_image_source(c, o);
    CHECK(source->classes() == classes);
    CHECK(source->batches_per_epoch() == 3);
    source->start_epoch(0);
    auto b = source->next();
    REQUIRE(b);
    CHECK(b->images.sizes() == std::vector<int64_t>{8, 3, 28, 28});
    CHECK(torch::equal(b->images[0][0], b->images[0][2]));
    // Sample 0 is test item 0 (class 0): the pixel value, normalised, comes back.
    const float expected = (static_cast<uint8_t>(idx_images(20)[16 + 3 * 28 + 5]) / 255.0f - 0.5f) / 0.5f;
    CHECK(b->images[0][1][3][5].item<float>() == Approx(expected));
  }
  // Re-running on a complete output writes nothing (in-process: each binary start costs ~0.5 s).
  auto before = fs::last_write_time(out + "/train/" + classes[7] + "/00007.png");
  auto again = data::convert_fashion_mnist({dir.file("src"), out});
  CHECK(again.up_to_date);
  CHECK(again.train == 30);
  CHECK(fs::last_write_time(out + "/train/" + classes[7] + "/00007.png") == before);
  // An incomplete output (a file lost) is rebuilt.
  fs::remove(out + "/train/" + classes[7] + "/00007.png");
  CHECK_FALSE(data::convert_fashion_mnist({dir.file("src"), out}).up_to_date);
  CHECK(fs::exists(out + "/train/" + classes[7] + "/00007.png"));
  CHECK(data::convert_fashion_mnist({dir.file("src"), out}).up_to_date);
  // No staging folders are left behind.
  int entries = 0;
  for (auto& e : fs::directory_iterator(out)) entries += e.path().filename().string()[0] == '.';
  CHECK(entries == 0);
  // A bad IDX file: exit 1, one line naming it.
  write_gz(dir.file("src/t10k-labels-idx1-ubyte.gz"), idx_labels(19));
  r = test::run_command(test::bin("prom-data") + " fashion-mnist --source " + dir.file("src") + " --out " + out);
  CHECK(r.exit_code == 1);
  CHECK_THAT(r.output, Contains("prom-data: error: " + dir.file("src/t10k-images-idx3-ubyte.gz") +
                                ": count mismatch: 20 images but 19 labels"));
  // --out is required: a usage error.
  r = test::run_command(test::bin("prom-data") + " fashion-mnist --source " + dir.file("src"));
  CHECK(r.exit_code == 2);
}

TEST_CASE("prom-bench loader runs on its own generated JPEGs", "[data]") {
  test::TempDir dir("bench");
  auto r = test::run_command(test::bin("prom-bench") + " loader --images 8 --batch-size 4 --threads 1 --skip-torchvision --dir " +
                             dir.path());
  INFO(r.output);
  CHECK(r.exit_code == 0);
  CHECK_THAT(r.output, Contains("8 photo-like 500x375 JPEGs"));
  CHECK_THAT(r.output, Contains("train        1"));
  CHECK_THAT(r.output, Contains("eval         1"));
}
