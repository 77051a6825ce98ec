#include "ops/kquant.h"

#include <ATen/ATen.h>

#include "ops/cpu/kquant_cpu.h"
#include "ops/input_checks.h"
#if defined(QAT_WITH_CUDA)
#include "ops/cuda/quantize_cuda_glue.h"
#endif

namespace qat::ops {

namespace {

// "gguf_q4_k, gguf_q5_k, gguf_q6_k" (with_fallback: "gguf_q5_0 in place of Q4_K, ..."), from the
// formats table.
std::string kquant_names(bool with_fallback) {
  std::string names;
  for (const scheme::FormatTraits& t : scheme::kFormatTraits) {
    if (!scheme::is_kquant(t.format)) continue;
    names += names.empty() ? "" : ", ";
    names += with_fallback ? std::string(scheme::traits(t.gguf.row_fallback).name) +
                                 " in place of " + std::string(t.gguf.name)
                           : std::string(t.name);
  }
  return names;
}

void check_spec(const scheme::QuantSpec& spec, at::IntArrayRef shape, const char* what) {
  TORCH_CHECK(scheme::is_kquant(spec.format), what, ": format '", spec.traits().name,
              "' is not a k-quant (", kquant_names(false), ")");
  TORCH_CHECK(spec.groups_divide(shape), what, ": ", spec.traits().name,
              " quantizes super-blocks of 256 along the last dimension; a tensor of shape ", shape,
              " does not split into them (llama.cpp falls back for such tensors: ",
              kquant_names(true), "; or exclude the layer)");
}

}  // namespace

at::Tensor quantize_kquant(const at::Tensor& x_in, const scheme::QuantSpec& spec) {
  check_float_input(x_in, "quantize_kquant");
  check_spec(spec, x_in.sizes(), "quantize_kquant");
  const at::Tensor x = x_in.contiguous();
  TORCH_CHECK(at::isfinite(x).all().item<bool>(),
              "quantize_kquant: the tensor holds NaN or Inf values; only finite values have codes");
  const int64_t bytes = spec.traits().block_bytes;
  at::Tensor blocks =
      at::empty(with_last(x.sizes(), x.size(-1) / 256 * bytes), x.options().dtype(at::kByte));
  if (x.is_cuda()) {
#if defined(QAT_WITH_CUDA)
    cuda_glue::kquant_quantize(x, spec.format, blocks);
    return blocks;
#endif
  }
  TORCH_CHECK(x.is_cpu(), "quantize_kquant: unsupported device ", x.device());
  cpu::kquant_quantize(x, spec.format, blocks);
  return blocks;
}

at::Tensor dequantize_kquant(const at::Tensor& blocks_in, const scheme::QuantSpec& spec,
                             at::ScalarType dtype) {
  TORCH_CHECK(blocks_in.scalar_type() == at::kByte,
              "dequantize_kquant: expected uint8 blocks, got ", blocks_in.scalar_type());
  TORCH_CHECK(dtype == at::kFloat || dtype == at::kHalf || dtype == at::kBFloat16,
              "dequantize_kquant: output dtype must be float32, float16 or bfloat16, got ", dtype);
  const int64_t bytes = spec.traits().block_bytes;
  TORCH_CHECK(scheme::is_kquant(spec.format), "dequantize_kquant: format '", spec.traits().name,
              "' is not a k-quant");
  TORCH_CHECK(blocks_in.dim() > 0 && blocks_in.size(-1) % bytes == 0,
              "dequantize_kquant: the last ", "dimension (",
              blocks_in.dim() ? blocks_in.size(-1) : 0, " bytes) is not a whole number of ", bytes,
              "-byte ", spec.traits().name, " blocks");
  const at::Tensor blocks = blocks_in.contiguous();
  at::Tensor y = at::empty(with_last(blocks.sizes(), blocks.size(-1) / bytes * 256),
                           blocks.options().dtype(dtype));
  if (blocks.is_cuda()) {
#if defined(QAT_WITH_CUDA)
    cuda_glue::kquant_dequantize(blocks, spec.format, y);
    return y;
#endif
  }
  TORCH_CHECK(blocks.is_cpu(), "dequantize_kquant: unsupported device ", blocks.device());
  cpu::kquant_dequantize(blocks, spec.format, y);
  return y;
}

at::Tensor fake_quantize_kquant(const at::Tensor& x_in, const scheme::QuantSpec& spec) {
  check_float_input(x_in, "fake_quantize_kquant");
  check_spec(spec, x_in.sizes(), "fake_quantize_kquant");
  const at::Tensor x = x_in.contiguous();
  at::Tensor y = at::empty_like(x);
  if (x.is_cuda()) {
#if defined(QAT_WITH_CUDA)
    cuda_glue::kquant_fake_quantize(x, spec.format, y);
    return y;
#endif
  }
  TORCH_CHECK(x.is_cpu(), "fake_quantize_kquant: unsupported device ", x.device());
  cpu::kquant_fake_quantize(x, spec.format, y);
  return y;
}

int kquant_sub_blocks(scheme::Format f) {
  TORCH_CHECK(scheme::is_kquant(f), "kquant_sub_blocks: format '", scheme::traits(f).name,
              "' is not a k-quant (", kquant_names(false), ")");
  return f == scheme::Format::kQ6_K ? 16 : 8;
}

KQuantParams kquant_params(const at::Tensor& blocks_in, const scheme::QuantSpec& spec) {
  const int subs = kquant_sub_blocks(spec.format);
  const int64_t bytes = spec.traits().block_bytes;
  TORCH_CHECK(blocks_in.scalar_type() == at::kByte && blocks_in.dim() > 0 &&
                  blocks_in.size(-1) % bytes == 0,
              "kquant_params: expected uint8 ", spec.traits().name, " blocks of ", bytes,
              " bytes along the last dimension, got ", blocks_in.scalar_type(), " ",
              blocks_in.sizes());
  const at::Tensor blocks = blocks_in.to(at::kCPU).contiguous();
  const int64_t n = blocks.size(-1) / bytes;
  const auto opts = at::TensorOptions().dtype(at::kFloat);
  KQuantParams p{at::empty(with_last(blocks.sizes(), n), opts),
                 at::empty(with_last(blocks.sizes(), n), opts),
                 at::empty(with_last(blocks.sizes(), n * subs), opts),
                 at::zeros(with_last(blocks.sizes(), n * subs), opts)};
  cpu::kquant_read_params(blocks, spec.format, p.d, p.dmin, p.scales, p.mins);
  const auto dev = blocks_in.device();
  const bool affine = spec.format != scheme::Format::kQ6_K;
  return {p.d.to(dev), affine ? p.dmin.to(dev) : at::Tensor(), p.scales.to(dev),
          affine ? p.mins.to(dev) : at::Tensor()};
}

at::Tensor quantize_kquant_with(const at::Tensor& x_in, const KQuantParams& p,
                                const scheme::QuantSpec& spec) {
  check_float_input(x_in, "quantize_kquant_with");
  check_spec(spec, x_in.sizes(), "quantize_kquant_with");
  const at::Tensor x = x_in.to(at::kCPU, at::kFloat).contiguous();
  TORCH_CHECK(at::isfinite(x).all().item<bool>(),
              "quantize_kquant_with: the tensor holds NaN or Inf values");
  const int64_t n = x.numel() / 256, subs = kquant_sub_blocks(spec.format);
  const bool affine = spec.format != scheme::Format::kQ6_K;
  auto flat = [&](const at::Tensor& t, int64_t count, const char* what) {
    TORCH_CHECK(t.defined() && t.numel() == count, "quantize_kquant_with: expected ", count, " ",
                what, " for a tensor of shape ", x_in.sizes(), ", got ",
                t.defined() ? std::to_string(t.numel()) : std::string("none"));
    return t.detach().to(at::kCPU, at::kFloat).contiguous().view({count});
  };
  const at::Tensor d = flat(p.d, n, "super-block d");
  const at::Tensor dmin = affine ? flat(p.dmin, n, "super-block dmin") : at::zeros({n});
  const at::Tensor scales = flat(p.scales, n * subs, "sub-block scale codes");
  const at::Tensor mins = affine ? flat(p.mins, n * subs, "sub-block min codes") : at::zeros({1});
  const int lo = affine ? 0 : -128, hi = affine ? 63 : 127;
  TORCH_CHECK(scales.eq(scales.round()).all().item<bool>() && scales.ge(lo).all().item<bool>() &&
                  scales.le(hi).all().item<bool>() && mins.eq(mins.round()).all().item<bool>() &&
                  mins.ge(0).all().item<bool>() && mins.le(63).all().item<bool>(),
              "quantize_kquant_with: sub-block codes must be integers in [", lo, ", ", hi, "]",
              affine ? " (mins in [0, 63])" : "");
  at::Tensor blocks = at::empty(with_last(x.sizes(), x.size(-1) / 256 * spec.traits().block_bytes),
                                x.options().dtype(at::kByte));
  cpu::kquant_quantize_with(x, d, dmin, scales, mins, spec.format, blocks);
  return blocks.to(x_in.device());
}

}  // namespace qat::ops
