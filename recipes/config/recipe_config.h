// The recipe config: what `qat train|eval|ptq|export|demo` read from <config.yaml> [key=value ...].
//
// Typed: methods, modes and data formats are enums; quantization formats are parsed once into
// their QuantSpec (or a llama.cpp mixture). Strict: an unknown key, a wrong type, an unknown name
// or an impossible combination is an error that names the file, the line, the YAML key path
// (e.g. "train.lr"), what was expected and what was found. An empty config, or one without a
// `method`, is an error. `key=value` overrides use the same dotted paths and YAML syntax for
// values (train.lr=1e-4, lora.targets=[q_proj,v_proj]).
//
// Every key is listed once, in the visit_fields() of its section (recipe_config.cpp); that list
// drives parsing, to_yaml(), the value checks and the resume identity. Each run stores
// to_yaml() beside its checkpoints so `qat export`/`qat eval` can rebuild the model.
// recipes/configs/<model>/<method>.yaml are the documented examples of every section.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "qat/fake_quant/fake_quantizer.h"
#include "qat/fake_quant/observer.h"
#include "qat/scheme/quant_spec.h"
#include "trainers/trainer_config.h"

namespace qat::recipes {

enum class Method {
  kFull,     // plain fine-tuning, no quantization (the float baseline)
  kQat,      // fake-quant weights (and optionally activations) on every targeted linear
  kQlora,    // frozen NF4 base + LoRA adapters
  kQatLora,  // frozen fake-quant base + LoRA adapters (the adapters learn around the rounding)
  kLora,     // frozen float base + LoRA adapters (PEFT's LoRA; no quantization in training)
};
std::string to_string(Method m);

enum class ModelDtype { kFp32, kBf16 };
enum class DataFormat { kText, kJsonl, kAlpaca, kChat };
// Where method qat's quantized weights start: the pretrained weights rounded to nearest by fake
// quant at the first step, or rounded by GPTQ first (qat/transforms/gptq.h).
// quant.init: how method qat's fake-quant weights start: round to nearest, GPTQ, AWQ's scaling,
// or AWQ then GPTQ.
enum class QuantInit { kRtn, kGptq, kAwq, kAwqGptq, kSmoothQuant };
// Each enum's name as a config writes it.
std::string to_string(ModelDtype d);
std::string to_string(DataFormat f);
std::string to_string(QuantInit i);
// distill.teacher_dtype: the teacher's weights in float32, bf16, or NF4 (double quant) where
// memory is short.
enum class TeacherDtype { kFp32, kBf16, kNf4 };
std::string to_string(TeacherDtype d);

// quant.weight: a format from `qat formats`, parsed into its spec, or a llama.cpp mixture of
// formats (qat/io/llama_mix.h).
struct WeightFormat {
  std::string name;                       // as written in the config
  std::optional<scheme::QuantSpec> spec;  // a single format
  std::optional<std::string> mix;         // a mixture ("q4_k_m")

  static WeightFormat named(const std::string& name);  // throws c10::Error for an unknown name
  bool is_kquant() const;                              // a k-quant or a mixture of them
};

// quant.fallback / quant.activation: "none" or a format.
struct OptionalFormat {
  std::string name = "none";
  std::optional<scheme::QuantSpec> spec;  // nullopt for "none"

