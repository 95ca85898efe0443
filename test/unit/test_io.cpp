#include "support/catch.h"
#include <filesystem>

#include "core/error.h"
#include "io/atomic_file.h"
#include "io/safetensors.h"
#include "support/command.h"

using namespace prom;
using Catch::Matchers::Contains;

namespace {
std::string decode_error(const std::string& bytes) {
  try {
    io::decode_safetensors(bytes, "x.safetensors");
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}
std::string with_header(const std::string& json, const std::string& data = "") {
  std::string out(8, '\0');
  uint64_t n = json.size();
  for (int i = 0; i < 8; ++i) out[i] = static_cast<char>((n >> (8 * i)) & 0xff);
  return out + json + data;
}
}  // namespace

TEST_CASE("safetensors: round trip keeps names, dtypes, shapes, values and metadata", "[io]") {
  io::TensorFile f;
  f.tensors["a.weight"] = torch::randn({3, 4, 1, 1});
  f.tensors["b.int8"] = torch::randint(-128, 127, {7}, torch::kInt8);
  f.tensors["c.long"] = torch::tensor({int64_t(5)});
  f.tensors["d.empty"] = torch::zeros({0, 3});
  f.tensors["e.u8"] = torch::randint(0, 255, {2, 2}, torch::kUInt8);
  f.metadata["arch"] = "mobilenet_v2";
  std::string bytes = io::encode_safetensors(f);
  uint64_t header_len = 0;
  for (int i = 0; i < 8; ++i) header_len |= uint64_t(static_cast<unsigned char>(bytes[i])) << (8 * i);
  CHECK(header_len % 8 == 0);  // data starts 8-byte aligned
  auto g = io::decode_safetensors(bytes, "mem");
  REQUIRE(g.tensors.size() == f.tensors.size());
  for (const auto& [name, t] : f.tensors) {
    INFO(name);
    CHECK(g.tensors[name].scalar_type() == t.scalar_type());
    CHECK(g.tensors[name].sizes() == t.sizes());
    CHECK(torch::equal(g.tensors[name], t));
  }
  CHECK(g.metadata == f.metadata);
  CHECK(io::encode_safetensors(g) == bytes);  // deterministic bytes
}

TEST_CASE("safetensors: channels_last tensors are written in logical (NCHW) order", "[io]") {
  io::TensorFile f;
  auto t = torch::randn({2, 3, 4, 5});
  f.tensors["w"] = t.contiguous(torch::MemoryFormat::ChannelsLast);
  auto g = io::decode_safetensors(io::encode_safetensors(f), "mem");
  CHECK(torch::equal(g.tensors["w"], t));
}

TEST_CASE("safetensors: malformed files are errors, never crashes", "[io]") {
  CHECK_THAT(decode_error(""), Contains("x.safetensors: not a valid safetensors file: shorter than"));
  CHECK_THAT(decode_error(std::string(8, '\xff')), Contains("implausibly large"));
  CHECK_THAT(decode_error(std::string("\x10\0\0\0\0\0\0\0", 8) + "{}"), Contains("runs past the end"));
  CHECK_THAT(decode_error(with_header("{not json")), Contains("header is not JSON"));
  CHECK_THAT(decode_error(with_header("[1,2]")), Contains("not a JSON object"));
  CHECK_THAT(decode_error(with_header(R"({"a":{"dtype":"Q9","shape":[1],"data_offsets":[0,4]}})", "abcd")),
             Contains("unsupported dtype Q9"));
  CHECK_THAT(decode_error(with_header(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,4]}})", "abcd")),
             Contains("has 4 bytes but its shape needs 8"));
  CHECK_THAT(decode_error(with_header(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,8]}})", "abcd")),
             Contains("outside the file"));
  CHECK_THAT(decode_error(with_header(R"({"a":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}})", "abcd")),
             Contains("negative or non-integer"));
  CHECK_THAT(decode_error(with_header(
                 R"({"a":{"dtype":"F32","shape":[4294967296,4294967296,16],"data_offsets":[0,4]}})", "abcd")),
             Contains("more elements than the file holds"));
  CHECK_THAT(decode_error(with_header(R"({"a":{"dtype":"F32","shape":[1]}})", "abcd")), Contains("data_offsets"));
  CHECK_THAT(decode_error(with_header(R"({"__metadata__":{"k":1}})")), Contains("__metadata__.k is not a string"));
}

TEST_CASE("atomic writes replace the file whole and leave no temporary behind", "[io]") {
  test::TempDir dir("io");
  std::string p = dir.file("sub/out.bin");
  io::write_file_atomic(p, "first");
  io::write_file_atomic(p, "second");
  CHECK(io::read_file(p) == "second");
  int files = 0;
  for (auto& e : std::filesystem::directory_iterator(dir.file("sub"))) {
    (void)e;
    ++files;
  }
  CHECK(files == 1);
  CHECK_THROWS_WITH(io::read_file(dir.file("missing")), Contains("missing: no such file"));
  CHECK_THROWS_WITH(io::read_safetensors(dir.path()), Contains("is a directory"));
}
