// GGUF for llama.cpp: llama/qwen2 architecture metadata with the KV types llama.cpp checks
// (counts UINT32, floats FLOAT32), the source's tokenizer keys, and tensors in ggml block types.
//
// A linear fake-quantized in a format GGUF stores exactly keeps its codes and scales (no further
// rounding): gguf_q8_0 / gguf_q4_0 / gguf_q4_1 specs map one to one; int2..int4 symmetric with
// groups of 32 and fp16-representable scales are Q4_0 blocks (code + 8, d = scale), int5..int8
// the same as Q8_0 blocks. Dense and LoRA linears are merged and quantized with ggml's reference
// rule to the chosen type. Q/K rows are permuted for the llama architecture (io::permute_qk);
// blocks run along `in`, so the permutation moves whole rows of blocks.
#include <ATen/ATen.h>
#include <torch/autograd.h>

#include <map>
#include <set>

#include "ops/kquant.h"
#include "ops/pack.h"
#include "qat/export/tokenizer_convert.h"
#include "qat/export/writers.h"
#include "qat/io/gguf_blocks.h"
#include "qat/io/gguf_file.h"
#include "qat/io/gguf_llama.h"
#include "qat/io/gguf_writer.h"
#include "qat/io/llama_mix.h"

namespace qat::exporting::detail {
namespace {

using io::GgmlType;
using scheme::Format;
using scheme::QuantSpec;

using io::is_kquant_type;

// Bits per element of a ggml type, as stored (block bytes * 8 / block size).
double type_bits(GgmlType t) {
  const auto* tr = io::ggml_type_traits(static_cast<uint32_t>(t));
  return 8.0 * tr->type_size / tr->block_size;
}

// The ggml file type (llama_ftype, general.file_type) named after the type most linears have:
// a block type's from its format's row (scheme::kFormatTraits), the plain types' from llama.h.
uint32_t file_type(GgmlType t) {
  if (const auto f = io::block_format(t))
    return static_cast<uint32_t>(scheme::traits(*f).gguf.llama_ftype);
  if (t == GgmlType::kF32) return 0;    // LLAMA_FTYPE_ALL_F32
  if (t == GgmlType::kF16) return 1;    // LLAMA_FTYPE_MOSTLY_F16
  if (t == GgmlType::kBF16) return 32;  // LLAMA_FTYPE_MOSTLY_BF16
  TORCH_CHECK(false, "export gguf: no llama.cpp file type for ggml type ", io::ggml_type_name(t),
              " (export writes F32, F16, BF16 and the block types of the gguf_* formats)");
}

struct Packed {
  GgmlType type;
  at::Tensor bytes;  // uint8 [out, in/block * block_bytes]
  at::Tensor
      dequant;  // float32 [out, in]: what a reader gets back (unset for exact k-quant blocks)
};

// ggml's reference quantizer (ops/quant_math.h and ops/kquant_math.h reproduce
// quantize_row_*_ref) on rows [out, in].
Packed quantize_blocks(const at::Tensor& w, GgmlType type, const std::string& name) {
  const QuantSpec spec = io::gguf_block_spec(type);
  const at::Tensor x = w.to(at::kFloat).contiguous();
  if (is_kquant_type(type)) {
    const at::Tensor bytes = ops::quantize_kquant(x, spec);
    return {type, bytes, ops::dequantize_kquant(bytes, spec, at::kFloat)};
  }
  TORCH_CHECK(x.size(-1) % 32 == 0, "export gguf: tensor '", name, "' has rows of ", x.size(-1),
              " elements, not a multiple of the ", io::ggml_type_name(type),
              " block size 32; choose f16/bf16/f32 for it (--gguf-type / --gguf-embed-type)");
  const ops::QParams qp = ops::choose_qparams(x, spec);
  const at::Tensor codes = ops::quantize(x, spec, qp);
  return {type, ops::pack_gguf_blocks(codes, spec, qp),
          ops::dequantize(codes, spec, qp, at::kFloat)};
}

// The GGUF block type that holds a fake-quant weight exactly, with its blocks; nullopt (and
// `why`) when none does.
std::optional<Packed> exact_blocks(const FakeQuantWeight& fw, std::string* why) {
  const QuantSpec& s = fw.spec;
  GgmlType type;
  at::Tensor codes = fw.codes;
  ops::QParams qp = fw.qparams;
  if (scheme::is_kquant(s.format)) {
    // The codes are the blocks the forward dequantized (fw.values()); nothing to repack.
    return Packed{*io::block_type(s.format), fw.codes, {}};
  }
  if (const auto t = io::block_type(s.format)) {
    type = *t;
  } else if (s.format == Format::kInt &&
             s.granularity.kind == scheme::Granularity::Kind::kPerGroup &&
             s.granularity.group_size == 32) {
    // y = q * s with q in [-2^(b-1), 2^(b-1)-1]: Q4_0 computes (c - 8) * d, Q8_0 q * d, both in
    // fp32 with an fp16 d. Exact when every scale is an fp16 value.
    const at::Tensor scale = qp.scale.to(at::kFloat);
    if (!at::equal(scale.to(at::kHalf).to(at::kFloat), scale)) {
      *why = "its scales (" + scheme::to_string(s.scale_dtype) +
             ") are not all fp16 values (train with scale_dtype fp16)";
      return std::nullopt;
    }
    if (s.bits <= 4) {
      type = GgmlType::kQ4_0;
      codes = (codes.view(at::kChar).to(at::kInt) + 8).to(at::kByte);
    } else {
      type = GgmlType::kQ8_0;
    }
    qp.zero = at::zeros_like(scale);
  } else {
    *why =
        "GGUF blocks hold the gguf_* formats, or int2..int8 symmetric with groups of 32 and fp16 "
        "scales";
    return std::nullopt;
  }
  const QuantSpec gs = io::gguf_block_spec(type);
  Packed p{type, ops::pack_gguf_blocks(codes, gs, qp), {}};
  // What a GGUF reader computes from the bytes: the same dequantization as ggml's to-float.
  const ops::UnpackedBlocks u = ops::unpack_gguf_blocks(p.bytes, gs);
  p.dequant = ops::dequantize(u.codes, gs, u.qparams, at::kFloat);
  const at::Tensor trained = fw.values();
  TORCH_CHECK(at::equal(p.dequant, trained), "export gguf: internal error: the ",
              io::ggml_type_name(type), " blocks of a ", s.to_string(),
              " weight do not dequantize to the trained values");
  return p;
}

// The llama/qwen2 architecture metadata, or an error for what llama.cpp's architecture cannot
// represent. Returns the architecture name.
std::string check_architecture(const models::LlamaConfig& cfg) {
  TORCH_CHECK(cfg.model_type == "llama" || cfg.model_type == "qwen2" || cfg.model_type == "mistral",
              "export gguf: model_type '", cfg.model_type,
              "' has no GGUF mapping (llama, mistral, qwen2)");
  bool windowed = false;
  for (int64_t w : cfg.sliding_window) windowed = windowed || w > 0;
  TORCH_CHECK(!windowed, "export gguf: the model uses sliding-window attention, which llama.cpp's ",
              "llama architecture does not apply; export it with --format hf instead");
  TORCH_CHECK(cfg.rope_scaling.type == "default" || cfg.rope_scaling.type == "linear",
              "export gguf: rope scaling '", cfg.rope_scaling.type,
              "' needs a rope_freqs tensor that ",
              "this exporter does not write yet; export with --format hf");
  TORCH_CHECK(!cfg.o_bias && !cfg.mlp_bias, "export gguf: attention output / MLP biases have no ",
              "tensors in llama.cpp's llama architecture; export with --format hf");
  return cfg.model_type == "qwen2" ? "qwen2" : "llama";
}

// The head count whose rows io::permute_qk reorders for the projection `name` (HF name): q and k
// under the llama architecture (convert_hf_to_gguf.py permutes them for llama only), else 0.
int64_t qk_heads(bool permute, const models::LlamaConfig& cfg, const std::string& name) {
  if (!permute) return 0;
  if (name.find(".self_attn.q_proj") != std::string::npos) return cfg.num_attention_heads;
  if (name.find(".self_attn.k_proj") != std::string::npos) return cfg.num_key_value_heads;
  return 0;
}

// One GGUF export, step by step: header (architecture, tokenizer), token_embd, the linears,
// the norms, then the file type and the file.
struct GgufJob {
  Job& job;
  const models::LlamaConfig& cfg;
  const ExportOptions& opt;
  std::string arch;
  bool permute;  // convert_hf_to_gguf.py permutes q/k for llama only
  io::GgufWriter w;
  std::map<GgmlType, int> linear_types;

