// Errors that reach the user. Every binary catches them at the top (lib/app) and prints one line.
#pragma once
#include <stdexcept>
#include <string>

namespace prom {

// Exit codes shared by every binary.
enum ExitCode : int {
  kExitOk = 0,
  kExitRuntime = 1,    // runtime failure: bad data, bad checkpoint, NaN loss, ...
  kExitUsage = 2,      // bad flags or bad config
  kExitSigint = 130,   // stopped by SIGINT after a clean checkpoint
  kExitSigterm = 143,  // stopped by SIGTERM after a clean checkpoint
};

// A runtime failure; the message names the file (or thing) and the problem.
class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& what) : std::runtime_error(what) {}
};

// A usage or configuration error: exit code 2.
class ConfigError : public Error {
 public:
  explicit ConfigError(const std::string& what) : Error(what) {}
};

// A config error about one key, found after the config was loaded, where the file is not at hand:
// the message starts with the key ("model.arch: ..."). The app layer puts the file it loaded the
// config from in front, so the user still sees which file to fix.
class ConfigKeyError : public ConfigError {
 public:
  explicit ConfigKeyError(const std::string& what) : ConfigError(what) {}
};

// Joins "path: message" the same way everywhere.
std::string at_path(const std::string& path, const std::string& message);

}  // namespace prom
