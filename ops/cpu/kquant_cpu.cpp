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

}  // namespace qat::ops::cpu
