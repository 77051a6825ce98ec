#include "recipes/sample_data_command.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <iomanip>
#include <iostream>
#include <memory>
#include <nlohmann/json.hpp>

#include "data/dataset/random.h"
#include "qat/models/generate.h"
#include "qat/models/pretrained.h"

namespace qat::recipes {
namespace {

namespace fs = std::filesystem;

// What a resumed run must share with the file it continues.
nlohmann::ordered_json settings(const SampleDataOptions& o, const std::string& model) {
  return {{"model", model},
          {"tokens", o.tokens},
          {"batch", o.batch},
          {"greedy_tokens", o.greedy_tokens},
          {"temperature", o.sampling.temperature},
          {"top_k", o.sampling.top_k},
          {"top_p", o.sampling.top_p},
          {"seed", o.sampling.seed},
          {"dtype", o.dtype}};
}

// The complete batches already in `path` (records 0 .. n-1 in order, n a multiple of `batch`), as
// lines; a torn last line or a partial batch is dropped.
std::vector<std::string> complete_batches(const std::string& path, int64_t batch) {
  std::vector<std::string> lines;
  std::ifstream in(path, std::ios::binary);
  std::string line;
  while (std::getline(in, line) && !in.eof()) {  // a last line without '\n' may be torn
    const auto rec = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (!rec.is_object() || !rec.contains("sample") || !rec["sample"].is_number_integer() ||
        rec["sample"].get<int64_t>() != static_cast<int64_t>(lines.size())) {
      break;
    }
    lines.push_back(line);
  }
  lines.resize(lines.size() / static_cast<size_t>(batch) * static_cast<size_t>(batch));
  return lines;
}

// Reopens opts.out for appending after its complete batches (a fresh file when there is none);
// returns how many samples it already holds.
int64_t prepare_output(const SampleDataOptions& opts, const nlohmann::ordered_json& want) {
  const std::string meta_path = opts.out + ".meta.json";
  if (fs::exists(opts.out) && fs::exists(meta_path)) {
    std::ifstream m(meta_path);
    const auto have = nlohmann::ordered_json::parse(m, nullptr, /*allow_exceptions=*/false);
    for (const auto& [key, value] : want.items()) {
      TORCH_CHECK(have.is_object() && have.contains(key) && have[key] == value, "sample-data: '",
                  opts.out, "' was written with ", key, "=",
                  have.is_object() && have.contains(key) ? have[key].dump() : "(missing)",
                  ", this run has ", key, "=", value.dump(),
                  "; use the same settings to continue it, or another --out");
    }
    const std::vector<std::string> lines = complete_batches(opts.out, opts.batch);
    const std::string tmp = opts.out + ".tmp";
    {
      std::ofstream f(tmp, std::ios::binary | std::ios::trunc);
      for (const auto& l : lines) f << l << '\n';
      TORCH_CHECK(f.good(), "sample-data: cannot write '", tmp, "'");
    }
    fs::rename(tmp, opts.out);
    return static_cast<int64_t>(lines.size());
  }
  TORCH_CHECK(!fs::exists(opts.out), "sample-data: '", opts.out, "' exists but '", meta_path,
              "' does not, so it cannot be continued; remove it or choose another --out");
  if (fs::path(opts.out).has_parent_path())
    fs::create_directories(fs::path(opts.out).parent_path());
  std::ofstream(opts.out, std::ios::binary | std::ios::trunc);
  std::ofstream m(meta_path, std::ios::trunc);
  m << want.dump(2) << "\n";
  TORCH_CHECK(m.good(), "sample-data: cannot write '", meta_path, "'");
  return 0;
}

void check_options(const SampleDataOptions& o) {
  TORCH_CHECK(!o.out.empty(), "sample-data: --out FILE.jsonl is required");
  TORCH_CHECK(o.sequences >= 1, "sample-data: --sequences must be >= 1, got ", o.sequences);
  TORCH_CHECK(o.tokens >= 1, "sample-data: --tokens must be >= 1, got ", o.tokens);
  TORCH_CHECK(o.batch >= 1, "sample-data: --batch must be >= 1, got ", o.batch);
  TORCH_CHECK(o.greedy_tokens >= 0 && o.greedy_tokens <= o.tokens,
              "sample-data: --greedy-tokens must be in [0, --tokens], got ", o.greedy_tokens);
}

}  // namespace

namespace {

// How each sample starts and continues.
struct Sampling {
  std::vector<int64_t> ordinary;  // first tokens: ids both tokenizer and model know, not special
  std::vector<int32_t> prefix;    // BOS when the tokenizer adds one, else nothing
  models::GenerateConfig generate;
};

Sampling make_sampling(const data::Tokenizer& tok, int64_t model_vocab,
                       const SampleDataOptions& opts) {
  Sampling s;
  const int32_t vocab = static_cast<int32_t>(std::min<int64_t>(tok.vocab_size(), model_vocab));
  for (int32_t id = 0; id < vocab; ++id) {
    // A sample ends at EOS or any other control token.
    (tok.is_special(id) ? s.generate.stop_ids : s.ordinary).push_back(id);
  }
  TORCH_CHECK(!s.ordinary.empty(), "sample-data: the tokenizer has no ordinary tokens");
  s.prefix = tok.encode("", /*add_special=*/true);
  s.generate.max_new_tokens = opts.tokens;
  s.generate.greedy_tokens = opts.greedy_tokens;
  s.generate.sampling = opts.sampling;
  return s;
}

// Samples [first, first + n) and appends their records to `out`; returns the tokens generated.
int64_t sample_batch(models::LlamaForCausalLM& model, const data::Tokenizer& tok, const Sampling& s,
                     uint64_t seed, int64_t first, int64_t n, std::ostream& out) {
  std::vector<std::vector<int64_t>> prompts;
  std::vector<uint64_t> seeds;
  for (int64_t i = first; i < first + n; ++i) {
    data::SplitMix64 rng(data::derive_seed(seed, static_cast<uint64_t>(i)));
    std::vector<int64_t> prompt(s.prefix.begin(), s.prefix.end());
    prompt.push_back(s.ordinary[rng.below(s.ordinary.size())]);
    prompts.push_back(std::move(prompt));
    seeds.push_back(rng.next());
  }
  const auto rows = models::generate_batch(model, prompts, seeds, s.generate);
  int64_t generated = 0;
  for (int64_t r = 0; r < n; ++r) {
    const auto& prompt = prompts[static_cast<size_t>(r)];
    std::vector<int32_t> ids(prompt.begin() + static_cast<std::ptrdiff_t>(s.prefix.size()),
                             prompt.end());
    for (int64_t id : rows[static_cast<size_t>(r)]) {
      if (!tok.is_special(static_cast<int32_t>(id))) ids.push_back(static_cast<int32_t>(id));
    }
    generated += static_cast<int64_t>(rows[static_cast<size_t>(r)].size());
    const nlohmann::ordered_json rec = {{"text", tok.decode(ids, /*skip_special=*/true)},
                                        {"sample", first + r},
                                        {"tokens", ids.size()}};
    out << rec.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) << '\n';
  }
  return generated;
}

}  // namespace

