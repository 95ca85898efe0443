// prom-train: trains a model from a YAML config.
#include <iostream>

#include "app/app.h"

int main(int argc, char** argv) {
  CLI::App cli("prom-train: train a float or PROM-quantized model from a YAML config", "prom-train");
  prom::app::ConfigFlags flags;
  prom::app::add_config_flags(cli, flags, false);
  return prom::app::run(cli, argc, argv, [&] {
    prom::config::Config config = prom::app::load_config(flags);
    if (flags.print_config) {
      std::cout << prom::config::to_yaml(config);
      return 0;
    }
    throw prom::Error("training is not implemented yet (see issue 4); use --print-config to check a config");
  });
}
