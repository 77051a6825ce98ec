// QuantSpec: a format plus the choices a user makes about it (bits, granularity, scale dtype).
// Validated on construction from a config; the kernels trust a validated spec.
#pragma once

#include <ATen/core/Tensor.h>

#include <string>
#include <vector>

#include "qat/scheme/format.h"
#include "qat/scheme/granularity.h"

namespace qat::scheme {

struct QuantSpec {
  Format format = Format::kInt;
  int bits = 8;
  Granularity granularity = Granularity::per_tensor();
  ScaleDtype scale_dtype = ScaleDtype::kFloat32;

  const FormatTraits& traits() const { return scheme::traits(format); }
  CodeRange code_range() const { return scheme::code_range(format, bits); }
  bool has_zero_point() const { return traits().zero_point; }
  // "int4/g32", "gguf_q4_0", "fp8_e4m3/axis0", ...
  std::string to_string() const;

  // The spec a format name implies: "int4" (symmetric), "uint4" (asymmetric), "fp8_e4m3",
  // "fp8_e5m2", "nf4" (blocks of 64), "gguf_q8_0", "gguf_q4_0", "gguf_q4_1" (blocks of 32; "q8_0"
  // etc. also accepted). Throws on an unknown name, listing the known ones.
  static QuantSpec from_name(const std::string& name);
  QuantSpec with(Granularity g) const {
    QuantSpec s = *this;
    s.granularity = g;
    return s;
  }

  // Checks the spec itself (bits for the format, group size range, granularity the format
  // allows). Throws c10::Error with what to fix.
  void validate() const;
  // Checks the spec against a tensor shape (group size divides the last dim, axis in range).
  void validate_for(at::IntArrayRef shape) const;
  // Whether per-group groups (or a format's fixed blocks) split the last dimension of `shape`;
  // true for the other granularities. The one shape rule a format can fail on a real model.
  bool groups_divide(at::IntArrayRef shape) const {
    return granularity.kind != Granularity::Kind::kPerGroup ||
           (!shape.empty() && shape.back() % granularity.group_size == 0);
  }
  // Where each element's scale lives for a tensor of this shape (validate_for first).
  GroupLayout layout(at::IntArrayRef shape) const;
  // Shape of the scale tensor for a tensor of this shape: per-tensor [], per-axis [C],
  // per-group [..., K/g], per-token [...]; numel == layout(shape).count.
  std::vector<int64_t> scale_shape(at::IntArrayRef shape) const;
};

std::string to_string(ScaleDtype dt);
ScaleDtype scale_dtype_from_name(const std::string& name);
at::ScalarType to_scalar_type(ScaleDtype dt);

// All names from_name accepts (for help texts and error messages).
std::string known_format_names();

}  // namespace qat::scheme
