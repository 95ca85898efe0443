// Small image datasets that the data tests make for themselves.
#pragma once
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "config/config.h"
#include "data/photo_like.h"
#include "support/command.h"

namespace prom::test {

inline void write_bytes(const std::string& path, const std::vector<uchar>& bytes) {
  std::filesystem::create_directories(std::filesystem::path(path).parent_path());
  std::ofstream(path, std::ios::binary).write(reinterpret_cast<const char*>(bytes.data()),
                                              static_cast<std::streamsize>(bytes.size()));
}

// root/<split>/class_<c>/img_<i>.jpg, `per_class` photo-like JPEGs of varied sizes per class.
inline void make_image_folder(const std::string& root, const std::string& split, int classes, int per_class) {
  for (int c = 0; c < classes; ++c)
    for (int i = 0; i < per_class; ++i) {
      const int w = 40 + 7 * ((c * per_class + i) % 5), h = 30 + 5 * ((c + i) % 4);
      write_bytes(root + "/" + split + "/class_" + std::to_string(c) + "/img_" + std::to_string(i) + ".jpg",
                  data::encode_image(data::photo_like_image(w, h, static_cast<uint64_t>(c * 1000 + i)), ".jpg"));
    }
}

// A small, fast config: 24-pixel crops.
inline config::Config small_config(const std::string& root, int workers) {
  config::Config c;
  c.data.root = root;
  c.data.workers = workers;
  c.data.prefetch_batches = 2;
  c.data.train_transform.crop = 24;
  c.data.eval_transform.resize = 28;
  c.data.eval_transform.crop = 24;
  c.run.seed = 7;
  return c;
}

}  // namespace prom::test
