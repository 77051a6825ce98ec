#include "qat/scheme/quant_spec.h"

#include <c10/util/Exception.h>

#include <sstream>

namespace qat::scheme {

namespace {

// Group sizes a user may ask for. Integer and fp8 grids: 16..256 (smaller groups cost more scale
// bytes than codes at 4 bits; larger ones lose the point of grouping). NF4 follows bitsandbytes'
// allowed block sizes.
constexpr int64_t kMinGroup = 16, kMaxGroup = 256;
constexpr int64_t kMinNf4Block = 32, kMaxNf4Block = 4096;

bool starts_with(const std::string& s, const char* p) {
  return s.rfind(p, 0) == 0;
}

}  // namespace

std::string Granularity::to_string() const {
  switch (kind) {
    case Kind::kPerTensor:
      return "per_tensor";
    case Kind::kPerAxis:
      return "per_axis(" + std::to_string(axis) + ")";
    case Kind::kPerGroup:
      return "per_group(" + std::to_string(group_size) + ")";
    case Kind::kPerToken:
      return "per_token";
  }
  return "?";
}

std::string to_string(ScaleDtype dt) {
  switch (dt) {
    case ScaleDtype::kFloat32:
      return "float32";
    case ScaleDtype::kFloat16:
      return "float16";
    case ScaleDtype::kBFloat16:
      return "bfloat16";
  }
  return "?";
}

ScaleDtype scale_dtype_from_name(const std::string& name) {
  if (name == "float32" || name == "fp32") return ScaleDtype::kFloat32;
  if (name == "float16" || name == "fp16") return ScaleDtype::kFloat16;
  if (name == "bfloat16" || name == "bf16") return ScaleDtype::kBFloat16;
  TORCH_CHECK(false, "unknown scale dtype '", name, "': expected float32, float16 or bfloat16");
}

at::ScalarType to_scalar_type(ScaleDtype dt) {
  switch (dt) {
    case ScaleDtype::kFloat16:
      return at::kHalf;
    case ScaleDtype::kBFloat16:
      return at::kBFloat16;
    case ScaleDtype::kFloat32:
      break;
  }
  return at::kFloat;
}

std::string known_format_names() {
  std::string names = "int2..int8 (symmetric), uint2..uint8 (asymmetric)";
  for (int f = static_cast<int>(Format::kFp8E4M3); f < kNumFormats; ++f) {
    names += ", " + std::string(kFormatTraits[f].name);
  }
  return names;
}

QuantSpec QuantSpec::from_name(const std::string& name) {
  QuantSpec s;
  auto parse_bits = [&](const std::string& digits) {
    TORCH_CHECK(!digits.empty() && digits.size() <= 2 &&
                    digits.find_first_not_of("0123456789") == std::string::npos,
                "unknown quantization format '", name, "': expected one of ", known_format_names());
    return std::stoi(digits);
  };
  if (starts_with(name, "uint")) {
    s.format = Format::kUInt;
    s.bits = parse_bits(name.substr(4));
  } else if (starts_with(name, "int")) {
    s.format = Format::kInt;
    s.bits = parse_bits(name.substr(3));
  } else {
    const std::string n = starts_with(name, "q") ? "gguf_" + name : name;
    bool found = false;
    for (int f = 0; f < kNumFormats; ++f) {
      const FormatTraits& t = kFormatTraits[f];
      if (t.name == n && f >= static_cast<int>(Format::kFp8E4M3)) {
        s.format = static_cast<Format>(f);
        s.bits = t.max_bits;
        s.scale_dtype = t.scale_dtype;
        found = true;
      }
    }
    TORCH_CHECK(found, "unknown quantization format '", name, "': expected one of ",
                known_format_names());
  }
  if (s.format == Format::kNf4) s.granularity = Granularity::per_group(64);
  if (s.traits().fixed_block > 0) s.granularity = Granularity::per_group(s.traits().fixed_block);
  s.validate();
  return s;
}

std::string QuantSpec::to_string() const {
  std::ostringstream os;
  os << traits().name;
  if (format == Format::kInt || format == Format::kUInt) os << bits;
  if (traits().fixed_block == 0) {
    switch (granularity.kind) {
      case Granularity::Kind::kPerTensor:
        os << "/tensor";
        break;
      case Granularity::Kind::kPerAxis:
        os << "/axis" << granularity.axis;
        break;
      case Granularity::Kind::kPerGroup:
        os << "/g" << granularity.group_size;
        break;
      case Granularity::Kind::kPerToken:
        os << "/token";
        break;
    }
    if (scale_dtype != ScaleDtype::kFloat32) os << "/" << scheme::to_string(scale_dtype);
  }
  return os.str();
}

void QuantSpec::validate() const {
  const FormatTraits& t = traits();
  TORCH_CHECK(bits >= t.min_bits && bits <= t.max_bits, "format '", t.name, "' takes ",
              t.min_bits == t.max_bits
                  ? std::to_string(t.min_bits)
                  : std::to_string(t.min_bits) + ".." + std::to_string(t.max_bits),
              " bits, got bits=", bits);
  using K = Granularity::Kind;
  if (t.fixed_block > 0) {
    TORCH_CHECK(granularity == Granularity::per_group(t.fixed_block), "format '", t.name,
                "' has fixed blocks of ", t.fixed_block,
                " along the last dimension; got granularity ", granularity.to_string());
  }
  if (t.fixed_scale_dtype) {
    TORCH_CHECK(scale_dtype == t.scale_dtype, "format '", t.name, "' stores its scales as ",
                scheme::to_string(t.scale_dtype), "; got scale_dtype ",
                scheme::to_string(scale_dtype));
  }
  if (format == Format::kNf4) {
    TORCH_CHECK(granularity.kind == K::kPerGroup,
                "nf4 is blockwise: use per_group(blocksize); got ", granularity.to_string());
    TORCH_CHECK(granularity.group_size >= kMinNf4Block && granularity.group_size <= kMaxNf4Block,
                "nf4 block size must be in [", kMinNf4Block, ", ", kMaxNf4Block, "], got ",
                granularity.group_size);
    TORCH_CHECK(scale_dtype == ScaleDtype::kFloat32,
                "nf4 keeps fp32 absmax (double quantization compresses them); got scale_dtype ",
                scheme::to_string(scale_dtype));
  } else if (t.fixed_block == 0 && granularity.kind == K::kPerGroup) {
    TORCH_CHECK(granularity.group_size >= kMinGroup && granularity.group_size <= kMaxGroup,
                "group size must be in [", kMinGroup, ", ", kMaxGroup, "], got ",
                granularity.group_size);
  }
}

void QuantSpec::validate_for(at::IntArrayRef shape) const {
  validate();
  using K = Granularity::Kind;
  TORCH_CHECK(granularity.kind == K::kPerTensor || !shape.empty(), "granularity ",
              granularity.to_string(), " needs a tensor with at least one dimension");
  TORCH_CHECK(groups_divide(shape), "group size ", granularity.group_size,
              " does not divide the last dimension (", shape.back(), ") of a tensor of shape ",
              shape, " (", to_string(), ")");
  if (granularity.kind == K::kPerAxis) {
    const int64_t nd = static_cast<int64_t>(shape.size());
    TORCH_CHECK(granularity.axis >= -nd && granularity.axis < nd, "axis ", granularity.axis,
                " is out of range for a tensor of shape ", shape);
  }
}

GroupLayout QuantSpec::layout(at::IntArrayRef shape) const {
  GroupLayout l;
  l.numel = 1;
  for (int64_t d : shape) l.numel *= d;
  using K = Granularity::Kind;
  switch (granularity.kind) {
    case K::kPerTensor:
      l.inner = std::max<int64_t>(l.numel, 1);
      l.count = 1;
      break;
    case K::kPerToken:
      l.inner = std::max<int64_t>(shape.back(), 1);
      l.count = l.numel / l.inner;
      break;
    case K::kPerGroup:
      l.inner = granularity.group_size;
      l.count = l.numel / l.inner;
      break;
    case K::kPerAxis: {
      const int64_t nd = static_cast<int64_t>(shape.size());
      const int64_t axis = granularity.axis < 0 ? granularity.axis + nd : granularity.axis;
      l.inner = 1;
      for (int64_t d = axis + 1; d < nd; ++d) l.inner *= shape[d];
      l.count = shape[axis];
      break;
    }
  }
  return l;
}

std::vector<int64_t> QuantSpec::scale_shape(at::IntArrayRef shape) const {
  using K = Granularity::Kind;
  switch (granularity.kind) {
    case K::kPerTensor:
      return {};
    case K::kPerToken:
      return std::vector<int64_t>(shape.begin(), shape.end() - 1);
    case K::kPerGroup: {
      std::vector<int64_t> s(shape.begin(), shape.end());
      s.back() /= granularity.group_size;
      return s;
    }
    case K::kPerAxis: {
      const int64_t nd = static_cast<int64_t>(shape.size());
      return {shape[granularity.axis < 0 ? granularity.axis + nd : granularity.axis]};
    }
  }
  return {};
}

}  // namespace qat::scheme
