// int4 weight-only for vLLM as compressed-tensors "pack-quantized" (W4A16), the format
// llm-compressor writes and vLLM's CompressedTensorsWNA16 scheme loads (Marlin kernels). For a
// linear p with weight [N, K] and group size G:
//   p.weight_packed  int32 [N, K/8]  code + 8 (0..15), 8 per word along K, first element in the
//                                    lowest 4 bits
//   p.weight_scale   [N, K/G]        the checkpoint dtype
//   p.weight_shape   int64 [2]       [N, K] (compressed-tensors writes torch.tensor(shape))
// y = code * scale. Chosen over GPTQ v1 because its layout is row-major like ours (no transposes,
// no zero-point offsets), it is what vLLM's own quantization tool writes, and it states the
// scheme (group size, symmetry) explicitly in config.json.
//
// Exact: a linear fake-quantized with int2..int4 symmetric per-group (G dividing K) whose scales
// are values of the checkpoint dtype (train with scale_dtype fp16 and export --dtype fp16, or
// bf16 with bf16) is written with its own codes and scales. Dense and LoRA linears are merged and
// quantized with int4 symmetric groups of int4_group_size (round half to even, as
// compressed-tensors).
#include <ATen/ATen.h>
#include <torch/autograd.h>

#include <filesystem>
#include <map>
#include <optional>

#include "qat/export/writers.h"
#include "qat/io/safetensors_torch.h"