  explicit GgufJob(Job& j)
      : job(j),
        cfg(j.model.config()),
        opt(j.opt),
        arch(check_architecture(cfg)),
        permute(arch == "llama") {}

  void write_architecture() {
    w.set_string("general.architecture", arch);
    w.set_string("general.type", "model");
    w.set_string("general.name",
                 job.source.name.empty() ? std::string("qat export") : job.source.name);
    w.set_u32("general.alignment", 32);
    const std::string p = arch + ".";
    w.set_u32(p + "context_length", static_cast<uint32_t>(cfg.max_position_embeddings));
    w.set_u32(p + "embedding_length", static_cast<uint32_t>(cfg.hidden_size));
    w.set_u32(p + "block_count", static_cast<uint32_t>(cfg.num_hidden_layers));
    w.set_u32(p + "feed_forward_length", static_cast<uint32_t>(cfg.intermediate_size));
    w.set_u32(p + "attention.head_count", static_cast<uint32_t>(cfg.num_attention_heads));
    w.set_u32(p + "attention.head_count_kv", static_cast<uint32_t>(cfg.num_key_value_heads));
    w.set_f32(p + "attention.layer_norm_rms_epsilon", static_cast<float>(cfg.rms_norm_eps));
    w.set_f32(p + "rope.freq_base", static_cast<float>(cfg.rope_theta));
    w.set_u32(p + "rope.dimension_count", static_cast<uint32_t>(cfg.head_dim));
    if (cfg.head_dim * cfg.num_attention_heads != cfg.hidden_size) {
      w.set_u32(p + "attention.key_length", static_cast<uint32_t>(cfg.head_dim));
      w.set_u32(p + "attention.value_length", static_cast<uint32_t>(cfg.head_dim));
    }
    if (cfg.rope_scaling.type == "linear") {
      w.set_string(p + "rope.scaling.type", "linear");
      w.set_f32(p + "rope.scaling.factor", static_cast<float>(cfg.rope_scaling.factor));
    }
    w.set_u32(p + "vocab_size", static_cast<uint32_t>(cfg.vocab_size));
    w.set_u32("general.file_type", 0);  // set by finish(), once the linears' types are known
  }

