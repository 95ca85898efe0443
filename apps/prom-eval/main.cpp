// prom-eval: evaluates models; --describe prints the per-layer summary of the configured model.
#include <iostream>

#include "app/app.h"
#include "model/registry.h"
#include "model/summary.h"

int main(int argc, char** argv) {
  CLI::App cli("prom-eval: evaluate a prom model, or describe it", "prom-eval");
  prom::app::ConfigFlags flags;
  prom::app::add_config_flags(cli, flags, false);
  bool describe = false;
  cli.add_flag("--describe", describe, "print one row per layer (name, role, shape, params, MACs) and totals");
  return prom::app::run(cli, argc, argv, [&] {
    prom::config::Config config = prom::app::load_config(flags);
    if (flags.print_config) {
      std::cout << prom::config::to_yaml(config);
      return 0;
    }
    if (describe) {
      auto model = prom::model::create_model(config.model);
      auto summary = prom::model::summarize(*model, config.model.input_size);
      std::cout << prom::model::format_summary(
          summary, config.model.arch + " width " + prom::config::format_number(config.model.width_mult) + ", " +
                       std::to_string(config.model.num_classes) + " classes, input " +
                       std::to_string(config.model.input_size) + "x" + std::to_string(config.model.input_size));
      return 0;
    }
    throw prom::ConfigError("nothing to do: pass --describe (evaluation of checkpoints comes with the trainer)");
  });
}