  explicit operator bool() const { return spec.has_value(); }
};

struct ModelSection {
  std::string path = "default";  // .gguf, HF directory, or "default" (SmolLM2-135M-Instruct)
  ModelDtype dtype = ModelDtype::kFp32;  // frozen weights: fp32 or bf16 (trainable ones are fp32)
};

struct QuantSection {
  WeightFormat weight = WeightFormat::named("gguf_q4_0");
  // Format for layers `weight` cannot block (k-quants need in_features % 256 == 0), or none
  // (such a layer is then an error). llama.cpp falls back the same way when it quantizes.
  OptionalFormat fallback;
  int64_t group_size = 0;  // per-group size for int/uint/fp8 formats (0: per output channel)
  // Storage dtype of int/uint/fp8 weight scales (the GGUF formats fix theirs: fp16). The file a
  // run exports to stores the scales exactly only in a dtype that holds them (HF --dtype).
  scheme::ScaleDtype scale_dtype = scheme::ScaleDtype::kFloat32;
  OptionalFormat activation;  // none or a format (per-token dynamic), e.g. int8
  fake_quant::ScaleMode scale_mode = fake_quant::ScaleMode::kDynamic;  // dynamic|static|learnable
  fake_quant::RangeMethod range = fake_quant::RangeMethod::kMinMax;    // minmax|percentile|mse
  fake_quant::GradMode grad = fake_quant::GradMode::kSte;              // ste | clipped_ste
  int64_t delay_steps = 0;             // optimizer steps before fake quant switches on
  int64_t freeze_observer_after = -1;  // static scales: stop updating after N steps
  std::vector<std::string> exclude = {"lm_head", "embed_tokens"};  // name patterns left dense
  QuantInit init =
      QuantInit::kRtn;            // method qat, fresh runs: rtn, gptq, awq, awq_gptq, smoothquant
  int64_t init_calibration = 32;  // gptq / awq: training sequences to calibrate on
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

// Distillation (QAD): train against a frozen teacher's next-token distribution instead of (or
// mixed with) the data's tokens (trainers/distill.h). Works with every method.
struct DistillSection {
  bool enabled = false;
  // "start": the run's starting model (model.path in float, before the method's quantization);
  // or a model path (.gguf or HF directory) with the same vocabulary.
  std::string teacher = "start";
  TeacherDtype teacher_dtype = TeacherDtype::kFp32;
  double temperature = 1.0;  // tau: KD is tau^2 KL(teacher_tau || student_tau)
  double ce_weight = 0.0;    // w in [0, 1): loss = (1 - w) KD + w cross-entropy
  int64_t chunk_tokens = 0;  // target positions per chunk of the head's loss; 0: automatic
};

struct DataSection {
  DataFormat format = DataFormat::kText;  // text | jsonl | alpaca | chat
  std::string path = "default";           // a file or directory; "default": the bundled corpus
  std::string field = "text";             // jsonl: the text field
  int64_t seq_len = 256;
  bool pack = true;             // pack documents into full sequences (text/jsonl)
  double eval_fraction = 0.05;  // documents held out for evaluation
  int64_t max_documents = 0;    // 0: all
  // Training-only text (text/jsonl formats): files whose documents join the training split after
  // data.path's held-out split, so the held-out set stays data.path's own. A .jsonl file is read
  // as JSON Lines (data.field), anything else as text. Each is repeated extra_repeat times, which
  // sets its share of the training sequences (e.g. qat sample-data's teacher samples).
  std::vector<std::string> extra_train;
  int64_t extra_repeat = 1;
};

struct RecipeConfig {
  std::string source;  // the file it came from (for messages)
  std::string output_dir = "runs/run";
  bool resume = true;  // continue from output_dir's latest checkpoint when there is one
  Method method = Method::kQat;
  ModelSection model;
  QuantSection quant;
  LoraSection lora;
  Nf4Section nf4;
  DistillSection distill;
  DataSection data;
  train::TrainSection train;
  train::EvalSection eval;
  train::CheckpointSection checkpoint;
  train::LogSection log;

  int64_t global_batch(int world_size) const {
    return train.micro_batch * train.grad_accum * world_size;
  }
  // Every field's check, then the combinations (throws c10::Error naming the key).
  void validate() const;
  // The trainer's part: its sections, the run directory, this config as YAML and the resume
  // identity check.
  train::TrainerConfig trainer_config() const;
};

// Parses `path` with `overrides` ("a.b=value") applied on top.
RecipeConfig load_recipe_config(const std::string& path,
                                const std::vector<std::string>& overrides = {});
// Parses YAML text (what load_recipe_config and tests use); `source` names it in errors.
RecipeConfig parse_recipe_config(const std::string& yaml, const std::string& source,
                                 const std::vector<std::string>& overrides = {});
// The resolved config, every key.
std::string to_yaml(const RecipeConfig& cfg);
// What defines the experiment (method, model, quant, lora, nf4, distill, data), for the resume
// check.
std::string identity_yaml(const RecipeConfig& cfg);

}  // namespace qat::recipes
