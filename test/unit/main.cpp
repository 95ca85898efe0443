// Our own main: Catch2 2 compiles its runner into this file (CATCH_CONFIG_RUNNER), Catch2 3 has it
// in libCatch2; either way the session runs with the command line CTest gives it.
#define CATCH_CONFIG_RUNNER
#include "support/catch.h"
#include <torch/cuda.h>

#include <cstdio>
#include <string>

int main(int argc, char* argv[]) {
  // The [cuda] group (hidden from a plain run) needs a device: without one it is skipped, with the
  // reason on a SKIPPED line (CTest: SKIP_RETURN_CODE 77; scripts/test.sh prints those lines).
  for (int i = 1; i < argc; ++i)
    if (std::string(argv[i]) == "[cuda]" && !torch::cuda::is_available()) {
      std::printf("SKIPPED cuda: LibTorch sees no CUDA device here (CPU-only build or no GPU); "
                  "scripts/gpu_check.sh runs this group on a GPU machine\n");
      return 77;
    }
  return Catch::Session().run(argc, argv);
}
