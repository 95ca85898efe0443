#include "io/safetensors.h"

#include <algorithm>
#include <cstring>
#include <limits>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "io/atomic_file.h"

namespace prom::io {
namespace {

using json = nlohmann::json;

// A header bigger than this is not a model we wrote or could use: refuse it before allocating.
constexpr uint64_t kMaxHeaderBytes = 100ull << 20;

struct DtypeName {
  torch::ScalarType type;
  const char* name;
};
constexpr DtypeName kDtypes[] = {
    {torch::kFloat32, "F32"}, {torch::kFloat64, "F64"}, {torch::kFloat16, "F16"},
    {torch::kBFloat16, "BF16"}, {torch::kInt64, "I64"}, {torch::kInt32, "I32"},
    {torch::kInt16, "I16"},   {torch::kInt8, "I8"},     {torch::kUInt8, "U8"},
    {torch::kBool, "BOOL"},
};

const char* dtype_name(torch::ScalarType t) {
  for (const auto& d : kDtypes)
    if (d.type == t) return d.name;
  throw Error(std::string("safetensors: unsupported dtype ") + c10::toString(t));
}

bool dtype_from_name(const std::string& name, torch::ScalarType* out) {
  for (const auto& d : kDtypes)
    if (name == d.name) {
      *out = d.type;
      return true;
    }
  return false;
}

}  // namespace

std::string encode_safetensors(const TensorFile& file) {
  json header = json::object();
  uint64_t offset = 0;
  std::vector<torch::Tensor> blobs;
  for (const auto& [name, tensor] : file.tensors) {
    if (name == "__metadata__") throw Error("safetensors: '__metadata__' is not a valid tensor name");
    torch::Tensor t = tensor.detach().to(torch::kCPU).contiguous();
    uint64_t nbytes = static_cast<uint64_t>(t.numel()) * t.element_size();
    header[name] = {{"dtype", dtype_name(t.scalar_type())},
                    {"shape", t.sizes().vec()},
                    {"data_offsets", {offset, offset + nbytes}}};
    offset += nbytes;
    blobs.push_back(t);
  }
  if (!file.metadata.empty()) header["__metadata__"] = file.metadata;
  std::string text = header.dump();
  while ((text.size() + 8) % 8 != 0) text.push_back(' ');
  std::string out;
  out.reserve(8 + text.size() + offset);
  uint64_t n = text.size();
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<char>((n >> (8 * i)) & 0xff));
  out += text;
  for (const auto& t : blobs) out.append(static_cast<const char*>(t.data_ptr()), t.numel() * t.element_size());
  return out;
}

TensorFile decode_safetensors(const std::string& bytes, const std::string& origin) {
  auto bad = [&](const std::string& what) { return Error(at_path(origin, "not a valid safetensors file: " + what)); };
  if (bytes.size() < 8) throw bad("shorter than the 8-byte header length");
  uint64_t n = 0;
  for (int i = 0; i < 8; ++i) n |= static_cast<uint64_t>(static_cast<unsigned char>(bytes[i])) << (8 * i);
  if (n > kMaxHeaderBytes) throw bad("header length " + std::to_string(n) + " is implausibly large");
  if (n > bytes.size() - 8) throw bad("header length " + std::to_string(n) + " runs past the end of the file");
  json header;
  try {
    header = json::parse(bytes.begin() + 8, bytes.begin() + 8 + static_cast<std::ptrdiff_t>(n));
  } catch (const json::exception& e) {
    throw bad(std::string("header is not JSON (") + e.what() + ")");
  }
  if (!header.is_object()) throw bad("header is not a JSON object");
  const uint64_t data_len = bytes.size() - 8 - n;
  const char* data = bytes.data() + 8 + n;

  TensorFile out;
  for (auto it = header.begin(); it != header.end(); ++it) {
    const std::string& name = it.key();
    const json& entry = it.value();
    if (name == "__metadata__") {
      if (!entry.is_object()) throw bad("__metadata__ is not an object");
      for (auto m = entry.begin(); m != entry.end(); ++m) {
        if (!m.value().is_string()) throw bad("__metadata__." + m.key() + " is not a string");
        out.metadata[m.key()] = m.value().get<std::string>();
      }
      continue;
    }
    if (!entry.is_object()) throw bad("entry '" + name + "' is not an object");
    if (!entry.contains("dtype") || !entry["dtype"].is_string()) throw bad("entry '" + name + "' has no dtype");
    torch::ScalarType type;
    if (!dtype_from_name(entry["dtype"].get<std::string>(), &type))
      throw bad("entry '" + name + "' has unsupported dtype " + entry["dtype"].get<std::string>());
    if (!entry.contains("shape") || !entry["shape"].is_array()) throw bad("entry '" + name + "' has no shape");
    std::vector<int64_t> shape;
    for (const auto& d : entry["shape"]) {
      if (!d.is_number_unsigned()) throw bad("entry '" + name + "' has a negative or non-integer dimension");
      uint64_t v = d.get<uint64_t>();
      if (v > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
        throw bad("entry '" + name + "' declares more elements than the file holds");
      shape.push_back(static_cast<int64_t>(v));
    }
    // Exactly, without overflow: a zero dimension makes the tensor empty whatever the others say
    // (so accepting it must not depend on how many bytes happen to follow, or a file prom reads
    // could be written back into one it refuses); otherwise the product must fit in the data.
    uint64_t numel = std::count(shape.begin(), shape.end(), 0) ? 0 : 1;
    for (int64_t v : shape) {
      if (numel == 0) break;
      if (numel > data_len / static_cast<uint64_t>(v))
        throw bad("entry '" + name + "' declares more elements than the file holds");
      numel *= static_cast<uint64_t>(v);
    }
    const auto& offs = entry.contains("data_offsets") ? entry["data_offsets"] : json();
    if (!offs.is_array() || offs.size() != 2 || !offs[0].is_number_unsigned() || !offs[1].is_number_unsigned())
      throw bad("entry '" + name + "' has no valid data_offsets");
    uint64_t begin = offs[0].get<uint64_t>(), end = offs[1].get<uint64_t>();
    if (begin > end || end > data_len) throw bad("entry '" + name + "' data_offsets lie outside the file");
    uint64_t elem = c10::elementSize(type);
    if (numel > data_len || numel * elem != end - begin)
      throw bad("entry '" + name + "' has " + std::to_string(end - begin) + " bytes but its shape needs " +
                std::to_string(numel * elem));
    torch::Tensor t = torch::empty(shape, torch::TensorOptions().dtype(type));
    if (end > begin) std::memcpy(t.data_ptr(), data + begin, end - begin);
    out.tensors[name] = t;
  }
  return out;
}

TensorFile read_safetensors(const std::string& path) { return decode_safetensors(read_file(path), path); }

void write_safetensors(const std::string& path, const TensorFile& file) {
  write_file_atomic(path, encode_safetensors(file));
}

}  // namespace prom::io
