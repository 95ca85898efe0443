#include "data/dataset.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>

#include "core/error.h"

namespace prom::data {
namespace fs = std::filesystem;

namespace {

std::string lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

void require_directory(const std::string& dir, const std::string& what) {
  std::error_code ec;
  if (!fs::exists(dir, ec)) throw Error(at_path(dir, what + " not found"));
  if (!fs::is_directory(dir, ec)) throw Error(at_path(dir, what + " is not a directory"));
}

// Sorted image entries directly inside dir (hidden ones skipped).
std::vector<std::string> image_entries(const std::string& dir) {
  std::vector<std::string> names;
  std::error_code ec;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    std::string name = it->path().filename().string();
    if (name.empty() || name[0] == '.' || !has_image_extension(name)) continue;
    names.push_back(name);
  }
  if (ec) throw Error(at_path(dir, "cannot list directory: " + ec.message()));
  std::sort(names.begin(), names.end());
  return names;
}

std::string join(const std::vector<std::string>& v, size_t max_items = 5) {
  std::string s;
  for (size_t i = 0; i < v.size() && i < max_items; ++i) s += (i ? ", " : "") + v[i];
  if (v.size() > max_items) s += ", ... (" + std::to_string(v.size()) + " in all)";
  return s;
}

// Maps names to labels: the sorted names themselves, or the expected list checked against them.
std::vector<std::string> resolve_classes(const std::string& where, const std::vector<std::string>& found,
                                         const ClassPolicy& policy) {
  if (policy.expected.empty()) return found;
  std::set<std::string> expected(policy.expected.begin(), policy.expected.end()), have(found.begin(), found.end());
  std::vector<std::string> unknown, missing;
  for (const auto& c : found)
    if (!expected.count(c)) unknown.push_back(c);
  for (const auto& c : policy.expected)
    if (!have.count(c)) missing.push_back(c);
  if (!unknown.empty())
    throw Error(at_path(where, "classes not in the checkpoint's class list: " + join(unknown)));
  if (!missing.empty() && !policy.allow_missing)
    throw Error(at_path(where, "classes of the checkpoint's class list missing here: " + join(missing)));
  return policy.expected;
}

std::vector<std::string> read_lines(const std::string& path, const std::string& what) {
  std::error_code ec;
  if (!fs::is_regular_file(path, ec)) throw Error(at_path(path, what + " not found"));
  std::ifstream in(path);
  if (!in) throw Error(at_path(path, "cannot open " + what));
  std::vector<std::string> lines;
  for (std::string line; std::getline(in, line);) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    lines.push_back(line);
  }
  while (!lines.empty() && lines.back().find_first_not_of(" \t") == std::string::npos) lines.pop_back();
  return lines;
}

}  // namespace

bool has_image_extension(const std::string& name) {
  static const char* kExt[] = {".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp"};
  std::string ext = lower(fs::path(name).extension().string());
  for (const char* e : kExt)
    if (ext == e) return true;
  return false;
}

Dataset scan_image_folder(const std::string& root, const ClassPolicy& policy) {
  require_directory(root, "dataset directory");
  std::vector<std::string> found;
  std::error_code ec;
  for (fs::directory_iterator it(root, ec), end; !ec && it != end; it.increment(ec)) {
    std::string name = it->path().filename().string();
    if (!name.empty() && name[0] != '.' && it->is_directory(ec)) found.push_back(name);
  }
  if (ec) throw Error(at_path(root, "cannot list directory: " + ec.message()));
  std::sort(found.begin(), found.end());
  if (found.empty()) throw Error(at_path(root, "no class folders (expected root/<class>/<image>)"));
  Dataset d;
  d.root = root;
  d.classes = resolve_classes(root, found, policy);
  std::map<std::string, int64_t> label_of;
  for (size_t i = 0; i < d.classes.size(); ++i) label_of[d.classes[i]] = static_cast<int64_t>(i);
  for (const auto& cls : found) {
    std::string dir = (fs::path(root) / cls).string();
    auto names = image_entries(dir);
    if (names.empty()) throw Error(at_path(dir, "empty class: no image files"));
    for (const auto& n : names) d.samples.push_back({(fs::path(dir) / n).string(), label_of.at(cls)});
  }
  return d;
}

Dataset scan_flat_val(const std::string& root, const std::string& ground_truth, const std::string& synsets,
                      const ClassPolicy& policy) {
  require_directory(root, "validation directory");
  if (synsets.empty()) throw Error(at_path(ground_truth, "a flat validation set needs data.val_synsets too"));
  std::vector<std::string> wnids;
  {
    auto lines = read_lines(synsets, "synset mapping");
    for (size_t i = 0; i < lines.size(); ++i) {
      std::istringstream ss(lines[i]);
      std::string w;
      if (!(ss >> w)) throw Error(synsets + ":" + std::to_string(i + 1) + ": empty line, expected a class name");
      wnids.push_back(w);
    }
    if (wnids.empty()) throw Error(at_path(synsets, "synset mapping is empty"));
  }
  std::vector<std::string> sorted = wnids;
  std::sort(sorted.begin(), sorted.end());
  if (std::adjacent_find(sorted.begin(), sorted.end()) != sorted.end())
    throw Error(at_path(synsets, "class " + *std::adjacent_find(sorted.begin(), sorted.end()) + " listed twice"));
  ClassPolicy p = policy;
  p.allow_missing = true;  // a synset list may name classes this split lacks; unknown ones still fail
  Dataset d;
  d.root = root;
  d.classes = policy.expected.empty() ? sorted : resolve_classes(synsets, sorted, p);
  std::map<std::string, int64_t> label_of;
  for (size_t i = 0; i < d.classes.size(); ++i) label_of[d.classes[i]] = static_cast<int64_t>(i);
  auto names = image_entries(root);
  if (names.empty()) throw Error(at_path(root, "no image files in the flat validation directory"));
  auto lines = read_lines(ground_truth, "ground-truth file");
  if (lines.size() != names.size())
    throw Error(at_path(ground_truth, std::to_string(lines.size()) + " labels for " + std::to_string(names.size()) +
                                          " images in " + root));
  for (size_t i = 0; i < names.size(); ++i) {
    const std::string where = ground_truth + ":" + std::to_string(i + 1);
    long long id = 0;
    size_t used = 0;
    try {
      id = std::stoll(lines[i], &used);
    } catch (const std::exception&) {
      throw Error(where + ": expected a class id, got '" + lines[i] + "'");
    }
    if (lines[i].find_first_not_of(" \t", used) != std::string::npos)
      throw Error(where + ": expected a class id, got '" + lines[i] + "'");
    if (id < 1 || id > static_cast<long long>(wnids.size()))
      throw Error(where + ": unknown class id " + std::to_string(id) + " (the synset mapping has " +
                  std::to_string(wnids.size()) + ")");
    d.samples.push_back({(fs::path(root) / names[i]).string(), label_of.at(wnids[static_cast<size_t>(id - 1)])});
  }
  return d;
}

}  // namespace prom::data
