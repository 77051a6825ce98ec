// The 8-bit compressed-tensors schemes for vLLM, as llm-compressor writes its presets of the same
// names. Per linear p with weight [N, K], one scale per output channel (y = code * scale):
//   w8a16  "pack-quantized", weights only (vLLM's WNA16 kernels):
//            p.weight_packed int32 [N, K/4]  code + 128, 4 per word along K, first in the lowest
//                                            byte (compressed-tensors' pack_to_int32)
//            p.weight_scale  [N, 1]          the checkpoint dtype
//            p.weight_shape  int64 [2]
//   w8a8   "int-quantized" (CompressedTensorsW8A8Int8): p.weight int8 [N, K],
//            p.weight_scale [N, 1]; activations int8 per token, dynamic: the engine quantizes each
//            token's row with scale = max|x| / 127, round half to even, saturating to [-128, 127]
//   fp8    "float-quantized" (FP8_DYNAMIC, CompressedTensorsW8A8Fp8): p.weight float8_e4m3fn
//            [N, K], p.weight_scale [N, 1]; activations e4m3 per token, dynamic
//            (scale = max|x| / 448)
// lm_head stays dense (config "ignore"), as vLLM and llm-compressor keep it.
//
// Exact: a linear fake-quantized per output channel in the scheme's weight format (int8 symmetric,
// or fp8_e4m3) whose scales are values of the checkpoint dtype is written with its own codes and
// scales. Dense and LoRA linears are merged and quantized per channel by our rule (scale = max|w| /
// 127 or / 448, round half to even); other fake-quant schemes: an error, or --requantize.
#include <ATen/ATen.h>
#include <torch/autograd.h>

#include <optional>

#include "ops/quantize.h"
#include "qat/export/writers.h"

