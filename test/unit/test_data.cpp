// The OpenCV data pipeline: datasets, decoding, transforms, the loader's determinism and sharding,
// and the bad-file policy. Every test makes its own small data.
#include "support/catch.h"
#include <unistd.h>

#include <filesystem>
#include <map>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>
#include <set>

#include "core/error.h"
#include "data/dataset.h"
#include "data/decode.h"
#include "data/image_source.h"
#include "data/jpeg_decode.h"
#include "data/rng.h"
#include "data/transforms.h"
#include "unit/data_fixtures.h"

using namespace prom;
using namespace prom::data;
using Catch::Matchers::Contains;
namespace fs = std::filesystem;

namespace {

std::vector<Batch> all_batches(BatchSource& s, int64_t epoch) {
  s.start_epoch(epoch);
  std::vector<Batch> out;
  while (auto b = s.next()) out.push_back(*b);
  return out;
}

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

ImageSourceOptions opts(Split split, int64_t batch, int rank = 0, int world = 1) {
  ImageSourceOptions o;
  o.split = split;
  o.batch_size = batch;
  o.rank = rank;
  o.world_size = world;
  return o;
}

}  // namespace

TEST_CASE("data: the counter-based RNG is a pure function of its key", "[data]") {
  Rng a({1, 2, 3}), b({1, 2, 3}), c({1, 3, 2});
  for (int i = 0; i < 10; ++i) CHECK(a.next() == b.next());
  CHECK(Rng({1, 2, 3}).next() != c.next());
  Rng r({42});
  double sum = 0;
  for (int i = 0; i < 20000; ++i) {
    double u = r.uniform();
    REQUIRE(u >= 0.0);
    REQUIRE(u < 1.0);
    sum += u;
    int64_t k = r.integer(3, 5);
    REQUIRE(k >= 3);
    REQUIRE(k <= 5);
  }
  CHECK(sum / 20000 == Approx(0.5).margin(0.01));
}

TEST_CASE("data: RandomResizedCrop boxes follow torchvision's rules", "[data]") {
  config::TrainTransformConfig t;
  Rng rng({5});
  for (int i = 0; i < 500; ++i) {
    CropBox b = random_resized_crop_box(375, 500, t, rng);
    REQUIRE(b.height > 0);
    REQUIRE(b.width > 0);
    REQUIRE(b.top + b.height <= 375);
    REQUIRE(b.left + b.width <= 500);
    const double area = double(b.height) * b.width / (375.0 * 500.0);
    CHECK(area >= 0.07);  // scale 0.08 up to rounding
    const double ratio = double(b.width) / b.height;
    CHECK(ratio > 0.70);
    CHECK(ratio < 1.42);
  }
  // No try can fit (whole area, ratio exactly 1, a 2:1 image): the centre crop clamped to ratio 1.
  t.scale_min = t.scale_max = 1.0;
  t.ratio_min = t.ratio_max = 1.0;
  CropBox b = random_resized_crop_box(50, 100, t, rng);
  CHECK(b.top == 0);
  CHECK(b.left == 25);
  CHECK(b.height == 50);
  CHECK(b.width == 50);
  CHECK(resized_size(375, 500, 256) == cv::Size(341, 256));
  CHECK(resized_size(500, 375, 256) == cv::Size(256, 341));
}

