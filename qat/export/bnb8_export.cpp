// bitsandbytes 8-bit checkpoint (LLM.int8(): transformers' load_in_8bit format, as
// Linear8bitLt._save_to_state_dict writes it). For module p with weight [N, K]:
//   p.weight         int8 [N, K]   row-wise absmax codes
//   p.SCB            float32 [N]   each row's absmax (the weight is code * SCB / 127)
//   p.weight_format  uint8 scalar  0 (row-major; bitsandbytes writes it for older readers)
// config.json carries quantization_config (quant_method "bitsandbytes", load_in_8bit). lm_head
// and the embeddings stay dense. At run time bitsandbytes quantizes each token's activations to
// int8 too and keeps the columns with an activation of at least llm_int8_threshold (6.0) in 16 bits
// (the outlier decomposition); on the CPU while training it dequantizes the weight instead.
//
// Dense and LoRA linears are merged and quantized by bitsandbytes' own rule
// (int8_vectorwise_quant of the weight cast to float16), so the codes and SCB are byte for byte
// what transformers writes when it quantizes the float model itself. A linear fake-quantized
// int8 symmetric per output channel (quant.group_size: 0) with float32 scales keeps its trained
// codes; its SCB is chosen so that bitsandbytes' dequantization, code * fl(SCB * fl(1/127)), gives
// the trained scale exactly where a float32 SCB does (the report gives the largest difference that
// remains).
#include <ATen/ATen.h>
#include <torch/autograd.h>

#include <cmath>
#include <optional>

#include "qat/export/writers.h"

