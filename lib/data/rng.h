// A small counter-based random generator: every stream is a pure function of its key (seed, epoch,
// sample index, purpose), so results never depend on which thread ran a sample or in what order.
// splitmix64 (Steele et al. 2014): one multiply-xorshift finaliser per draw, statistically fine for
// augmentation and shuffling, and cheap enough to create one per sample.
#pragma once
#include <cmath>
#include <cstdint>
#include <initializer_list>

namespace prom::data {

inline uint64_t splitmix64_mix(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

class Rng {
 public:
  // Keys are hashed one after the other, so (1, 2) and (2, 1) give different streams.
  Rng(std::initializer_list<uint64_t> key) {
    uint64_t s = 0x243f6a8885a308d3ULL;
    for (uint64_t k : key) s = splitmix64_mix(s ^ splitmix64_mix(k + 0x9e3779b97f4a7c15ULL));
    state_ = s;
  }
  uint64_t next() {
    state_ += 0x9e3779b97f4a7c15ULL;
    return splitmix64_mix(state_);
  }
  // Uniform in [0, 1) with 53 random bits.
  double uniform() { return static_cast<double>(next() >> 11) * (1.0 / 9007199254740992.0); }
  double uniform(double lo, double hi) { return lo + (hi - lo) * uniform(); }
  // Uniform integer in [lo, hi] (inclusive); Lemire's multiply-shift, bias below 2^-32 for our ranges.
  int64_t integer(int64_t lo, int64_t hi) {
    uint64_t span = static_cast<uint64_t>(hi - lo) + 1;
    return lo + static_cast<int64_t>(static_cast<unsigned __int128>(next()) * span >> 64);
  }
  bool bernoulli(double p) { return uniform() < p; }

 private:
  uint64_t state_;
};

// Purposes, so the shuffle and the augmentation of one epoch never share a stream.
enum RngPurpose : uint64_t { kRngShuffle = 1, kRngAugment = 2 };

}  // namespace prom::data