TEST_CASE("data: every image kind decodes to 8-bit 3-channel", "[data]") {
  test::TempDir dir("data");
  cv::Mat color = photo_like_image(64, 48, 1), gray, alpha, deep;
  cv::cvtColor(color, gray, cv::COLOR_BGR2GRAY);
  cv::cvtColor(color, alpha, cv::COLOR_BGR2BGRA);
  color.convertTo(deep, CV_16UC3, 257.0);
  struct Case {
    std::string name;
    std::vector<uchar> bytes;
  } cases[] = {{"gray.jpg", encode_image(gray, ".jpg")},
               {"png_named.JPEG", encode_image(color, ".png")},
               {"alpha.png", encode_image(alpha, ".png")},
               {"deep.png", encode_image(deep, ".png")},
               {"gray16.png", encode_image([&] { cv::Mat g; gray.convertTo(g, CV_16U, 257.0); return g; }(), ".png")}};
  for (const auto& c : cases) {
    INFO(c.name);
    test::write_bytes(dir.file(c.name), c.bytes);
    cv::Mat m = decode_image_file(dir.file(c.name));
    CHECK(m.type() == CV_8UC3);
    CHECK(m.cols == 64);
    CHECK(m.rows == 48);
  }
  // 16-bit comes down to the same 8-bit values.
  cv::Mat m = decode_image_file(dir.file("deep.png"));
  CHECK(cv::norm(m, color, cv::NORM_INF) <= 1);
}

TEST_CASE("data: the libjpeg fast path gives cv::imdecode's pixels exactly", "[data]") {
  cv::Mat color = photo_like_image(123, 77, 3), gray;
  cv::cvtColor(color, gray, cv::COLOR_BGR2GRAY);
  std::vector<uchar> progressive;
  REQUIRE(cv::imencode(".jpg", color, progressive, {cv::IMWRITE_JPEG_PROGRESSIVE, 1}));
  std::vector<uchar> restarts;  // restart markers inside the scan
  REQUIRE(cv::imencode(".jpg", color, restarts, {cv::IMWRITE_JPEG_RST_INTERVAL, 2}));
  for (const auto& bytes : {encode_image(color, ".jpg"), encode_image(gray, ".jpg"), progressive, restarts}) {
    cv::Mat fast;
    REQUIRE(decode_jpeg_fast(bytes, fast));
    cv::Mat reference = cv::imdecode(bytes, cv::IMREAD_COLOR);
    REQUIRE(fast.size() == reference.size());
    CHECK(cv::norm(fast, reference, cv::NORM_INF) == 0);
  }
  // Not a JPEG, or a broken one: left to cv::imdecode.
  cv::Mat m;
  CHECK_FALSE(decode_jpeg_fast(encode_image(color, ".png"), m));
  auto broken = encode_image(color, ".jpg");
  broken.resize(400);
  CHECK_FALSE(decode_jpeg_fast(broken, m));
}

TEST_CASE("data: batches are bitwise identical for 1 and 2 workers, and epochs differ", "[data]") {
  test::TempDir dir("data");
  test::make_image_folder(dir.path(), "train", 3, 6);
  auto one = make_image_source(test::small_config(dir.path(), 1), opts(Split::kTrain, 4));
  auto two = make_image_source(test::small_config(dir.path(), 2), opts(Split::kTrain, 4));
  CHECK(one->classes() == std::vector<std::string>{"class_0", "class_1", "class_2"});
  CHECK(one->size() == 16);  // 18 samples, the partial last batch dropped
  CHECK(one->batches_per_epoch() == 4);
  for (int64_t epoch : {0, 1}) {
    auto a = all_batches(*one, epoch), b = all_batches(*two, epoch);
    REQUIRE(a.size() == 4);
    REQUIRE(b.size() == 4);
    for (size_t i = 0; i < a.size(); ++i) {
      CHECK(a[i].images.sizes() == std::vector<int64_t>{4, 3, 24, 24});
      CHECK(a[i].images.is_contiguous());
      CHECK(torch::equal(a[i].images, b[i].images));
      CHECK(torch::equal(a[i].labels, b[i].labels));
      CHECK(torch::equal(a[i].indices, b[i].indices));
    }
  }
  auto e0 = all_batches(*one, 0), e1 = all_batches(*one, 1);
  CHECK_FALSE(torch::equal(e0[0].indices, e1[0].indices));
  // Restarting an epoch repeats it exactly.
  auto again = all_batches(*one, 0);
  CHECK(torch::equal(e0[2].images, again[2].images));
  // Labels match the folder of each index.
  auto labels = torch::cat({e0[0].labels, e0[1].labels}), indices = torch::cat({e0[0].indices, e0[1].indices});
  for (int64_t k = 0; k < labels.size(0); ++k) CHECK(labels[k].item<int64_t>() == indices[k].item<int64_t>() / 6);
  // The images are normalised photo content, not constants.
  CHECK(e0[0].images.std().item<float>() > 0.2f);
  CHECK(one->stats().samples == 16);
}

