// IDX files (the MNIST / Fashion-MNIST format), gzipped or plain: big-endian header
// 00 00 <type> <ndims>, one uint32 per dimension, then the data. Only unsigned bytes (type 0x08).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace prom::data {

struct IdxArray {
  std::vector<int64_t> dims;
  std::vector<uint8_t> data;  // product(dims) bytes
};

// Reads `path` (zlib: gzip or plain) and checks it holds `ndims` dimensions of unsigned bytes.
// Throws prom::Error "path: problem" for a missing file, bad magic, a wrong type or dimension count,
// truncated data, trailing bytes or a corrupt gzip stream.
IdxArray read_idx(const std::string& path, int ndims);

}  // namespace prom::data
