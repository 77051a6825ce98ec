#include "ops/pack.h"

#include <ATen/ATen.h>

#include "ops/input_checks.h"
#include "qat/scheme/blocks.h"

namespace qat::ops {

namespace {

using scheme::Format;

int codes_per_byte(const QuantSpec& spec) {
  return 8 / scheme::storage_bits(spec.bits);
}

void check_codes(const at::Tensor& codes, const char* what) {
  TORCH_CHECK(codes.scalar_type() == at::kByte, what, ": expected uint8 codes, got ",
              codes.scalar_type());
  TORCH_CHECK(codes.dim() >= 1, what, ": expected at least one dimension");
}

}  // namespace

at::Tensor pack_codes(const at::Tensor& codes, const QuantSpec& spec) {
  check_codes(codes, "pack_codes");
  TORCH_CHECK(spec.traits().fixed_block == 0, "pack_codes: ", spec.traits().name,
              " packs into GGUF blocks; use pack_gguf_blocks");
  const int per = codes_per_byte(spec);
  const int64_t k = codes.size(-1);
  if (per == 1) return codes.contiguous();
  TORCH_CHECK(k % per == 0, "pack_codes: the last dimension (", k, ") must be a multiple of ", per,
              " to pack ", spec.bits, "-bit codes");
  const int sb = scheme::storage_bits(spec.bits);
  const at::Tensor c = codes.contiguous().bitwise_and((1 << sb) - 1).view({-1, k / per, per});
  at::Tensor out = at::zeros({c.size(0), k / per}, codes.options());
  for (int j = 0; j < per; ++j) {
    // NF4 (bitsandbytes): element 2i in the high nibble; everything else LSB first.
    const int shift = spec.traits().high_nibble_first ? (per - 1 - j) * sb : j * sb;
    out.bitwise_or_(c.select(2, j).bitwise_left_shift(shift));
  }
  return out.view(with_last(codes.sizes(), k / per));
}

at::Tensor unpack_codes(const at::Tensor& packed, const QuantSpec& spec) {
  check_codes(packed, "unpack_codes");
  TORCH_CHECK(spec.traits().fixed_block == 0, "unpack_codes: ", spec.traits().name,
              " packs into GGUF blocks; use unpack_gguf_blocks");
  const int per = codes_per_byte(spec);
  if (per == 1) return packed.contiguous();
  const int sb = scheme::storage_bits(spec.bits);
  const int64_t kb = packed.size(-1);
  const at::Tensor p = packed.contiguous().view({-1, kb, 1});
  std::vector<at::Tensor> parts;
  for (int j = 0; j < per; ++j) {
    const int shift = spec.traits().high_nibble_first ? (per - 1 - j) * sb : j * sb;
    parts.push_back(p.bitwise_right_shift(shift).bitwise_and((1 << sb) - 1));
  }
  at::Tensor c = at::cat(parts, 2).view({-1, kb * per});
  if (spec.format == Format::kInt) {
    // Sign-extend the sb-bit two's complement field back to a byte: (v ^ h) - h, h = 2^(sb-1).
    const int h = 1 << (sb - 1);
    c = c.to(at::kShort).bitwise_xor(h).sub(h).bitwise_and(0xff).to(at::kByte);
  }
  return c.view(with_last(packed.sizes(), kb * per));
}

at::Tensor pack_gguf_blocks(const at::Tensor& codes, const QuantSpec& spec, const QParams& qp) {
  check_codes(codes, "pack_gguf_blocks");
  const auto& t = spec.traits();
  TORCH_CHECK(t.fixed_block == 32, "pack_gguf_blocks: ", t.name, " is not a GGUF block format");
  spec.validate_for(codes.sizes());
  const scheme::Block32Layout l = scheme::block32_layout(spec.format);
  const int64_t k = codes.size(-1);
  const at::Tensor c = codes.contiguous().view({-1, 32});
  const int64_t nb = c.size(0);
  // fp16 d (and m) as their two little-endian bytes; .to(kHalf) rounds to nearest even.
  auto half_bytes = [&](const at::Tensor& v) {
    return v.reshape({nb, 1})
        .to(at::kFloat)
        .to(at::kHalf)
        .contiguous()
        .view(at::kByte)
        .view({nb, 2});
  };
  // The fields in struct order (qat/scheme/blocks.h): d, then m, qh, qs where the format has them.
  std::vector<at::Tensor> parts{half_bytes(qp.scale)};
  if (l.m >= 0) parts.push_back(half_bytes(qp.zero));  // q4_1, q5_1: fp16 m
  if (l.qh >= 0) {
    // qh: 4 bytes; bit j of byte b is the fifth bit of element 8b + j.
    const at::Tensor hi = c.bitwise_right_shift(4).bitwise_and(1).view({nb, 4, 8});
    parts.push_back(hi.bitwise_left_shift(at::arange(8, hi.options())).sum(2).to(at::kByte));
  }
  if (l.bytes - l.qs == 32) {  // a byte per code (Q8_0)
    parts.push_back(c);
  } else {  // two nibbles per byte
    const at::Tensor lo = c.bitwise_and(0x0f);
    parts.push_back(lo.slice(1, 0, 16).bitwise_or(lo.slice(1, 16, 32).bitwise_left_shift(4)));
  }
  return at::cat(parts, 1).view(with_last(codes.sizes(), k / 32 * l.bytes));
}

UnpackedBlocks unpack_gguf_blocks(const at::Tensor& blocks, const QuantSpec& spec) {
  check_codes(blocks, "unpack_gguf_blocks");
  const auto& t = spec.traits();
  TORCH_CHECK(t.fixed_block == 32, "unpack_gguf_blocks: ", t.name, " is not a GGUF block format");
  const scheme::Block32Layout l = scheme::block32_layout(spec.format);
  const int64_t kb = blocks.size(-1);
  TORCH_CHECK(kb % l.bytes == 0, "unpack_gguf_blocks: the last dimension (", kb,
              " bytes) is not a whole number of ", l.bytes, "-byte ", t.name, " blocks");
  const at::Tensor b = blocks.contiguous().view({-1, l.bytes});
  const int64_t nb = b.size(0);
  auto half_at = [&](int64_t off) {
    return b.slice(1, off, off + 2).contiguous().view(at::kHalf).to(at::kFloat).view({nb});
  };
  UnpackedBlocks r;
  at::Tensor qs = b.slice(1, l.qs, l.bytes);
  at::Tensor codes = l.bytes - l.qs == 32
                         ? qs.contiguous()
                         : at::cat({qs.bitwise_and(0x0f), qs.bitwise_right_shift(4)}, 1);
  if (l.qh >= 0) {
    const at::Tensor qh = b.slice(1, l.qh, l.qh + 4).unsqueeze(2);  // [nb, 4, 1]
    const at::Tensor hi =
        qh.bitwise_right_shift(at::arange(8, qh.options())).bitwise_and(1).reshape({nb, 32});
    codes = codes.bitwise_or(hi.bitwise_left_shift(4));
  }
  const auto shape = with_last(blocks.sizes(), kb / l.bytes * 32);
  r.codes = codes.view(shape);
  const auto sshape = spec.scale_shape(shape);
  r.qparams.scale = half_at(0).view(sshape);
  r.qparams.zero = l.m >= 0 ? half_at(l.m).view(sshape)
                            : at::zeros({nb}, r.qparams.scale.options()).view(sshape);
  return r;
}

}  // namespace qat::ops