TEST_CASE("data: recycled batch buffers never overwrite a batch still held", "[data]") {
  test::TempDir dir("data");
  test::make_image_folder(dir.path(), "train", 2, 12);
  auto reference = all_batches(*make_image_source(test::small_config(dir.path(), 2), opts(Split::kTrain, 2)), 0);
  auto s = make_image_source(test::small_config(dir.path(), 2), opts(Split::kTrain, 2));
  for (int64_t epoch : {0, 1, 0}) {
    s->start_epoch(epoch);
    std::vector<Batch> kept;
    int64_t i = 0;
    while (auto b = s->next())
      if (i++ % 3 == 0) kept.push_back(*b);  // the others are dropped at once: their buffers recycle
    if (epoch != 0) continue;
    REQUIRE(kept.size() == 4);
    for (size_t k = 0; k < kept.size(); ++k) CHECK(torch::equal(kept[k].images, reference[3 * k].images));
  }
}

TEST_CASE("data: channels_last batches hold the same values", "[data]") {
  test::TempDir dir("data");
  test::make_image_folder(dir.path(), "val", 2, 3);
  auto o = opts(Split::kEval, 4);
  auto plain = all_batches(*make_image_source(test::small_config(dir.path(), 2), o), 0);
  o.channels_last = true;
  auto nhwc = all_batches(*make_image_source(test::small_config(dir.path(), 2), o), 0);
  REQUIRE(plain.size() == 2);
  REQUIRE(nhwc.size() == 2);
  CHECK(plain[1].images.size(0) == 2);  // eval keeps the short last batch
  for (size_t i = 0; i < plain.size(); ++i) {
    CHECK(nhwc[i].images.is_contiguous(torch::MemoryFormat::ChannelsLast));
    CHECK(torch::equal(plain[i].images, nhwc[i].images));
  }
}

TEST_CASE("data: shards: train equal batch counts, eval covers every sample once", "[data]") {
  test::TempDir dir("data");
  test::make_image_folder(dir.path(), "train", 2, 7);  // 14 samples
  test::make_image_folder(dir.path(), "val", 2, 7);
  for (int world : {2, 3}) {
    INFO("world " << world);
    std::set<int64_t> batch_counts;
    std::set<int64_t> seen_train;
    std::multiset<int64_t> seen_eval;
    for (int rank = 0; rank < world; ++rank) {
      auto train = make_image_source(test::small_config(dir.path(), 2), opts(Split::kTrain, 2, rank, world));
      auto batches = all_batches(*train, 3);
      CHECK(static_cast<int64_t>(batches.size()) == train->batches_per_epoch());
      batch_counts.insert(static_cast<int64_t>(batches.size()));
      for (auto& b : batches) {
        CHECK(b.images.size(0) == 2);
        for (int64_t k = 0; k < b.indices.size(0); ++k) CHECK(seen_train.insert(b.indices[k].item<int64_t>()).second);
      }
      auto eval = make_image_source(test::small_config(dir.path(), 1), opts(Split::kEval, 2, rank, world));
      int64_t n = 0;
      for (auto& b : all_batches(*eval, 0)) {
        n += b.images.size(0);
        for (int64_t k = 0; k < b.indices.size(0); ++k) seen_eval.insert(b.indices[k].item<int64_t>());
      }
      CHECK(n == eval->size());
    }
    CHECK(batch_counts.size() == 1);  // equal on every rank
    CHECK(seen_eval.size() == 14);
    for (int64_t i = 0; i < 14; ++i) CHECK(seen_eval.count(i) == 1);
  }
}

