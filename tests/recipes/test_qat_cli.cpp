// The `qat` command line end to end on the real SmolLM2-135M: `qat train --nproc 2` (two Gloo
// ranks spawned by the launcher), `qat eval` of the run, and the errors a user gets for a bad
// override or a missing data file.
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iomanip>
#include <nlohmann/json.hpp>
#include <sstream>

#include "qat/io/gguf_file.h"
#include "qat/io/llama_mix.h"
#include "qat/io/remove_tree.h"
#include "qat/models/pretrained.h"
#include "tests/support/catch_torch.h"
#include "tests/support/helpers.h"
#include "trainers/checkpoint.h"
#include "trainers/metrics/metrics_log.h"
#include "trainers/metrics/training_plot.h"

namespace {

struct Output {
  int rc = -1;
  std::string text;  // stdout and stderr
};

Output run_qat(const std::string& args) {
  const std::string cmd = std::string(QAT_BINARY) + " " + args + " 2>&1";
  Output o;
  FILE* p = ::popen(cmd.c_str(), "r");
  REQUIRE(p != nullptr);
  char buf[4096];
  size_t n = 0;
  while ((n = std::fread(buf, 1, sizeof(buf), p)) > 0) o.text.append(buf, n);
  const int status = ::pclose(p);
  o.rc = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return o;
}

bool have_smollm2() {
  try {
    (void)qat::models::default_model_path();
    return true;
  } catch (...) {
    return false;
  }
}

const std::string kConfig = std::string(QAT_SOURCE_DIR) + "/recipes/configs/smollm2-135m/qat.yaml";
const std::string kSmall =
    " train.steps=2 train.warmup_steps=1 train.micro_batch=1 train.grad_accum=1 data.seq_len=32 "
    "data.max_documents=300 eval.sequences=2 eval.every=0 checkpoint.every=0 log.progress=lines";

}  // namespace

TEST_CASE("qat train --nproc 2 trains SmolLM2 on two Gloo ranks and qat eval reads the run",
          "[cli][dist]") {
  if (!have_smollm2()) {
    WARN("SmolLM2-135M not installed (scripts/bootstrap): skipped");
    return;
  }
  const std::string dir = qat::test::temp_dir();
  const Output t = run_qat("train " + kConfig + " --nproc 2 output_dir=" + dir + kSmall);
  INFO(t.text);
  REQUIRE(t.rc == 0);
  CHECK(t.text.find("ranks: 2 (gloo)") != std::string::npos);
  const auto ckpt = qat::train::load_checkpoint(dir);
  CHECK(ckpt.state.at("step") == 2);
  CHECK(ckpt.state.at("world_size") == 2);
  const auto records = qat::train::read_metrics(dir + "/metrics.jsonl").records;
  int train_lines = 0;
  for (const auto& r : records) train_lines += r.kind == "train";
  CHECK(train_lines == 2);
  CHECK(std::filesystem::exists(dir + "/loss.png") == qat::train::training_plots_available());

  const Output e = run_qat("eval " + dir + " --sequences 2");
  INFO(e.text);
  CHECK(e.rc == 0);
  const auto loss_at = e.text.find("eval: loss");
  REQUIRE(loss_at != std::string::npos);

  // The same run as if it had been trained on a GPU (the saved config says cuda and bf16; the
  // checkpoint's tensors are CPU safetensors either way): on a machine without CUDA, qat eval
  // falls back to the CPU in float32 and says so, and gives the same loss as above.
  if (!at::hasCUDA()) {
    const std::string state_path = qat::train::resolve_checkpoint(dir) + "/trainer_state.json";
    nlohmann::json state = nlohmann::json::parse(std::ifstream(state_path));
    std::string config = state.at("config").get<std::string>();
    for (const auto& [from, to] :
         {std::pair<std::string, std::string>{"device: cpu", "device: cuda"},
          {"dtype: fp32", "dtype: bf16"}}) {
      const auto at = config.find(from);
      REQUIRE(at != std::string::npos);
      config.replace(at, from.size(), to);
    }
    state["config"] = config;
    std::ofstream(state_path) << state.dump(2) << "\n";
    const Output g = run_qat("eval " + dir + " --sequences 2");
    INFO(g.text);
    CHECK(g.rc == 0);
    CHECK(g.text.find("evaluating on the CPU in float32") != std::string::npos);
    const auto g_loss = g.text.find("eval: loss");
    REQUIRE(g_loss != std::string::npos);
    CHECK(g.text.substr(g_loss, 40) == e.text.substr(loss_at, 40));
  }
  qat::io::remove_tree(dir);
}

