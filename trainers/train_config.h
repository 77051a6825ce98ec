// The training config: what `qat train <config.yaml> [key=value ...]` reads.
//
// Configs are strict: an unknown key, a wrong type or an impossible combination is an error that
// names the file, the YAML key path (e.g. "train.lr"), what was expected and what was found.
// `key=value` overrides use the same dotted paths and YAML syntax for values
// (train.lr=1e-4, lora.targets=[q_proj,v_proj]). to_yaml() writes the resolved config, which each
// run stores beside its checkpoints so `qat export`/`qat eval` can rebuild the model.
// recipes/configs/<model>/<method>.yaml are the documented examples of every section.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace qat::train {

enum class Method {
  kFull,     // plain fine-tuning, no quantization (the float baseline)
  kQat,      // fake-quant weights (and optionally activations) on every targeted linear
  kQlora,    // frozen NF4 base + LoRA adapters
  kQatLora,  // frozen fake-quant base + LoRA adapters (the adapters learn around the rounding)
};
Method method_from_name(const std::string& name);
std::string to_string(Method m);

struct ModelSection {
  std::string path = "default";  // .gguf, HF directory, or "default" (SmolLM2-135M-Instruct)
  std::string dtype = "fp32";    // frozen weights: fp32 or bf16 (trainable ones are fp32)
};

struct QuantSection {
  std::string weight = "gguf_q4_0";  // a format from `qat formats`
  // Format for layers `weight` cannot block (k-quants need in_features % 256 == 0), or "none"
  // (such a layer is then an error). llama.cpp falls back the same way when it quantizes.
  std::string fallback = "none";
  int64_t group_size = 0;           // per-group size for int/uint/fp8 formats (0: format default)
  std::string activation = "none";  // "none" or a format (per-token dynamic), e.g. int8
  std::string scale_mode = "dynamic";  // dynamic | static | learnable
  std::string range = "minmax";        // minmax | percentile | mse
  std::string grad = "ste";            // ste | clipped_ste
  int64_t delay_steps = 0;             // optimizer steps before fake quant switches on
  int64_t freeze_observer_after = -1;  // static scales: stop updating after N steps
  std::vector<std::string> exclude = {"lm_head", "embed_tokens"};  // name patterns left dense
  // Where the quantized weights start (method qat, fresh runs): "rtn", the pretrained weights
  // (fake quant rounds them to nearest at the first step), or "gptq", the pretrained weights
  // rounded by GPTQ on `init_calibration` training sequences first (qat/transforms/gptq.h).
  std::string init = "rtn";
  int64_t init_calibration = 32;
};

struct LoraSection {
  int64_t r = 16;
  double alpha = 32.0;
  double dropout = 0.0;
  bool rslora = false;
  std::vector<std::string> targets = {"q_proj",    "k_proj",  "v_proj",   "o_proj",
                                      "gate_proj", "up_proj", "down_proj"};
};

struct Nf4Section {
  bool double_quant = true;
  int64_t block_size = 64;
};

struct DataSection {
  std::string format = "text";   // text | jsonl | alpaca | chat
  std::string path = "default";  // a file or directory; "default": the bundled corpus
  std::string field = "text";    // jsonl: the text field
  int64_t seq_len = 256;
  bool pack = true;             // pack documents into full sequences (text/jsonl)
  double eval_fraction = 0.05;  // documents held out for evaluation
  int64_t max_documents = 0;    // 0: all
};

struct TrainSection {
  int64_t steps = 100;
  int64_t micro_batch = 4;  // sequences per rank per micro-step
  int64_t grad_accum = 1;   // micro-steps per optimizer step
  double lr = 2e-5;
  std::string schedule = "cosine";
  int64_t warmup_steps = 0;
  double min_lr_ratio = 0.1;
  double weight_decay = 0.0;
  double beta1 = 0.9, beta2 = 0.999, eps = 1e-8;
  double max_grad_norm = 1.0;  // 0: no clipping
  int64_t seed = 0;
  bool activation_checkpointing = false;
  std::string device = "cpu";     // cpu | cuda
  std::string autocast = "auto";  // auto (bf16 on cuda, off on cpu) | bf16 | off
  int64_t dist_timeout_s = 300;   // a collective waiting longer means a lost rank
};

struct EvalSection {
  int64_t every = 0;       // optimizer steps between evaluations (0: only at start and end)
  int64_t sequences = 32;  // held-out sequences per evaluation (0: all)
  bool at_start = true;
};

struct CheckpointSection {
  int64_t every = 0;  // optimizer steps between saves (0: only at the end)
  int64_t keep_last = 2;
};

struct LogSection {
  int64_t every = 1;              // steps between metrics lines
  std::string progress = "auto";  // auto (a bar on a TTY) | bar | lines | off
  bool plot = true;               // training-curve PNG beside metrics.jsonl
};

struct TrainConfig {
  std::string source;  // the file it came from (for messages)
  std::string output_dir = "runs/run";
  bool resume = true;  // continue from output_dir's latest checkpoint when there is one
  Method method = Method::kQat;
  ModelSection model;
  QuantSection quant;
  LoraSection lora;
  Nf4Section nf4;
  DataSection data;
  TrainSection train;
  EvalSection eval;
  CheckpointSection checkpoint;
  LogSection log;

  int64_t global_batch(int world_size) const {
    return train.micro_batch * train.grad_accum * world_size;
  }
  void validate() const;  // impossible combinations
};

// Parses `path` with `overrides` ("a.b=value") applied on top.
TrainConfig load_train_config(const std::string& path,
                              const std::vector<std::string>& overrides = {});
// Parses YAML text (what load_train_config and tests use); `source` names it in errors.
TrainConfig parse_train_config(const std::string& yaml, const std::string& source,
                               const std::vector<std::string>& overrides = {});
std::string to_yaml(const TrainConfig& cfg);

}  // namespace qat::train
