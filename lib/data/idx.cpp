#include "data/idx.h"

#include <zlib.h>

#include <filesystem>
#include <memory>

#include "core/error.h"

namespace prom::data {
namespace {

struct GzCloser {
  void operator()(gzFile_s* f) const { gzclose(f); }
};

// Reads up to n bytes; returns how many. A corrupt stream is an error, the end of data is not.
size_t read_some(gzFile f, uint8_t* out, size_t n, const std::string& path) {
  size_t done = 0;
  while (done < n) {
    unsigned chunk = static_cast<unsigned>(std::min<size_t>(n - done, 1u << 30));
    int got = gzread(f, out + done, chunk);
    if (got < 0) {
      int errnum = 0;
      const char* msg = gzerror(f, &errnum);
      if (errnum == Z_BUF_ERROR) throw Error(at_path(path, "truncated gzip stream (the file ends early)"));
      throw Error(at_path(path, std::string("corrupt gzip data: ") + (msg ? msg : "read error")));
    }
    if (got == 0) break;
    done += static_cast<size_t>(got);
  }
  return done;
}

}  // namespace

IdxArray read_idx(const std::string& path, int ndims) {
  std::error_code ec;
  if (!std::filesystem::is_regular_file(path, ec)) throw Error(at_path(path, "IDX file not found"));
  std::unique_ptr<gzFile_s, GzCloser> f(gzopen(path.c_str(), "rb"));
  if (!f) throw Error(at_path(path, "cannot open IDX file"));
  uint8_t magic[4];
  if (read_some(f.get(), magic, 4, path) != 4) throw Error(at_path(path, "truncated IDX file: no header"));
  if (magic[0] != 0 || magic[1] != 0)
    throw Error(at_path(path, "not an IDX file (bad magic number; expected 00 00 08 0" + std::to_string(ndims) + ")"));
  if (magic[2] != 0x08) throw Error(at_path(path, "unsupported IDX data type (only unsigned bytes, 0x08)"));
  if (magic[3] != ndims)
    throw Error(at_path(path, "expected " + std::to_string(ndims) + " dimensions, the header says " +
                                  std::to_string(magic[3])));
  IdxArray a;
  uint64_t total = 1;
  for (int d = 0; d < ndims; ++d) {
    uint8_t b[4];
    if (read_some(f.get(), b, 4, path) != 4) throw Error(at_path(path, "truncated IDX file: header cut short"));
    uint64_t n = (uint64_t(b[0]) << 24) | (uint64_t(b[1]) << 16) | (uint64_t(b[2]) << 8) | b[3];
    a.dims.push_back(static_cast<int64_t>(n));
    total *= n;
    if (total > (uint64_t(1) << 34)) throw Error(at_path(path, "implausibly large IDX dimensions"));
  }
  a.data.resize(total);
  size_t got = read_some(f.get(), a.data.data(), total, path);
  if (got != total)
    throw Error(at_path(path, "truncated IDX file: " + std::to_string(got) + " of " + std::to_string(total) +
                                  " data bytes"));
  uint8_t extra;
  if (read_some(f.get(), &extra, 1, path) != 0) throw Error(at_path(path, "trailing bytes after the IDX data"));
  return a;
}

}  // namespace prom::data