int run_sample_data(const SampleDataOptions& opts, std::ostream& log) {
  check_options(opts);
  const std::string path = opts.model.empty() ? models::default_model_path() : opts.model;
  const auto options =
      at::TensorOptions()
          .dtype(parse_dtype_option(opts.dtype, {at::kFloat, at::kBFloat16}, "sample-data"))
          .device(opts.device);
  models::Pretrained p = models::load_pretrained(path, options);
  TORCH_CHECK(p.tokenizer, "sample-data: '", path, "' carries no tokenizer");
  const Sampling sampling = make_sampling(*p.tokenizer, p.model->config().vocab_size, opts);
  const int64_t resumed = prepare_output(opts, settings(opts, path));
  if (resumed > 0) {
    log << "[sample-data: continuing " << opts.out << " after " << resumed << " samples]\n";
  }
  std::ofstream out(opts.out, std::ios::binary | std::ios::app);
  const auto t0 = std::chrono::steady_clock::now();
  int64_t generated = 0;
  for (int64_t done = resumed; done < opts.sequences;) {
    const int64_t n = std::min(opts.batch, opts.sequences - done);
    generated += sample_batch(*p.model, *p.tokenizer, sampling, opts.sampling.seed, done, n, out);
    out.flush();
    TORCH_CHECK(out.good(), "sample-data: cannot write '", opts.out, "'");
    done += n;
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    log << "[sample-data] " << done << "/" << opts.sequences << " samples, " << generated
        << " new tokens in " << std::fixed << std::setprecision(1) << s << " s ("
        << generated / std::max(s, 1e-9) << " tokens/s, ETA "
        << static_cast<double>(opts.sequences - done) * s / static_cast<double>(done - resumed)
        << " s)\n"
        << std::defaultfloat;
  }
  log << "[sample-data] wrote " << opts.out << " (" << opts.sequences << " samples)\n";
  return 0;
}

void add_sample_data_command(CLI::App& app, CommandList& commands) {
  auto o = std::make_shared<SampleDataOptions>();
  auto* c = app.add_subcommand(
      "sample-data",
      "Sample text from a model into a JSON Lines file: distillation data that follows the "
      "teacher's own distribution (resumes a file it left unfinished)");
  c->add_option("model", o->model, "a .gguf file or a Hugging Face directory (default: SmolLM2)");
  c->add_option("-o,--out", o->out, "the .jsonl file to write")->required();
  c->add_option("-n,--sequences", o->sequences, "samples to write");
  c->add_option("--tokens", o->tokens, "new tokens per sample at most (a sample ends at EOS)");
  c->add_option("--batch", o->batch, "samples decoded together");
  c->add_option("--greedy-tokens", o->greedy_tokens, "the first n new tokens are the argmax");
  add_sampling_options(*c, o->sampling, "seed of the first tokens and of the sampling");
  c->add_option("--dtype", o->dtype, "fp32 or bf16");
  c->add_option("--device", o->device, "cpu or cuda");
  commands.push_back({c, [o] { return run_sample_data(*o, std::cerr); }});
}

}  // namespace qat::recipes
