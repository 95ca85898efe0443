// prom-data: dataset preparation tools.
#include <iostream>

#include "app/app.h"

int main(int argc, char** argv) {
  CLI::App cli("prom-data: prepare datasets for prom", "prom-data");
  return prom::app::run(cli, argc, argv, [&]() -> int {
    throw prom::ConfigError("no command given (see --help)");
  });
}
