// Turns a runtime Format into a compile-time template argument (as AT_DISPATCH_* does for
// dtypes). Usage:
//   dispatch_format(spec.format, [&](auto f) { constexpr Format F = decltype(f)::value; ... });
#pragma once

#include <stdexcept>
#include <string>
#include <type_traits>

#include "qat/scheme/format.h"

namespace qat::ops {

template <scheme::Format F>
using FormatTag = std::integral_constant<scheme::Format, F>;

template <typename Fn>
decltype(auto) dispatch_format(scheme::Format f, Fn&& fn) {
  using scheme::Format;
  switch (f) {
    case Format::kInt:
      return fn(FormatTag<Format::kInt>{});
    case Format::kUInt:
      return fn(FormatTag<Format::kUInt>{});
    case Format::kFp8E4M3:
      return fn(FormatTag<Format::kFp8E4M3>{});
    case Format::kFp8E5M2:
      return fn(FormatTag<Format::kFp8E5M2>{});
    case Format::kNf4:
      return fn(FormatTag<Format::kNf4>{});
    case Format::kQ8_0:
      return fn(FormatTag<Format::kQ8_0>{});
    case Format::kQ4_0:
      return fn(FormatTag<Format::kQ4_0>{});
    case Format::kQ4_1:
      return fn(FormatTag<Format::kQ4_1>{});
    case Format::kQ5_0:
      return fn(FormatTag<Format::kQ5_0>{});
    case Format::kQ5_1:
      return fn(FormatTag<Format::kQ5_1>{});
    case Format::kQ4_K:
    case Format::kQ5_K:
    case Format::kQ6_K:  // super-block formats have no per-element path (ops/kquant.h)
      throw std::invalid_argument("dispatch_format: k-quant formats go through ops/kquant.h");
  }
  // No default above: -Wswitch names this switch when a Format is added.
  throw std::invalid_argument("dispatch_format: unknown format " +
                              std::to_string(static_cast<int>(f)));
}

}  // namespace qat::ops
