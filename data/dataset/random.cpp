#include "data/dataset/random.h"

#include <numeric>
#include <stdexcept>
#include <string>

namespace qat::data {

std::vector<int64_t> permutation(int64_t n, uint64_t seed) {
  if (n < 0) throw std::invalid_argument("permutation: n must be >= 0, got " + std::to_string(n));
  std::vector<int64_t> p(static_cast<size_t>(n));
  std::iota(p.begin(), p.end(), int64_t{0});
  shuffle_prefix(p, p.size(), seed);
  return p;
}

}  // namespace qat::data
