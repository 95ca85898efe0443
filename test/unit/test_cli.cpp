// Runs the real binaries: exit codes, one-line errors, --version, --describe.
#include "support/catch.h"

#include "support/command.h"

using namespace prom::test;
using Catch::Matchers::Contains;

namespace {
int lines(const std::string& s) {
  int n = 0;
  for (char c : s) n += c == '\n';
  return n;
}
}  // namespace

TEST_CASE("--version on every binary names versions, threads, BLAS and the allocator: tcmalloc where the build links it",
          "[cli]") {
  for (const char* b : {"prom-train", "prom-eval", "prom-export", "prom-bench", "prom-data"}) {
    INFO(b);
    auto r = run_command(bin(b) + " --version");
    CHECK(r.exit_code == 0);
    CHECK_THAT(r.output, Contains("LibTorch:"));
    CHECK_THAT(r.output, Contains("CUDA:"));
    CHECK_THAT(r.output, Contains("OpenCV:"));
    CHECK_THAT(r.output, Contains("threads:"));
    CHECK_THAT(r.output, Contains("BLAS:"));
#ifdef PROM_TEST_TCMALLOC
    CHECK_THAT(r.output, Contains("allocator: tcmalloc"));  // loaded, not dropped by the linker's --as-needed
#else
    CHECK_THAT(r.output, Contains("allocator:"));
#endif
  }
}

TEST_CASE("prom-eval --describe prints the MobileNetV2 totals", "[cli]") {
  auto r = run_command(bin("prom-eval") + " --describe --config " + source("configs/mobilenetv2_fp32_imagenet.yaml"));
  CHECK(r.exit_code == 0);
  CHECK_THAT(r.output, Contains("3,504,872 params"));
  CHECK_THAT(r.output, Contains("300.77 M MACs"));
  CHECK_THAT(r.output, Contains("features.1.conv.0.0"));
}

TEST_CASE("prom-eval --describe prints EfficientNet-B0's totals (torchvision's: ctest -R torchvision_)", "[cli]") {
  auto r = run_command(bin("prom-eval") + " --describe --config " +
                       source("configs/fashion-mnist/efficientnet_b0_fp32.yaml") +
                       " --set model.input_size=224 --set model.num_classes=1000 --set model.width_mult=1.0"
                       " --set model.small_input=false");
  CHECK(r.exit_code == 0);
  CHECK_THAT(r.output, Contains("5,288,548 params"));
  CHECK_THAT(r.output, Contains("385.81 M MACs"));
  CHECK_THAT(r.output, Contains("features.1.0.block.1.fc1"));
  CHECK_THAT(r.output, Contains("se_reduce"));
}

TEST_CASE("config errors exit 2 with one line naming file, line and key", "[cli]") {
  TempDir dir("cli");
  struct Case {
    std::string yaml, expect;
  } cases[] = {
      {"model:\n  arch: mobilenet_v2\n  num_clases: 10\n", ":3: model.num_clases: unknown key (did you mean 'model.num_classes'?)"},
      {"model:\n  arch: mobilenet_v2\n  num_classes: ten\n", ":3: model.num_classes: expected an integer, got 'ten'"},
  };
  int i = 0;
  for (const auto& c : cases) {
    auto path = dir.write("c" + std::to_string(i++) + ".yaml", c.yaml);
    auto r = run_command(bin("prom-eval") + " --describe --config " + path);
    INFO(r.output);
    CHECK(r.exit_code == 2);
    CHECK_THAT(r.output, Contains("prom-eval: error: " + path + c.expect));
    CHECK(lines(r.output) == 1);
  }
  auto r = run_command(bin("prom-train") + " --print-config --config " + dir.file("missing.yaml"));
  CHECK(r.exit_code == 2);
  CHECK_THAT(r.output, Contains("prom-train: error: " + dir.file("missing.yaml") + ": config file not found"));
  CHECK(lines(r.output) == 1);
}

TEST_CASE("bad flags exit 2 with one line", "[cli]") {
  auto r = run_command(bin("prom-eval") + " --no-such-flag");
  CHECK(r.exit_code == 2);
  CHECK(lines(r.output) == 1);
  r = run_command(bin("prom-eval") + " --describe --config " + source("configs/mobilenetv2_fp32_imagenet.yaml") +
                  " --set optim.lr=fast");
  CHECK(r.exit_code == 2);
  CHECK_THAT(r.output, Contains("--set optim.lr=fast: optim.lr: expected a number, got 'fast'"));
}

TEST_CASE("--print-config prints the resolved config, overrides applied", "[cli]") {
  auto r = run_command(bin("prom-train") + " --print-config --config " +
                       source("configs/mobilenetv2_fp32_imagenet.yaml") + " --set train.epochs=3 --set optim.lr=0.1");
  CHECK(r.exit_code == 0);
  CHECK_THAT(r.output, Contains("epochs: 3"));
  CHECK_THAT(r.output, Contains("lr: 0.1"));
  CHECK_THAT(r.output, Contains("weight_decay: 4e-05"));
}
