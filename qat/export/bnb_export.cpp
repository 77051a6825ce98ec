// bitsandbytes NF4 checkpoint (transformers' load_in_4bit format, as Linear4bit._save_to_state_dict
// writes it with QuantState.as_dict(packed=True)). For module p:
//   p.weight                                uint8 [(n+1)/2, 1]  packed codes, first element high
//   nibble p.weight.absmax                         uint8 [blocks] with double quant, else float32
//   p.weight.quant_map                      float32 [16]        the NF4 table
//   p.weight.nested_absmax                  float32             (double quant)
//   p.weight.nested_quant_map               float32 [256]       the signed dynamic map (double
//   quant) p.weight.quant_state.bitsandbytes__nf4  uint8               json.dumps of quant_type,
//   blocksize,
//       dtype, shape (+ nested_blocksize, nested_dtype, nested_offset)
// config.json carries quantization_config (quant_method "bitsandbytes"). lm_head and embeddings
// stay dense. NF4Linear layers are written as they are (bit for bit); an nf4 fake-quant layer is
// exact without double quant; dense and LoRA layers are merged and quantized (error reported).
#include <ATen/ATen.h>
#include <torch/autograd.h>

#include <algorithm>
#include <charconv>
#include <filesystem>
#include <optional>
#include <sstream>

#include "ops/nf4.h"
#include "ops/quant_math.h"
#include "qat/export/writers.h"
#include "qat/io/safetensors_torch.h"