TEST_CASE("qat train: bad overrides and missing files are clear errors", "[cli]") {
  const Output a = run_qat("train " + kConfig + " train.lr=fast");
  CHECK(a.rc == 1);
  CHECK(a.text.find("train.lr: expected a number, found 'fast'") != std::string::npos);
  const Output b = run_qat("train /nonexistent/recipe.yaml");
  CHECK(b.rc != 0);
  CHECK(b.text.find("/nonexistent/recipe.yaml") != std::string::npos);
  if (!have_smollm2()) return;
  const Output c =
      run_qat("train " + kConfig + " data.path=/nonexistent/corpus.txt output_dir=/tmp/qat-unused" +
              kSmall);
  CHECK(c.rc == 1);
  CHECK(c.text.find("/nonexistent/corpus.txt") != std::string::npos);
}

TEST_CASE("qat ptq calibrates static scales and saves a run that qat export writes as GGUF",
          "[cli]") {
  if (!have_smollm2()) {
    WARN("SmolLM2-135M not installed (scripts/bootstrap): skipped");
    return;
  }
  const std::string dir = qat::test::temp_dir();
  // int8 per-group weights with static (calibrated) scales: GGUF cannot store those scales as they
  // are, so the export re-quantizes to Q8_0 and reports the error.
  const Output p =
      run_qat("ptq " + kConfig + " output_dir=" + dir +
              "/run quant.weight=int8 quant.group_size=32 quant.scale_mode=static --calibration 2" +
              kSmall);
  INFO(p.text);
  REQUIRE(p.rc == 0);
  CHECK(p.text.find("calibrated static scales on 2 sequences") != std::string::npos);
  CHECK(p.text.find("PTQ int8") != std::string::npos);
  const Output again = run_qat("ptq " + kConfig + " output_dir=" + dir + "/run" + kSmall);
  CHECK(again.rc == 1);
  CHECK(again.text.find("already holds a run") != std::string::npos);
  const Output refused = run_qat("export " + dir + "/run --format gguf --out " + dir + "/ptq.gguf");
  CHECK(refused.rc == 1);
  CHECK(refused.text.find("--requantize") != std::string::npos);
  const Output e =
      run_qat("export " + dir + "/run --format gguf --requantize --out " + dir + "/ptq.gguf");
  INFO(e.text);
  CHECK(e.rc == 0);
  CHECK(e.text.find("Q8_0") != std::string::npos);
  CHECK(std::filesystem::exists(dir + "/ptq.gguf"));
  qat::io::remove_tree(dir);
}

