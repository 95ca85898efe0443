#include "core/host_read.h"

namespace prom {
namespace {
std::atomic<int64_t> g_host_reads{0};
}

int64_t host_read_count() { return g_host_reads.load(std::memory_order_relaxed); }

namespace detail {
void count_host_read() { g_host_reads.fetch_add(1, std::memory_order_relaxed); }
}  // namespace detail

}  // namespace prom
