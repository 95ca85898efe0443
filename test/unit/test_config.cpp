#include "support/catch.h"
#include <filesystem>

#include "config/config.h"
#include "support/command.h"

using prom::ConfigError;
using prom::config::load_config;
using prom::test::TempDir;
using Catch::Matchers::Contains;

namespace {
const char* kMinimal = "model:\n  arch: mobilenet_v2\n  num_classes: 10\n";

std::string error_of(const std::string& path, const std::vector<std::string>& overrides = {}) {
  try {
    load_config(path, overrides);
  } catch (const ConfigError& e) {
    return e.what();
  }
  return "";
}
}  // namespace

TEST_CASE("config: a minimal file loads with defaults", "[config]") {
  TempDir dir("config");
  auto c = load_config(dir.write("a.yaml", kMinimal));
  CHECK(c.model.num_classes == 10);
  CHECK(c.model.width_mult == 1.0);
  CHECK(c.optim.name == "sgd");
  CHECK(c.data.mean.size() == 3);
}

TEST_CASE("config: unknown keys name file, line and key and suggest the closest", "[config]") {
  TempDir dir("config");
  auto path = dir.write("a.yaml", std::string(kMinimal) + "optim:\n  lr: 0.1\n  momentun: 0.9\n");
  std::string e = error_of(path);
  CHECK_THAT(e, Contains(path + ":6:"));
  CHECK_THAT(e, Contains("optim.momentun"));
  CHECK_THAT(e, Contains("did you mean 'optim.momentum'"));
  // Unknown section.
  e = error_of(dir.write("b.yaml", std::string(kMinimal) + "optimm:\n  lr: 0.1\n"));
  CHECK_THAT(e, Contains(":4:"));
  CHECK_THAT(e, Contains("did you mean 'optim'"));
}

TEST_CASE("config: wrong types, ranges and choices are errors with line and key", "[config]") {
  TempDir dir("config");
  std::string e = error_of(dir.write("a.yaml", std::string(kMinimal) + "train:\n  epochs: three\n"));
  CHECK_THAT(e, Contains("a.yaml:5: train.epochs: expected an integer, got 'three'"));
  e = error_of(dir.write("b.yaml", std::string(kMinimal) + "train:\n  epochs: 2.5\n"));
  CHECK_THAT(e, Contains("train.epochs: expected an integer"));
  e = error_of(dir.write("c.yaml", std::string(kMinimal) + "optim:\n  lr: -1\n"));
  CHECK_THAT(e, Contains("c.yaml:5: optim.lr: value -1 is out of range"));
  e = error_of(dir.write("d.yaml", std::string(kMinimal) + "optim:\n  name: sdg\n"));
  CHECK_THAT(e, Contains("optim.name: 'sdg' is not one of: sgd, adamw (did you mean 'sgd'?)"));
  e = error_of(dir.write("e.yaml", std::string(kMinimal) + "model:\n  num_classes: 10\n"));
  CHECK_THAT(e, Contains("e.yaml:4: model: key given twice"));
}

TEST_CASE("config: missing file, empty file, bad YAML and missing required keys", "[config]") {
  TempDir dir("config");
  CHECK_THAT(error_of(dir.file("nope.yaml")), Contains("nope.yaml: config file not found"));
  CHECK_THAT(error_of(dir.write("empty.yaml", "")), Contains("empty.yaml: config file is empty"));
  CHECK_THAT(error_of(dir.write("bad.yaml", "model: [1, 2\n")), Contains("bad.yaml:"));
  CHECK_THAT(error_of(dir.write("list.yaml", "- 1\n- 2\n")), Contains("top level must be a map"));
  std::string e = error_of(dir.write("req.yaml", "model:\n  arch: mobilenet_v2\n"));
  CHECK_THAT(e, Contains("req.yaml:2: model.num_classes: missing required key"));
}

