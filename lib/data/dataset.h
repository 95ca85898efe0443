// Which files make a dataset, and their labels. No decoding here (and no OpenCV): scanning is cheap
// and happens once; a file that turns out unreadable is the loader's business (data.bad_files).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace prom::data {

struct Sample {
  std::string path;
  int64_t label = 0;
};

struct Dataset {
  std::string root;
  std::vector<std::string> classes;  // index = label
  std::vector<Sample> samples;       // class by class, file names sorted: a stable order
};

// torchvision's IMG_EXTENSIONS, case-insensitive.
bool has_image_extension(const std::string& name);

// How the class list is chosen.
struct ClassPolicy {
  // Empty: the sorted folder names (torchvision's ImageFolder). Otherwise the fixed list from a
  // checkpoint: labels map by name, so evaluation agrees with training whatever folders exist.
  std::vector<std::string> expected;
  // With `expected`: whether folders may be a subset of it (an evaluation subset). A folder that is
  // not in `expected` is always an error.
  bool allow_missing = false;
};

// root/<class>/<file with an image extension>; one level, hidden entries ignored. Entries with an
// image extension are samples even when they are not regular files (a directory named x.JPEG, a
// dangling link): they fail at load time under the bad-file policy instead of vanishing silently.
// Throws prom::Error for a missing root, no classes, an empty class, or a class-list mismatch.
Dataset scan_image_folder(const std::string& root, const ClassPolicy& policy);

// ImageNet's flat validation layout: root/*.JPEG sorted by name, line i of `ground_truth` the
// 1-based class id of image i, line k of `synsets` the wnid of id k (first word of the line, so both
// the plain list and LOC_synset_mapping.txt work). Throws prom::Error naming file and line.
Dataset scan_flat_val(const std::string& root, const std::string& ground_truth, const std::string& synsets,
                      const ClassPolicy& policy);

}  // namespace prom::data