  // The source GGUF's tokenizer keys as they are, or converted from an HF tokenizer.json.
  void write_tokenizer() {
    const io::GgufMetadata tok = gguf_tokenizer_metadata(job.source.tokenizer, cfg.vocab_size);
    w.copy_metadata(tok);
    if (!tok.has("tokenizer.chat_template") && !job.source.tokenizer.chat_template.empty())
      w.set_string("tokenizer.chat_template", job.source.tokenizer.chat_template);
    const auto n_tokens =
        static_cast<int64_t>(tok.get_string_array("tokenizer.ggml.tokens").size());
    TORCH_CHECK(n_tokens == cfg.vocab_size, "export gguf: the tokenizer has ", n_tokens,
                " tokens but the model's vocab_size is ", cfg.vocab_size,
                "; llama.cpp requires them to be equal");
  }

  void record(const std::string& name, GgmlType type, int64_t bytes, int64_t numel,
              const std::string& origin, const at::Tensor& reference, const at::Tensor& written) {
    TensorRecord r;
    r.name = name;
    r.type = io::ggml_type_name(type);
    r.origin = origin;
    r.numel = numel;
    r.bytes = bytes;
    r.theoretical_bits = type_bits(type);
    if (reference.defined()) {
      const ErrorStats e = error_stats(reference, written);
      r.max_abs_err = e.max_abs;
      r.rel_fro_err = e.rel_fro;
    }
    job.report.tensors.push_back(std::move(r));
  }

