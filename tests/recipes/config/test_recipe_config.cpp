// Configs are strict: unknown keys, wrong types, bad overrides and impossible combinations are
// errors naming the file, line and key path.
#include <filesystem>
#include <fstream>

#include "recipes/config/recipe_config.h"
#include "tests/support/catch_torch.h"
#include "tests/support/helpers.h"
#include "trainers/trainer_config.h"

using namespace qat;
using Catch::Contains;

TEST_CASE("a config parses with defaults, overrides, and round-trips through to_yaml", "[config]") {
  const auto c = recipes::parse_recipe_config(
      "method: qlora\ntrain:\n  lr: 1.0e-4\n  steps: 30\nlora: {r: 8}\n", "a.yaml",
      {"train.steps=40", "lora.targets=[q_proj, v_proj]", "quant.fallback=gguf_q8_0"});
  CHECK(c.quant.fallback.name == "gguf_q8_0");
  REQUIRE(c.quant.fallback.spec);
  CHECK(c.quant.fallback.spec->format == scheme::Format::kQ8_0);
  CHECK(c.method == recipes::Method::kQlora);
  CHECK(c.train.lr == 1e-4);
  CHECK(c.train.steps == 40);
  CHECK(c.lora.r == 8);
  CHECK(c.lora.targets == std::vector<std::string>{"q_proj", "v_proj"});
  CHECK(c.data.seq_len == 256);  // default
  const auto again = recipes::parse_recipe_config(recipes::to_yaml(c), "again.yaml");
  CHECK(recipes::to_yaml(again) == recipes::to_yaml(c));
}

TEST_CASE("config errors name the key path, the line, the expected and found values", "[config]") {
  CHECK_THROWS_WITH(recipes::parse_recipe_config("train:\n  lr2: 1\n", "x.yaml"),
                    Contains("x.yaml:2: train.lr2: unknown key") && Contains("lr"));
  CHECK_THROWS_WITH(recipes::parse_recipe_config("train:\n  steps: many\n", "x.yaml"),
                    Contains("x.yaml:2: train.steps: expected an integer, found 'many'"));
  CHECK_THROWS_WITH(recipes::parse_recipe_config("train: [1, 2]\n", "x.yaml"),
                    Contains("train: expected a mapping of keys, found a list"));
  CHECK_THROWS_WITH(recipes::parse_recipe_config("lora: {targets: q_proj}\n", "x.yaml"),
                    Contains("lora.targets: expected a list of strings"));
  CHECK_THROWS_WITH(
      recipes::parse_recipe_config("method: qlorra\n", "x.yaml"),
      Contains("method: expected one of full, qat, qlora, qat_lora, lora, found 'qlorra'"));
  CHECK_THROWS_WITH(recipes::parse_recipe_config("quant: {weight: int5x}\n", "x.yaml"),
                    Contains("quant.weight: unknown format 'int5x'"));
  CHECK_THROWS_WITH(recipes::parse_recipe_config(
                        "method: qat\nquant: {weight: q4_k, fallback: q3_k}\n", "x.yaml"),
                    Contains("quant.fallback: unknown format 'q3_k'"));
  CHECK_THROWS_WITH(recipes::parse_recipe_config("method: qat\nmodel: {dtype: bf16}\n", "x.yaml"),
                    Contains("model.dtype=bf16 needs train.device=cuda"));
  // bf16 autocast on the CPU is accepted: where the CPU lacks bf16 instructions the run says so
  // and stays in float32 (tests/trainers/test_autocast.cpp).
  CHECK(recipes::parse_recipe_config("method: qat\ntrain: {autocast: bf16}\n", "x.yaml")
            .train.autocast == train::Autocast::kBf16);
  CHECK_THROWS_WITH(recipes::parse_recipe_config("method: qat\ndata: {format: alpaca}\n", "x.yaml"),
                    Contains("data.pack: instruction data"));
  CHECK_THROWS_WITH(
      recipes::parse_recipe_config("method: qat\ntrain: {steps: 5, warmup_steps: 9}\n", "x.yaml"),
      Contains("train.warmup_steps must be in [0, train.steps]"));
  CHECK_THROWS_WITH(recipes::parse_recipe_config("train: {lr: 1e-3\n", "x.yaml"),
                    Contains("not valid YAML"));
  CHECK_THROWS_WITH(recipes::parse_recipe_config("", "x.yaml", {"train.nope=3"}),
                    Contains("train.nope: unknown key"));
  CHECK_THROWS_WITH(recipes::parse_recipe_config("", "x.yaml", {"train.lr"}),
                    Contains("is not key=value"));
  CHECK_THROWS_WITH(recipes::parse_recipe_config("train: {lr: 1.0}", "x.yaml", {"train.lr.x=3"}),
                    Contains("'lr' is not a section"));
  CHECK_THROWS_WITH(recipes::parse_recipe_config("", "x.yaml", {"train.lr.x=3"}),
                    Contains("train.lr: expected a number, found a mapping"));
  CHECK_THROWS_WITH(recipes::load_recipe_config("/nonexistent/cfg.yaml"),
                    Contains("cannot open config /nonexistent/cfg.yaml"));
  CHECK_THROWS_WITH(
      recipes::parse_recipe_config("method: qat\nquant: {init: gptqq}\n", "x.yaml"),
      Contains("quant.init: expected one of rtn, gptq, awq, awq_gptq, smoothquant, found 'gptqq'"));
  CHECK_THROWS_WITH(
      recipes::parse_recipe_config("method: qat_lora\nquant: {init: gptq}\n", "x.yaml"),
      Contains("quant.init: gptq starts method qat"));
  CHECK_THROWS_WITH(
      recipes::parse_recipe_config(
          "method: qat\nquant: {init: gptq, weight: int4, scale_mode: learnable}\n", "x.yaml"),
      Contains("quant.scale_mode: dynamic (or learnable with a ggml block format"));
  CHECK_NOTHROW(recipes::parse_recipe_config(
      "method: qat\nquant: {init: gptq, weight: gguf_q4_1, scale_mode: learnable}\n", "x.yaml"));
  CHECK_THROWS_WITH(recipes::parse_recipe_config(
                        "method: qat\nquant: {init: gptq, init_calibration: 0}\n", "x.yaml"),
                    Contains("quant.init_calibration must be >= 1"));
  CHECK_NOTHROW(recipes::parse_recipe_config(
      "method: qat\nquant: {init: gptq, init_calibration: 8}\n", "x.yaml"));
  CHECK_THROWS_WITH(
      recipes::parse_recipe_config(
          "method: qat\nquant: {init: awq, weight: gguf_q4_0, scale_mode: learnable}\n", "x.yaml"),
      Contains("quant.init: awq needs quant.scale_mode: dynamic"));
  CHECK_THROWS_WITH(
      recipes::parse_recipe_config("method: qlora\nquant: {init: awq_gptq}\n", "x.yaml"),
      Contains("quant.init: awq_gptq starts method qat"));
  CHECK_NOTHROW(recipes::parse_recipe_config("method: qat\nquant: {init: awq_gptq}\n", "x.yaml"));
}

