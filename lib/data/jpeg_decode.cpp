#include "data/jpeg_decode.h"

#include <csetjmp>
#include <cstdio>

#include <jpeglib.h>

namespace prom::data {
namespace {

// libjpeg reports fatal errors through error_exit, which must not return: jump back to the caller.
// Warnings (e.g. extraneous bytes) are ignored, as PIL ignores them.
struct ErrorManager {
  jpeg_error_mgr pub;
  std::jmp_buf jump;
};

void on_error(j_common_ptr cinfo) { std::longjmp(reinterpret_cast<ErrorManager*>(cinfo->err)->jump, 1); }
void on_message(j_common_ptr) {}

// libjpeg's errors longjmp back to the caller's setjmp (which must be in the caller's own frame)
// instead of exiting the process; its warnings are dropped.
void create_decompress(jpeg_decompress_struct& cinfo, ErrorManager& err) {
  cinfo.err = jpeg_std_error(&err.pub);
  err.pub.error_exit = on_error;
  err.pub.output_message = on_message;
  jpeg_create_decompress(&cinfo);
}

}  // namespace

bool decode_jpeg_fast(const std::vector<uchar>& bytes, cv::Mat& out) {
  // Everything that lives across the setjmp is plain C data; `out` belongs to the caller.
  jpeg_decompress_struct cinfo;
  ErrorManager err;
  create_decompress(cinfo, err);
  if (setjmp(err.jump)) {
    jpeg_destroy_decompress(&cinfo);
    return false;
  }
  jpeg_mem_src(&cinfo, bytes.data(), static_cast<unsigned long>(bytes.size()));
  if (jpeg_read_header(&cinfo, TRUE) != JPEG_HEADER_OK ||
      (cinfo.jpeg_color_space != JCS_YCbCr && cinfo.jpeg_color_space != JCS_GRAYSCALE) ||
      cinfo.data_precision != 8) {
    jpeg_destroy_decompress(&cinfo);
    return false;
  }
  cinfo.out_color_space = JCS_EXT_BGR;  // gray is replicated into the three channels
  jpeg_start_decompress(&cinfo);
  out.create(static_cast<int>(cinfo.output_height), static_cast<int>(cinfo.output_width), CV_8UC3);
  while (cinfo.output_scanline < cinfo.output_height) {
    JSAMPROW row = out.ptr<uchar>(static_cast<int>(cinfo.output_scanline));
    jpeg_read_scanlines(&cinfo, &row, 1);
  }
  jpeg_finish_decompress(&cinfo);
  jpeg_destroy_decompress(&cinfo);
  return true;
}

bool read_jpeg_size(const std::vector<uchar>& bytes, int64_t* width, int64_t* height) {
  jpeg_decompress_struct cinfo;
  ErrorManager err;
  create_decompress(cinfo, err);
  if (setjmp(err.jump)) {
    jpeg_destroy_decompress(&cinfo);
    return false;
  }
  jpeg_mem_src(&cinfo, bytes.data(), static_cast<unsigned long>(bytes.size()));
  const bool ok = jpeg_read_header(&cinfo, TRUE) == JPEG_HEADER_OK;
  *width = cinfo.image_width;
  *height = cinfo.image_height;
  jpeg_destroy_decompress(&cinfo);
  return ok;
}

}  // namespace prom::data
