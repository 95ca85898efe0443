// prom-eval: evaluates a float or QAT checkpoint (fake quantization) or an exported integer model,
// compares the two, reports energy and storage, or describes the configured model.
#include <cstdio>
#include <iostream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "app/app.h"
#include "app/model_loading.h"
#include "app/sources.h"
#include "core/error.h"
#include "energy/report.h"
#include "graph/int_model.h"
#include "infer/compare.h"
#include "infer/engine.h"
#include "model/registry.h"
#include "model/summary.h"
#include "train/checkpoint.h"
#include "train/device.h"
#include "train/evaluate.h"

namespace {

using prom::train::EvalResult;

void print_result(const std::string& what, const EvalResult& r, const std::vector<std::string>& classes, bool json,
                  const std::string& engine) {
  if (json) {
    nlohmann::json out = {{"model", what}, {"engine", engine}, {"samples", r.samples}, {"loss", r.loss},
                          {"top1", r.top1}, {"top5", r.top5},   {"seconds", r.seconds}};
    nlohmann::json per_class = nlohmann::json::array();
    for (size_t i = 0; i < classes.size(); ++i)
      per_class.push_back({{"class", classes[i]},
                           {"correct", r.class_correct[i]},
                           {"total", r.class_total[i]},
                           {"accuracy", r.class_total[i] > 0 ? 100.0 * r.class_correct[i] / r.class_total[i] : 0.0}});
    out["per_class"] = per_class;
    std::cout << out.dump(2) << "\n";
    return;
  }
  std::printf("%s (%s): %lld images, top-1 %.2f%%, top-5 %.2f%%\n", what.c_str(), engine.c_str(),
              static_cast<long long>(r.samples), r.top1, r.top5);
  std::printf("%-32s %8s %8s %9s\n", "class", "correct", "total", "accuracy");
  for (size_t i = 0; i < classes.size(); ++i)
    std::printf("%-32s %8lld %8lld %8.2f%%\n", classes[i].c_str(), static_cast<long long>(r.class_correct[i]),
                static_cast<long long>(r.class_total[i]),
                r.class_total[i] > 0 ? 100.0 * r.class_correct[i] / r.class_total[i] : 0.0);
}

// The exported model must see the images its own preprocessing describes.
void check_preprocess(const prom::graph::IntModel& m, const prom::config::Config& c, const std::string& path) {
  const auto& p = m.preprocess;
  const auto& et = c.data.eval_transform;
  if (p.crop != et.crop || p.resize != et.resize || p.mean != c.data.mean || p.std != c.data.std)
    throw prom::ConfigError(path + ": its preprocessing (resize " + std::to_string(p.resize) + ", crop " +
                            std::to_string(p.crop) + ", mean/std) differs from the config's data.eval_transform");
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App cli("prom-eval: evaluate a prom model, compare engines, report energy and storage, or describe it",
               "prom-eval");
  prom::app::ConfigFlags flags;
  prom::app::add_config_flags(cli, flags, false);
  bool describe = false, json = false, compare = false;
  std::string checkpoint, model_path, engine = "auto", report, packing = "2bit";
  double density = 1.0;
  cli.add_flag("--describe", describe, "print one row per layer (name, role, shape, params, MACs) and totals");
  cli.add_option("--checkpoint", checkpoint, "float or QAT checkpoint (or weights file with --config)")
      ->type_name("FILE");
  cli.add_option("--model", model_path, "exported integer model (prom-export)")->type_name("FILE.prom");
  cli.add_option("--engine", engine, "float/fakequant for checkpoints, integer for --model (auto: by input)")
      ->check(CLI::IsMember({"auto", "float", "fakequant", "integer"}));
  cli.add_flag("--compare", compare, "run --checkpoint (fake quant) and --model (integer) on the same data");
  cli.add_option("--report", report, "energy, storage or energy,storage (needs only --config, or --model for exact counts)")
      ->check(CLI::IsMember({"energy", "storage", "energy,storage", "storage,energy"}));
  cli.add_option("--density", density, "--report from a config: fraction of ternary weights that are non-zero")
      ->check(CLI::Range(0.0, 1.0));
  cli.add_option("--packing", packing, "--report from a config: ternary packing")->check(CLI::IsMember({"2bit", "base3"}));
  cli.add_flag("--json", json, "print the results as JSON");
  return prom::app::run(cli, argc, argv, [&] {
    // ---- energy / storage: from a config (analytic, given a ternary density) or an exported model
    if (!report.empty()) {
      prom::config::Config config;
      std::vector<prom::energy::OpSpec> specs;
      std::string pack = packing;
      if (!model_path.empty()) {
        auto m = prom::graph::load_int_model(model_path);
        specs = prom::energy::specs_from_int_model(m);
        pack = m.ternary_packing;
        if (!flags.config_path.empty()) config = prom::app::load_config(flags);
      } else {
        config = prom::app::load_config(flags);
        specs = prom::energy::specs_from_config(config, density);
      }
      auto rep = prom::energy::make_report(specs, config.energy, pack);
      if (json) std::cout << prom::energy::report_json(rep);
      else
        std::cout << prom::energy::format_report(rep, report.find("energy") != std::string::npos,
                                                 report.find("storage") != std::string::npos);
      return 0;
    }
    if (describe) {
      prom::config::Config config = prom::app::load_config(flags);
      auto model = prom::model::create_model(config.model);
      auto summary = prom::model::summarize(*model, config.model.input_size);
      std::cout << prom::model::format_summary(
          summary, config.model.arch + " width " + prom::config::format_number(config.model.width_mult) + ", " +
                       std::to_string(config.model.num_classes) + " classes, input " +
                       std::to_string(config.model.input_size) + "x" + std::to_string(config.model.input_size));
      return 0;
    }
    if (checkpoint.empty() && model_path.empty()) {
      if (flags.print_config) {
        prom::config::Config config = prom::app::load_config(flags);
        std::cout << prom::config::to_yaml(config);
        return 0;
      }
      throw prom::ConfigError("nothing to do: pass --checkpoint, --model, --report or --describe");
    }

    // ---- the config (data, model) comes from the checkpoint unless --config is given
    prom::app::LoadedModel loaded;
    prom::app::ModelFile file;
    prom::config::Config config;
    if (!checkpoint.empty()) {
      file = prom::app::read_model_file(checkpoint, flags);
      config = file.config;
      loaded.classes = file.classes;
    } else {
      if (flags.config_path.empty()) throw prom::ConfigError("--model needs --config (for the data) or --checkpoint");
      config = prom::app::load_config(flags);
    }
    if (flags.print_config) {
      std::cout << prom::config::to_yaml(config);
      return 0;
    }
    std::unique_ptr<prom::infer::IntegerEngine> integer;
    std::vector<std::string> classes = loaded.classes;
    if (!model_path.empty()) {
      auto m = prom::graph::load_int_model(model_path);
      check_preprocess(m, config, model_path);
      if (!classes.empty() && classes != m.classes)
        throw prom::Error(model_path + ": its class list differs from " + checkpoint + "'s");
      classes = m.classes;
      integer = std::make_unique<prom::infer::IntegerEngine>(std::move(m));
    }
    if (engine == "auto") engine = compare ? "compare" : !model_path.empty() ? "integer"
                                          : config.quant.enabled            ? "fakequant"
                                                                            : "float";
    if (engine == "integer" && !integer) throw prom::ConfigError("--engine integer needs --model FILE.prom");
    if ((engine == "fakequant" || engine == "float") && checkpoint.empty())
      throw prom::ConfigError("--engine " + engine + " needs --checkpoint");
    if (engine == "fakequant" && !config.quant.enabled)
      throw prom::ConfigError(checkpoint + ": is a float checkpoint (quant.enabled is false); use --engine float");
    if (engine == "float" && config.quant.enabled)
      throw prom::ConfigError(checkpoint + ": is a QAT checkpoint; use --engine fakequant");
    if (compare && (checkpoint.empty() || !integer)) throw prom::ConfigError("--compare needs --checkpoint and --model");
    if (compare && !config.quant.enabled)
      throw prom::ConfigError(checkpoint + ": is a float checkpoint (quant.enabled is false); --compare needs the QAT "
                              "checkpoint the model was exported from");

    const bool use_engine = engine == "integer";
    const torch::Device device = use_engine || compare ? torch::Device(torch::kCPU)
                                                       : prom::train::resolve_device(config.run.device);
    prom::app::SourceRequest request;
    request.eval = true;
    request.batch_size = config.train.batch_size;
    request.channels_last = config.model.channels_last && !use_engine;
    request.pin_memory = device.is_cuda();
    request.expected_classes = classes;  // labels are indices into this list: a different one would be silently wrong
    request.classes_origin = checkpoint.empty() ? model_path : checkpoint;
    auto source = prom::app::make_source(config, request);
    // Only now build the model: a class-count mismatch is reported as such, not as a shape error.
    if (!checkpoint.empty()) loaded.model = prom::app::build_model(file, checkpoint);
    if (classes.empty()) {
      std::cerr << "prom-eval: warning: " << checkpoint << " has no class list; assuming the data's order\n";
      classes = source->classes();
    }
    if (static_cast<int64_t>(classes.size()) != config.model.num_classes)
      throw prom::ConfigKeyError("model.num_classes: " + std::to_string(config.model.num_classes) +
                                 " but the data has " + std::to_string(classes.size()) + " classes");

    if (compare) {
      auto c = prom::infer::compare_with_fake_quant(*loaded.model, *integer, *source, config.model.channels_last);
      if (json) {
        std::cout << nlohmann::json{{"checkpoint", checkpoint},         {"model", model_path},
                                    {"samples", c.samples},             {"top1_agreement", c.top1_agreement},
                                    {"fakequant_top1", c.fakequant_top1}, {"integer_top1", c.integer_top1},
                                    {"max_logit_diff", c.max_logit_diff}, {"max_logit_diff_steps", c.max_logit_diff_steps}}
                         .dump(2)
                  << "\n";
      } else {
        std::printf("%lld images: fake-quant top-1 %.2f%%, integer top-1 %.2f%%, top-1 agreement %.2f%%, "
                    "largest logit difference %.4g (%.1f classifier accumulator steps)\n",
                    static_cast<long long>(c.samples), c.fakequant_top1, c.integer_top1, c.top1_agreement,
                    c.max_logit_diff, c.max_logit_diff_steps);
      }
      return 0;
    }
    EvalResult r;
    if (use_engine) {
      r = prom::train::evaluate([&](const torch::Tensor& x) { return integer->logits(x); }, *source,
                                config.model.num_classes);
      print_result(model_path, r, classes, json,
                   "integer, " + std::string(integer->kernel_name()) + " kernels, 1x1: " + integer->pointwise_kernel_name());
    } else {
      loaded.model->to(device);
      if (config.model.channels_last) prom::model::to_channels_last(*loaded.model);
      r = prom::train::evaluate(*loaded.model, *source, device, config.model.channels_last, config.model.num_classes);
      print_result(checkpoint, r, classes, json, engine);
    }
    return 0;
  });
}
