// llama.cpp's Q4_K_M mixture: the per-tensor types, and a dense export written with them. That the
// types and bytes equal llama-quantize's own Q4_K_M file is checked against llama.cpp itself in
// test_export_llama_cpp.cpp (scripts/check-llama-cpp).
#include <set>

#include "ops/kquant.h"
#include "ops/quantize.h"
#include "qat/export/export.h"
#include "qat/export/linears.h"
#include "qat/io/gguf_file.h"
#include "qat/io/gguf_llama.h"
#include "qat/io/llama_mix.h"
#include "tests/qat/export/export_models.h"
#include "tests/support/catch_torch.h"

using namespace qat;
using io::GgmlType;

TEST_CASE("Q4_K_M: the types llama-quantize gives each tensor", "[export][gguf][kquant]") {
  CHECK(io::llama_mix_from_name("Q4_K_M") == std::optional<std::string>("q4_k_m"));
  CHECK(io::llama_mix_from_name("gguf_q4_k_m").has_value());
  CHECK_FALSE(io::llama_mix_from_name("q4_k").has_value());
  auto type = [](const std::string& name, int64_t n_layers, int64_t row, bool tied) {
    return io::llama_mix_type("q4_k_m", name, n_layers, row, tied);
  };
  // SmolLM2-135M: 30 layers, 576-wide rows (not whole super-blocks), ffn 1536, tied embeddings.
  // use_more_bits(i, 30): i < 3, i >= 26, or (i - 3) % 3 == 2.
  const std::set<int> more{0, 1, 2, 5, 8, 11, 14, 17, 20, 23, 26, 27, 28, 29};
  for (int i = 0; i < 30; ++i) {
    CAPTURE(i);
    const std::string b = "blk." + std::to_string(i) + ".";
    CHECK(type(b + "attn_v.weight", 30, 576, true) ==
          (more.count(i) ? GgmlType::kQ8_0 : GgmlType::kQ5_0));
    CHECK(type(b + "ffn_down.weight", 30, 1536, true) ==
          (more.count(i) ? GgmlType::kQ6_K : GgmlType::kQ4_K));
    CHECK(type(b + "attn_q.weight", 30, 576, true) == GgmlType::kQ5_0);
    CHECK(type(b + "ffn_up.weight", 30, 576, true) == GgmlType::kQ5_0);
  }
  CHECK(type("token_embd.weight", 30, 576, true) == GgmlType::kQ8_0);  // tied: the output's rule
  // Llama-3-8B-shaped: 32 layers of 4096, untied.
  CHECK(type("token_embd.weight", 32, 4096, false) == GgmlType::kQ4_K);
  CHECK(type("output.weight", 32, 4096, false) == GgmlType::kQ6_K);
  CHECK(type("blk.3.attn_v.weight", 32, 4096, false) == GgmlType::kQ6_K);
  CHECK(type("blk.4.attn_v.weight", 32, 4096, false) == GgmlType::kQ4_K);
  CHECK(type("blk.6.ffn_down.weight", 32, 14336, false) == GgmlType::kQ6_K);
  CHECK(type("blk.7.attn_k.weight", 32, 4096, false) == GgmlType::kQ4_K);
  CHECK(io::llama_mix_file_type("q4_k_m") == 15);
}

