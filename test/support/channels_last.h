// The channels_last half of a test runs only where LibTorch's own channels_last convolutions agree
// with NCHW on this CPU (lib/core/channels_last_check.h: Debian 13's LibTorch 2.6 on some AVX-512
// CPUs with 2+ threads does not). Otherwise the test prints a SKIPPED line saying why, which
// scripts/test.sh lists after CTest's summary, and prom itself would have run NCHW.
#pragma once
#include <iostream>
#include <string>

#include "core/channels_last_check.h"

namespace prom::test {

inline bool channels_last_checkable(const std::string& what) {
  const ChannelsLastCheck check = check_channels_last_convolutions();
  if (!check.ok) std::cout << "SKIPPED channels_last half of " << what << ": " << describe_channels_last_failure(check) << "\n";
  return check.ok;
}

}  // namespace prom::test
