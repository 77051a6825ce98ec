// Configs are strict: unknown keys, wrong types, bad overrides and impossible combinations are
// errors naming the file, line and key path.
#include <fstream>

#include "tests/support/catch_torch.h"
#include "tests/support/helpers.h"
#include "trainers/train_config.h"

using namespace qat;
using Catch::Contains;

TEST_CASE("a config parses with defaults, overrides, and round-trips through to_yaml", "[config]") {
  const auto c = train::parse_train_config(
      "method: qlora\ntrain:\n  lr: 1.0e-4\n  steps: 30\nlora: {r: 8}\n", "a.yaml",
      {"train.steps=40", "lora.targets=[q_proj, v_proj]", "quant.fallback=gguf_q8_0"});
  CHECK(c.quant.fallback == "gguf_q8_0");
  CHECK(c.method == train::Method::kQlora);
  CHECK(c.train.lr == 1e-4);
  CHECK(c.train.steps == 40);
  CHECK(c.lora.r == 8);
  CHECK(c.lora.targets == std::vector<std::string>{"q_proj", "v_proj"});
  CHECK(c.data.seq_len == 256);  // default
  const auto again = train::parse_train_config(train::to_yaml(c), "again.yaml");
  CHECK(train::to_yaml(again) == train::to_yaml(c));
}

TEST_CASE("config errors name the key path, the line, the expected and found values", "[config]") {
  CHECK_THROWS_WITH(train::parse_train_config("train:\n  lr2: 1\n", "x.yaml"),
                    Contains("x.yaml:2: train.lr2: unknown key") && Contains("lr"));
  CHECK_THROWS_WITH(train::parse_train_config("train:\n  steps: many\n", "x.yaml"),
                    Contains("x.yaml:2: train.steps: expected an integer, found 'many'"));
  CHECK_THROWS_WITH(train::parse_train_config("train: [1, 2]\n", "x.yaml"),
                    Contains("train: expected a mapping of keys, found a list"));
  CHECK_THROWS_WITH(train::parse_train_config("lora: {targets: q_proj}\n", "x.yaml"),
                    Contains("lora.targets: expected a list of strings"));
  CHECK_THROWS_WITH(train::parse_train_config("method: qlorra\n", "x.yaml"),
                    Contains("method: expected full, qat, qlora or qat_lora, found 'qlorra'"));
  CHECK_THROWS_WITH(train::parse_train_config("quant: {weight: int5x}\n", "x.yaml"),
                    Contains("quant.weight: unknown format 'int5x'"));
  CHECK_THROWS_WITH(
      train::parse_train_config("method: qat\nquant: {weight: q4_k, fallback: q3_k}\n", "x.yaml"),
      Contains("quant.fallback: unknown format 'q3_k'"));
  CHECK_THROWS_WITH(train::parse_train_config("train: {autocast: bf16}\n", "x.yaml"),
                    Contains("train.autocast=bf16 needs train.device=cuda"));
  CHECK_THROWS_WITH(train::parse_train_config("data: {format: alpaca}\n", "x.yaml"),
                    Contains("data.pack: instruction data"));
  CHECK_THROWS_WITH(train::parse_train_config("train: {steps: 5, warmup_steps: 9}\n", "x.yaml"),
                    Contains("train.warmup_steps must be in [0, train.steps]"));
  CHECK_THROWS_WITH(train::parse_train_config("train: {lr: 1e-3\n", "x.yaml"),
                    Contains("not valid YAML"));
  CHECK_THROWS_WITH(train::parse_train_config("", "x.yaml", {"train.nope=3"}),
                    Contains("train.nope: unknown key"));
  CHECK_THROWS_WITH(train::parse_train_config("", "x.yaml", {"train.lr"}),
                    Contains("is not key=value"));
  CHECK_THROWS_WITH(train::parse_train_config("train: {lr: 1.0}", "x.yaml", {"train.lr.x=3"}),
                    Contains("'lr' is not a section"));
  CHECK_THROWS_WITH(train::parse_train_config("", "x.yaml", {"train.lr.x=3"}),
                    Contains("train.lr: expected a number, found a mapping"));
  CHECK_THROWS_WITH(train::load_train_config("/nonexistent/cfg.yaml"),
                    Contains("cannot open config /nonexistent/cfg.yaml"));
  CHECK_THROWS_WITH(train::parse_train_config("method: qat\nquant: {init: gptqq}\n", "x.yaml"),
                    Contains("quant.init: expected one of rtn, gptq, found 'gptqq'"));
  CHECK_THROWS_WITH(train::parse_train_config("method: qat_lora\nquant: {init: gptq}\n", "x.yaml"),
                    Contains("quant.init: gptq starts method qat"));
  CHECK_THROWS_WITH(train::parse_train_config(
                        "method: qat\nquant: {init: gptq, scale_mode: learnable}\n", "x.yaml"),
                    Contains("quant.scale_mode: dynamic and quant.delay_steps: 0"));
  CHECK_THROWS_WITH(train::parse_train_config(
                        "method: qat\nquant: {init: gptq, init_calibration: 0}\n", "x.yaml"),
                    Contains("quant.init_calibration must be >= 1"));
  CHECK_NOTHROW(train::parse_train_config("method: qat\nquant: {init: gptq, init_calibration: 8}\n",
                                          "x.yaml"));
}

TEST_CASE("the shipped recipe configs parse", "[config]") {
  for (const char* name : {"qat", "qlora", "qat_lora", "full"}) {
    const std::string path =
        std::string(QAT_SOURCE_DIR) + "/recipes/configs/smollm2-135m/" + name + ".yaml";
    INFO(path);
    CHECK_NOTHROW(train::load_train_config(path));
  }
}