TEST_CASE(
    "qat ptq --method gptq rounds SmolLM2 by GPTQ: eval, the GGUF export and quant.init=gptq "
    "deploy exactly that",
    "[cli][gptq]") {
  if (!have_smollm2()) {
    WARN("SmolLM2-135M not installed (scripts/bootstrap): skipped");
    return;
  }
  const std::string dir = qat::test::temp_dir();
  // The attention projections only (the MLP stays dense): the same path at a quarter of the cost.
  const std::string attention =
      " 'quant.exclude=[lm_head,embed_tokens,gate_proj,up_proj,down_proj]'";
  const Output p = run_qat("ptq " + kConfig + " output_dir=" + dir +
                           "/run --method gptq --calibration 4" + attention + kSmall);
  INFO(p.text);
  REQUIRE(p.rc == 0);
  CHECK(p.text.find("gptq: layer 30/30: 4 linears") != std::string::npos);
  CHECK(p.text.find("gptq: rounded 120 linears on 4 calibration sequences") != std::string::npos);
  // The table's GPTQ loss is what `qat eval` of the saved run gives.
  const size_t row = p.text.find("PTQ gguf_q4_0 GPTQ");
  REQUIRE(row != std::string::npos);
  double loss = 0;
  REQUIRE(std::sscanf(p.text.c_str() + row, "PTQ gguf_q4_0 GPTQ %lf", &loss) == 1);
  const Output e = run_qat("eval " + dir + "/run");
  INFO(e.text);
  REQUIRE(e.rc == 0);
  char want[32];
  std::snprintf(want, sizeof(want), "loss %.4f", loss);
  CHECK(e.text.find(want) != std::string::npos);
  // Its fidelity against the run's starting model (the float SmolLM2), llama-perplexity style.
  const Output f = run_qat("eval " + dir + "/run --reference --context 64 --chunks 2 --json " +
                           dir + "/fidelity.json");
  INFO(f.text);
  REQUIRE(f.rc == 0);
  CHECK(f.text.find("fidelity: 2 chunks of 64 tokens, 62 scored") != std::string::npos);
  std::ifstream fj(dir + "/fidelity.json");
  const nlohmann::json fid = nlohmann::json::parse(fj);
  CHECK(fid.at("kld_mean").get<double>() > 0);
  CHECK(fid.at("same_top1").get<double>() < 1);
  CHECK(fid.at("ppl").get<double>() > fid.at("ppl_base").get<double>() * 0.5);
  // The Q4_0 blocks hold GPTQ's rounding as it is (no re-quantization).
  const Output x = run_qat("export " + dir + "/run --format gguf --out " + dir + "/gptq.gguf");
  INFO(x.text);
  CHECK(x.rc == 0);
  CHECK(x.text.find("120  Q4_0 fake-quant gguf_q4_0 (exact)") != std::string::npos);
  // quant.init=gptq: QAT starts from the same rounding (same calibration sequences), so its step-0
  // held-out loss is the PTQ table's GPTQ loss.
  const Output t = run_qat("train " + kConfig + " output_dir=" + dir +
                           "/qat quant.init=gptq quant.init_calibration=4" + attention + kSmall);
  INFO(t.text);
  REQUIRE(t.rc == 0);
  CHECK(t.text.find("init: GPTQ rounded 120 linears on 4 calibration sequences") !=
        std::string::npos);
  std::snprintf(want, sizeof(want), "step 0  loss %.4f", loss);
  CHECK(t.text.find(want) != std::string::npos);
  // What GPTQ cannot take is refused before any work, with the reason.
  const Output k = run_qat("ptq " + kConfig + " output_dir=" + dir +
                           "/k --method gptq quant.weight=gguf_q4_k "
                           "quant.fallback=gguf_q5_0" +
                           kSmall);
  CHECK(k.rc == 1);
  CHECK(k.text.find("k-quant super-block") != std::string::npos);
  qat::io::remove_tree(dir);
}

TEST_CASE(
    "qat ptq with llama.cpp's Q4_K on SmolLM2: a fallback for the 576-wide layers, exact export",
    "[cli][kquant]") {
  if (!have_smollm2()) {
    WARN("SmolLM2-135M not installed (scripts/bootstrap): skipped");
    return;
  }
  const std::string dir = qat::test::temp_dir();
  const Output refused =
      run_qat("ptq " + kConfig + " output_dir=" + dir + "/no quant.weight=gguf_q4_k" + kSmall);
  CHECK(refused.rc == 1);
  CHECK(refused.text.find("in_features 576") != std::string::npos);
  CHECK(refused.text.find("quant.fallback") != std::string::npos);

  const Output p = run_qat("ptq " + kConfig + " output_dir=" + dir +
                           "/run quant.weight=gguf_q4_k quant.fallback=gguf_q5_0" + kSmall);
  INFO(p.text);
  REQUIRE(p.rc == 0);
  // The fake-quant weights are written as they are, no --requantize: ffn_down (1536 inputs) as
  // Q4_K super-blocks, the 576-wide projections as Q5_0 (llama.cpp's own fallback for Q4_K).
  const Output e = run_qat("export " + dir + "/run --format gguf --out " + dir + "/q4k.gguf");
  INFO(e.text);
  REQUIRE(e.rc == 0);
  const qat::io::GgufFile f = qat::io::GgufFile::open(dir + "/q4k.gguf");
  CHECK(f.tensor_info("blk.0.ffn_down.weight").type == qat::io::GgmlType::kQ4_K);
  CHECK(f.tensor_info("blk.29.ffn_down.weight").type == qat::io::GgmlType::kQ4_K);
  CHECK(f.tensor_info("blk.0.attn_q.weight").type == qat::io::GgmlType::kQ5_0);
  CHECK(f.tensor_info("blk.0.ffn_up.weight").type == qat::io::GgmlType::kQ5_0);
  qat::io::remove_tree(dir);
}

