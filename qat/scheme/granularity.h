// Granularity: which elements share one scale (value types, as torchao's PerTensor/PerAxis/...).
#pragma once

#include <cstdint>
#include <string>

namespace qat::scheme {

struct Granularity {
  enum class Kind : uint8_t { kPerTensor, kPerAxis, kPerGroup, kPerToken };
  Kind kind = Kind::kPerTensor;
  int64_t axis = 0;        // kPerAxis: the channel dimension (negative counts from the end)
  int64_t group_size = 0;  // kPerGroup: consecutive elements along the last dimension

  static Granularity per_tensor() { return {Kind::kPerTensor, 0, 0}; }
  static Granularity per_axis(int64_t axis) { return {Kind::kPerAxis, axis, 0}; }
  static Granularity per_group(int64_t size) { return {Kind::kPerGroup, -1, size}; }
  // One scale per row of the last dimension (activations: one per token).
  static Granularity per_token() { return {Kind::kPerToken, -1, 0}; }

  bool operator==(const Granularity& o) const {
    return kind == o.kind && axis == o.axis && group_size == o.group_size;
  }
  std::string to_string() const;
};

// Where the scale of each element lives, for a contiguous tensor: element i (flat index) uses
// scale (i / inner) % count. Per-group, per-token and per-tensor groups are contiguous runs of
// `inner` elements (count * inner == numel); per-axis groups are strided.
struct GroupLayout {
  int64_t inner = 1;
  int64_t count = 1;
  int64_t numel = 0;
  bool contiguous() const { return count * inner == numel; }
  int64_t group_numel() const { return numel / count; }
};

}  // namespace qat::scheme