TEST_CASE("the shipped recipe configs parse", "[config]") {
  for (const char* name : {"qat", "qlora", "qat_lora", "lora", "full", "qad", "qad-q4_k_m"}) {
    const std::string path =
        std::string(QAT_SOURCE_DIR) + "/recipes/configs/smollm2-135m/" + name + ".yaml";
    INFO(path);
    CHECK_NOTHROW(recipes::load_recipe_config(path));
  }
}

TEST_CASE("an empty config or one without a method is an error, not a default run", "[config]") {
  CHECK_THROWS_WITH(recipes::parse_recipe_config("", "empty.yaml"),
                    Contains("empty.yaml: the config is empty") && Contains("recipes/configs/"));
  CHECK_THROWS_WITH(recipes::parse_recipe_config("# only a comment\n", "c.yaml"),
                    Contains("c.yaml: the config is empty"));
  CHECK_THROWS_WITH(recipes::parse_recipe_config("train: {steps: 3}\n", "m.yaml"),
                    Contains("m.yaml: method: missing"));
  // An override can name the method.
  CHECK(recipes::parse_recipe_config("", "x.yaml", {"method=full"}).method ==
        recipes::Method::kFull);
}

TEST_CASE("enum keys parse to their values, accept aliases and write canonical names", "[config]") {
  const auto c = recipes::parse_recipe_config(
      "method: qat\nquant: {scale_mode: lsq, range: mse, grad: clipped_ste, weight: int4}\n"
      "train: {schedule: linear, autocast: off}\ndata: {format: jsonl}\nlog: {progress: lines}\n",
      "e.yaml");
  CHECK(c.quant.scale_mode == fake_quant::ScaleMode::kLearnable);
  CHECK(c.quant.range == fake_quant::RangeMethod::kMse);
  CHECK(c.quant.grad == fake_quant::GradMode::kClippedSte);
  REQUIRE(c.quant.weight.spec);
  CHECK(c.quant.weight.spec->format == scheme::Format::kInt);
  CHECK(c.quant.weight.spec->bits == 4);
  CHECK(c.train.schedule == train::Schedule::kLinear);
  CHECK(c.train.autocast == train::Autocast::kOff);
  CHECK(c.data.format == recipes::DataFormat::kJsonl);
  CHECK(c.log.progress == train::Progress::kLines);
  const std::string yaml = recipes::to_yaml(c);
  CHECK_THAT(yaml, Contains("scale_mode: learnable"));  // the alias is written canonically
  CHECK_THAT(yaml, Contains("progress: lines"));
  CHECK(recipes::to_yaml(recipes::parse_recipe_config(yaml, "again.yaml")) == yaml);
  // A llama.cpp mixture is a weight format of its own.
  const auto m = recipes::parse_recipe_config("method: qat\nquant: {weight: Q4_K_M}\n", "m.yaml");
  CHECK(m.quant.weight.mix == std::optional<std::string>("q4_k_m"));
  CHECK(m.quant.weight.is_kquant());
  CHECK_THROWS_WITH(recipes::parse_recipe_config("method: qat\ntrain: {device: tpu}\n", "x.yaml"),
                    Contains("x.yaml:2: train.device: expected one of cpu, cuda, found 'tpu'"));
  CHECK_THROWS_WITH(
      recipes::parse_recipe_config("method: qat\nquant: {activation: int9}\n", "x.yaml"),
      Contains("quant.activation: unknown format 'int9'"));
  CHECK_THROWS_WITH(recipes::parse_recipe_config("method: qat\nmodel: {dtype: bf16}\n", "x.yaml"),
                    Contains("model.dtype=bf16 needs train.device=cuda"));
}

