// Crash-safe file writes: write a temporary file beside the target, fsync it, rename it over the
// target, fsync the directory. A reader sees the old file or the new one, never a torn one.
#pragma once
#include <string>

namespace prom::io {

void write_file_atomic(const std::string& path, const std::string& bytes);

// Removes the temporary files that writers killed mid-write (SIGKILL, power loss) left in `dir`:
// ".NAME.tmp.PID" whose process PID no longer runs. Returns how many it removed.
int remove_stale_temporaries(const std::string& dir);

// Reads a whole file; throws prom::Error naming the file when it cannot.
std::string read_file(const std::string& path);

}  // namespace prom::io