TEST_CASE("data: the train augmentation of a sample does not depend on the rank layout", "[data]") {
  test::TempDir dir("data");
  test::make_image_folder(dir.path(), "train", 2, 4);
  // Batch size 1: each batch is one sample; same sample, same epoch => same pixels.
  std::map<int64_t, torch::Tensor> single, sharded;
  for (auto& b : all_batches(*make_image_source(test::small_config(dir.path(), 1), opts(Split::kTrain, 1)), 2))
    single[b.indices[0].item<int64_t>()] = b.images;
  for (int rank = 0; rank < 2; ++rank)
    for (auto& b :
         all_batches(*make_image_source(test::small_config(dir.path(), 2), opts(Split::kTrain, 1, rank, 2)), 2))
      sharded[b.indices[0].item<int64_t>()] = b.images;
  REQUIRE(sharded.size() == 8);
  for (auto& [i, t] : sharded) CHECK(torch::equal(t, single.at(i)));
}

TEST_CASE("data: each kind of bad file under skip and fail", "[data]") {
  struct Kind {
    std::string name, expect;
    std::function<void(const std::string&)> make;
  };
  std::vector<Kind> kinds = {
      {"zero-byte", "empty file", [](const std::string& p) { test::write_bytes(p, {}); }},
      {"truncated", "truncated JPEG",
       [](const std::string& p) {
         auto b = encode_image(photo_like_image(60, 40, 9), ".jpg");
         b.resize(b.size() / 2);
         test::write_bytes(p, b);
       }},
      {"corrupt", "cannot decode",
       [](const std::string& p) {
         std::vector<uchar> b(3000);
         for (size_t i = 0; i < b.size(); ++i) b[i] = static_cast<uchar>(i * 7919 % 251);
         test::write_bytes(p, b);
       }},
      {"directory", "is a directory", [](const std::string& p) { fs::create_directories(p); }},
      {"dangling-link", "dangling symbolic link",
       [](const std::string& p) { fs::create_symlink(p + ".missing-target", p); }},
  };
  for (const auto& kind : kinds) {
    INFO(kind.name);
    test::TempDir dir("data");
    test::make_image_folder(dir.path(), "train", 2, 4);
    const std::string bad = dir.file("train/class_1/img_2.jpg");
    fs::remove(bad);
    kind.make(bad);
    // skip: the batch holding it comes out one short; counted; the batch count is unchanged.
    auto c = test::small_config(dir.path(), 2);
    c.data.max_bad_fraction = 0.2;
    auto s = make_image_source(c, opts(Split::kTrain, 4));
    auto batches = all_batches(*s, 0);
    CHECK(batches.size() == 2);
    int64_t n = 0;
    for (auto& b : batches) {
      n += b.images.size(0);
      for (int64_t k = 0; k < b.indices.size(0); ++k) CHECK(b.indices[k].item<int64_t>() != 6);
    }
    CHECK(n == 7);
    CHECK(s->stats().bad_files == 1);
    CHECK(s->stats().samples == 7);
    // Same batches with another worker count.
    c.data.workers = 1;
    auto again = all_batches(*make_image_source(c, opts(Split::kTrain, 4)), 0);
    for (size_t i = 0; i < batches.size(); ++i) CHECK(torch::equal(batches[i].images, again[i].images));
    // skip, but more than max_bad_fraction failed: the epoch aborts naming the file.
    c.data.max_bad_fraction = 0.1;
    auto strict = make_image_source(c, opts(Split::kTrain, 4));
    std::string e = error_of([&] { all_batches(*strict, 0); });
    CHECK_THAT(e, Contains("max_bad_fraction"));
    CHECK_THAT(e, Contains(bad));
    CHECK_THAT(e, Contains(kind.expect));
    // fail: the first bad file stops the run, naming it.
    c.data.bad_files = "fail";
    auto failing = make_image_source(c, opts(Split::kTrain, 4));
    e = error_of([&] { all_batches(*failing, 0); });
    CHECK_THAT(e, Contains(bad + ": " + kind.expect));
    CHECK_THAT(e, Contains("data.bad_files: fail"));
  }
}