  // A weight [rows, in] as `type`, q/k rows permuted into ggml's order. Returns the type
  // written (a k-quant may fall back).
  GgmlType add_weight(const std::string& gguf_name, const at::Tensor& weight, GgmlType type,
                      int64_t qk_heads, const std::string& origin) {
    const at::Tensor x = weight.to(at::kFloat).contiguous();
    if (is_kquant_type(type) && x.size(-1) % 256 != 0) {
      const GgmlType fb = io::kquant_fallback(type);
      job.report.notes.push_back("'" + gguf_name + "': rows of " + std::to_string(x.size(-1)) +
                                 " are not whole 256-element super-blocks; written as " +
                                 io::ggml_type_name(fb) + " instead of " +
                                 io::ggml_type_name(type));
      type = fb;
    }
    if (io::block_format(type).has_value()) {
      const Packed pk = quantize_blocks(x, type, gguf_name);
      at::Tensor rows = pk.bytes;
      if (qk_heads > 0) rows = io::permute_qk(rows, qk_heads).contiguous();
      w.add_raw_tensor(gguf_name, type, x.sizes().vec(), rows.reshape({-1}));
      record(gguf_name, type, rows.numel(), x.numel(), origin, x, pk.dequant);
    } else {
      at::Tensor rows = qk_heads > 0 ? io::permute_qk(x, qk_heads).contiguous() : x;
      w.add_tensor(gguf_name, rows, type);
      const at::Tensor stored = rows.to(type == GgmlType::kF16    ? at::kHalf
                                        : type == GgmlType::kBF16 ? at::kBFloat16
                                                                  : at::kFloat);
      record(gguf_name, type, stored.numel() * stored.element_size(), x.numel(), origin,
             type == GgmlType::kF32 ? at::Tensor() : rows, stored.to(at::kFloat));
    }
    return type;
  }

  static std::string gguf_name(const std::string& hf) {
    const auto n = io::hf_to_gguf_name(hf);
    TORCH_CHECK(n, "export gguf: tensor '", hf, "' has no GGUF name");
    return *n;
  }

  GgmlType mix_type(const std::string& name, int64_t row_elems) const {
    return io::llama_mix_type(opt.gguf_mix, name, cfg.num_hidden_layers, row_elems,
                              cfg.tie_word_embeddings);
  }

  // token_embd first, as convert_hf_to_gguf.py writes it.
  void write_embedding() {
    const auto emb = job.others.find("model.embed_tokens.weight");
    TORCH_CHECK(emb != job.others.end(), "export gguf: the model has no model.embed_tokens.weight");
    add_weight("token_embd.weight", emb->second,
               opt.gguf_mix.empty() ? opt.gguf_embed_type
                                    : mix_type("token_embd.weight", emb->second.size(-1)),
               0, "embedding");
  }

  // A fake-quant linear: its blocks as trained when GGUF holds the format, else (with
  // --requantize) its trained weight quantized to `chosen`.
  void write_fake_quant_linear(const LinearView& l, const std::string& name, int64_t heads,
                               GgmlType chosen) {
    const FakeQuantWeight fw = fake_quant_weight(*l.fake_quant);
    std::string why;
    if (auto pk = exact_blocks(fw, &why)) {
      at::Tensor rows = pk->bytes;
      if (heads > 0) rows = io::permute_qk(rows, heads).contiguous();
      w.add_raw_tensor(name, pk->type, {l.layer->out_features(), l.layer->in_features()},
                       rows.reshape({-1}));
      record(name, pk->type, rows.numel(), fw.weight.numel(),
             "fake-quant " + fw.spec.to_string() + " (exact)", {}, {});
      ++linear_types[pk->type];
    } else {
      TORCH_CHECK(opt.requantize, "export gguf: linear '", l.name, "' was trained with ",
                  fw.spec.to_string(), " fake quant, which GGUF cannot store exactly: ", why,
                  ". Export it with a format that holds it (int4 symmetric groups: --format ct), ",
                  "or pass --requantize to quantize its trained weight to ",
                  io::ggml_type_name(chosen), " (the error is reported per tensor)");
      const GgmlType written = add_weight(name, l.merged_weight(), chosen, heads,
                                          "requantized from " + fw.spec.to_string());
      ++linear_types[written];
      job.report.notes.push_back("'" + l.name + "' (" + fw.spec.to_string() + ") requantized to " +
                                 io::ggml_type_name(written));
    }
    if (l.fake_quant->activation_quantizer())
      job.report.notes.push_back("'" + l.name +
                                 "': activation fake quant is not stored in GGUF "
                                 "(llama.cpp quantizes activations itself, to Q8)");
  }

