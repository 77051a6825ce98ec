// Training-step throughput of each method against the unquantized model in the same run: one
// optimizer step (forward, backward, AdamW) of a Llama decoder with `method: qat` (Q4_0 fake
// quant on every projection), `qlora` (NF4 base + LoRA r16), `qat_lora` and `lora` (float base +
// LoRA r16), each timed against `full` (plain float training of the same model). One JSON line per
// method:
//   {"bench":"train_step","method":"qat","device":"cpu","tokens_per_s":..,"baseline_tokens_per_s":..,
//    "ratio_to_full":..}
// ratio_to_full < 1 means slower than unquantized training. Absolute figures hold on a GPU only.
//
//   bench_train [--device cpu|cuda] [--hidden 576] [--layers 4] [--batch 4] [--seq 256]
#include <ATen/ATen.h>
#include <ATen/autocast_mode.h>

#include <cstring>
#include <iostream>
#include <string>

#include "bench/bench_timing.h"
#include "qat/models/llama.h"
#include "recipes/config/recipe_config.h"
#include "recipes/methods.h"
#include "trainers/model_state.h"
#include "trainers/optimizer.h"

using namespace qat;

namespace {

struct Args {
  std::string device = "cpu";
  int64_t hidden = 576, layers = 4, batch = 4, seq = 256, vocab = 8192;
  int iters = 3;
};

models::LlamaConfig config(const Args& a) {
  models::LlamaConfig c;  // SmolLM2-135M's shape, fewer layers and a smaller vocabulary
  c.vocab_size = a.vocab;
  c.hidden_size = a.hidden;
  c.intermediate_size = a.hidden * 8 / 3 / 64 * 64;
  c.num_hidden_layers = a.layers;
  c.num_attention_heads = 9;
  c.num_key_value_heads = 3;
  c.head_dim = a.hidden / 9;
  c.tie_word_embeddings = true;
  c.validate();
  return c;
}

// Milliseconds per optimizer step of `method`.
double step_ms(const Args& a, const std::string& method) {
  const at::Device dev(a.device);
  recipes::RecipeConfig cfg = recipes::parse_recipe_config("method: " + method + "\n", "bench");
  at::manual_seed(0);
  auto model =
      std::make_shared<models::LlamaForCausalLM>(config(a), at::TensorOptions().device(dev));
  recipes::apply_method(*model, cfg);
  model->train();
  train::AdamW opt(train::trainable_parameters(*model), {});
  const at::Tensor ids =
      at::randint(a.vocab, {a.batch, a.seq}, at::TensorOptions().dtype(at::kLong).device(dev));
  const bool bf16 = dev.is_cuda();
  auto step = [&] {
    opt.zero_grad();
    if (bf16) {
      at::autocast::set_autocast_enabled(at::kCUDA, true);
      at::autocast::set_autocast_dtype(at::kCUDA, at::kBFloat16);
    }
    const at::Tensor logits = model->forward(ids);
    const at::Tensor loss =
        at::cross_entropy_loss(logits.narrow(1, 0, a.seq - 1).reshape({-1, a.vocab}).to(at::kFloat),
                               ids.narrow(1, 1, a.seq - 1).reshape({-1}));
    if (bf16) at::autocast::set_autocast_enabled(at::kCUDA, false);
    loss.backward();
    opt.step(1e-5);
  };
  return bench::time_ms(dev, a.iters, step, /*warmup=*/1);
}

}  // namespace

int main(int argc, char** argv) {
  Args a;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string k = argv[i], v = argv[i + 1];
    if (k == "--device")
      a.device = v;
    else if (k == "--hidden")
      a.hidden = std::stoll(v);
    else if (k == "--layers")
      a.layers = std::stoll(v);
    else if (k == "--batch")
      a.batch = std::stoll(v);
    else if (k == "--seq")
      a.seq = std::stoll(v);
    else if (k == "--iters")
      a.iters = std::stoi(v);
    else {
      std::cerr << "bench_train: unknown option " << k << "\n";
      return 2;
    }
  }
  const double full = step_ms(a, "full");
  const double tokens = static_cast<double>(a.batch * a.seq);
  for (const char* method : {"qat", "qlora", "qat_lora", "lora"}) {
    const double ms = step_ms(a, method);
    std::cout << "{\"bench\":\"train_step\",\"method\":\"" << method << "\",\"device\":\""
              << a.device << "\",\"hidden\":" << a.hidden << ",\"layers\":" << a.layers
              << ",\"tokens\":" << tokens << ",\"ms\":" << ms
              << ",\"tokens_per_s\":" << tokens / ms * 1e3
              << ",\"baseline\":\"full\",\"baseline_ms\":" << full
              << ",\"baseline_tokens_per_s\":" << tokens / full * 1e3
              << ",\"ratio_to_full\":" << full / ms << "}\n";
  }
  return 0;
}
