// Models and tokenizers for the export tests: tiny random Llama decoders built in C++ (no
// Python needed to make them), layers swapped for fake-quant / NF4 / LoRA as a trainer would, and
// the real SmolLM2 tokenizer (its GGUF metadata) so tokenizer conversions run on a real vocabulary.
#pragma once

#include <torch/autograd.h>

#include <memory>
#include <string>
#include <vector>

#include "data/tokenizer/gguf_tokenizer.h"
#include "qat/export/export.h"
#include "qat/io/gguf_file.h"
#include "qat/lora/lora.h"
#include "qat/models/pretrained.h"
#include "qat/nf4/nf4_linear.h"
#include "qat/transforms/prepare.h"
#include "tests/support/helpers.h"

namespace qat::test {

inline constexpr int64_t kSmolVocab = 49152;

// 2 layers, hidden 64, 4 heads of 16 (2 kv heads), ffn 128: every row a multiple of 32 and 64.
inline models::LlamaConfig export_config(bool tied = false, int64_t hidden = 64, int64_t ffn = 128,
                                         int64_t heads = 4, int64_t kv_heads = 2) {
  models::LlamaConfig c;
  c.vocab_size = kSmolVocab;
  c.hidden_size = hidden;
  c.intermediate_size = ffn;
  c.num_hidden_layers = 2;
  c.num_attention_heads = heads;
  c.num_key_value_heads = kv_heads;
  c.head_dim = hidden / heads;
  c.max_position_embeddings = 256;
  c.rms_norm_eps = 1e-5;
  c.rope_theta = 10000.0;
  c.tie_word_embeddings = tied;
  c.validate();
  return c;
}

// Weights N(0, 0.1), norms 1 + N(0, 0.1): every tensor matters to the logits.
inline std::shared_ptr<models::LlamaForCausalLM> random_model(const models::LlamaConfig& cfg,
                                                              uint64_t seed) {
  auto m = std::make_shared<models::LlamaForCausalLM>(cfg);
  torch::NoGradGuard no_grad;
  uint64_t s = seed * 1000;
  for (auto& p : m->named_parameters()) {
    at::Tensor t = p.value();
    const bool norm = p.key().find("norm.weight") != std::string::npos;
    t.copy_(norm ? 1 + randn(t.sizes().vec(), s++, 0.1) : randn(t.sizes().vec(), s++, 0.1));
  }
  m->eval();
  return m;
}

inline fake_quant::FakeQuantizerConfig weight_fq(
    const std::string& name, int64_t group = 0,
    scheme::ScaleDtype dt = scheme::ScaleDtype::kFloat32) {
  fake_quant::FakeQuantizerConfig c;
  c.spec = scheme::QuantSpec::from_name(name);
  if (group > 0) c.spec = c.spec.with(scheme::Granularity::per_group(group));
  if (!c.spec.traits().fixed_scale_dtype) c.spec.scale_dtype = dt;
  return c;
}

// prepare() the linears matching `include` with weight fake quant `fq`.
inline void fake_quantize(models::LlamaForCausalLM& m, std::vector<std::string> include,
                          const fake_quant::FakeQuantizerConfig& fq) {
  transforms::PrepareConfig cfg;
  cfg.include = std::move(include);
  cfg.layer.weight = fq;
  transforms::prepare(m, cfg);
}

// LoRA on `targets` with random A and B (a fresh adapter has B = 0 and would test nothing).
inline void add_lora(models::LlamaForCausalLM& m, std::vector<std::string> targets, uint64_t seed,
                     int64_t r = 4, double alpha = 8.0, bool rslora = false) {
  lora::LoraConfig lc;
  lc.r = r;
  lc.alpha = alpha;
  lc.use_rslora = rslora;
  lc.target_modules = std::move(targets);
  lora::apply_lora(m, lc);
  torch::NoGradGuard no_grad;
  uint64_t s = seed * 7919;
  for (auto& [name, t] : lora::lora_parameters(m)) t.copy_(randn(t.sizes().vec(), s++, 0.1));
}

// Replaces the linears matching `include` by NF4Linear (blocksize 64, double quant).
inline void to_nf4(models::LlamaForCausalLM& m, const std::vector<std::string>& include) {
  nn::for_each_linear(
      m, [&](nn::ModuleWithLinears& parent, const std::string& slot, const std::string& full,
             const std::shared_ptr<nn::LinearBase>& layer) {
        if (nn::any_match(include, full))
          parent.replace_linear(slot, nf4::NF4Linear::from_linear(*layer));
      });
}

inline at::Tensor logits_of(models::LlamaForCausalLM& m, const at::Tensor& ids) {
  torch::NoGradGuard no_grad;
  m.eval();
  return m.forward(ids);
}

// The real SmolLM2-135M-Instruct GGUF's tokenizer keys (metadata only; the weights stay unread).
inline const exporting::TokenizerSource& smollm_tokenizer() {
  static const exporting::TokenizerSource src = [] {
    const io::GgufFile f = io::GgufFile::open(models::default_model_path());
    exporting::TokenizerSource s;
    io::GgufMetadata tok;
    for (const auto& [k, v] : f.metadata().entries()) {
      if (k.rfind("tokenizer.", 0) == 0) tok.set(k, v);
    }
    s.chat_template = tok.get_string_optional("tokenizer.chat_template").value_or("");
    s.gguf = std::move(tok);
    return s;
  }();
  return src;
}

inline std::unique_ptr<data::Tokenizer> smollm_tokenizer_impl() {
  return data::tokenizer_from_gguf(models::gguf_tokenizer_data(*smollm_tokenizer().gguf));
}

// Strings that exercise the pre-tokenizer: digits, unicode, whitespace runs, special tokens.
inline const std::vector<std::string>& tokenizer_strings() {
  static const std::vector<std::string> s = {
      "Hello, world! How are you today?",
      "The year 2024 had 366 days; 1234567890 digits.",
      "  leading spaces\n\nnew lines\ttabs   trailing  ",
      "h\xc3\xa9llo w\xc3\xb6rld \xe4\xbd\xa0\xe5\xa5\xbd \xf0\x9f\x98\x80 emoji",
      "<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n",
      "don't won't it's we'll they've I'm",
      "def f(x):\n    return x**2  # code",
  };
  return s;
}

}  // namespace qat::test