TEST_CASE("config: base files are inherited, relative to the including file", "[config]") {
  TempDir dir("config");
  dir.write("recipes/base.yaml", std::string(kMinimal) + "optim:\n  lr: 0.5\n  momentum: 0.8\n");
  auto path = dir.write("recipes/child.yaml", "base: base.yaml\noptim:\n  lr: 0.25\n");
  auto c = load_config(path);
  CHECK(c.optim.lr == 0.25);
  CHECK(c.optim.momentum == 0.8);
  CHECK(c.model.num_classes == 10);
  // Errors in a base file name the base file.
  dir.write("recipes/badbase.yaml", std::string(kMinimal) + "train:\n  epoch: 3\n");
  std::string e = error_of(dir.write("recipes/c2.yaml", "base: badbase.yaml\n"));
  CHECK_THAT(e, Contains("badbase.yaml:5: train.epoch: unknown key (did you mean 'train.epochs'?)"));
  CHECK_THAT(error_of(dir.write("recipes/c3.yaml", "base: missing.yaml\n")), Contains("base: file not found"));
  dir.write("recipes/loop1.yaml", "base: loop2.yaml\n");
  CHECK_THAT(error_of(dir.write("recipes/loop2.yaml", "base: loop1.yaml\n")), Contains("cycle"));
}

TEST_CASE("config: --set overrides are validated like the file", "[config]") {
  TempDir dir("config");
  auto path = dir.write("a.yaml", kMinimal);
  auto c = load_config(path, {"train.epochs=3", "optim.lr=0.1", "data.mean=[0.5, 0.5, 0.5]"});
  CHECK(c.train.epochs == 3);
  CHECK(c.optim.lr == 0.1);
  CHECK(c.data.mean[0] == 0.5);
  CHECK_THAT(error_of(path, {"train.epochs=abc"}), Contains("--set train.epochs=abc: train.epochs: expected an integer"));
  CHECK_THAT(error_of(path, {"optim.lrr=0.1"}), Contains("did you mean 'optim.lr'"));
  CHECK_THAT(error_of(path, {"epochs"}), Contains("expected KEY=VALUE"));
  CHECK_THAT(error_of(path, {"epochs=3"}), Contains("must name a section and a key"));
  // An override can fix what a file alone would fail on: cross-field rules apply to the result.
  auto bad = dir.write("b.yaml", std::string(kMinimal) + "data:\n  eval_transform:\n    crop: 300\n");
  CHECK_THAT(error_of(bad), Contains("data.eval_transform.crop: must not exceed"));
  CHECK(load_config(bad, {"data.eval_transform.resize=320"}).data.eval_transform.resize == 320);
}

TEST_CASE("config: the resolved YAML reads back to the same config", "[config]") {
  TempDir dir("config");
  auto c = load_config(dir.write("a.yaml", kMinimal), {"optim.lr=0.045", "optim.weight_decay=4e-5"});
  std::string text = prom::config::to_yaml(c);
  auto again = load_config(dir.write("b.yaml", text));
  CHECK(prom::config::to_yaml(again) == text);
  CHECK(again.optim.lr == 0.045);
  CHECK(again.optim.weight_decay == 4e-5);
}

TEST_CASE("config: every shipped recipe loads (policies/ holds fragments for base:)", "[config]") {
  namespace fs = std::filesystem;
  int recipes = 0;
  for (const auto& e : fs::recursive_directory_iterator(prom::test::source("configs"))) {
    if (e.path().extension() != ".yaml" || e.path().parent_path().filename() == "policies") continue;
    INFO(e.path().string());
    CHECK_NOTHROW(load_config(e.path().string()));
    ++recipes;
  }
  CHECK(recipes >= 2);
  auto prom_imagenet = load_config(prom::test::source("configs/mobilenetv2_prom_imagenet.yaml"));
  CHECK(prom_imagenet.quant.enabled);
  CHECK(prom_imagenet.quant.rules.size() == 2);
  CHECK(prom_imagenet.model.num_classes == 1000);  // from the first base
  CHECK(prom_imagenet.optim.lr == 0.0005);         // the file itself wins
}

TEST_CASE("config: edit distance", "[config]") {
  CHECK(prom::config::edit_distance("momentun", "momentum") == 1);
  CHECK(prom::config::closest("lrr", {"lr", "momentum"}) == "lr");
  CHECK(prom::config::closest("xyzzy", {"lr", "momentum"}).empty());
}
