#include "ops/cpu/kquant_cpu.h"

#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>

#include "ops/kquant_math.h"

namespace qat::ops::cpu {

namespace k = qat::ops::kquant;

void kquant_quantize(const at::Tensor& x, scheme::Format f, at::Tensor& blocks) {
  const int64_t n_blocks = x.numel() / k::kSuperBlock;
  const int bytes = k::block_bytes(f);
  uint8_t* out = blocks.data_ptr<uint8_t>();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "kquant_quantize",
                                  [&] {
                                    const scalar_t* in = x.data_ptr<scalar_t>();
                                    at::parallel_for(0, n_blocks, 16, [&](int64_t b0, int64_t b1) {
                                      float buf[k::kSuperBlock];
                                      for (int64_t b = b0; b < b1; ++b) {
                                        for (int i = 0; i < k::kSuperBlock; ++i)
                                          buf[i] = static_cast<float>(in[b * k::kSuperBlock + i]);
                                        k::quantize_block(f, buf, out + b * bytes);
                                      }
                                    });
                                  });
}

void kquant_dequantize(const at::Tensor& blocks, scheme::Format f, at::Tensor& y) {
  const int64_t n_blocks = y.numel() / k::kSuperBlock;
  const int bytes = k::block_bytes(f);
  const uint8_t* in = blocks.data_ptr<uint8_t>();
  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kHalf, at::kBFloat16, y.scalar_type(), "kquant_dequantize", [&] {
        scalar_t* out = y.data_ptr<scalar_t>();
        at::parallel_for(0, n_blocks, 64, [&](int64_t b0, int64_t b1) {
          float buf[k::kSuperBlock];
          for (int64_t b = b0; b < b1; ++b) {
            k::dequantize_block(f, in + b * bytes, buf);
            for (int i = 0; i < k::kSuperBlock; ++i)
              out[b * k::kSuperBlock + i] = static_cast<scalar_t>(buf[i]);
          }
        });
      });
}

void kquant_fake_quantize(const at::Tensor& x, scheme::Format f, at::Tensor& y) {
  const int64_t n_blocks = x.numel() / k::kSuperBlock;
  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kHalf, at::kBFloat16, x.scalar_type(), "kquant_fake_quantize", [&] {
        const scalar_t* in = x.data_ptr<scalar_t>();
        scalar_t* out = y.data_ptr<scalar_t>();
        at::parallel_for(0, n_blocks, 16, [&](int64_t b0, int64_t b1) {
          float buf[k::kSuperBlock];
          for (int64_t b = b0; b < b1; ++b) {
            for (int i = 0; i < k::kSuperBlock; ++i)
              buf[i] = static_cast<float>(in[b * k::kSuperBlock + i]);
            k::fake_quant_block(f, buf);
            for (int i = 0; i < k::kSuperBlock; ++i)
              out[b * k::kSuperBlock + i] = static_cast<scalar_t>(buf[i]);
          }
        });
      });
}

void kquant_quantize_with(const at::Tensor& x, const at::Tensor& d, const at::Tensor& dmin,
                          const at::Tensor& scales, const at::Tensor& mins, scheme::Format f,
                          at::Tensor& blocks) {
  const int64_t n_blocks = x.numel() / k::kSuperBlock;
  const int bytes = k::block_bytes(f);
  const int subs = f == scheme::Format::kQ6_K ? 16 : 8;
  const float* in = x.data_ptr<float>();
  const float *pd = d.data_ptr<float>(), *pdm = dmin.data_ptr<float>();
  const float *ps = scales.data_ptr<float>(), *pm = mins.data_ptr<float>();
  uint8_t* out = blocks.data_ptr<uint8_t>();
  at::parallel_for(0, n_blocks, 16, [&](int64_t b0, int64_t b1) {
    for (int64_t b = b0; b < b1; ++b) {
      const float* xb = in + b * k::kSuperBlock;
      if (f == scheme::Format::kQ6_K) {
        int8_t sc[16];
        for (int j = 0; j < 16; ++j) sc[j] = static_cast<int8_t>(ps[b * subs + j]);
        k::quantize_block_q6k_with(xb, pd[b], sc, out + b * bytes);
        continue;
      }
      uint8_t ls[8], lm[8];
      for (int j = 0; j < 8; ++j) {
        ls[j] = static_cast<uint8_t>(ps[b * subs + j]);
        lm[j] = static_cast<uint8_t>(pm[b * subs + j]);
      }
      if (f == scheme::Format::kQ4_K)
        k::quantize_block_affine_k_with<15>(xb, pd[b], pdm[b], ls, lm, out + b * bytes);
      else
        k::quantize_block_affine_k_with<31>(xb, pd[b], pdm[b], ls, lm, out + b * bytes);
    }
  });
}

void kquant_read_params(const at::Tensor& blocks, scheme::Format f, at::Tensor& d, at::Tensor& dmin,
                        at::Tensor& scales, at::Tensor& mins) {
  const int64_t n_blocks = d.numel();
  const int bytes = k::block_bytes(f);
  const int subs = f == scheme::Format::kQ6_K ? 16 : 8;
  const uint8_t* in = blocks.data_ptr<uint8_t>();
  float *pd = d.data_ptr<float>(), *pdm = dmin.data_ptr<float>();
  float *ps = scales.data_ptr<float>(), *pm = mins.data_ptr<float>();
  for (int64_t b = 0; b < n_blocks; ++b)
    k::read_block_params(f, in + b * bytes, pd + b, pdm + b, ps + b * subs, pm + b * subs);
}

}  // namespace qat::ops::cpu
