// The data pipeline's own PRNG, so that shuffles are identical on every machine and compiler
// (std::shuffle and the std distributions are implementation-defined; the engines are not, but
// the algorithms on top of them are).
//
//   SplitMix64 (Steele, Lea, Flood 2014; the seeding generator of xoshiro): state += 0x9E37...;
//     z = state; z = (z ^ z>>30) * 0xBF58476D1CE4E5B9; z = (z ^ z>>27) * 0x94D049BB133111EB;
//     return z ^ z>>31.
//   below(n): uniform in [0, n) by rejection: draws r until r >= (2^64 - n) mod n, returns r % n
//     (no modulo bias).
//   shuffle: forward Fisher-Yates, for i = 0 .. n-2: swap(a[i], a[i + below(n - i)]); so the
//     first k elements of a shuffle equal a partial shuffle that stops after k steps.
//   derive_seed(seed, stream): SplitMix64(seed ^ SplitMix64(stream).next()).next(): independent
//     seeds for the epochs, the split and the calibration set from one user seed.
#pragma once

#include <cstddef>
#include <cstdint>
#include <utility>
#include <vector>

namespace qat::data {

class SplitMix64 {
 public:
  explicit SplitMix64(uint64_t seed) : state_(seed) {}
  uint64_t next() {
    uint64_t z = (state_ += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  // Uniform in [0, n); n > 0.
  uint64_t below(uint64_t n) {
    const uint64_t threshold = (0 - n) % n;  // (2^64 - n) mod n
    for (;;) {
      const uint64_t r = next();
      if (r >= threshold) return r % n;
    }
  }

 private:
  uint64_t state_;
};

inline uint64_t derive_seed(uint64_t seed, uint64_t stream) {
  return SplitMix64(seed ^ SplitMix64(stream).next()).next();
}

// Shuffles the first `count` positions of `items` (count = items.size() shuffles all).
template <typename T>
void shuffle_prefix(std::vector<T>& items, size_t count, uint64_t seed) {
  SplitMix64 rng(seed);
  const size_t n = items.size();
  for (size_t i = 0; i < count && i + 1 < n; ++i) {
    std::swap(items[i], items[i + rng.below(n - i)]);
  }
}

// A random permutation of 0 .. n-1.
std::vector<int64_t> permutation(int64_t n, uint64_t seed);

}  // namespace qat::data