  void write_linear(const LinearView& l) {
    const std::string name = gguf_name(l.name + ".weight");
    const int64_t heads = qk_heads(permute, cfg, l.name);
    const bool is_head = l.name == "lm_head";
    const GgmlType chosen = !opt.gguf_mix.empty() ? mix_type(name, l.layer->in_features())
                            : is_head             ? opt.gguf_embed_type
                                                  : opt.gguf_type;
    if (l.fake_quant && !l.lora) {
      write_fake_quant_linear(l, name, heads, chosen);
    } else {
      const GgmlType written = add_weight(
          name, l.merged_weight(), chosen, heads,
          l.describe() == "dense" ? "quantized from dense" : "quantized from " + l.describe());
      if (!is_head) ++linear_types[written];
    }
    const at::Tensor b = l.bias();
    if (b.defined()) {
      const std::string bname = gguf_name(l.name + ".bias");
      at::Tensor bb = b.to(at::kFloat).contiguous();
      if (heads > 0) bb = io::permute_qk(bb, heads).contiguous();
      w.add_tensor(bname, bb, GgmlType::kF32);
      record(bname, GgmlType::kF32, bb.numel() * 4, bb.numel(), "bias", {}, {});
    }
  }

  void write_norms() {
    for (const auto& [hf, t] : job.others) {
      if (hf == "model.embed_tokens.weight") continue;
      TORCH_CHECK(hf.size() > 12 && hf.compare(hf.size() - 11, 11, "norm.weight") == 0,
                  "export gguf: tensor '", hf,
                  "' is not an embedding, norm or linear; no GGUF mapping");
      const std::string name = gguf_name(hf);
      const at::Tensor f = t.to(at::kFloat).contiguous();
      w.add_tensor(name, f, GgmlType::kF32);
      record(name, GgmlType::kF32, f.numel() * 4, f.numel(), "norm", {}, {});
    }
  }