TEST_CASE("Q5_K_M: Q4_K_M's rules with Q5_K as the base type and Q5_1 as its fallback",
          "[export][gguf][kquant]") {
  CHECK(io::llama_mix_from_name("GGUF_Q5_K_M") == std::optional<std::string>("q5_k_m"));
  CHECK_FALSE(io::llama_mix_from_name("q5_k_s").has_value());
  auto type = [](const std::string& name, int64_t row) {
    return io::llama_mix_type("q5_k_m", name, 32, row, false);
  };
  CHECK(type("token_embd.weight", 4096) == GgmlType::kQ5_K);
  CHECK(type("output.weight", 4096) == GgmlType::kQ6_K);
  CHECK(type("output.weight", 576) == GgmlType::kQ8_0);
  CHECK(type("blk.3.attn_v.weight", 4096) == GgmlType::kQ6_K);
  CHECK(type("blk.4.attn_v.weight", 4096) == GgmlType::kQ5_K);
  CHECK(type("blk.4.attn_v.weight", 576) == GgmlType::kQ5_1);
  CHECK(type("blk.6.ffn_down.weight", 1536) == GgmlType::kQ6_K);
  CHECK(type("blk.6.ffn_down.weight", 1000) == GgmlType::kQ8_0);
  CHECK(type("blk.7.attn_output.weight", 4096) == GgmlType::kQ5_K);
  CHECK(io::llama_mix_file_type("q5_k_m") == 17);
  CHECK(io::llama_mix_base_type("q5_k_m") == GgmlType::kQ5_K);
  CHECK(io::kquant_fallback(GgmlType::kQ5_K) == GgmlType::kQ5_1);
  REQUIRE_THROWS_WITH(io::llama_mix_type("q3_k_m", "output.weight", 32, 4096, false),
                      Catch::Contains("known: q4_k_m, q5_k_m"));
}

TEST_CASE(
    "GGUF export with the Q4_K_M and Q5_K_M mixtures writes each tensor in its type with ggml's "
    "rule",
    "[export][gguf][kquant]") {
  const std::string mix = GENERATE(std::string("q4_k_m"), std::string("q5_k_m"));
  CAPTURE(mix);
  const bool q4 = mix == "q4_k_m";
  // 8 layers of 256 (whole super-blocks) with an ffn of 384 (ffn_down falls back), untied.
  models::LlamaConfig c = test::export_config(false, /*hidden=*/256, /*ffn=*/384);
  c.num_hidden_layers = 8;
  auto m = test::random_model(c, 21);
  const std::string dir = test::temp_dir();
  exporting::ExportSource src;
  src.model = m;
  src.tokenizer = test::smollm_tokenizer();
  src.name = "tiny";
  exporting::ExportOptions o;
  o.format = exporting::ExportFormat::kGguf;
  o.out = dir + "/m.gguf";
  o.gguf_mix = mix;
  exporting::export_model(src, o);
  const io::GgufFile f = io::GgufFile::open(o.out);
  const auto& cfg = m->config();
  std::set<std::string> seen;
  for (const auto& l : exporting::collect_linears(*m)) {
    const std::string name = *io::hf_to_gguf_name(l.name + ".weight");
    CAPTURE(name);
    const GgmlType t = io::llama_mix_type(mix, name, cfg.num_hidden_layers, l.layer->in_features(),
                                          cfg.tie_word_embeddings);
    REQUIRE(f.tensor_info(name).type == t);
    seen.insert(io::ggml_type_name(t));
    at::Tensor w = l.merged_weight();
    const scheme::QuantSpec spec = io::gguf_block_spec(t);
    at::Tensor expected = scheme::is_kquant(spec.format)
                              ? ops::fake_quantize_kquant(w, spec)
                              : ops::fake_quantize_dynamic(w, spec, false).y;
    if (name.find("attn_q") != std::string::npos)
      expected = io::permute_qk(expected, cfg.num_attention_heads);
    if (name.find("attn_k") != std::string::npos)
      expected = io::permute_qk(expected, cfg.num_key_value_heads);
    CHECK(test::bit_equal(f.dequantize(name), expected));
  }
  // use_more_bits(i, 8) picks layers 0, 3, 6, 7: their attn_v is Q6_K and their ffn_down Q8_0 (Q6_K
  // falling back); the other ffn_down are Q5_0 (Q4_K falling back) or Q5_1 (Q5_K falling back); the
  // output is Q6_K.
  if (q4) {
    CHECK(seen == std::set<std::string>{"Q4_K", "Q6_K", "Q5_0", "Q8_0"});
  } else {
    CHECK(seen == std::set<std::string>{"Q5_K", "Q6_K", "Q5_1", "Q8_0"});
  }
  CHECK(f.tensor_info("token_embd.weight").type == (q4 ? GgmlType::kQ4_K : GgmlType::kQ5_K));
  CHECK(f.metadata().get_u32("general.file_type") == (q4 ? 15u : 17u));
}
