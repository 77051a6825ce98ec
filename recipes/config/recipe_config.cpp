#include "recipes/config/recipe_config.h"

#include <c10/util/Exception.h>
#include <yaml-cpp/yaml.h>

#include <fstream>
#include <sstream>

#include "qat/io/llama_mix.h"
#include "recipes/config/field_table.h"

namespace qat::recipes {

// Format-valued keys: written as their names, parsed into specs (found by the field table's
// Reader and Writer through argument-dependent lookup, so they live beside the types).
static std::string config_text(const WeightFormat& f) {
  return f.name;
}
static std::optional<std::string> config_parse(const std::string& text, WeightFormat& out) {
  try {
    out = WeightFormat::named(text);
    return std::nullopt;
  } catch (const c10::Error&) {
    return "unknown format '" + text +
           "' (see `qat formats`, or a llama.cpp mixture: " + io::known_llama_mixes() + ")";
  }
}
static std::string config_text(const OptionalFormat& f) {
  return f.name;
}
static std::optional<std::string> config_parse(const std::string& text, OptionalFormat& out) {
  out = OptionalFormat{};
  if (text == "none") return std::nullopt;
  try {
    out.spec = scheme::QuantSpec::from_name(text);
    out.name = text;
    return std::nullopt;
  } catch (const c10::Error&) {
    return "unknown format '" + text + "' (none, or a format from `qat formats`)";
  }
}

namespace config {

// How each enum is written (first name canonical, later ones aliases).
template <>
struct EnumNames<Method> {
  static const std::vector<std::pair<Method, const char*>>& get() {
    static const std::vector<std::pair<Method, const char*>> k{{Method::kFull, "full"},
                                                               {Method::kQat, "qat"},
                                                               {Method::kQlora, "qlora"},
                                                               {Method::kQatLora, "qat_lora"},
                                                               {Method::kLora, "lora"}};
    return k;
  }
};
template <>
struct EnumNames<ModelDtype> {
  static const std::vector<std::pair<ModelDtype, const char*>>& get() {
    static const std::vector<std::pair<ModelDtype, const char*>> k{{ModelDtype::kFp32, "fp32"},
                                                                   {ModelDtype::kBf16, "bf16"}};
    return k;
  }
};
template <>
struct EnumNames<DataFormat> {
  static const std::vector<std::pair<DataFormat, const char*>>& get() {
    static const std::vector<std::pair<DataFormat, const char*>> k{{DataFormat::kText, "text"},
                                                                   {DataFormat::kJsonl, "jsonl"},
                                                                   {DataFormat::kAlpaca, "alpaca"},
                                                                   {DataFormat::kChat, "chat"}};
    return k;
  }
};
template <>
struct EnumNames<QuantInit> {
  static const std::vector<std::pair<QuantInit, const char*>>& get() {
    static const std::vector<std::pair<QuantInit, const char*>> k{
        {QuantInit::kRtn, "rtn"},
        {QuantInit::kGptq, "gptq"},
        {QuantInit::kAwq, "awq"},
        {QuantInit::kAwqGptq, "awq_gptq"},
        {QuantInit::kSmoothQuant, "smoothquant"}};
    return k;
  }
};
// "lsq" is the fake-quant library's own name for learnable scales (LSQ / LSQ+).
template <>
struct EnumNames<fake_quant::ScaleMode> {
  using E = fake_quant::ScaleMode;
  static const std::vector<std::pair<E, const char*>>& get() {
    static const std::vector<std::pair<E, const char*>> k{{E::kDynamic, "dynamic"},
                                                          {E::kStatic, "static"},
                                                          {E::kLearnable, "learnable"},
                                                          {E::kLearnable, "lsq"}};
    return k;
  }
};
template <>
struct EnumNames<scheme::ScaleDtype> {
  using E = scheme::ScaleDtype;
  static const std::vector<std::pair<E, const char*>>& get() {
    static const std::vector<std::pair<E, const char*>> k{
        {E::kFloat32, "fp32"}, {E::kFloat16, "fp16"}, {E::kBFloat16, "bf16"}};
    return k;
  }
};
template <>
struct EnumNames<fake_quant::RangeMethod> {
  using E = fake_quant::RangeMethod;
  static const std::vector<std::pair<E, const char*>>& get() {
    static const std::vector<std::pair<E, const char*>> k{
        {E::kMinMax, "minmax"}, {E::kPercentile, "percentile"}, {E::kMse, "mse"}};
    return k;
  }
};
template <>
struct EnumNames<TeacherDtype> {
  using E = TeacherDtype;
  static const std::vector<std::pair<E, const char*>>& get() {
    static const std::vector<std::pair<E, const char*>> k{
        {E::kFp32, "fp32"}, {E::kBf16, "bf16"}, {E::kNf4, "nf4"}};
    return k;
  }
};
template <>
struct EnumNames<fake_quant::GradMode> {
  using E = fake_quant::GradMode;
  static const std::vector<std::pair<E, const char*>>& get() {
    static const std::vector<std::pair<E, const char*>> k{{E::kSte, "ste"},
                                                          {E::kClippedSte, "clipped_ste"}};
    return k;
  }
};
template <>
struct EnumNames<train::Schedule> {
  using E = train::Schedule;
  static const std::vector<std::pair<E, const char*>>& get() {
    static const std::vector<std::pair<E, const char*>> k{
        {E::kCosine, "cosine"}, {E::kLinear, "linear"}, {E::kConstant, "constant"}};
    return k;
  }
};
template <>
struct EnumNames<train::Device> {
  using E = train::Device;
  static const std::vector<std::pair<E, const char*>>& get() {
    static const std::vector<std::pair<E, const char*>> k{{E::kCpu, "cpu"}, {E::kCuda, "cuda"}};
    return k;
  }
};
template <>
struct EnumNames<train::Autocast> {
  using E = train::Autocast;
  static const std::vector<std::pair<E, const char*>>& get() {
    static const std::vector<std::pair<E, const char*>> k{
        {E::kAuto, "auto"}, {E::kBf16, "bf16"}, {E::kOff, "off"}};
    return k;
  }
};
template <>
struct EnumNames<train::ShardMode> {
  using E = train::ShardMode;
  static const std::vector<std::pair<E, const char*>>& get() {
    static const std::vector<std::pair<E, const char*>> k{{E::kNone, "none"},
                                                          {E::kOptimizer, "optimizer"}};
    return k;
  }
};
template <>
struct EnumNames<train::Progress> {
  using E = train::Progress;
  static const std::vector<std::pair<E, const char*>>& get() {
    static const std::vector<std::pair<E, const char*>> k{
        {E::kAuto, "auto"}, {E::kBar, "bar"}, {E::kLines, "lines"}, {E::kOff, "off"}};
    return k;
  }
};

// The field table: every key of every section, once.

template <class V>
void visit_fields(V& v, ModelSection& s) {
  v.field("path", s.path);
  v.field("dtype", s.dtype);
}

template <class V>
void visit_fields(V& v, QuantSection& s) {
  v.field("weight", s.weight);
  v.field("fallback", s.fallback);
  v.field("group_size", s.group_size, at_least<int64_t>(0));
  v.field("scale_dtype", s.scale_dtype);
  v.field("activation", s.activation);
  v.field("scale_mode", s.scale_mode);
  v.field("range", s.range);
  v.field("grad", s.grad);
  v.field("delay_steps", s.delay_steps, at_least<int64_t>(0));
  v.field("freeze_observer_after", s.freeze_observer_after, at_least<int64_t>(-1));
  v.field("exclude", s.exclude);
  v.field("init", s.init);
  v.field("init_calibration", s.init_calibration, at_least<int64_t>(1));
}

template <class V>
void visit_fields(V& v, LoraSection& s) {
  v.field("r", s.r, at_least<int64_t>(1));
  v.field("alpha", s.alpha, [](const double& a) -> std::optional<std::string> {
    if (a > 0) return std::nullopt;
    return std::string("must be > 0");
  });
  v.field("dropout", s.dropout, in_range(0.0, 1.0, /*hi_open=*/true));
  v.field("rslora", s.rslora);
  v.field("targets", s.targets,
          [](const std::vector<std::string>& t) -> std::optional<std::string> {
            if (!t.empty()) return std::nullopt;
            return std::string("is empty: name the projections to adapt");
          });
}

template <class V>
void visit_fields(V& v, Nf4Section& s) {
  v.field("double_quant", s.double_quant);
  v.field("block_size", s.block_size, [](const int64_t& b) -> std::optional<std::string> {
    if (b >= 2 && b % 2 == 0) return std::nullopt;
    return std::string("must be even and >= 2");
  });
}

template <class V>
void visit_fields(V& v, DistillSection& s) {
  v.field("enabled", s.enabled);
  v.field("teacher", s.teacher, non_empty());
  v.field("teacher_dtype", s.teacher_dtype);
  v.field("temperature", s.temperature, [](const double& t) -> std::optional<std::string> {
    if (t > 0) return std::nullopt;
    return std::string("must be > 0");
  });
  v.field("ce_weight", s.ce_weight, in_range(0.0, 1.0, /*hi_open=*/true));
  v.field("chunk_tokens", s.chunk_tokens, at_least<int64_t>(0));
}

template <class V>
void visit_fields(V& v, DataSection& s) {
  v.field("format", s.format);
  v.field("path", s.path);
  v.field("field", s.field);
  v.field("seq_len", s.seq_len, at_least<int64_t>(2));
  v.field("pack", s.pack);
  v.field("eval_fraction", s.eval_fraction, in_range(0.0, 1.0, /*hi_open=*/true));
  v.field("max_documents", s.max_documents, at_least<int64_t>(0));
  v.field("extra_train", s.extra_train);
  v.field("extra_repeat", s.extra_repeat, at_least<int64_t>(1));
}

template <class V>
void visit_fields(V& v, train::TrainSection& s) {
  v.field("steps", s.steps, at_least<int64_t>(1));
  v.field("micro_batch", s.micro_batch, at_least<int64_t>(1));
  v.field("grad_accum", s.grad_accum, at_least<int64_t>(1));
  v.field("lr", s.lr);
  v.field("schedule", s.schedule);
  v.field("warmup_steps", s.warmup_steps);
  v.field("min_lr_ratio", s.min_lr_ratio);
  v.field("weight_decay", s.weight_decay);
  v.field("beta1", s.beta1);
  v.field("beta2", s.beta2);
  v.field("eps", s.eps);
  v.field("max_grad_norm", s.max_grad_norm, at_least(0.0));
  v.field("seed", s.seed);
  v.field("activation_checkpointing", s.activation_checkpointing);
  v.field("device", s.device);
  v.field("autocast", s.autocast);
  v.field("dist_timeout_s", s.dist_timeout_s, at_least<int64_t>(1));
  v.field("shard", s.shard);
}

template <class V>
void visit_fields(V& v, train::EvalSection& s) {
  v.field("every", s.every, at_least<int64_t>(0));
  v.field("sequences", s.sequences, at_least<int64_t>(0));
  v.field("at_start", s.at_start);
}

template <class V>
void visit_fields(V& v, train::CheckpointSection& s) {
  v.field("every", s.every, at_least<int64_t>(0));
  v.field("keep_last", s.keep_last, at_least<int64_t>(1));
}

template <class V>
void visit_fields(V& v, train::LogSection& s) {
  v.field("every", s.every, at_least<int64_t>(1));
  v.field("progress", s.progress);
  v.field("plot", s.plot);
  v.field("tensorboard", s.tensorboard);
}

// The whole config. Part::kRun marks what may change when a run resumes.
template <class V>
void visit_fields(V& v, RecipeConfig& c) {
  v.field("output_dir", c.output_dir, Part::kRun, non_empty());
  v.field("resume", c.resume, Part::kRun);
  v.field("method", c.method);
  v.section("model", c.model);
  v.section("quant", c.quant);
  v.section("lora", c.lora);
  v.section("nf4", c.nf4);
  v.section("distill", c.distill);
  v.section("data", c.data);
  v.section("train", c.train, Part::kRun);
  v.section("eval", c.eval, Part::kRun);
  v.section("checkpoint", c.checkpoint, Part::kRun);
  v.section("log", c.log, Part::kRun);
}

}  // namespace config

namespace {

void apply_override(YAML::Node& root, const std::string& assignment) {
  const auto eq = assignment.find('=');
  TORCH_CHECK(eq != std::string::npos && eq > 0, "override '", assignment,
              "' is not key=value (e.g. train.lr=1e-4)");
  const std::string key = assignment.substr(0, eq);
  const std::string value = assignment.substr(eq + 1);
  std::vector<std::string> parts;
  std::stringstream ss(key);
  for (std::string part; std::getline(ss, part, '.');) {
    TORCH_CHECK(!part.empty(), "override '", assignment, "' has an empty key part");
    parts.push_back(part);
  }
  YAML::Node parsed;
  try {
    parsed = YAML::Load(value);
  } catch (const YAML::Exception& e) {
    TORCH_CHECK(false, "override ", key, ": cannot parse value '", value, "': ", e.msg);
  }
  // yaml-cpp nodes are references: walk with fresh handles (operator= on a held node would
  // overwrite it instead of rebinding).
  std::vector<YAML::Node> chain{root};
  for (size_t i = 0; i + 1 < parts.size(); ++i) {
    YAML::Node next = chain.back()[parts[i]];
    TORCH_CHECK(!next.IsDefined() || next.IsNull() || next.IsMap(), "override ", key, ": '",
                parts[i], "' is not a section");
    if (!next.IsDefined() || next.IsNull())
      chain.back()[parts[i]] = YAML::Node(YAML::NodeType::Map);
    chain.push_back(chain.back()[parts[i]]);
  }
  chain.back()[parts.back()] = parsed;
}

// The combinations no single key can check.
void validate_combinations(const RecipeConfig& c) {
  const std::string at = c.source + ": ";
  const auto& quant = c.quant;
  if (quant.init == QuantInit::kAwq || quant.init == QuantInit::kAwqGptq ||
      quant.init == QuantInit::kSmoothQuant) {
    TORCH_CHECK(c.method == Method::kQat, at, "quant.init: ", config::enum_name(quant.init),
                " starts method qat from channel-scaled weights; method ", to_string(c.method),
                " does not train fake-quant weights (use quant.init: rtn)");
    TORCH_CHECK(quant.scale_mode == fake_quant::ScaleMode::kDynamic && quant.delay_steps == 0, at,
                "quant.init: ", config::enum_name(quant.init),
                " needs quant.scale_mode: dynamic and quant.delay_steps: 0 (the scaled weights "
                "are rounded with the scales fake quant computes from them)");
  }
  if (quant.init == QuantInit::kGptq) {
    TORCH_CHECK(c.method == Method::kQat, at,
                "quant.init: gptq starts method qat from GPTQ-rounded weights; method ",
                to_string(c.method), " does not train fake-quant weights (use quant.init: rtn)");
    // GPTQ rounds against the scales fake quant uses from the first step: ggml's rule per block
    // (dynamic), or the learned block scales as they start (ggml's rule on the float weight).
    const bool learned_blocks =
        quant.scale_mode == fake_quant::ScaleMode::kLearnable &&
        (quant.weight.mix ||
         (quant.weight.spec && fake_quant::learns_block_scales(quant.weight.spec->format)));
    TORCH_CHECK((quant.scale_mode == fake_quant::ScaleMode::kDynamic || learned_blocks) &&
                    quant.delay_steps == 0,
                at,
                "quant.init: gptq needs quant.scale_mode: dynamic (or learnable with a ggml block ",
                "format such as gguf_q4_0, a k-quant or a mixture such as gguf_q4_k_m) and "
                "quant.delay_steps: 0 (GPTQ rounds with the scales ",
                "fake quant uses from the first step)");
  }
  const bool instruction =
      c.data.format == DataFormat::kAlpaca || c.data.format == DataFormat::kChat;
  TORCH_CHECK(!(c.data.pack && instruction), at, "data.pack: instruction data (",
              config::enum_name(c.data.format), ") is not packed; set data.pack=false");
  TORCH_CHECK(c.data.extra_train.empty() || !instruction, at,
              "data.extra_train: training-only text joins text or jsonl data, not ",
              config::enum_name(c.data.format), " records");
  TORCH_CHECK(c.train.warmup_steps >= 0 && c.train.warmup_steps <= c.train.steps, at,
              "train.warmup_steps must be in [0, train.steps]");
  const bool cpu = c.train.device == train::Device::kCpu;
  TORCH_CHECK(!(cpu && c.model.dtype == ModelDtype::kBf16), at,
              "model.dtype=bf16 needs train.device=cuda (CPU training keeps float32 weights)");
}

}  // namespace

std::string to_string(Method m) {
  return config::enum_name(m);
}
std::string to_string(ModelDtype d) {
  return config::enum_name(d);
}
std::string to_string(DataFormat f) {
  return config::enum_name(f);
}
std::string to_string(QuantInit i) {
  return config::enum_name(i);
}
std::string to_string(TeacherDtype d) {
  return config::enum_name(d);
}

WeightFormat WeightFormat::named(const std::string& name) {
  WeightFormat f;
  f.name = name;
  f.mix = io::llama_mix_from_name(name);
  if (!f.mix) f.spec = scheme::QuantSpec::from_name(name);
  return f;
}

bool WeightFormat::is_kquant() const {
  return mix.has_value() || scheme::is_kquant(spec->format);
}

void RecipeConfig::validate() const {
  RecipeConfig copy = *this;  // the field table is walked through non-const references
  config::Checker checker(source + ": ");
  visit_fields(checker, copy);
  validate_combinations(*this);
}

train::TrainerConfig RecipeConfig::trainer_config() const {
  train::TrainerConfig t;
  t.output_dir = output_dir;
  t.resume = resume;
  t.train = train;
  t.eval = eval;
  t.checkpoint = checkpoint;
  t.log = log;
  t.run_name = to_string(method);
  t.config_yaml = to_yaml(*this);
  t.check_same_run = [identity = identity_yaml(*this)](const std::string& saved_yaml,
                                                       const std::string& checkpoint) {
    const RecipeConfig saved = parse_recipe_config(saved_yaml, checkpoint + " (saved config)");
    TORCH_CHECK(identity_yaml(saved) == identity, checkpoint,
                " was written by a different run (method, model, quant, lora, nf4, distill or data "
                "differ from this config): use a new output_dir, or set resume=false in a fresh "
                "directory");
  };
  return t;
}

RecipeConfig parse_recipe_config(const std::string& yaml, const std::string& source,
                                 const std::vector<std::string>& overrides) {
  YAML::Node root;
  try {
    root = YAML::Load(yaml);
  } catch (const YAML::Exception& e) {
    TORCH_CHECK(false, source, ":", e.mark.line + 1, ": not valid YAML: ", e.msg);
  }
  const bool empty = !root.IsDefined() || root.IsNull();
  if (empty) root = YAML::Node(YAML::NodeType::Map);
  for (const auto& o : overrides) apply_override(root, o);
  TORCH_CHECK(root.IsMap() && root.size() > 0, source,
              ": the config is empty: a recipe names at least its method (full, qat, qlora, "
              "qat_lora or lora); recipes/configs/ has one of each to start from");
  RecipeConfig c;
  c.source = source;
  config::Reader top(root, "", source);
  visit_fields(top, c);
  top.finish();
  TORCH_CHECK(root["method"].IsDefined() && !root["method"].IsNull(), source,
              ": method: missing: name what to train (full, qat, qlora, qat_lora or lora); "
              "recipes/configs/ has one of each");
  c.validate();
  return c;
}

RecipeConfig load_recipe_config(const std::string& path,
                                const std::vector<std::string>& overrides) {
  std::ifstream in(path);
  TORCH_CHECK(in, "cannot open config ", path, ": no such file (configs live in recipes/configs/)");
  std::stringstream ss;
  ss << in.rdbuf();
  return parse_recipe_config(ss.str(), path, overrides);
}

namespace {
std::string emit(const RecipeConfig& c, bool experiment_only) {
  RecipeConfig copy = c;
  YAML::Emitter e;
  config::Writer w(e, experiment_only);
  e << YAML::BeginMap;
  visit_fields(w, copy);
  e << YAML::EndMap;
  return std::string(e.c_str()) + "\n";
}
}  // namespace

std::string to_yaml(const RecipeConfig& c) {
  return emit(c, false);
}

std::string identity_yaml(const RecipeConfig& c) {
  return emit(c, true);
}

}  // namespace qat::recipes
