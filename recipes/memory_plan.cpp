#include "recipes/memory_plan.h"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>

#include <algorithm>
#include <filesystem>
#include <map>
#include <optional>
#include <set>
#include <sstream>
#include <vector>

#include "qat/io/gguf_file.h"
#include "qat/lora/lora.h"
#include "qat/models/llama.h"
#include "qat/models/loader.h"
#include "qat/nf4/nf4_tensor.h"
#include "qat/nn/fake_quant_linear.h"
#include "qat/nn/module_walk.h"
#include "recipes/methods.h"
#include "trainers/metrics/format.h"
#include "trainers/metrics/table.h"
#include "trainers/shard.h"

namespace fs = std::filesystem;

namespace qat::recipes {
namespace {

// The state tensors of a model built on the meta device, by kind.
struct Counted {
  int64_t trainable = 0, frozen = 0, packed = 0;
  std::vector<int64_t> trainable_numels;  // per trainable parameter (float32)
  int64_t fake_quant_all = 0;             // weights of every fake-quant layer
  int64_t fake_quant_one_layer = 0;       // the largest decoder layer's share of them
};

// `method` applied to a meta-device model of `shape`. QLoRA's bases stay dense here (quantizing
// needs values); `nf4_bases` receives the layers that become NF4 in a real build.
std::shared_ptr<models::LlamaForCausalLM> meta_model(const models::LlamaConfig& shape,
                                                     const RecipeConfig& cfg,
                                                     const transforms::PrepareNf4Config* nf4,
                                                     std::set<std::string>* nf4_bases) {
  auto model = std::make_shared<models::LlamaForCausalLM>(
      shape, at::TensorOptions().dtype(at::kFloat).device(at::kMeta));
  if (nf4) {
    nn::for_each_linear(*model, [&](nn::ModuleWithLinears&, const std::string&,
                                    const std::string& full,
                                    const std::shared_ptr<nn::LinearBase>& layer) {
      if (dynamic_cast<nn::Linear*>(layer.get()) && nn::selected(nf4->include, nf4->exclude, full))
        nf4_bases->insert(full);
    });
  }
  if (cfg.method == Method::kQlora) {
    lora::apply_lora(*model, lora_config(cfg));
  } else {
    apply_method(*model, cfg);
  }
  return model;
}

// Which NF4 base a parameter belongs to ("<layer>.weight" or "<layer>.base_layer.bias"), and
// whether it is the weight; nullopt for any other parameter.
std::optional<bool> nf4_part(const std::string& name, const std::set<std::string>& bases) {
  for (const char* leaf : {".weight", ".bias"}) {
    const std::string l(leaf);
    if (name.size() <= l.size() || name.compare(name.size() - l.size(), l.size(), l) != 0) continue;
    std::string owner = name.substr(0, name.size() - l.size());
    const std::string wrapped = ".base_layer";
    if (owner.size() > wrapped.size() &&
        owner.compare(owner.size() - wrapped.size(), wrapped.size(), wrapped) == 0)
      owner.resize(owner.size() - wrapped.size());
    if (bases.count(owner)) return l == ".weight";
  }
  return std::nullopt;
}

Counted count_state(models::LlamaForCausalLM& model, const std::set<std::string>& nf4_bases,
                    const nf4::NF4Config& nf4, bool frozen_bf16) {
  Counted c;
  for (const auto& p : model.named_parameters()) {
    const at::Tensor& t = p.value();
    if (const auto is_weight = nf4_part(p.key(), nf4_bases)) {
      // NF4Linear: the packed weight, and the dense bias as it was loaded (float32).
      c.packed += *is_weight ? nf4::NF4Tensor::packed_nbytes(t.numel(), nf4) : t.numel() * 4;
    } else if (t.requires_grad()) {
      c.trainable += static_cast<int64_t>(t.nbytes());
      c.trainable_numels.push_back(t.numel());
    } else {
      c.frozen +=
          frozen_bf16 ? t.numel() * 2 : static_cast<int64_t>(t.nbytes());  // model.dtype: bf16
    }
  }
  for (const auto& b : model.named_buffers()) c.frozen += static_cast<int64_t>(b.value().nbytes());
  std::map<std::string, int64_t> per_layer;
  nn::for_each_linear(
      model, [&](nn::ModuleWithLinears&, const std::string&, const std::string& full,
                 const std::shared_ptr<nn::LinearBase>& layer) {
        const nn::LinearBase* base = layer.get();
        if (const auto* lora = dynamic_cast<const lora::LoraLinear*>(base))
          base = lora->base().get();
        const auto* fq = dynamic_cast<const nn::FakeQuantLinear*>(base);
        if (!fq || !fq->weight_quantizer()) return;
        const int64_t w = fq->weight().numel() * 4;  // fake quant runs on the float32 weight
        c.fake_quant_all += w;
        per_layer[full.substr(0, full.find(".self_attn") == std::string::npos
                                     ? full.find(".mlp")
                                     : full.find(".self_attn"))] += w;
      });
  for (const auto& [layer, bytes] : per_layer)
    c.fake_quant_one_layer = std::max(c.fake_quant_one_layer, bytes);
  return c;
}

// Floats a decoder layer keeps for backward per token: the norms' inputs, the projections'
// inputs, attention's q, k, v and output, and the MLP's gate, up, silu(gate) and product.
int64_t saved_floats_per_token(const models::LlamaConfig& s) {
  const int64_t q = s.num_attention_heads * s.head_dim, kv = s.num_key_value_heads * s.head_dim;
  return 4 * s.hidden_size + 3 * q + 2 * kv + 4 * s.intermediate_size;
}

int64_t teacher_bytes(const models::LlamaConfig& shape, const RecipeConfig& cfg) {
  RecipeConfig t = cfg;
  t.method = Method::kFull;
  t.model.dtype = ModelDtype::kFp32;
  const transforms::PrepareNf4Config nc = teacher_nf4_config(cfg);
  const bool nf4 = cfg.distill.teacher_dtype == TeacherDtype::kNf4;
  std::set<std::string> bases;
  auto model = meta_model(shape, t, nf4 ? &nc : nullptr, &bases);
  const Counted c = count_state(*model, bases, nc.layer, false);
  const int64_t dense = c.trainable + c.frozen;  // full: every parameter trains
  return c.packed + (cfg.distill.teacher_dtype == TeacherDtype::kBf16 ? dense / 2 : dense);
}

}  // namespace

MemoryPlan plan_memory(const models::LlamaConfig& shape, const RecipeConfig& cfg, int world_size) {
  // LoRA's A is drawn even on the meta device: leave the generator as the run left it.
  at::Generator gen = at::detail::getDefaultCPUGenerator();
  const at::Tensor rng = gen.get_state();
  struct Restore {
    at::Generator& gen;
    const at::Tensor& state;
    ~Restore() { gen.set_state(state); }
  } restore{gen, rng};
  const transforms::PrepareNf4Config nc = qlora_nf4_config(cfg);
  const bool qlora = cfg.method == Method::kQlora;
  std::set<std::string> bases;
  auto model = meta_model(shape, cfg, qlora ? &nc : nullptr, &bases);
  const Counted c = count_state(*model, bases, nc.layer, cfg.model.dtype == ModelDtype::kBf16);
  MemoryPlan p;
  p.world_size = world_size;
  p.trainable = c.trainable;
  p.frozen = c.frozen;
  p.packed = c.packed;
  p.gradients = c.trainable;
  p.optimizer = 2 * c.trainable;
  p.sharded = cfg.train.shard == train::ShardMode::kOptimizer && world_size > 1;
  if (p.sharded) {
    // trainers/shard.h: rank 0 owns the first (largest) piece of every trainable parameter.
    int64_t piece = 0;
    for (int64_t n : c.trainable_numels) piece += train::shard_range(n, world_size, 0).size() * 4;
    p.gradients = piece;
    p.optimizer = 2 * piece;
  }
  const bool checkpointing = cfg.train.activation_checkpointing;
  p.fake_quant = checkpointing ? c.fake_quant_one_layer : c.fake_quant_all;
  const int64_t tokens = cfg.train.micro_batch * cfg.data.seq_len;
  const int64_t layer_bytes = tokens * saved_floats_per_token(shape) * 4;
  const int64_t hidden_bytes = tokens * shape.hidden_size * 4;
  p.activations = checkpointing ? shape.num_hidden_layers * hidden_bytes + layer_bytes
                                : shape.num_hidden_layers * layer_bytes + 2 * hidden_bytes;
  // trainers/head_loss.h: about 8M logits a chunk unless set; logits, softmax and gradient.
  const int64_t rows = cfg.distill.chunk_tokens > 0
                           ? cfg.distill.chunk_tokens
                           : std::max<int64_t>(1, (int64_t{8} << 20) / shape.vocab_size);
  p.head_loss = std::min(rows, tokens) * shape.vocab_size * 4 * (cfg.distill.enabled ? 5 : 3);
  if (p.sharded) {  // the rank-major flat buffer of the local gradients, padded pieces
    int64_t padded = 0;
    for (int64_t n : c.trainable_numels) padded += train::shard_piece_size(n, world_size);
    p.grad_buckets = padded * world_size * 4;
  } else {
    p.grad_buckets = world_size > 1 ? c.trainable : 0;
  }
  p.teacher = cfg.distill.enabled ? teacher_bytes(shape, cfg) : 0;
  return p;
}

std::string MemoryPlan::table() const {
  train::Table t("memory plan per rank (" + std::to_string(world_size) + " rank" +
                 (world_size > 1 ? "s" : "") +
                 (sharded ? ", train.shard optimizer: gradients and AdamW state 1/" +
                                std::to_string(world_size) + " per rank, parameters whole)"
                          : ", data parallel: each holds the whole model)"));
  t.add_column("part", {}, train::Table::Align::kLeft);
  t.add_column("bytes", {}, train::Table::Align::kRight);
  t.add_column("how", {}, train::Table::Align::kLeft);
  auto row = [&](const std::string& what, int64_t bytes, const std::string& how) {
    if (bytes > 0) t.add_row({what, train::format_bytes(static_cast<double>(bytes)), how});
  };
  row("trainable parameters", trainable, "counted (float32)");
  row("frozen dense weights", frozen, "counted");
  row("NF4 bases", packed, "counted (packed bytes)");
  row("gradients", gradients,
      sharded ? "counted (rank 0's pieces, reduced)" : "counted (one per trainable)");
  row("AdamW moments", optimizer,
      sharded ? "counted (two per owned piece)" : "counted (two per trainable)");
  t.add_separator();
  row("fake-quantized weights", fake_quant, "estimated (kept for backward)");
  row("activations", activations, "estimated (saved for backward)");
  row("head loss chunk", head_loss, "estimated");
  row(sharded ? "reduce-scatter buffer" : "gradient buckets", grad_buckets,
      sharded ? "counted (full size, transient; Gloo runs it as an all-reduce)"
              : "estimated (all-reduce buffers)");
  row("distillation teacher", teacher, "counted (teacher weights)");
  t.add_separator();
  row("owned state", owned(), "counted");
  row("total", total(), "");
  return t.to_text();
}

std::string MemoryPlan::summary() const {
  std::ostringstream s;
  s << "about " << train::format_bytes(static_cast<double>(total())) << " per rank (state "
    << train::format_bytes(static_cast<double>(owned())) << ": weights "
    << train::format_bytes(static_cast<double>(trainable + frozen + packed)) << ", gradients and "
    << "AdamW " << train::format_bytes(static_cast<double>(gradients + optimizer))
    << "; activations ~"
    << train::format_bytes(static_cast<double>(activations + fake_quant + head_loss)) << ")";
  return s.str();
}

models::LlamaConfig model_shape(const RecipeConfig& cfg) {
  const std::string path = resolve_model_path(cfg.model.path);
  if (fs::is_directory(path)) {
    const fs::path config = fs::path(path) / "config.json";
    TORCH_CHECK(fs::exists(config), "qat plan: '", path, "' has no config.json");
    return models::LlamaConfig::from_hf_file(config.string());
  }
  TORCH_CHECK(fs::exists(path), "qat plan: model.path '", path, "' does not exist");
  const io::GgufFile file = io::GgufFile::open(path);
  return models::config_from_gguf(
      file.metadata(), [&](const std::string& name) { return file.has_tensor(name); }, path);
}

}  // namespace qat::recipes