namespace qat::exporting::detail {
namespace {

struct Int8Rows {
  at::Tensor codes;  // int8 [N, K]
  at::Tensor scb;    // float32 [N]
};

// bitsandbytes' int8_vectorwise_quant of w.to(float16): SCB = max|w16| per row, codes =
// round_half_even(w16 * (127.0 / SCB)) in float32, where Python's 127.0 / SCB is PyTorch's
// __rtruediv__, fl(fl(1 / SCB) * 127) (a true division differs in about one code in 10,000). An
// all-zero row (which bitsandbytes would turn into NaN codes) gets zero codes.
Int8Rows bnb_quantize(const at::Tensor& w) {
  const at::Tensor w16 = w.to(at::kHalf).to(at::kFloat);
  const at::Tensor scb = std::get<0>(w16.abs().max(1));
  const at::Tensor mult = at::reciprocal(scb).mul_(127.0f);
  at::Tensor q = at::round(w16 * mult.unsqueeze(1));
  q = at::where(scb.unsqueeze(1) > 0, q, at::zeros_like(q));
  return {q.to(at::kChar).contiguous(), scb.contiguous()};
}

// bitsandbytes' dequantization of the weight (MatMul8bitFp): code * fl(SCB * fl(1/127)).
at::Tensor bnb_dequantize(const Int8Rows& r) {
  const at::Tensor step = r.scb * static_cast<float>(1.0 / 127.0);
  return r.codes.to(at::kFloat) * step.unsqueeze(1);
}

// The float32 SCB nearest 127 * scale for which fl(SCB * fl(1/127)) == scale: the candidates
// within four ulps either side, the nearest that hits; 127 * scale where none does.
at::Tensor scb_for_scale(const at::Tensor& scale) {
  const at::Tensor target = scale.to(at::kFloat).reshape({-1});
  const float inv = static_cast<float>(1.0 / 127.0);
  const at::Tensor centre = target * 127.0f;
  at::Tensor best = centre.clone();
  at::Tensor found = (centre * inv).eq(target);
  at::Tensor up = centre.clone(), down = centre.clone();
  const at::Tensor inf = at::full_like(centre, INFINITY);
  for (int k = 1; k <= 4; ++k) {
    up = at::nextafter(up, inf);
    down = at::nextafter(down, -inf);
    for (const at::Tensor& c : {up, down}) {
      const at::Tensor hit = (c * inv).eq(target).logical_and(found.logical_not());
      best = at::where(hit, c, best);
      found = found.logical_or(hit);
    }
  }
  return best.contiguous();
}

// The trained codes of an int8 symmetric per-output-channel fake-quant weight; nullopt and `why`
// when the layer was trained otherwise.
std::optional<Int8Rows> trained_int8(const FakeQuantWeight& fw, std::string* why) {
  const scheme::QuantSpec& s = fw.spec;
  if (s.format != scheme::Format::kInt || s.bits != 8 || !per_output_channel(s.granularity)) {
    *why =
        "bitsandbytes 8-bit stores int8 codes with one absmax per output row (quant.weight=int8 "
        "with quant.group_size=0)";
    return std::nullopt;
  }
  if (s.scale_dtype != scheme::ScaleDtype::kFloat32) {
    *why = "its " + scheme::to_string(s.scale_dtype) +
           " scales are not what SCB stores (float32; train with quant.scale_dtype=fp32)";
    return std::nullopt;
  }
  return Int8Rows{fw.codes.view(at::kChar).contiguous(), scb_for_scale(fw.qparams.scale)};
}

// A linear's 8-bit rows and where they came from; `reference` is the weight the report compares
// with (the trained values, or the weight quantized here).
Int8Rows linear_int8(const Job& job, const LinearView& l, std::string* origin,
                     at::Tensor* reference) {
  if (l.fake_quant && !l.lora) {
    const FakeQuantWeight fw = fake_quant_weight(*l.fake_quant);
    std::string why;
    if (auto r = trained_int8(fw, &why)) {
      *origin = "fake-quant " + fw.spec.to_string() + " (codes exact)";
      *reference = fw.values();
      return *r;
    }
    TORCH_CHECK(job.opt.requantize, "export bnb-int8: linear '", l.name, "' was trained with ",
                fw.spec.to_string(),
                " fake quant, which this checkpoint cannot store exactly: ", why,
                ". Pass --requantize to quantize its trained weight by bitsandbytes' rule (the "
                "error is reported)");
    *origin = "requantized from " + fw.spec.to_string();
  } else {
    *origin = "quantized from " + l.describe();
  }
  *reference = l.merged_weight().to(at::kFloat);
  return bnb_quantize(*reference);
}

void add_int8(Job& job, TensorList& tensors, const std::string& p, const Int8Rows& r,
              const std::string& origin, const at::Tensor& reference) {
  tensors.emplace_back(p + ".weight", r.codes);
  tensors.emplace_back(p + ".SCB", r.scb);
  tensors.emplace_back(p + ".weight_format", at::zeros({}, at::kByte));
  TensorRecord rec;
  rec.name = p + ".weight";
  rec.type = "int8/row (LLM.int8)";
  rec.origin = origin;
  rec.numel = r.codes.numel();
  rec.bytes = r.codes.numel() + r.scb.numel() * 4 + 1;
  rec.theoretical_bits = 8.0 + 32.0 / static_cast<double>(r.codes.size(1));
  const ErrorStats e = error_stats(reference, bnb_dequantize(r));
  rec.max_abs_err = e.max_abs;
  rec.rel_fro_err = e.rel_fro;
  job.report.tensors.push_back(std::move(rec));
}

}  // namespace

void write_bnb_int8(Job& job, const std::string& dir) {
  torch::NoGradGuard no_grad;
  const at::ScalarType dt = job.opt.hf_dtype;
  hf_dtype_name(dt);
  TensorList tensors;
  add_others(job, tensors, dt);
  bool any = false;
  for (const LinearView& l : job.linears) {
    if (l.bias().defined()) add_dense(job, tensors, l.name + ".bias", l.bias(), dt, "bias");
    if (l.name == "lm_head") {  // transformers keeps the output layer dense
      add_dense(job, tensors, "lm_head.weight", l.merged_weight(), dt, "dense head");
      continue;
    }
    std::string origin;
    at::Tensor reference;
    const Int8Rows r = linear_int8(job, l, &origin, &reference);
    add_int8(job, tensors, l.name, r, origin, reference);
    any = true;
  }
  TORCH_CHECK(any, "export bnb-int8: the model has no linear layer to quantize");
  write_hf_quantized(job, dir, tensors,
                     bnb_quantization_config(/*four_bit=*/false, /*double_quant=*/false, dt));
}

}  // namespace qat::exporting::detail
