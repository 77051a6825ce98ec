// Our decoder against transformers: tiny random models written by save_pretrained (Python, same
// venv), loaded through our safetensors reader, must give transformers' logits.
#include <catch2/catch.hpp>

#include "qat/io/safetensors_torch.h"
#include "qat/models/loader.h"
#include "tests/support/helpers.h"

namespace {

// The reference models are written once per test run (one Python start for all of them).
const std::string& reference_dir() {
  static const std::string dir = [] {
    std::string d = qat::test::temp_dir();
    REQUIRE(qat::test::run_python("llama_ref.py", {d}) == 0);
    return d;
  }();
  return dir;
}

}  // namespace

TEST_CASE("Logits equal transformers' for tiny random Llama, Qwen2, Mistral and tied models",
          "[models][interop]") {
  const std::string kind = GENERATE("llama", "tied", "qwen2", "llama3", "mistral");
  CAPTURE(kind);
  const std::string dir = reference_dir() + "/" + kind;
  auto model = qat::models::load_hf_model(dir);
  model->eval();
  const auto ref = qat::io::load_safetensors(dir + "/reference.safetensors");
  torch::NoGradGuard no_grad;
  const at::Tensor logits = model->forward(ref.at("input_ids"));
  const at::Tensor expected = ref.at("logits");
  REQUIRE(logits.sizes() == expected.sizes());
  // Both sides compute in float32 with the same op order except inside attention (transformers
  // may use its own SDPA path); 1e-4 absolute on logits of magnitude ~1 is the budget.
  const double max_diff = (logits - expected).abs().max().item<double>();
  CAPTURE(max_diff);
  CHECK(max_diff <= 1e-4);
}

TEST_CASE("Loading a checkpoint that does not fit the model names the problem",
          "[models][interop]") {
  const std::string dir = qat::test::temp_dir();
  CHECK_THROWS_WITH(qat::models::load_hf_model(dir), Catch::Contains("has no config.json"));
  CHECK_THROWS_WITH(qat::models::load_model(dir + "/nothing"), Catch::Contains("does not exist"));
}
