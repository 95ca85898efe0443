// How prom-bench runs its Python references (torchvision, torch.ao) so that the comparison is fair:
// with the allocator prom itself runs with. prom links tcmalloc (about 2x faster training steps
// than glibc malloc here); the Python side gets the same library through LD_PRELOAD.
#pragma once
#include <string>

namespace prom::bench {

// The tcmalloc shared library this process uses (found through its tc_malloc symbol), or "" when
// prom runs on glibc malloc (PROM_USE_TCMALLOC=OFF, sanitizer builds).
std::string tcmalloc_library();

// "LD_PRELOAD=<that library> " (kept in front of an LD_PRELOAD already set), or "" without it:
// the prefix for a Python reference's shell command.
std::string python_allocator_env();

// Prints, once per process, which allocator the Python references run with.
void note_python_allocator();

}  // namespace prom::bench
