// prom-bench: benchmarks prom against the Python reference in the same run, and prints ratios.
#include <iostream>

#include "app/app.h"

int main(int argc, char** argv) {
  CLI::App cli("prom-bench: measure prom against the PyTorch/torchvision reference", "prom-bench");
  cli.require_subcommand(0, 1);
  return prom::app::run(cli, argc, argv, [&]() -> int {
    throw prom::ConfigError("no benchmark named: benchmarks arrive with the data, trainer and export issues");
  });
}
