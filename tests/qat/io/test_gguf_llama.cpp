// llama specifics: HF <-> GGUF tensor names, and the Q/K row permutation against
// convert_hf_to_gguf.py's permute and transformers' reverse permute (tests/ref/gguf_io_ref.py).
#include <ATen/ATen.h>

#include <catch2/catch.hpp>

#include "qat/io/gguf_file.h"
#include "qat/io/gguf_llama.h"
#include "tests/qat/io/gguf_test_util.h"

namespace io = qat::io;

TEST_CASE("llama tensor names map HF <-> GGUF both ways", "[io][gguf][llama]") {
  const std::vector<std::pair<std::string, std::string>> pairs = {
      {"model.embed_tokens.weight", "token_embd.weight"},
      {"model.norm.weight", "output_norm.weight"},
      {"lm_head.weight", "output.weight"},
      {"model.layers.0.self_attn.q_proj.weight", "blk.0.attn_q.weight"},
      {"model.layers.0.self_attn.q_proj.bias", "blk.0.attn_q.bias"},
      {"model.layers.7.self_attn.k_proj.weight", "blk.7.attn_k.weight"},
      {"model.layers.7.self_attn.k_proj.bias", "blk.7.attn_k.bias"},
      {"model.layers.12.self_attn.v_proj.weight", "blk.12.attn_v.weight"},
      {"model.layers.12.self_attn.v_proj.bias", "blk.12.attn_v.bias"},
      {"model.layers.29.self_attn.o_proj.weight", "blk.29.attn_output.weight"},
      {"model.layers.3.mlp.gate_proj.weight", "blk.3.ffn_gate.weight"},
      {"model.layers.3.mlp.up_proj.weight", "blk.3.ffn_up.weight"},
      {"model.layers.3.mlp.down_proj.weight", "blk.3.ffn_down.weight"},
      {"model.layers.3.input_layernorm.weight", "blk.3.attn_norm.weight"},
      {"model.layers.3.post_attention_layernorm.weight", "blk.3.ffn_norm.weight"},
  };
  for (const auto& [hf, gguf] : pairs) {
    CAPTURE(hf, gguf);
    CHECK(io::hf_to_gguf_name(hf) == gguf);
    CHECK(io::gguf_to_hf_name(gguf) == hf);
  }
  for (const std::string bad :
       {"model.layers.0.self_attn.rotary_emb.inv_freq", "model.layers..mlp.up_proj.weight",
        "model.layers.x.mlp.up_proj.weight", "model.layers.1.mlp.up_proj", "lm_head.scale",
        "blk.1.attn_q", "blk.1.attn_qq.weight", "model.embed_tokens.weight.weight"}) {
    CAPTURE(bad);
    CHECK(!io::hf_to_gguf_name(bad).has_value());
    CHECK(!io::gguf_to_hf_name(bad).has_value());
  }
}

TEST_CASE("Q/K permutation matches convert_hf_to_gguf.py and transformers, and inverts",
          "[io][gguf][llama][reference]") {
  struct Case {
    int64_t n_heads, head_dim, cols;
  };
  for (const Case c : {Case{4, 8, 16}, Case{2, 16, 8}, Case{9, 64, 576}, Case{3, 64, 576}}) {
    CAPTURE(c.n_heads, c.head_dim, c.cols);
    const int64_t rows = c.n_heads * c.head_dim;
    const at::Tensor w = qat::test::randn({rows, c.cols}, static_cast<uint64_t>(rows + c.cols));
    const std::string dir = qat::test::temp_dir();
    qat::test::write_f32(dir + "/w.f32", w);
    REQUIRE(qat::test::run_python(
                "gguf_io_ref.py",
                {"permute", dir + "/w.f32", std::to_string(rows), std::to_string(c.cols),
                 std::to_string(c.n_heads), dir + "/p.f32", dir + "/r.f32"}) == 0);
    const at::Tensor p = io::permute_qk(w, c.n_heads);
    CHECK(qat::test::bit_equal(p, qat::test::io::read_f32(dir + "/p.f32", {rows, c.cols})));
    CHECK(qat::test::bit_equal(io::unpermute_qk(w, c.n_heads),
                               qat::test::io::read_f32(dir + "/r.f32", {rows, c.cols})));
    CHECK(qat::test::bit_equal(io::unpermute_qk(p, c.n_heads), w));
    CHECK(qat::test::bit_equal(io::permute_qk(io::unpermute_qk(w, c.n_heads), c.n_heads), w));
    // The rule itself: within head h, new_row[2i + j] = old_row[j*hd/2 + i].
    const int64_t hd = c.head_dim, h = c.n_heads - 1, i = hd / 2 - 1;
    CHECK(p[h * hd + 2 * i + 1].equal(w[h * hd + hd / 2 + i]));
    CHECK(p[h * hd + 2].equal(w[h * hd + 1]));
  }
  // Biases (1-D) permute the same way.
  const at::Tensor b = at::arange(8, at::kFloat);
  CHECK(io::permute_qk(b, 2).equal(at::tensor({0.f, 2.f, 1.f, 3.f, 4.f, 6.f, 5.f, 7.f})));
  REQUIRE_THROWS_WITH(io::permute_qk(at::zeros({12, 4}), 4),
                      Catch::Contains("12 rows do not split into 4 heads"));
}

TEST_CASE("Q/K permutation commutes with block quantization along the input dim",
          "[io][gguf][llama]") {
  const at::Tensor w = qat::test::randn({9 * 64, 576}, 11);
  for (const auto& [fmt, type] :
       {std::pair{"gguf_q8_0", io::GgmlType::kQ8_0}, std::pair{"gguf_q4_0", io::GgmlType::kQ4_0},
        std::pair{"gguf_q4_1", io::GgmlType::kQ4_1}}) {
    CAPTURE(fmt);
    const at::Tensor blocks = qat::test::io::gguf_blocks(w, fmt);  // [576, 576/32*block]
    // Quantize then permute the packed rows == permute then quantize.
    const at::Tensor permuted_blocks = io::permute_qk(blocks, 9);
    CHECK(qat::test::bit_equal(permuted_blocks,
                               qat::test::io::gguf_blocks(io::permute_qk(w, 9), fmt)));
    CHECK(qat::test::bit_equal(io::unpermute_qk(permuted_blocks, 9), blocks));
    CHECK(qat::test::bit_equal(io::dequantize_gguf_rows(permuted_blocks, type),
                               io::permute_qk(io::dequantize_gguf_rows(blocks, type), 9)));
  }
}