  // general.file_type from the type most linears have (or the mixture's), then the file.
  void finish(const std::string& path) {
    GgmlType main_type = opt.gguf_type;
    int best = -1;
    for (const auto& [t, n] : linear_types) {
      if (n > best) best = n, main_type = t;
    }
    w.set_u32("general.file_type",
              opt.gguf_mix.empty() ? file_type(main_type) : io::llama_mix_file_type(opt.gguf_mix));
    bool quantized = false;
    for (const auto& r : job.report.tensors) quantized = quantized || r.type.rfind('Q', 0) == 0;
    if (quantized) w.set_u32("general.quantization_version", 2);
    w.write(path);
  }
};

// The type lora_a / lora_b are stored in: the plain float types only.
at::ScalarType adapter_dtype(GgmlType t) {
  if (t == GgmlType::kF32) return at::kFloat;
  if (t == GgmlType::kF16) return at::kHalf;
  if (t == GgmlType::kBF16) return at::kBFloat16;
  TORCH_CHECK(false, "export gguf-lora: adapters are stored as f32, f16 or bf16, not ",
              io::ggml_type_name(t), " (--adapter-type)");
}

// One lora_a / lora_b tensor in the adapter's type, recorded (with its rounding error when the
// type is narrower than float32).
void add_adapter_tensor(Job& job, io::GgufWriter& w, const std::string& name, const at::Tensor& t,
                        const std::string& origin) {
  const GgmlType type = job.opt.gguf_adapter_type;
  w.add_tensor(name, t, type);
  const at::Tensor stored = t.to(adapter_dtype(type));
  TensorRecord r;
  r.name = name;
  r.type = io::ggml_type_name(type);
  r.origin = origin;
  r.numel = t.numel();
  r.bytes = stored.numel() * stored.element_size();
  r.theoretical_bits = type_bits(type);
  if (type != GgmlType::kF32) {
    const ErrorStats e = error_stats(t, stored.to(at::kFloat));
    r.max_abs_err = e.max_abs;
    r.rel_fro_err = e.rel_fro;
  }
  job.report.tensors.push_back(std::move(r));
}

// llama.cpp scales each adapter by alpha / rank, with one adapter.lora.alpha for the file and
// the rank read from lora_b. The file's alpha is the first layer's scaling * rank; a layer whose
// scaling differs (rank_pattern-like mixes, rsLoRA over mixed ranks) has the ratio folded into
// its lora_b, so every layer computes scaling * B A x as trained.
struct AdapterScale {
  double alpha = 0;
  double factor(const lora::LoraLinear& l) const {
    const double rank = static_cast<double>(l.lora_A().size(0));
    return l.scaling() / (alpha / rank);
  }
};

}  // namespace

// llama.cpp's LoRA adapter GGUF (llama-adapter.cpp): general.type = adapter, adapter.type = lora,
// adapter.lora.alpha, and per adapted tensor "<base GGUF name>.lora_a" [r, in] and ".lora_b"
// [out, r] (numpy order; ggml ne reversed), lora_b's rows in the base's q/k order.
void write_gguf_lora(Job& job, const std::string& path) {
  torch::NoGradGuard no_grad;
  const models::LlamaConfig& cfg = job.model.config();
  const std::string arch = check_architecture(cfg);
  adapter_dtype(job.opt.gguf_adapter_type);  // validates before any work
  io::GgufWriter w;
  w.set_string("general.architecture", arch);
  w.set_string("general.type", "adapter");
  w.set_string("general.name",
               job.source.name.empty() ? std::string("qat export") : job.source.name);
  w.set_u32("general.alignment", 32);
  w.set_string("adapter.type", "lora");
  AdapterScale scale;
  int over_quantized = 0;
  for (const LinearView& l : job.linears) {
    if (!l.lora) continue;
    if (scale.alpha == 0)
      scale.alpha = l.lora->scaling() * static_cast<double>(l.lora->lora_A().size(0));
    TORCH_CHECK(!(l.name == "lm_head" && cfg.tie_word_embeddings), "export gguf-lora: '", l.name,
                "' has an adapter but the model ties it to the embedding, which llama.cpp ",
                "stores once (token_embd); export with the adapter merged (--format gguf)");
    const std::string base = GgufJob::gguf_name(l.name + ".weight");
    const int64_t heads = qk_heads(arch == "llama", cfg, l.name);
    const at::Tensor a = l.lora->lora_A().to(at::kFloat).contiguous();  // (r, in)
    at::Tensor b = l.lora->lora_B().to(at::kFloat);                     // (out, r)
    const double f = scale.factor(*l.lora);
    if (f != 1.0) {
      b = b * f;
      job.report.notes.push_back("'" + l.name +
                                 "': scaling differs from the file's alpha / r; "
                                 "lora_b holds the ratio (" +
                                 std::to_string(f) + ")");
    }
    if (heads > 0) b = io::permute_qk(b, heads);
    b = b.contiguous();
    add_adapter_tensor(job, w, base + ".lora_a", a, "lora_A");
    add_adapter_tensor(job, w, base + ".lora_b", b, "lora_B");
    over_quantized += l.fake_quant || l.nf4;
  }
  if (over_quantized > 0)
    job.report.notes.push_back(std::to_string(over_quantized) +
                               " adapters were trained over fake-quant or NF4 layers: load them "
                               "over the base exported with --no-merge (its trained weights)");
  TORCH_CHECK(scale.alpha != 0, "export gguf-lora: the model has no LoRA adapters (apply_lora() ",
              "adds them); export the whole model with --format gguf instead");
  w.set_f32("adapter.lora.alpha", static_cast<float>(scale.alpha));
  w.write(path);
}

void write_gguf(Job& job, const std::string& path) {
  torch::NoGradGuard no_grad;
  GgufJob g(job);
  g.write_architecture();
  g.write_tokenizer();
  g.write_embedding();
  for (const LinearView& l : job.linears) g.write_linear(l);
  g.write_norms();
  g.finish(path);
}

}  // namespace qat::exporting::detail