namespace qat::exporting::detail {
namespace {

namespace fs = std::filesystem;

at::Tensor nf4_table() {
  at::Tensor t = at::empty({16}, at::kFloat);
  for (int c = 0; c < 16; ++c) t[c] = ops::math::nf4_value(c);
  return t;
}

// Python's json.dumps of a list of ints: "[64, 32]".
std::string py_list(const std::vector<int64_t>& v) {
  std::ostringstream s;
  s << "[";
  for (size_t i = 0; i < v.size(); ++i) s << (i ? ", " : "") << v[i];
  s << "]";
  return s.str();
}

// Python's repr(float): the shortest digits that round-trip (std::to_chars), laid out as Python
// does -- fixed notation for decimal exponents in [-4, 16), else d.ddde+XX.
std::string python_float_repr(double v) {
  char buf[64];
  const auto res = std::to_chars(buf, buf + sizeof(buf), v, std::chars_format::scientific);
  std::string sci(buf, res.ptr);  // "-d.ddde-XX"
  std::string sign;
  if (!sci.empty() && sci[0] == '-') {
    sign = "-";
    sci.erase(0, 1);
  }
  const size_t e_pos = sci.find('e');
  std::string digits = sci.substr(0, e_pos);
  digits.erase(std::remove(digits.begin(), digits.end(), '.'), digits.end());
  const int exp = std::stoi(sci.substr(e_pos + 1));
  if (exp >= -4 && exp < 16) {
    if (exp < 0) return sign + "0." + std::string(static_cast<size_t>(-exp - 1), '0') + digits;
    const auto whole = static_cast<size_t>(exp + 1);
    if (digits.size() <= whole)
      return sign + digits + std::string(whole - digits.size(), '0') + ".0";
    return sign + digits.substr(0, whole) + "." + digits.substr(whole);
  }
  std::string m = digits.substr(0, 1);
  if (digits.size() > 1) m += "." + digits.substr(1);
  const int a = exp < 0 ? -exp : exp;
  return sign + m + "e" + (exp < 0 ? "-" : "+") + (a < 10 ? "0" : "") + std::to_string(a);
}

// The quant_state JSON exactly as bitsandbytes' pack_dict_to_tensor writes it (json.dumps with
// its default separators, keys in as_dict order); nested_offset in Python's shortest repr.
std::string quant_state_json(const nf4::NF4Tensor& t, at::ScalarType dtype) {
  std::ostringstream s;
  s << "{\"quant_type\": \"nf4\", \"blocksize\": " << t.blocksize() << ", \"dtype\": \""
    << hf_dtype_name(dtype) << "\", \"shape\": " << py_list(t.shape());
  if (t.double_quant()) {
    const double off = t.offset().item<float>();
    s << ", \"nested_blocksize\": " << t.config().nested_blocksize
      << ", \"nested_dtype\": \"float32\", \"nested_offset\": " << python_float_repr(off);
  }
  s << "}";
  return s.str();
}

// An NF4Tensor from an nf4 fake-quant weight's own codes and absmax (no double quant): exact.
std::optional<nf4::NF4Tensor> exact_nf4(const FakeQuantWeight& fw, std::string* why) {
  const auto& s = fw.spec;
  if (s.format != scheme::Format::kNf4) {
    *why = "bitsandbytes stores NF4 only";
    return std::nullopt;
  }
  const int64_t in = fw.weight.size(-1);
  const bool grouped = s.granularity.kind == scheme::Granularity::Kind::kPerGroup;
  const int64_t g = grouped ? s.granularity.group_size : 0;
  if (!grouped || in % g != 0 || (g & (g - 1)) != 0 || g < 32 || g > 4096 ||
      s.scale_dtype != scheme::ScaleDtype::kFloat32) {
    *why =
        "bitsandbytes blocks are a power of two in [32, 4096] over the flattened weight with "
        "float32 absmax";
    return std::nullopt;
  }
  const at::Tensor flat = fw.codes.reshape({-1});
  const at::Tensor packed =
      at::bitwise_or(at::bitwise_left_shift(flat.slice(0, 0, c10::nullopt, 2), 4),
                     flat.slice(0, 1, c10::nullopt, 2))
          .to(at::kByte)
          .reshape({-1, 1})
          .contiguous();
  nf4::NF4Config cfg;
  cfg.blocksize = g;
  cfg.double_quant = false;
  return nf4::NF4Tensor::from_parts(packed,
                                    fw.qparams.scale.to(at::kFloat).reshape({-1}).contiguous(), {},
                                    {}, fw.weight.sizes().vec(), fw.weight.scalar_type(), cfg);
}

// A linear's NF4 weight: an NF4Linear's as it is, an nf4 fake-quant weight's own pieces, or
// (dense, LoRA, --requantize) its weight quantized. `reference` is set when quantized here.
nf4::NF4Tensor linear_nf4(const Job& job, const LinearView& l, at::ScalarType dt,
                          std::string* origin, at::Tensor* reference) {
  const ExportOptions& opt = job.opt;
  if (l.nf4 && !l.lora) {
    *origin = "nf4 (exact)";
    return l.nf4->weight();
  }
  if (l.fake_quant && !l.lora) {
    const FakeQuantWeight fw = fake_quant_weight(*l.fake_quant);
    std::string why;
    std::optional<nf4::NF4Tensor> exact;
    if (!opt.nf4_double_quant)
      exact = exact_nf4(fw, &why);
    else
      why = "double quantization re-rounds the absmax (export with double quant off)";
    if (exact) {
      TORCH_CHECK(at::equal(exact->dequantize(at::kFloat), fw.values()),
                  "export bnb-nf4: internal error: '", l.name,
                  "' NF4 pieces do not dequantize to the trained values");
      *origin = "fake-quant " + fw.spec.to_string() + " (exact)";
      return *exact;
    }
    TORCH_CHECK(
        opt.requantize, "export bnb-nf4: linear '", l.name, "' was trained with ",
        fw.spec.to_string(), " fake quant, which this checkpoint cannot store exactly: ", why,
        ". Pass --requantize to quantize its trained weight to NF4 (the error is reported), ",
        "or export a format that matches its scheme");
    *origin = "requantized from " + fw.spec.to_string();
  } else {
    *origin = "quantized from " + l.describe();
  }
  *reference = l.merged_weight();
  nf4::NF4Config cfg;
  cfg.blocksize = opt.nf4_blocksize;
  cfg.double_quant = opt.nf4_double_quant;
  return nf4::NF4Tensor::quantize(reference->to(dt), cfg);
}

// p.weight and its quant-state tensors as bitsandbytes names them, and the report's row.
void add_nf4(Job& job, TensorList& tensors, const std::string& p, const nf4::NF4Tensor& t,
             const std::string& origin, const at::Tensor& reference, at::ScalarType dt,
             const at::Tensor& table, const at::Tensor& dyn_map) {
  tensors.emplace_back(p, t.codes().contiguous());
  tensors.emplace_back(p + ".absmax", t.absmax().contiguous());
  tensors.emplace_back(p + ".quant_map", table);
  int64_t bytes =
      t.codes().numel() + t.absmax().numel() * static_cast<int64_t>(t.absmax().element_size());
  double bits = 4.0;
  const double bs = static_cast<double>(t.blocksize());
  if (t.double_quant()) {
    tensors.emplace_back(p + ".nested_absmax", t.nested_absmax().contiguous());
    tensors.emplace_back(p + ".nested_quant_map", dyn_map);
    bytes += t.nested_absmax().numel() * 4;
    bits += 8.0 / bs + 32.0 / (bs * static_cast<double>(t.config().nested_blocksize));
  } else {
    bits += 32.0 / bs;
  }
  // The state records the dtype the weight dequantizes to (the checkpoint's compute dtype).
  const std::string state = quant_state_json(t, dt);
  tensors.emplace_back(p + ".quant_state.bitsandbytes__nf4",
                       at::from_blob(const_cast<char*>(state.data()),
                                     {static_cast<int64_t>(state.size())}, at::kByte)
                           .clone());
  TensorRecord r;
  r.name = p;
  r.type =
      std::string("NF4") + (t.double_quant() ? "+DQ" : "") + "/b" + std::to_string(t.blocksize());
  r.origin = origin;
  r.numel = t.numel();
  r.bytes = bytes;
  r.theoretical_bits = bits;
  if (reference.defined()) {
    const ErrorStats e = error_stats(reference, t.dequantize(at::kFloat));
    r.max_abs_err = e.max_abs;
    r.rel_fro_err = e.rel_fro;
  }
  job.report.tensors.push_back(std::move(r));
}

}  // namespace

nlohmann::json bnb_quantization_config(bool four_bit, bool double_quant, at::ScalarType dt) {
  return {{"quant_method", "bitsandbytes"},
          {"load_in_4bit", four_bit},
          {"load_in_8bit", !four_bit},
          {"bnb_4bit_quant_type", four_bit ? "nf4" : "fp4"},  // transformers' default for 8-bit
          {"bnb_4bit_use_double_quant", double_quant},
          {"bnb_4bit_compute_dtype", hf_dtype_name(dt)},
          {"bnb_4bit_quant_storage", "uint8"},
          {"llm_int8_skip_modules", nullptr},
          {"llm_int8_threshold", 6.0},
          {"llm_int8_has_fp16_weight", false},
          {"llm_int8_enable_fp32_cpu_offload", false}};
}

void write_bnb_nf4(Job& job, const std::string& dir) {
  torch::NoGradGuard no_grad;
  const ExportOptions& opt = job.opt;
  const at::ScalarType dt = opt.hf_dtype;
  hf_dtype_name(dt);
  TensorList tensors;
  add_others(job, tensors, dt);
  const at::Tensor table = nf4_table();
  const at::Tensor dyn_map = ops::dynamic_map_signed();
  int dq_layers = 0, plain_layers = 0;
  for (const LinearView& l : job.linears) {
    if (l.bias().defined()) add_dense(job, tensors, l.name + ".bias", l.bias(), dt, "bias");
    if (l.name == "lm_head") {  // transformers keeps the head dense (llm_int8_skip_modules)
      add_dense(job, tensors, "lm_head.weight", l.merged_weight(), dt, "dense head");
      continue;
    }
    std::string origin;
    at::Tensor reference;  // the weight we rounded from, when we did
    const nf4::NF4Tensor t = linear_nf4(job, l, dt, &origin, &reference).to(at::kCPU);
    add_nf4(job, tensors, l.name + ".weight", t, origin, reference, dt, table, dyn_map);
    ++(t.double_quant() ? dq_layers : plain_layers);
  }
  TORCH_CHECK(dq_layers + plain_layers > 0,
              "export bnb-nf4: the model has no linear layer to quantize");
  if (dq_layers && plain_layers) {
    job.report.notes.push_back(
        "layers mix NF4 with and without double quant; bitsandbytes reads each "
        "layer's own quant_state, the config states the majority");
  }
  io::save_safetensors_sharded(dir, tensors, opt.max_shard_bytes);
  // The config states double quant as the majority of layers have it.
  write_hf_config(dir, job.model.config(), dt,
                  bnb_quantization_config(/*four_bit=*/true, dq_layers >= plain_layers, dt));
  const TokenizerSource& tok = job.source.tokenizer;
  if (tok.gguf || !tok.hf_dir.empty())
    write_hf_tokenizer(dir, tok, job.model.config());
  else
    job.report.notes.push_back("no tokenizer written: the source gave none");
}

}  // namespace qat::exporting::detail