namespace qat::exporting::detail {
namespace {

struct Int4Weight {
  at::Tensor codes;  // uint8 two's complement [N, K]
  at::Tensor scale;  // float32 [N, K/G]
  int64_t group = 0;
};

// The int4 codes and scales of a fake-quant weight when pack-quantized holds it exactly;
// nullopt and `why` when it does not.
std::optional<Int4Weight> exact_int4(const FakeQuantWeight& fw, at::ScalarType dt,
                                     const std::string& name, std::string* why) {
  const auto& s = fw.spec;
  const bool grouped = s.granularity.kind == scheme::Granularity::Kind::kPerGroup;
  if (s.format != scheme::Format::kInt || s.bits > 4) {
    *why = "int4 pack-quantized holds symmetric int2..int4 codes";
    return std::nullopt;
  }
  if (!grouped || fw.weight.size(-1) % s.granularity.group_size != 0) {
    *why = "only per-group scales along the input dimension map onto strategy \"group\"";
    return std::nullopt;
  }
  const at::Tensor sc = fw.qparams.scale.to(at::kFloat);
  if (!at::equal(sc.to(dt).to(at::kFloat), sc)) {
    *why = "its " + scheme::to_string(s.scale_dtype) + " scales are not all " + hf_dtype_name(dt) +
           " values (export with --dtype matching the scale dtype)";
    return std::nullopt;
  }
  Int4Weight w;
  w.codes = fw.codes;
  w.scale = sc.reshape({fw.weight.size(0), -1});
  w.group = s.granularity.group_size;
  TORCH_CHECK(at::equal(at::mul(w.codes.view(at::kChar)
                                    .to(at::kFloat)
                                    .reshape({w.scale.size(0), w.scale.size(1), -1}),
                                w.scale.unsqueeze(-1))
                            .reshape(w.codes.sizes()),
                        fw.values()),
              "export ct: internal error: '", name,
              "' codes * scales differ from the trained weight");
  return w;
}

// A weight quantized to symmetric int4 groups of --group-size (scales in `dt`).
Int4Weight quantize_int4(const at::Tensor& reference, int64_t g, at::ScalarType dt,
                         const std::string& name) {
  TORCH_CHECK(reference.size(1) % g == 0, "export ct: linear '", name, "' has ", reference.size(1),
              " inputs, not a multiple of the group size ", g, " (--group-size)");
  scheme::QuantSpec spec =
      scheme::QuantSpec::from_name("int4").with(scheme::Granularity::per_group(g));
  spec.scale_dtype = scale_dtype_of(dt);
  const ops::QParams qp = ops::choose_qparams(reference, spec);
  Int4Weight w;
  w.codes = ops::quantize(reference, spec, qp);
  w.scale = qp.scale.to(at::kFloat).reshape({reference.size(0), -1});
  w.group = g;
  return w;
}

// A linear's int4 weight: its trained blocks as they are, or (dense, LoRA, --requantize) its
// weight quantized. `reference` is set when quantized here (for the error report).
Int4Weight linear_int4(const Job& job, const LinearView& l, at::ScalarType dt, std::string* origin,
                       at::Tensor* reference) {
  const ExportOptions& opt = job.opt;
  if (l.fake_quant && !l.lora) {
    const FakeQuantWeight fw = fake_quant_weight(*l.fake_quant);
    std::string why;
    if (auto w = exact_int4(fw, dt, l.name, &why)) {
      *origin = "fake-quant " + fw.spec.to_string() + " (exact)";
      return *w;
    }
    TORCH_CHECK(opt.requantize, "export ct: linear '", l.name, "' was trained with ",
                fw.spec.to_string(),
                " fake quant, which int4 pack-quantized cannot store exactly: ", why,
                ". Pass --requantize to quantize its trained weight to int4 groups of ",
                opt.int4_group_size, " (the error is reported)");
    *origin = "requantized from " + fw.spec.to_string();
  } else {
    *origin = "quantized from " + l.describe();
  }
  *reference = l.merged_weight();
  return quantize_int4(*reference, opt.int4_group_size, dt, l.name);
}

// The packed weight, its scales and shape (compressed-tensors' names), and the report's row.
void add_int4(Job& job, TensorList& tensors, const std::string& p, const Int4Weight& w,
              const std::string& origin, const at::Tensor& reference, at::ScalarType dt) {
  const at::Tensor packed = pack_int32(w.codes, 4);
  const at::Tensor scale = w.scale.to(dt).contiguous();
  tensors.emplace_back(p + ".weight_packed", packed);
  tensors.emplace_back(p + ".weight_scale", scale);
  tensors.emplace_back(p + ".weight_shape",
                       at::tensor({w.codes.size(0), w.codes.size(1)}, at::kLong));
  TensorRecord r;
  r.name = p + ".weight_packed";
  r.type = "int4/g" + std::to_string(w.group);
  r.origin = origin;
  r.numel = w.codes.numel();
  r.bytes = packed.numel() * 4 + scale.numel() * static_cast<int64_t>(scale.element_size());
  r.theoretical_bits =
      4.0 + 8.0 * static_cast<double>(scale.element_size()) / static_cast<double>(w.group);
  if (reference.defined()) {
    const at::Tensor deq =
        (w.codes.view(at::kChar).to(at::kFloat).reshape({w.scale.size(0), w.scale.size(1), -1}) *
         scale.to(at::kFloat).unsqueeze(-1))
            .reshape(w.codes.sizes());
    const ErrorStats e = error_stats(reference, deq);
    r.max_abs_err = e.max_abs;
    r.rel_fro_err = e.rel_fro;
  }
  job.report.tensors.push_back(std::move(r));
}

// config.json's quantization_config: one group per group size (targets "Linear" when there is
// only one), the head ignored when the model has its own.
nlohmann::json quantization_config(const std::map<int64_t, std::vector<std::string>>& by_group,
                                   bool has_head) {
  nlohmann::json groups = nlohmann::json::object();
  int i = 0;
  for (const auto& [g, names] : by_group) {
    nlohmann::json targets =
        by_group.size() == 1 ? nlohmann::json::array({"Linear"}) : nlohmann::json(names);
    groups["group_" + std::to_string(i++)] = {{"targets", targets},
                                              {"weights",
                                               {{"num_bits", 4},
                                                {"type", "int"},
                                                {"symmetric", true},
                                                {"strategy", "group"},
                                                {"group_size", g},
                                                {"dynamic", false},
                                                {"actorder", nullptr},
                                                {"observer", "minmax"},
                                                {"observer_kwargs", nlohmann::json::object()},
                                                {"block_structure", nullptr}}},
                                              {"input_activations", nullptr},
                                              {"output_activations", nullptr},
                                              {"format", "pack-quantized"}};
  }
  return {{"quant_method", "compressed-tensors"},
          {"format", "pack-quantized"},
          {"quantization_status", "compressed"},
          {"config_groups", groups},
          {"ignore", has_head ? nlohmann::json::array({"lm_head"}) : nlohmann::json::array()},
          {"kv_cache_scheme", nullptr},
          {"global_compression_ratio", nullptr},
          {"sparsity_config", nlohmann::json::object()}};
}

}  // namespace

void write_compressed_tensors(Job& job, const std::string& dir) {
  torch::NoGradGuard no_grad;
  const ExportOptions& opt = job.opt;
  const at::ScalarType dt = opt.hf_dtype;
  hf_dtype_name(dt);
  TensorList tensors;
  add_others(job, tensors, dt);
  std::map<int64_t, std::vector<std::string>> by_group;  // group size -> module names
  for (const LinearView& l : job.linears) {
    if (l.bias().defined()) add_dense(job, tensors, l.name + ".bias", l.bias(), dt, "bias");
    if (l.name == "lm_head") {  // vLLM keeps the head dense (config "ignore")
      add_dense(job, tensors, "lm_head.weight", l.merged_weight(), dt, "dense head");
      continue;
    }
    std::string origin;
    at::Tensor reference;
    const Int4Weight w = linear_int4(job, l, dt, &origin, &reference);
    add_int4(job, tensors, l.name, w, origin, reference, dt);
    by_group[w.group].push_back(l.name);
  }
  TORCH_CHECK(!by_group.empty(), "export ct: the model has no linear layer to quantize");
  const bool has_head = std::any_of(job.linears.begin(), job.linears.end(),
                                    [](const LinearView& l) { return l.name == "lm_head"; });
  write_hf_quantized(job, dir, tensors, quantization_config(by_group, has_head));
}

at::Tensor pack_int32(const at::Tensor& codes, int bits) {
  TORCH_CHECK(bits == 4 || bits == 8, "pack_int32: ", bits, "-bit codes do not fill int32 words");
  const int64_t per_word = 32 / bits;
  const int64_t n = codes.size(0), k = codes.size(1);
  TORCH_CHECK(k % per_word == 0, "export ct: rows of ", k,
              " elements do not pack into int32 words of ", per_word);
  const at::Tensor u = (codes.view(at::kChar).to(at::kLong) + (int64_t{1} << (bits - 1)))
                           .reshape({n, k / per_word, per_word});
  at::Tensor word = at::zeros({n, k / per_word}, at::kLong);
  for (int64_t j = 0; j < per_word; ++j)
    word.bitwise_or_(at::bitwise_left_shift(u.select(2, j), bits * j));
  // Values up to 2^32 - 1: wrap into int32 two's complement.
  return at::where(word >= (int64_t{1} << 31), word - (int64_t{1} << 32), word)
      .to(at::kInt)
      .contiguous();
}

void write_hf_quantized(Job& job, const std::string& dir, const TensorList& tensors,
                        const nlohmann::json& quantization_config) {
  io::save_safetensors_sharded(dir, tensors, job.opt.max_shard_bytes);
  write_hf_config(dir, job.model.config(), job.opt.hf_dtype, quantization_config);
  const TokenizerSource& tok = job.source.tokenizer;
  if (tok.gguf || !tok.hf_dir.empty())
    write_hf_tokenizer(dir, tok, job.model.config());
  else
    job.report.notes.push_back("no tokenizer written: the source gave none");
}

}  // namespace qat::exporting::detail