TEST_CASE("data: missing directory, empty class and class-list mismatches are clear errors", "[data]") {
  test::TempDir dir("data");
  auto c = test::small_config(dir.path(), 1);
  CHECK_THAT(error_of([&] { make_image_source(c, opts(Split::kTrain, 2)); }),
             Contains(dir.file("train") + ": dataset directory not found"));
  test::make_image_folder(dir.path(), "train", 2, 2);
  fs::create_directories(dir.file("train/class_2"));
  CHECK_THAT(error_of([&] { make_image_source(c, opts(Split::kTrain, 2)); }),
             Contains(dir.file("train/class_2") + ": empty class"));
  fs::remove(dir.file("train/class_2"));
  auto o = opts(Split::kTrain, 2);
  o.expected_classes = {"class_0", "class_1", "class_9"};
  CHECK_THAT(error_of([&] { make_image_source(c, o); }), Contains("missing here: class_9"));
  o.expected_classes = {"class_0"};
  CHECK_THAT(error_of([&] { make_image_source(c, o); }), Contains("not in the checkpoint's class list: class_1"));
  // Eval maps by name: a val folder with a subset of the classes keeps the checkpoint's labels.
  test::make_image_folder(dir.path(), "val", 2, 2);
  fs::rename(dir.file("val/class_1"), dir.file("val/class_2"));
  auto e = opts(Split::kEval, 8);
  e.expected_classes = {"class_0", "class_1", "class_2"};
  auto s = make_image_source(c, e);
  CHECK(s->classes() == e.expected_classes);
  auto b = all_batches(*s, 0);
  CHECK(b.at(0).labels.equal(torch::tensor(std::vector<int64_t>{0, 0, 2, 2})));
}

TEST_CASE("data: ImageNet's flat validation layout with ground truth and synsets", "[data]") {
  test::TempDir dir("data");
  for (int i = 1; i <= 4; ++i) {
    char name[64];
    std::snprintf(name, sizeof name, "val/ILSVRC2012_val_%08d.JPEG", i);
    test::write_bytes(dir.file(name), encode_image(photo_like_image(40, 30, i), ".jpg"));
  }
  // Class ids follow the devkit's order, which is not the sorted wnid order.
  dir.write("synsets.txt", "n02\nn01 tench, Tinca tinca\nn03\n");
  dir.write("gt.txt", "1\n2\n3\n1\n");
  auto c = test::small_config(dir.path(), 1);
  c.data.val_ground_truth = "gt.txt";
  c.data.val_synsets = "synsets.txt";
  auto s = make_image_source(c, opts(Split::kEval, 8));
  CHECK(s->classes() == std::vector<std::string>{"n01", "n02", "n03"});
  CHECK(all_batches(*s, 0).at(0).labels.equal(torch::tensor(std::vector<int64_t>{1, 0, 2, 1})));
  dir.write("gt.txt", "1\n2\n4\n1\n");
  CHECK_THAT(error_of([&] { make_image_source(c, opts(Split::kEval, 8)); }),
             Contains(dir.file("gt.txt") + ":3: unknown class id 4"));
  dir.write("gt.txt", "1\n2\n3\n");
  CHECK_THAT(error_of([&] { make_image_source(c, opts(Split::kEval, 8)); }), Contains("3 labels for 4 images"));
  auto o = opts(Split::kEval, 8);
  o.expected_classes = {"n01", "n02"};
  dir.write("gt.txt", "1\n2\n3\n1\n");
  CHECK_THAT(error_of([&] { make_image_source(c, o); }), Contains("not in the checkpoint's class list: n03"));
}
