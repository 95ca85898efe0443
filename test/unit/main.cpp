// Our own main: Catch2 2 compiles its runner into this file (CATCH_CONFIG_RUNNER), Catch2 3 has it
// in libCatch2; either way the session runs with the command line CTest gives it.
#define CATCH_CONFIG_RUNNER
#include "support/catch.h"

int main(int argc, char* argv[]) { return Catch::Session().run(argc, argv); }