TEST_CASE(
    "qat ptq with llama.cpp's Q4_K_M mixture: every layer in llama-quantize's type, exported "
    "exactly",
    "[cli][kquant]") {
  if (!have_smollm2()) {
    WARN("SmolLM2-135M not installed (scripts/bootstrap): skipped");
    return;
  }
  const std::string dir = qat::test::temp_dir();
  const Output p =
      run_qat("ptq " + kConfig + " output_dir=" + dir + "/run quant.weight=gguf_q4_k_m" + kSmall);
  INFO(p.text);
  REQUIRE(p.rc == 0);
  // The trained (here: PTQ) layers are written as they are, each in the mixture's type for it
  // (that a dense export with these types is llama-quantize's file: test_export_llama_cpp.cpp).
  const Output e =
      run_qat("export " + dir + "/run --format gguf --gguf-type Q4_K_M --out " + dir + "/run.gguf");
  INFO(e.text);
  REQUIRE(e.rc == 0);
  CHECK(e.text.find("(exact)") != std::string::npos);
  const qat::io::GgufFile run = qat::io::GgufFile::open(dir + "/run.gguf");
  int quantized = 0;
  for (const auto& t : run.tensors()) {
    if (t.type == qat::io::GgmlType::kF32) continue;  // norms
    CAPTURE(t.name);
    CHECK(t.type == qat::io::llama_mix_type("q4_k_m", t.name, 30, t.ne[0], /*tied=*/true));
    ++quantized;
  }
  CHECK(quantized == 7 * 30 + 1);
  CHECK(run.tensor_info("blk.0.attn_v.weight").type == qat::io::GgmlType::kQ8_0);  // Q6_K, 576 wide
  CHECK(run.tensor_info("blk.3.attn_v.weight").type == qat::io::GgmlType::kQ5_0);  // Q4_K, 576 wide
  CHECK(run.tensor_info("blk.5.ffn_down.weight").type == qat::io::GgmlType::kQ6_K);
  CHECK(run.tensor_info("blk.4.ffn_down.weight").type == qat::io::GgmlType::kQ4_K);
  CHECK(run.metadata().get_u32("general.file_type") == 15);
  qat::io::remove_tree(dir);
}

TEST_CASE(
    "qat sample-data writes teacher samples that resume to the same file, and training reads "
    "them as data.extra_train without touching the held-out split",
    "[cli][distill]") {
  if (!have_smollm2()) {
    WARN("SmolLM2-135M not installed (scripts/bootstrap): skipped");
    return;
  }
  auto text_of = [](const std::string& path) {
    const std::vector<uint8_t> b = qat::test::read_bytes(path);
    return std::string(b.begin(), b.end());
  };
  const std::string dir = qat::test::temp_dir();
  const std::string opts = " -n 4 --batch 2 --tokens 6 --seed 3";
  const Output whole = run_qat("sample-data --out " + dir + "/whole.jsonl" + opts);
  INFO(whole.text);
  REQUIRE(whole.rc == 0);
  const std::string expect = text_of(dir + "/whole.jsonl");
  std::istringstream lines(expect);
  std::string line;
  int64_t n = 0;
  std::vector<std::string> texts;
  while (std::getline(lines, line)) {
    const auto rec = nlohmann::json::parse(line);
    texts.push_back(rec.at("text").get<std::string>());
    CHECK(rec.at("sample") == n++);
    CHECK(rec.at("text").is_string());
    CHECK(rec.at("tokens").get<int64_t>() >= 1);  // the random first token at least
  }
  CHECK(n == 4);

  // Half, then a torn line as a crash leaves it, then the rest: the same file.
  const std::string part = dir + "/part.jsonl";
  REQUIRE(run_qat("sample-data --out " + part + " -n 2 --batch 2 --tokens 6 --seed 3").rc == 0);
  { std::ofstream(part, std::ios::app) << R"({"text": "torn)"; }
  const Output rest = run_qat("sample-data --out " + part + opts);
  INFO(rest.text);
  REQUIRE(rest.rc == 0);
  CHECK(rest.text.find("continuing") != std::string::npos);
  CHECK(text_of(part) == expect);
  const Output other = run_qat("sample-data --out " + part + " -n 4 --batch 2 --tokens 6 --seed 4");
  CHECK(other.rc == 1);
  CHECK(other.text.find("was written with seed=3, this run has seed=4") != std::string::npos);

  // Training: the samples join the training split only (repeated twice).
  const Output t = run_qat("train " + kConfig + " output_dir=" + dir + "/run" + kSmall +
                           " data.extra_train=[" + part + "] data.extra_repeat=2");
  INFO(t.text);
  REQUIRE(t.rc == 0);
  CHECK(t.text.find("(300 documents + 8 training-only from data.extra_train)") !=
        std::string::npos);
  CHECK(t.text.find("/ 22 held-out sequences") != std::string::npos);  // as without extra_train
  const std::string with = " data.extra_train=[" + part + "] --out " + dir;
  REQUIRE(run_qat("text " + kConfig + " --out " + dir + "/heldout.txt").rc == 0);
  REQUIRE(run_qat("text " + kConfig + with + "/heldout-extra.txt").rc == 0);
  CHECK(text_of(dir + "/heldout-extra.txt") == text_of(dir + "/heldout.txt"));
  REQUIRE(run_qat("text " + kConfig + " --split train --out " + dir + "/train.txt").rc == 0);
  REQUIRE(run_qat("text " + kConfig + " --split train" + with + "/train-extra.txt").rc == 0);
  std::string samples;  // the training split gains the samples' texts, in order
  for (const std::string& t : texts) samples += "\n\n" + t;
  CHECK(text_of(dir + "/train-extra.txt") == text_of(dir + "/train.txt") + samples);
  const Output missing = run_qat("train " + kConfig + " output_dir=" + dir + "/run2" + kSmall +
                                 " data.extra_train=[" + dir + "/none.jsonl]");
  CHECK(missing.rc == 1);
  CHECK(missing.text.find(dir + "/none.jsonl") != std::string::npos);
  CHECK(missing.text.find("qat sample-data") != std::string::npos);
  qat::io::remove_tree(dir);
}

