#include "data/decode.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstring>
#include <iterator>
#include <opencv2/imgcodecs.hpp>

#include "data/jpeg_decode.h"

namespace prom::data {
namespace {

[[noreturn]] void bad(const std::string& path, const std::string& what) { throw BadImage(at_path(path, what)); }

// libjpeg decodes a truncated JPEG without an error (it warns and fills the rest with gray), while
// PIL refuses it; so a JPEG must end its last scan with the end-of-image marker. Inside entropy-coded
// data 0xFF is always followed by 0x00 or a restart marker, so scanning back from the end, the first
// of EOI (FFD9) or start-of-scan (FFDA) we meet tells whether the last scan was finished. An EXIF
// thumbnail's EOI sits before the main image's scans and cannot fool this.
bool jpeg_is_complete(const std::vector<uchar>& b) {
  for (size_t i = b.size() - 1; i > 0; --i) {
    if (b[i - 1] != 0xFF) continue;
    if (b[i] == 0xD9) return true;
    if (b[i] == 0xDA) return false;
  }
  return false;
}

bool is_jpeg(const std::vector<uchar>& b) { return b.size() >= 3 && b[0] == 0xFF && b[1] == 0xD8 && b[2] == 0xFF; }

bool starts_with(const std::vector<uchar>& b, const char* magic, size_t n, size_t at = 0) {
  return b.size() >= at + n && std::memcmp(b.data() + at, magic, n) == 0;
}

// Only the formats a dataset folder may hold (data/dataset.cpp's extensions) reach OpenCV. imdecode
// tries every decoder it was built with, and Debian's includes GDCM (DICOM), which abort()s on a
// malformed file (found by fuzz_image_decode: 135 bytes with "DICM" at offset 128); the decoders of
// these formats come before GDCM in OpenCV's order, so a file that passes here never reaches it.
bool is_supported_format(const std::vector<uchar>& b) {
  const bool pnm = b.size() >= 3 && b[0] == 'P' && b[1] >= '1' && b[1] <= '6' && std::isspace(b[2]);
  return is_jpeg(b) || starts_with(b, "\x89PNG\r\n\x1a\n", 8) || starts_with(b, "BM", 2) || pnm ||
         starts_with(b, "II*\0", 4) || starts_with(b, "MM\0*", 4) || (starts_with(b, "RIFF", 4) && starts_with(b, "WEBP", 4, 8));
}

// A file declaring more pixels than this is refused before anything is allocated: a few header bytes
// must not make a loader thread allocate gigabytes. 2^27 (134 M) pixels, e.g. 16384 x 8192, is far
// above any training photo and 400 MB as BGR. JPEG and PNG (what prom's datasets hold) are checked
// here; for other formats OpenCV's own limit (OPENCV_IO_MAX_IMAGE_PIXELS, 2^30) applies.
constexpr int64_t kMaxImagePixels = int64_t{1} << 27;

// The width and height in a PNG's IHDR chunk (always the first, at byte 16), or false.
bool read_png_size(const std::vector<uchar>& b, int64_t* width, int64_t* height) {
  static const uchar kSignature[] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1A, '\n'};
  if (b.size() < 24 || !std::equal(std::begin(kSignature), std::end(kSignature), b.begin()) ||
      std::memcmp(b.data() + 12, "IHDR", 4) != 0)
    return false;
  auto be32 = [&](size_t i) { return int64_t{b[i]} << 24 | int64_t{b[i + 1]} << 16 | int64_t{b[i + 2]} << 8 | b[i + 3]; };
  *width = be32(16);
  *height = be32(20);
  return true;
}

void check_declared_size(const std::vector<uchar>& bytes, const std::string& path) {
  int64_t width = 0, height = 0;
  if (!(is_jpeg(bytes) ? read_jpeg_size(bytes, &width, &height) : read_png_size(bytes, &width, &height))) return;
  if (width > kMaxImagePixels || height > kMaxImagePixels || width * height > kMaxImagePixels)  // no overflow
    bad(path, "declares " + std::to_string(width) + "x" + std::to_string(height) + " pixels, more than the limit of " +
                  std::to_string(kMaxImagePixels));
}

}  // namespace

std::vector<uchar> read_image_bytes(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    struct stat st;
    if (::lstat(path.c_str(), &st) == 0 && S_ISLNK(st.st_mode)) bad(path, "dangling symbolic link");
    bad(path, std::string("cannot open: ") + std::strerror(errno));
  }
  struct stat st;
  if (::fstat(fd, &st) != 0) {
    int e = errno;
    ::close(fd);
    bad(path, std::string("cannot stat: ") + std::strerror(e));
  }
  if (S_ISDIR(st.st_mode)) {
    ::close(fd);
    bad(path, "is a directory, expected an image file");
  }
  std::vector<uchar> bytes(static_cast<size_t>(st.st_size));
  size_t done = 0;
  while (done < bytes.size()) {
    ssize_t n = ::read(fd, bytes.data() + done, bytes.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      int e = errno;
      ::close(fd);
      bad(path, n == 0 ? "file shrank while reading" : std::string("read failed: ") + std::strerror(e));
    }
    done += static_cast<size_t>(n);
  }
  ::close(fd);
  if (bytes.empty()) bad(path, "empty file (0 bytes)");
  return bytes;
}

cv::Mat decode_image(const std::vector<uchar>& bytes, const std::string& path) {
  if (bytes.empty()) bad(path, "empty file (0 bytes)");
  if (is_jpeg(bytes) && !jpeg_is_complete(bytes)) bad(path, "truncated JPEG (no end-of-image marker after the last scan)");
  if (!is_supported_format(bytes)) bad(path, "cannot decode: not a JPEG, PNG, BMP, PPM/PGM, TIFF or WebP image (unrecognized content)");
  check_declared_size(bytes, path);
  cv::Mat img;
  if (is_jpeg(bytes) && decode_jpeg_fast(bytes, img)) return img;
  try {
    // IMREAD_COLOR: gray is replicated, alpha dropped, CMYK converted, 16-bit scaled to 8-bit — what
    // PIL's convert("RGB") does, except channel order (BGR here; the tensor writer swaps).
    img = cv::imdecode(bytes, cv::IMREAD_COLOR | cv::IMREAD_IGNORE_ORIENTATION);
  } catch (const cv::Exception& e) {
    bad(path, "cannot decode: " + e.msg);
  }
  if (img.empty()) bad(path, "cannot decode: corrupt, truncated or not an image");
  if (img.type() != CV_8UC3) bad(path, "decoder returned an unexpected pixel type");
  return img;
}

cv::Mat decode_image_file(const std::string& path) { return decode_image(read_image_bytes(path), path); }

}  // namespace prom::data
