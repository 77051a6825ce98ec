#include "ops/nf4.h"

#include <ATen/ATen.h>

#include "ops/cpu/nf4_cpu.h"
#include "ops/nf4_math.h"
#if defined(QAT_WITH_CUDA)
#include "ops/cuda/nf4_cuda_glue.h"
#endif

namespace qat::ops {

namespace {

int64_t blocks_of(int64_t n, int64_t blocksize) {
  return (n + blocksize - 1) / blocksize;
}

void check_device(const at::Tensor& t, const char* what) {
  TORCH_CHECK(t.is_cpu() || t.is_cuda(), what,
              ": tensors must be on the CPU or a CUDA device, got ", t.device());
#if !defined(QAT_WITH_CUDA)
  TORCH_CHECK(t.is_cpu(), what, ": this build has no CUDA support; move the tensor to the CPU");
#endif
}

void check_same_device(const at::Tensor& a, const at::Tensor& b, const char* what) {
  TORCH_CHECK(a.device() == b.device(), what, ": codes are on ", a.device(), " but absmax is on ",
              b.device(), "; move both to one device");
}

}  // namespace

void check_nf4_blocksize(int64_t blocksize, const char* what) {
  TORCH_CHECK(
      blocksize >= 32 && blocksize <= 4096 && (blocksize & (blocksize - 1)) == 0, what,
      ": blocksize must be a power of two in [32, 4096] (bitsandbytes accepts 32 ... 4096), got ",
      blocksize);
}

Nf4Quantized nf4_quantize(const at::Tensor& x_in, int64_t blocksize) {
  TORCH_CHECK(x_in.defined(), "nf4_quantize: the input tensor is undefined");
  const auto dt = x_in.scalar_type();
  TORCH_CHECK(dt == at::kFloat || dt == at::kHalf || dt == at::kBFloat16,
              "nf4_quantize: expected a float32, float16 or bfloat16 tensor, got ", dt,
              "; convert it with .to(at::kFloat) first");
  TORCH_CHECK(x_in.numel() > 0, "nf4_quantize: the tensor is empty (shape ", x_in.sizes(),
              "); NF4 needs at least one element");
  check_nf4_blocksize(blocksize, "nf4_quantize");
  check_device(x_in, "nf4_quantize");
  const at::Tensor x = x_in.detach().contiguous();
  TORCH_CHECK(
      at::isfinite(x).all().item<bool>(),
      "nf4_quantize: the tensor holds NaN or Inf values; only finite values have NF4 codes");
  const int64_t n = x.numel();
  Nf4Quantized r;
  r.codes = at::empty({(n + 1) / 2, 1}, x.options().dtype(at::kByte));
  r.absmax = at::empty({blocks_of(n, blocksize)}, x.options().dtype(at::kFloat));
  if (x.is_cuda()) {
#if defined(QAT_WITH_CUDA)
    cuda_glue::nf4_quantize(x, blocksize, r.codes, r.absmax);
    return r;
#endif
  }
  cpu::nf4_quantize(x, blocksize, r.codes, r.absmax);
  return r;
}

at::Tensor nf4_dequantize(const at::Tensor& codes_in, const at::Tensor& absmax_in,
                          at::IntArrayRef shape, int64_t blocksize, at::ScalarType dtype) {
  TORCH_CHECK(codes_in.defined() && absmax_in.defined(),
              "nf4_dequantize: codes or absmax is undefined");
  TORCH_CHECK(codes_in.scalar_type() == at::kByte, "nf4_dequantize: expected uint8 codes, got ",
              codes_in.scalar_type());
  TORCH_CHECK(dtype == at::kFloat || dtype == at::kHalf || dtype == at::kBFloat16,
              "nf4_dequantize: output dtype must be float32, float16 or bfloat16, got ", dtype);
  check_nf4_blocksize(blocksize, "nf4_dequantize");
  check_device(codes_in, "nf4_dequantize");
  check_same_device(codes_in, absmax_in, "nf4_dequantize");
  const int64_t n = c10::multiply_integers(shape);
  TORCH_CHECK(n > 0, "nf4_dequantize: shape ", shape, " has no elements");
  TORCH_CHECK(codes_in.numel() == (n + 1) / 2, "nf4_dequantize: shape ", shape, " needs ",
              (n + 1) / 2, " packed bytes, got ", codes_in.numel());
  TORCH_CHECK(absmax_in.numel() == blocks_of(n, blocksize), "nf4_dequantize: shape ", shape,
              " with blocksize ", blocksize, " needs ", blocks_of(n, blocksize),
              " absmax values, got ", absmax_in.numel());
  const at::Tensor codes = codes_in.contiguous();
  const at::Tensor absmax = absmax_in.to(at::kFloat).contiguous();
  at::Tensor y = at::empty(shape, codes.options().dtype(dtype));
  if (codes.is_cuda()) {
#if defined(QAT_WITH_CUDA)
    cuda_glue::nf4_dequantize(codes, absmax, blocksize, y);
    return y;
#endif
  }
  cpu::nf4_dequantize(codes, absmax, blocksize, y);
  return y;
}

DynamicQuantized dynamic_quantize_blockwise(const at::Tensor& v_in, int64_t blocksize) {
  TORCH_CHECK(v_in.defined() && v_in.scalar_type() == at::kFloat,
              "dynamic_quantize_blockwise: expected a float32 tensor, got ",
              v_in.defined() ? c10::toString(v_in.scalar_type()) : "an undefined tensor");
  TORCH_CHECK(v_in.numel() > 0, "dynamic_quantize_blockwise: the tensor is empty");
  check_nf4_blocksize(blocksize, "dynamic_quantize_blockwise");
  check_device(v_in, "dynamic_quantize_blockwise");
  const at::Tensor v = v_in.detach().contiguous().view({-1});
  DynamicQuantized r;
  r.codes = at::empty({v.numel()}, v.options().dtype(at::kByte));
  r.absmax = at::empty({blocks_of(v.numel(), blocksize)}, v.options());
  if (v.is_cuda()) {
#if defined(QAT_WITH_CUDA)
    cuda_glue::dynamic_quantize(v, blocksize, r.codes, r.absmax);
    return r;
#endif
  }
  cpu::dynamic_quantize(v, blocksize, r.codes, r.absmax);
  return r;
}

at::Tensor dynamic_dequantize_blockwise(const at::Tensor& codes_in, const at::Tensor& absmax_in,
                                        int64_t blocksize) {
  TORCH_CHECK(codes_in.scalar_type() == at::kByte,
              "dynamic_dequantize_blockwise: expected uint8 codes, got ", codes_in.scalar_type());
  check_nf4_blocksize(blocksize, "dynamic_dequantize_blockwise");
  check_device(codes_in, "dynamic_dequantize_blockwise");
  check_same_device(codes_in, absmax_in, "dynamic_dequantize_blockwise");
  TORCH_CHECK(absmax_in.numel() == blocks_of(codes_in.numel(), blocksize),
              "dynamic_dequantize_blockwise: ", codes_in.numel(), " codes in blocks of ", blocksize,
              " need ", blocks_of(codes_in.numel(), blocksize), " absmax values, got ",
              absmax_in.numel());
  const at::Tensor codes = codes_in.contiguous().view({-1});
  const at::Tensor absmax = absmax_in.to(at::kFloat).contiguous();
  at::Tensor y = at::empty({codes.numel()}, codes.options().dtype(at::kFloat));
  if (codes.is_cuda()) {
#if defined(QAT_WITH_CUDA)
    cuda_glue::dynamic_dequantize(codes, absmax, blocksize, y);
    return y;
#endif
  }
  cpu::dynamic_dequantize(codes, absmax, blocksize, y);
  return y;
}

Nf4DoubleQuantized nf4_double_quantize(const at::Tensor& absmax, int64_t nested_blocksize) {
  TORCH_CHECK(absmax.defined() && absmax.scalar_type() == at::kFloat && absmax.numel() > 0,
              "nf4_double_quantize: expected a non-empty float32 absmax tensor");
  // offset = mean(absmax): bitsandbytes' torch.mean of the float32 absmax on the CPU.
  const at::Tensor offset = at::mean(absmax.detach().to(at::kCPU).contiguous().view({-1}));
  Nf4DoubleQuantized r;
  r.offset = offset.to(absmax.device());
  // absmax - offset in float32 (one rounding), then the 8-bit blockwise map.
  const DynamicQuantized q =
      dynamic_quantize_blockwise(absmax.view({-1}) - r.offset, nested_blocksize);
  r.codes = q.codes;
  r.nested_absmax = q.absmax;
  return r;
}

at::Tensor nf4_double_dequantize(const Nf4DoubleQuantized& dq, int64_t nested_blocksize) {
  TORCH_CHECK(dq.offset.defined() && dq.offset.numel() == 1,
              "nf4_double_dequantize: the offset must hold exactly one float32 value");
  // absmax_hat = map[q] * nested_absmax + offset
  return dynamic_dequantize_blockwise(dq.codes, dq.nested_absmax, nested_blocksize)
      .add_(dq.offset.to(at::kFloat).reshape(at::IntArrayRef{}));
}

at::Tensor dynamic_map_signed() {
  at::Tensor t = at::empty({256}, at::TensorOptions().dtype(at::kFloat));
  for (int i = 0; i < 256; ++i) t.data_ptr<float>()[i] = nf4_math::dynamic_map_value(i);
  return t;
}

}  // namespace qat::ops