TEST_CASE("value checks name the key, the rule and the value", "[config]") {
  CHECK_THROWS_WITH(recipes::parse_recipe_config("method: qat\ntrain: {steps: 0}\n", "x.yaml"),
                    Contains("x.yaml: train.steps must be >= 1, got 0"));
  CHECK_THROWS_WITH(recipes::parse_recipe_config("method: qat\nlora: {dropout: 1.0}\n", "x.yaml"),
                    Contains("lora.dropout must be in [0, 1), got 1"));
  CHECK_THROWS_WITH(recipes::parse_recipe_config("method: qat\nlora: {targets: []}\n", "x.yaml"),
                    Contains("lora.targets is empty"));
  CHECK_THROWS_WITH(recipes::parse_recipe_config("method: qat\nnf4: {block_size: 63}\n", "x.yaml"),
                    Contains("nf4.block_size must be even and >= 2, got 63"));
  CHECK_THROWS_WITH(recipes::parse_recipe_config("method: qat\noutput_dir: ''\n", "x.yaml"),
                    Contains("output_dir must not be empty"));
}

TEST_CASE("the resume identity covers what is trained, not how long or how it is logged",
          "[config]") {
  const auto a = recipes::parse_recipe_config("method: qat\n", "a.yaml");
  const auto b = recipes::parse_recipe_config(
      "method: qat\noutput_dir: elsewhere\ntrain: {steps: 7, lr: 0.1}\nlog: {plot: false}\n"
      "checkpoint: {every: 2}\neval: {every: 3}\n",
      "b.yaml");
  CHECK(recipes::identity_yaml(a) == recipes::identity_yaml(b));
  CHECK(recipes::to_yaml(a) != recipes::to_yaml(b));
  const auto c =
      recipes::parse_recipe_config("method: qat\nquant: {weight: gguf_q8_0}\n", "c.yaml");
  CHECK(recipes::identity_yaml(a) != recipes::identity_yaml(c));
  const auto d = recipes::parse_recipe_config("method: qat\ndata: {seq_len: 128}\n", "d.yaml");
  CHECK(recipes::identity_yaml(a) != recipes::identity_yaml(d));
  // The trainer's check: the same experiment passes, another one is refused with the reason.
  const train::TrainerConfig t = a.trainer_config();
  CHECK(t.run_name == "qat");
  CHECK(t.config_yaml == recipes::to_yaml(a));
  CHECK_NOTHROW(t.check_same_run(recipes::to_yaml(b), "ckpt"));
  CHECK_THROWS_WITH(t.check_same_run(recipes::to_yaml(c), "ckpt"),
                    Contains("ckpt was written by a different run"));
}