TEST_CASE("qat export --reference writes a model card whose fidelity equals qat eval's",
          "[cli][export]") {
  if (!have_smollm2()) {
    WARN("SmolLM2-135M not installed (scripts/bootstrap): skipped");
    return;
  }
  const std::string dir = qat::test::temp_dir();
  const std::string model = qat::models::default_model_path();
  {  // Genesis 1, repeated: enough tokens for several 64-token chunks.
    std::ofstream text(dir + "/text.txt");
    for (int i = 0; i < 6; ++i)
      text << "In the beginning God created the heaven and the earth. And the earth was without "
              "form, and void; and darkness was upon the face of the deep. And the Spirit of God "
              "moved upon the face of the waters. And God said, Let there be light: and there "
              "was light.\n";
  }
  const Output q =
      run_qat("export " + model + " --format gguf --gguf-type q4_0 --out " + dir + "/q4_0.gguf");
  INFO(q.text);
  REQUIRE(q.rc == 0);
  const std::string fid = " --reference " + model + " --text " + dir + "/text.txt --context 64";
  const Output e = run_qat("export " + dir + "/q4_0.gguf --format hf --out " + dir + "/hf" + fid);
  INFO(e.text);
  REQUIRE(e.rc == 0);
  const Output v = run_qat("eval " + dir + "/q4_0.gguf" + fid + " --json " + dir + "/eval.json");
  INFO(v.text);
  REQUIRE(v.rc == 0);
  const auto ev = nlohmann::json::parse(std::ifstream(dir + "/eval.json"));
  CHECK(ev.at("kld_mean").get<double>() > 0.05);  // Q4_0 moved the model: the figure is real
  std::ifstream f(dir + "/hf/README.md");
  const std::string card((std::istreambuf_iterator<char>(f)), {});
  CHECK(card.rfind("---\nbase_model: ", 0) == 0);
  CHECK(card.find("library_name: transformers") != std::string::npos);
  CHECK(card.find("AutoModelForCausalLM.from_pretrained") != std::string::npos);
  CHECK(card.find("from vllm import LLM") != std::string::npos);
  CHECK(card.find("--format gguf") != std::string::npos);
  std::ostringstream kld;
  kld << std::fixed << std::setprecision(5) << ev.at("kld_mean").get<double>();
  CAPTURE(card);
  CHECK(card.find("| " + kld.str() + " |") != std::string::npos);  // measured on the export
  const Output bad =
      run_qat("export " + model + " --format hf --out " + dir + "/x --reference " + model);
  CHECK(bad.rc != 0);
  CHECK(bad.text.find("--reference and --text go together") != std::string::npos);
  const Output gguf = run_qat("export " + model + " --format gguf --out " + dir + "/x.gguf" + fid);
  CHECK(gguf.rc != 0);
  CHECK(gguf.text.find("qat eval FILE.gguf --reference") != std::string::npos);
  qat::io::remove_tree(dir);
}
