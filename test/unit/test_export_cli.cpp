// The QAT -> export -> integer evaluation path through the real binaries, on synthetic data.
#include "support/catch.h"
#include <filesystem>

#include "io/atomic_file.h"
#include "support/command.h"

using namespace prom::test;
using Catch::Matchers::Contains;

TEST_CASE("float run, PROM QAT from it, export, integer evaluation, compare and report", "[export_cli]") {
  TempDir dir("export-cli");
  dir.write("fp.yaml", "run: {name: fp, out_dir: " + dir.path() + "/runs, threads: 1, log_every: 100}\n"
                       "model: {arch: mobilenet_v2, num_classes: 4, width_mult: 0.35, small_input: true, "
                       "input_size: 16, dropout: 0}\n"
                       "data:\n  synthetic: {enabled: true, samples: 128, eval_samples: 64, image_size: 16, classes: 4}\n"
                       "  eval_transform: {resize: 16, crop: 16}\n"
                       "train: {epochs: 1, batch_size: 32}\noptim: {name: sgd, lr: 0.05}\n");
  dir.write("prom.yaml", "base: [fp.yaml, " + source("configs/policies/prom.yaml") + "]\nrun: {name: prom}\n"
                         "model: {init: " + dir.path() + "/runs/fp/best.safetensors}\n");
  auto r = run_command(bin("prom-train") + " -c " + dir.file("fp.yaml"));
  REQUIRE(r.exit_code == 0);
  r = run_command(bin("prom-train") + " -c " + dir.file("prom.yaml"));
  INFO(r.output);
  REQUIRE(r.exit_code == 0);
  CHECK(std::filesystem::exists(dir.file("runs/prom/quant_policy.txt")));
  CHECK_THAT(prom::io::read_file(dir.file("runs/prom/quant_policy.txt")), Contains("ternary absmean"));

  // A float checkpoint cannot be exported.
  r = run_command(bin("prom-export") + " --checkpoint " + dir.file("runs/fp/best.safetensors") + " -o " + dir.file("x.prom"));
  CHECK(r.exit_code == 2);
  CHECK_THAT(r.output, Contains("export needs QAT"));
  CHECK_FALSE(std::filesystem::exists(dir.file("x.prom")));

  r = run_command(bin("prom-export") + " --checkpoint " + dir.file("runs/prom/best.safetensors") + " -o " + dir.file("m.prom"));
  INFO(r.output);
  REQUIRE(r.exit_code == 0);
  CHECK_THAT(r.output, Contains("ternary weights (2bit)"));
  auto first = prom::io::read_file(dir.file("m.prom"));
  // Exporting again gives the same bytes.
  r = run_command(bin("prom-export") + " --checkpoint " + dir.file("runs/prom/best.safetensors") + " -o " + dir.file("m2.prom"));
  CHECK(prom::io::read_file(dir.file("m2.prom")) == first);

  r = run_command(bin("prom-eval") + " --checkpoint " + dir.file("runs/prom/best.safetensors") + " --model " +
                  dir.file("m.prom") + " --compare --json");
  INFO(r.output);
  REQUIRE(r.exit_code == 0);
  CHECK_THAT(r.output, Contains("\"top1_agreement\": 100.0"));
  r = run_command(bin("prom-eval") + " --model " + dir.file("m.prom") + " --config " + dir.file("prom.yaml"));
  CHECK(r.exit_code == 0);
  CHECK_THAT(r.output, Contains("(integer, "));
  r = run_command(bin("prom-eval") + " --checkpoint " + dir.file("runs/prom/best.safetensors"));
  CHECK(r.exit_code == 0);
  CHECK_THAT(r.output, Contains("(fakequant)"));
  r = run_command(bin("prom-eval") + " --report energy,storage --model " + dir.file("m.prom"));
  CHECK(r.exit_code == 0);
  CHECK_THAT(r.output, Contains("energy ratio (honest):"));
  CHECK_THAT(r.output, Contains("energy ratio (paper-like):"));
  CHECK_THAT(r.output, Contains("storage ratio:"));
  // A damaged model file: one line, exit 1, names the file.
  std::string damaged = first.substr(0, first.size() / 2);
  prom::io::write_file_atomic(dir.file("bad.prom"), damaged);
  r = run_command(bin("prom-eval") + " --model " + dir.file("bad.prom") + " --config " + dir.file("prom.yaml"));
  CHECK(r.exit_code == 1);
  CHECK_THAT(r.output, Contains(dir.file("bad.prom")));
}

TEST_CASE("prom-eval --report from a config needs no data", "[export_cli]") {
  auto r = run_command(bin("prom-eval") + " --report energy,storage --config " +
                       source("configs/mobilenetv2_prom_imagenet.yaml") + " --json");
  INFO(r.output);
  REQUIRE(r.exit_code == 0);
  CHECK_THAT(r.output, Contains("\"fp16_energy_ratio\""));
  r = run_command(bin("prom-eval") + " --report energy --config " + source("configs/mobilenetv2_fp32_imagenet.yaml"));
  CHECK(r.exit_code == 2);
  CHECK_THAT(r.output, Contains("needs quant.enabled"));
}