TEST_CASE("a config saved before the typed config still parses to the same identity", "[config]") {
  // recipes/configs/smollm2-135m/qat.yaml as `qat train` saved it into checkpoints before the
  // config moved out of the trainer (every key spelled out, strings for the modes).
  const std::string saved =
      "output_dir: runs/demo\nresume: true\nmethod: qat\nmodel:\n  path: default\n  dtype: fp32\n"
      "quant:\n  weight: gguf_q4_0\n  fallback: none\n  group_size: 0\n  activation: none\n"
      "  scale_mode: dynamic\n  range: minmax\n  grad: ste\n  delay_steps: 0\n"
      "  freeze_observer_after: -1\n  exclude: [lm_head, embed_tokens]\n  init: rtn\n"
      "  init_calibration: 32\nlora:\n  r: 16\n  alpha: 32\n  dropout: 0\n  rslora: false\n"
      "  targets: [q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj]\nnf4:\n"
      "  double_quant: true\n  block_size: 64\ndata:\n  format: text\n  path: default\n"
      "  field: text\n  seq_len: 256\n  pack: true\n  eval_fraction: 0.05\n  max_documents: 0\n"
      "train:\n  steps: 24\n  micro_batch: 8\n  grad_accum: 1\n  lr: 2.0000000000000002e-05\n"
      "  schedule: cosine\n  warmup_steps: 0\n  min_lr_ratio: 0.10000000000000001\n"
      "  weight_decay: 0\n  beta1: 0.90000000000000002\n  beta2: 0.999\n"
      "  eps: 1e-08\n  max_grad_norm: 1\n  seed: 0\n  activation_checkpointing: false\n"
      "  device: cpu\n  autocast: auto\n  dist_timeout_s: 300\neval:\n  every: 0\n"
      "  sequences: 32\n  at_start: true\ncheckpoint:\n  every: 10\n  keep_last: 2\nlog:\n"
      "  every: 1\n  progress: auto\n  plot: true\n";
  const auto old = recipes::parse_recipe_config(saved, "old checkpoint");
  const auto now = recipes::parse_recipe_config("method: qat\n", "qat.yaml");
  CHECK(recipes::identity_yaml(old) == recipes::identity_yaml(now));
  CHECK(old.train.steps == 24);
  CHECK(old.checkpoint.every == 10);
}

TEST_CASE("an output_dir that cannot be created names output_dir", "[config]") {
  const std::string dir = qat::test::temp_dir();
  const std::string file = dir + "/a-file";
  std::ofstream(file) << "x";
  CHECK_THROWS_WITH(train::prepare_output_dir(file),
                    Contains("output_dir: '" + file + "'") && Contains("is not a directory"));
  CHECK_THROWS_WITH(train::prepare_output_dir(file + "/sub"),
                    Contains("output_dir: cannot create '" + file + "/sub'"));
  CHECK_NOTHROW(train::prepare_output_dir(dir + "/new/run"));
  CHECK(std::filesystem::is_directory(dir + "/new/run"));
}

TEST_CASE("the distill section: defaults, values, errors, and part of the run's identity",
          "[config][distill]") {
  const auto off = recipes::parse_recipe_config("method: qat\n", "a.yaml");
  CHECK_FALSE(off.distill.enabled);
  CHECK(off.distill.teacher == "start");
  CHECK(off.distill.teacher_dtype == recipes::TeacherDtype::kFp32);
  const auto on = recipes::parse_recipe_config(
      "method: qlora\ndistill: {enabled: true, temperature: 2, ce_weight: 0.1, teacher_dtype: "
      "nf4, chunk_tokens: 64}\n",
      "b.yaml");
  CHECK(on.distill.enabled);
  CHECK(on.distill.temperature == 2.0);
  CHECK(on.distill.ce_weight == 0.1);
  CHECK(on.distill.teacher_dtype == recipes::TeacherDtype::kNf4);
  CHECK(on.distill.chunk_tokens == 64);
  CHECK_THAT(recipes::to_yaml(on), Contains("teacher_dtype: nf4"));
  const auto on_qat = recipes::parse_recipe_config("method: qat\ndistill: {enabled: true}\n", "c");
  CHECK(recipes::identity_yaml(off) != recipes::identity_yaml(on_qat));
  CHECK_THROWS_WITH(
      recipes::parse_recipe_config("method: qat\ndistill: {temperature: 0}\n", "x.yaml"),
      Contains("distill.temperature must be > 0"));
  CHECK_THROWS_WITH(
      recipes::parse_recipe_config("method: qat\ndistill: {ce_weight: 1}\n", "x.yaml"),
      Contains("distill.ce_weight must be in [0, 1), got 1"));
  CHECK_THROWS_WITH(
      recipes::parse_recipe_config("method: qat\ndistill: {teacher_dtype: int8}\n", "x.yaml"),
      Contains("distill.teacher_dtype: expected one of fp32, bf16, nf4"));
  CHECK_THROWS_WITH(recipes::parse_recipe_config("method: qat\ndistill: {teacher: ''}\n", "x"),
                    Contains("distill.teacher must not be empty"));
}
