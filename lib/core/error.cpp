#include "core/error.h"

namespace prom {

std::string at_path(const std::string& path, const std::string& message) {
  return path.empty() ? message : path + ": " + message;
}

}  // namespace prom