namespace qat::exporting::detail {
namespace {

using scheme::Format;
using scheme::Granularity;
using scheme::QuantSpec;

struct Int8Weight {
  at::Tensor codes;  // uint8 [N, K]: two's complement int8, or the fp8 byte
  at::Tensor scale;  // float32 [N, 1]
};

// The weight format of a scheme, per output channel.
QuantSpec weight_spec(CtScheme s, at::ScalarType dt) {
  QuantSpec spec = QuantSpec::from_name(s == CtScheme::kFp8 ? "fp8_e4m3" : "int8")
                       .with(Granularity::per_axis(0));
  spec.scale_dtype = scale_dtype_of(dt);
  return spec;
}

// codes * scale, float32 [N, K].
at::Tensor dequantize(const Int8Weight& w, Format f) {
  const at::Tensor v = f == Format::kFp8E4M3 ? w.codes.view(at::kFloat8_e4m3fn).to(at::kFloat)
                                             : w.codes.view(at::kChar).to(at::kFloat);
  return v * w.scale;
}

// The codes and scales of a fake-quant weight when the scheme holds it exactly; nullopt and `why`
// when it does not.
std::optional<Int8Weight> exact_int8(const FakeQuantWeight& fw, const QuantSpec& want,
                                     at::ScalarType dt, const std::string& name, std::string* why) {
  const QuantSpec& s = fw.spec;
  if (s.format != want.format || s.bits != 8) {
    *why = "the scheme stores " + want.to_string() + " codes";
    return std::nullopt;
  }
  if (!per_output_channel(s.granularity)) {
    *why = "its weights hold one scale per output channel (strategy \"channel\"), not " +
           s.granularity.to_string();
    return std::nullopt;
  }
  const at::Tensor sc = fw.qparams.scale.to(at::kFloat).reshape({fw.weight.size(0), 1});
  if (!at::equal(sc.to(dt).to(at::kFloat), sc)) {
    *why = "its " + scheme::to_string(s.scale_dtype) + " scales are not all " + hf_dtype_name(dt) +
           " values (export with --dtype matching the scale dtype)";
    return std::nullopt;
  }
  Int8Weight w{fw.codes, sc};
  TORCH_CHECK(at::equal(dequantize(w, s.format), fw.values()), "export ct: internal error: '", name,
              "' codes * scales differ from the trained weight");
  return w;
}

Int8Weight quantize_int8(const at::Tensor& reference, const QuantSpec& spec) {
  const ops::QParams qp = ops::choose_qparams(reference, spec);
  return {ops::quantize(reference, spec, qp),
          qp.scale.to(at::kFloat).reshape({reference.size(0), 1})};
}

// A linear's weight in the scheme: its trained codes as they are, or (dense, LoRA, --requantize)
// its weight quantized. `reference` is set when quantized here (for the error report).
Int8Weight linear_int8(const Job& job, const LinearView& l, const QuantSpec& want,
                       at::ScalarType dt, std::string* origin, at::Tensor* reference) {
  if (l.fake_quant && !l.lora) {
    const FakeQuantWeight fw = fake_quant_weight(*l.fake_quant);
    std::string why;
    if (auto w = exact_int8(fw, want, dt, l.name, &why)) {
      *origin = "fake-quant " + fw.spec.to_string() + " (exact)";
      return *w;
    }
    TORCH_CHECK(job.opt.requantize, "export ct ", to_string(job.opt.ct_scheme), ": linear '",
                l.name, "' was trained with ", fw.spec.to_string(),
                " fake quant, which the scheme cannot store exactly: ", why,
                ". Pass --requantize to quantize its trained weight per channel (the error is "
                "reported)");
    *origin = "requantized from " + fw.spec.to_string();
  } else {
    *origin = "quantized from " + l.describe();
  }
  *reference = l.merged_weight();
  return quantize_int8(*reference, want);
}

// What the file says of the activations next to what the layer trained with.
void note_activation(Job& job, const LinearView& l) {
  if (!l.fake_quant || !l.fake_quant->activation_quantizer()) return;
  const QuantSpec trained = l.fake_quant->activation_quantizer()->config().spec;
  const CtScheme s = job.opt.ct_scheme;
  const bool a8 = s == CtScheme::kW8A8 || s == CtScheme::kFp8;
  const Format engine = s == CtScheme::kFp8 ? Format::kFp8E4M3 : Format::kInt;
  if (a8 && trained.format == engine && trained.bits == 8 &&
      trained.granularity.kind == Granularity::Kind::kPerToken)
    return;  // trained as the engine runs it
  job.report.notes.push_back(
      "linear '" + l.name + "': activations trained with " + trained.to_string() +
      (a8 ? std::string(" fake quant; the file's engine quantizes them ") +
                (engine == Format::kFp8E4M3 ? "to e4m3" : "to int8") + " per token"
          : " fake quant; w8a16 keeps activations in 16 bits"));
}

void add_weight(Job& job, TensorList& tensors, const std::string& p, const Int8Weight& w,
                const QuantSpec& want, const std::string& origin, const at::Tensor& reference) {
  const at::ScalarType dt = job.opt.hf_dtype;
  const at::Tensor scale = w.scale.to(dt).contiguous();
  TensorRecord r;
  r.origin = origin;
  r.numel = w.codes.numel();
  r.bytes = w.codes.numel() + scale.numel() * static_cast<int64_t>(scale.element_size());
  r.theoretical_bits =
      8.0 + 8.0 * static_cast<double>(scale.element_size()) / static_cast<double>(w.codes.size(1));
  if (job.opt.ct_scheme == CtScheme::kW8A16) {
    tensors.emplace_back(p + ".weight_packed", pack_int32(w.codes, 8));
    tensors.emplace_back(p + ".weight_scale", scale);
    tensors.emplace_back(p + ".weight_shape",
                         at::tensor({w.codes.size(0), w.codes.size(1)}, at::kLong));
    r.name = p + ".weight_packed";
  } else {
    const at::Tensor q = want.format == Format::kFp8E4M3 ? w.codes.view(at::kFloat8_e4m3fn)
                                                         : w.codes.view(at::kChar);
    tensors.emplace_back(p + ".weight", q.contiguous());
    tensors.emplace_back(p + ".weight_scale", scale);
    r.name = p + ".weight";
  }
  r.type = want.format == Format::kFp8E4M3 ? "fp8_e4m3/channel" : "int8/channel";
  if (reference.defined()) {
    const ErrorStats e =
        error_stats(reference, dequantize({w.codes, scale.to(at::kFloat)}, want.format));
    r.max_abs_err = e.max_abs;
    r.rel_fro_err = e.rel_fro;
  }
  job.report.tensors.push_back(std::move(r));
}

nlohmann::json quant_args(bool fp8, const char* strategy, bool dynamic) {
  return {{"num_bits", 8},
          {"type", fp8 ? "float" : "int"},
          {"symmetric", true},
          {"strategy", strategy},
          {"group_size", nullptr},
          {"dynamic", dynamic},
          {"actorder", nullptr},
          {"observer", dynamic ? nlohmann::json(nullptr) : nlohmann::json("minmax")},
          {"observer_kwargs", nlohmann::json::object()},
          {"block_structure", nullptr}};
}

// config.json's quantization_config: one group for every Linear, the head ignored.
nlohmann::json quantization_config(CtScheme s, bool has_head) {
  const bool fp8 = s == CtScheme::kFp8;
  const char* format = s == CtScheme::kW8A16 ? "pack-quantized"
                       : fp8                 ? "float-quantized"
                                             : "int-quantized";
  const nlohmann::json acts =
      s == CtScheme::kW8A16 ? nlohmann::json(nullptr) : quant_args(fp8, "token", true);
  const nlohmann::json group = {{"targets", {"Linear"}},
                                {"weights", quant_args(fp8, "channel", false)},
                                {"input_activations", acts},
                                {"output_activations", nullptr},
                                {"format", format}};
  return {{"quant_method", "compressed-tensors"},
          {"format", format},
          {"quantization_status", "compressed"},
          {"config_groups", {{"group_0", group}}},
          {"ignore", has_head ? nlohmann::json::array({"lm_head"}) : nlohmann::json::array()},
          {"kv_cache_scheme", nullptr},
          {"global_compression_ratio", nullptr},
          {"sparsity_config", nlohmann::json::object()}};
}

}  // namespace

void write_compressed_tensors_8bit(Job& job, const std::string& dir) {
  torch::NoGradGuard no_grad;
  const at::ScalarType dt = job.opt.hf_dtype;
  hf_dtype_name(dt);
  const QuantSpec want = weight_spec(job.opt.ct_scheme, dt);
  TensorList tensors;
  add_others(job, tensors, dt);
  bool has_head = false, any = false;
  for (const LinearView& l : job.linears) {
    if (l.bias().defined()) add_dense(job, tensors, l.name + ".bias", l.bias(), dt, "bias");
    if (l.name == "lm_head") {  // vLLM keeps the head dense (config "ignore")
      add_dense(job, tensors, "lm_head.weight", l.merged_weight(), dt, "dense head");
      has_head = true;
      continue;
    }
    std::string origin;
    at::Tensor reference;
    const Int8Weight w = linear_int8(job, l, want, dt, &origin, &reference);
    add_weight(job, tensors, l.name, w, want, origin, reference);
    note_activation(job, l);
    any = true;
  }
  TORCH_CHECK(any, "export ct: the model has no linear layer to quantize");
  write_hf_quantized(job, dir, tensors, quantization_config(job.opt.ct_scheme, has_head));
}

}  // namespace qat::exporting::detail
