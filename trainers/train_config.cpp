#include "trainers/train_config.h"

#include <c10/util/Exception.h>
#include <yaml-cpp/yaml.h>

#include <fstream>
#include <set>
#include <sstream>

#include "qat/io/llama_mix.h"
#include "qat/scheme/quant_spec.h"

namespace qat::train {

Method method_from_name(const std::string& name) {
  if (name == "full") return Method::kFull;
  if (name == "qat") return Method::kQat;
  if (name == "qlora") return Method::kQlora;
  if (name == "qat_lora") return Method::kQatLora;
  TORCH_CHECK(false, "unknown method '", name, "': use full, qat, qlora or qat_lora");
  return Method::kQat;
}

std::string to_string(Method m) {
  switch (m) {
    case Method::kFull:
      return "full";
    case Method::kQat:
      return "qat";
    case Method::kQlora:
      return "qlora";
    case Method::kQatLora:
      return "qat_lora";
  }
  return "?";
}

namespace {

// The keys of one YAML mapping, read with type checks; finish() rejects keys nobody asked for.
class Fields {
 public:
  Fields(const YAML::Node& node, std::string path, const std::string& source)
      : node_(node), path_(std::move(path)), source_(source) {
    TORCH_CHECK(!node_.IsDefined() || node_.IsNull() || node_.IsMap(), where(node_), path_,
                ": expected a mapping of keys, found ", kind(node_));
  }

  template <typename T>
  void get(const std::string& key, T& out) {
    known_.push_back(key);
    if (!node_.IsDefined() || node_.IsNull()) return;
    const YAML::Node v = node_[key];
    if (!v.IsDefined() || v.IsNull()) return;
    read(v, full(key), out);
  }

  YAML::Node child(const std::string& key) {
    known_.push_back(key);
    if (!node_.IsDefined() || node_.IsNull()) return YAML::Node();
    return node_[key];
  }

  void finish() const {
    if (!node_.IsDefined() || node_.IsNull()) return;
    for (const auto& kv : node_) {
      const std::string key = kv.first.as<std::string>();
      if (std::find(known_.begin(), known_.end(), key) != known_.end()) continue;
      std::ostringstream keys;
      for (size_t i = 0; i < known_.size(); ++i) keys << (i ? ", " : "") << known_[i];
      TORCH_CHECK(false, where(kv.first), full(key), ": unknown key (expected one of: ", keys.str(),
                  ")");
    }
  }

  std::string where(const YAML::Node& n) const {
    const YAML::Mark m = n.Mark();
    if (m.line < 0) return source_ + ": ";
    return source_ + ":" + std::to_string(m.line + 1) + ": ";
  }

 private:
  std::string full(const std::string& key) const { return path_.empty() ? key : path_ + "." + key; }

  static std::string kind(const YAML::Node& n) {
    if (n.IsMap()) return "a mapping";
    if (n.IsSequence()) return "a list";
    if (n.IsScalar()) return "'" + n.Scalar() + "'";
    return "nothing";
  }

  template <typename T>
  T scalar(const YAML::Node& v, const std::string& key, const char* expected) const {
    TORCH_CHECK(v.IsScalar(), where(v), key, ": expected ", expected, ", found ", kind(v));
    try {
      return v.as<T>();
    } catch (const YAML::Exception&) {
      TORCH_CHECK(false, where(v), key, ": expected ", expected, ", found '", v.Scalar(), "'");
    }
    return T{};
  }

  void read(const YAML::Node& v, const std::string& key, std::string& out) const {
    out = scalar<std::string>(v, key, "a string");
  }
  void read(const YAML::Node& v, const std::string& key, bool& out) const {
    out = scalar<bool>(v, key, "true or false");
  }
  void read(const YAML::Node& v, const std::string& key, int64_t& out) const {
    out = scalar<int64_t>(v, key, "an integer");
  }
  void read(const YAML::Node& v, const std::string& key, double& out) const {
    out = scalar<double>(v, key, "a number");
  }
  void read(const YAML::Node& v, const std::string& key, std::vector<std::string>& out) const {
    TORCH_CHECK(v.IsSequence(), where(v), key, ": expected a list of strings, found ", kind(v));
    out.clear();
    for (const auto& item : v) out.push_back(scalar<std::string>(item, key + "[]", "a string"));
  }

  YAML::Node node_;
  std::string path_;
  const std::string& source_;
  std::vector<std::string> known_;
};

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

}  // namespace

TrainConfig parse_train_config(const std::string& yaml, const std::string& source,
                               const std::vector<std::string>& overrides) {
  YAML::Node root;
  try {
    root = YAML::Load(yaml);
  } catch (const YAML::Exception& e) {
    TORCH_CHECK(false, source, ":", e.mark.line + 1, ": not valid YAML: ", e.msg);
  }
  if (!root.IsDefined() || root.IsNull()) root = YAML::Node(YAML::NodeType::Map);
  for (const auto& o : overrides) apply_override(root, o);

  TrainConfig c;
  c.source = source;
  Fields top(root, "", source);
  std::string method = to_string(c.method);
  top.get("output_dir", c.output_dir);
  top.get("resume", c.resume);
  top.get("method", method);
  try {
    c.method = method_from_name(method);
  } catch (const c10::Error&) {
    TORCH_CHECK(false, top.where(root["method"]),
                "method: expected full, qat, qlora or qat_lora, found '", method, "'");
  }
  {
    Fields f(top.child("model"), "model", source);
    f.get("path", c.model.path);
    f.get("dtype", c.model.dtype);
    f.finish();
  }
  {
    Fields f(top.child("quant"), "quant", source);
    f.get("weight", c.quant.weight);
    f.get("fallback", c.quant.fallback);
    f.get("group_size", c.quant.group_size);
    f.get("activation", c.quant.activation);
    f.get("scale_mode", c.quant.scale_mode);
    f.get("range", c.quant.range);
    f.get("grad", c.quant.grad);
    f.get("delay_steps", c.quant.delay_steps);
    f.get("freeze_observer_after", c.quant.freeze_observer_after);
    f.get("exclude", c.quant.exclude);
    f.get("init", c.quant.init);
    f.get("init_calibration", c.quant.init_calibration);
    f.finish();
  }
  {
    Fields f(top.child("lora"), "lora", source);
    f.get("r", c.lora.r);
    f.get("alpha", c.lora.alpha);
    f.get("dropout", c.lora.dropout);
    f.get("rslora", c.lora.rslora);
    f.get("targets", c.lora.targets);
    f.finish();
  }
  {
    Fields f(top.child("nf4"), "nf4", source);
    f.get("double_quant", c.nf4.double_quant);
    f.get("block_size", c.nf4.block_size);
    f.finish();
  }
  {
    Fields f(top.child("data"), "data", source);
    f.get("format", c.data.format);
    f.get("path", c.data.path);
    f.get("field", c.data.field);
    f.get("seq_len", c.data.seq_len);
    f.get("pack", c.data.pack);
    f.get("eval_fraction", c.data.eval_fraction);
    f.get("max_documents", c.data.max_documents);
    f.finish();
  }
  {
    Fields f(top.child("train"), "train", source);
    auto& t = c.train;
    f.get("steps", t.steps);
    f.get("micro_batch", t.micro_batch);
    f.get("grad_accum", t.grad_accum);
    f.get("lr", t.lr);
    f.get("schedule", t.schedule);
    f.get("warmup_steps", t.warmup_steps);
    f.get("min_lr_ratio", t.min_lr_ratio);
    f.get("weight_decay", t.weight_decay);
    f.get("beta1", t.beta1);
    f.get("beta2", t.beta2);
    f.get("eps", t.eps);
    f.get("max_grad_norm", t.max_grad_norm);
    f.get("seed", t.seed);
    f.get("activation_checkpointing", t.activation_checkpointing);
    f.get("device", t.device);
    f.get("autocast", t.autocast);
    f.get("dist_timeout_s", t.dist_timeout_s);
    f.finish();
  }
  {
    Fields f(top.child("eval"), "eval", source);
    f.get("every", c.eval.every);
    f.get("sequences", c.eval.sequences);
    f.get("at_start", c.eval.at_start);
    f.finish();
  }
  {
    Fields f(top.child("checkpoint"), "checkpoint", source);
    f.get("every", c.checkpoint.every);
    f.get("keep_last", c.checkpoint.keep_last);
    f.finish();
  }
  {
    Fields f(top.child("log"), "log", source);
    f.get("every", c.log.every);
    f.get("progress", c.log.progress);
    f.get("plot", c.log.plot);
    f.finish();
  }
  top.finish();
  c.validate();
  return c;
}

TrainConfig load_train_config(const std::string& path, const std::vector<std::string>& overrides) {
  std::ifstream in(path);
  TORCH_CHECK(in, "cannot open config ", path, ": no such file (configs live in recipes/configs/)");
  std::stringstream ss;
  ss << in.rdbuf();
  return parse_train_config(ss.str(), path, overrides);
}

void TrainConfig::validate() const {
  const std::string at = source + ": ";
  auto one_of = [&](const std::string& key, const std::string& v,
                    std::initializer_list<const char*> ok) {
    std::string list;
    for (const char* o : ok) {
      if (v == o) return;
      list += (list.empty() ? "" : ", ") + std::string(o);
    }
    TORCH_CHECK(false, at, key, ": expected one of ", list, ", found '", v, "'");
  };
  one_of("model.dtype", model.dtype, {"fp32", "bf16"});
  one_of("quant.scale_mode", quant.scale_mode, {"dynamic", "static", "learnable"});
  one_of("quant.range", quant.range, {"minmax", "percentile", "mse"});
  one_of("quant.grad", quant.grad, {"ste", "clipped_ste"});
  one_of("quant.init", quant.init, {"rtn", "gptq"});
  one_of("data.format", data.format, {"text", "jsonl", "alpaca", "chat"});
  one_of("train.schedule", train.schedule, {"cosine", "linear", "constant"});
  one_of("train.device", train.device, {"cpu", "cuda"});
  one_of("train.autocast", train.autocast, {"auto", "bf16", "off"});
  one_of("log.progress", log.progress, {"auto", "bar", "lines", "off"});
  if (method == Method::kQat || method == Method::kQatLora) {
    // A format, or a llama.cpp mixture of formats (qat/io/llama_mix.h).
    const bool mix = io::llama_mix_from_name(quant.weight).has_value();
    try {
      if (!mix) (void)scheme::QuantSpec::from_name(quant.weight);
    } catch (const c10::Error&) {
      TORCH_CHECK(false, at, "quant.weight: unknown format '", quant.weight,
                  "' (see `qat formats`, or a llama.cpp mixture: ", io::known_llama_mixes(), ")");
    }
    if (quant.fallback != "none") {
      try {
        (void)scheme::QuantSpec::from_name(quant.fallback);
      } catch (const c10::Error&) {
        TORCH_CHECK(false, at, "quant.fallback: unknown format '", quant.fallback,
                    "' (none, or a format from `qat formats`)");
      }
    }
    if (quant.activation != "none") {
      try {
        (void)scheme::QuantSpec::from_name(quant.activation);
      } catch (const c10::Error&) {
        TORCH_CHECK(false, at, "quant.activation: unknown format '", quant.activation,
                    "' (none, or a format from `qat formats`)");
      }
    }
  }
  TORCH_CHECK(quant.group_size >= 0, at, "quant.group_size must be >= 0, got ", quant.group_size);
  TORCH_CHECK(quant.delay_steps >= 0, at, "quant.delay_steps must be >= 0, got ",
              quant.delay_steps);
  if (quant.init == "gptq") {
    TORCH_CHECK(method == Method::kQat, at,
                "quant.init: gptq starts method qat from GPTQ-rounded weights; method ",
                to_string(method), " does not train fake-quant weights (use quant.init: rtn)");
    TORCH_CHECK(quant.scale_mode == "dynamic" && quant.delay_steps == 0, at,
                "quant.init: gptq needs quant.scale_mode: dynamic and quant.delay_steps: 0 (GPTQ "
                "rounds with the ",
                "scales fake quant uses from the first step)");
    TORCH_CHECK(quant.init_calibration >= 1, at, "quant.init_calibration must be >= 1, got ",
                quant.init_calibration);
  }
  TORCH_CHECK(lora.r >= 1, at, "lora.r must be >= 1, got ", lora.r);
  TORCH_CHECK(lora.alpha > 0, at, "lora.alpha must be > 0, got ", lora.alpha);
  TORCH_CHECK(lora.dropout >= 0 && lora.dropout < 1, at, "lora.dropout must be in [0, 1), got ",
              lora.dropout);
  TORCH_CHECK(!lora.targets.empty(), at, "lora.targets is empty: name the projections to adapt");
  TORCH_CHECK(nf4.block_size >= 2 && nf4.block_size % 2 == 0, at,
              "nf4.block_size must be even and >= 2, got ", nf4.block_size);
  TORCH_CHECK(data.seq_len >= 2, at, "data.seq_len must be >= 2, got ", data.seq_len);
  TORCH_CHECK(data.eval_fraction >= 0 && data.eval_fraction < 1, at,
              "data.eval_fraction must be in [0, 1), got ", data.eval_fraction);
  TORCH_CHECK(data.max_documents >= 0, at, "data.max_documents must be >= 0");
  TORCH_CHECK(!(data.pack && (data.format == "alpaca" || data.format == "chat")), at,
              "data.pack: instruction data (", data.format, ") is not packed; set data.pack=false");
  TORCH_CHECK(train.steps >= 1, at, "train.steps must be >= 1, got ", train.steps);
  TORCH_CHECK(train.micro_batch >= 1, at, "train.micro_batch must be >= 1, got ",
              train.micro_batch);
  TORCH_CHECK(train.grad_accum >= 1, at, "train.grad_accum must be >= 1, got ", train.grad_accum);
  TORCH_CHECK(train.warmup_steps >= 0 && train.warmup_steps <= train.steps, at,
              "train.warmup_steps must be in [0, train.steps]");
  TORCH_CHECK(train.max_grad_norm >= 0, at,
              "train.max_grad_norm must be >= 0 (0 turns clipping off)");
  TORCH_CHECK(train.dist_timeout_s >= 1, at, "train.dist_timeout_s must be >= 1");
  TORCH_CHECK(!(train.device == "cpu" && train.autocast == "bf16"), at,
              "train.autocast=bf16 needs train.device=cuda (CPU training runs in float32)");
  TORCH_CHECK(eval.every >= 0 && eval.sequences >= 0, at,
              "eval.every and eval.sequences must be >= 0");
  TORCH_CHECK(checkpoint.every >= 0, at, "checkpoint.every must be >= 0");
  TORCH_CHECK(log.every >= 1, at, "log.every must be >= 1");
  TORCH_CHECK(!output_dir.empty(), at, "output_dir is empty");
}

std::string to_yaml(const TrainConfig& c) {
  YAML::Emitter e;
  auto list = [&](const std::vector<std::string>& v) {
    e << YAML::Flow << YAML::BeginSeq;
    for (const auto& s : v) e << s;
    e << YAML::EndSeq;
  };
  e << YAML::BeginMap;
  e << YAML::Key << "output_dir" << YAML::Value << c.output_dir;
  e << YAML::Key << "resume" << YAML::Value << c.resume;
  e << YAML::Key << "method" << YAML::Value << to_string(c.method);
  e << YAML::Key << "model" << YAML::Value << YAML::BeginMap;
  e << YAML::Key << "path" << YAML::Value << c.model.path << YAML::Key << "dtype" << YAML::Value
    << c.model.dtype;
  e << YAML::EndMap;
  e << YAML::Key << "quant" << YAML::Value << YAML::BeginMap;
  e << YAML::Key << "weight" << YAML::Value << c.quant.weight;
  e << YAML::Key << "fallback" << YAML::Value << c.quant.fallback;
  e << YAML::Key << "group_size" << YAML::Value << c.quant.group_size;
  e << YAML::Key << "activation" << YAML::Value << c.quant.activation;
  e << YAML::Key << "scale_mode" << YAML::Value << c.quant.scale_mode;
  e << YAML::Key << "range" << YAML::Value << c.quant.range;
  e << YAML::Key << "grad" << YAML::Value << c.quant.grad;
  e << YAML::Key << "delay_steps" << YAML::Value << c.quant.delay_steps;
  e << YAML::Key << "freeze_observer_after" << YAML::Value << c.quant.freeze_observer_after;
  e << YAML::Key << "exclude" << YAML::Value;
  list(c.quant.exclude);
  e << YAML::Key << "init" << YAML::Value << c.quant.init;
  e << YAML::Key << "init_calibration" << YAML::Value << c.quant.init_calibration;
  e << YAML::EndMap;
  e << YAML::Key << "lora" << YAML::Value << YAML::BeginMap;
  e << YAML::Key << "r" << YAML::Value << c.lora.r << YAML::Key << "alpha" << YAML::Value
    << c.lora.alpha;
  e << YAML::Key << "dropout" << YAML::Value << c.lora.dropout << YAML::Key << "rslora"
    << YAML::Value << c.lora.rslora;
  e << YAML::Key << "targets" << YAML::Value;
  list(c.lora.targets);
  e << YAML::EndMap;
  e << YAML::Key << "nf4" << YAML::Value << YAML::BeginMap;
  e << YAML::Key << "double_quant" << YAML::Value << c.nf4.double_quant;
  e << YAML::Key << "block_size" << YAML::Value << c.nf4.block_size << YAML::EndMap;
  e << YAML::Key << "data" << YAML::Value << YAML::BeginMap;
  e << YAML::Key << "format" << YAML::Value << c.data.format << YAML::Key << "path" << YAML::Value
    << c.data.path;
  e << YAML::Key << "field" << YAML::Value << c.data.field << YAML::Key << "seq_len" << YAML::Value
    << c.data.seq_len;
  e << YAML::Key << "pack" << YAML::Value << c.data.pack;
  e << YAML::Key << "eval_fraction" << YAML::Value << c.data.eval_fraction;
  e << YAML::Key << "max_documents" << YAML::Value << c.data.max_documents << YAML::EndMap;
  const auto& t = c.train;
  e << YAML::Key << "train" << YAML::Value << YAML::BeginMap;
  e << YAML::Key << "steps" << YAML::Value << t.steps << YAML::Key << "micro_batch" << YAML::Value
    << t.micro_batch;
  e << YAML::Key << "grad_accum" << YAML::Value << t.grad_accum << YAML::Key << "lr" << YAML::Value
    << t.lr;
  e << YAML::Key << "schedule" << YAML::Value << t.schedule << YAML::Key << "warmup_steps"
    << YAML::Value << t.warmup_steps;
  e << YAML::Key << "min_lr_ratio" << YAML::Value << t.min_lr_ratio;
  e << YAML::Key << "weight_decay" << YAML::Value << t.weight_decay;
  e << YAML::Key << "beta1" << YAML::Value << t.beta1 << YAML::Key << "beta2" << YAML::Value
    << t.beta2;
  e << YAML::Key << "eps" << YAML::Value << t.eps << YAML::Key << "max_grad_norm" << YAML::Value
    << t.max_grad_norm;
  e << YAML::Key << "seed" << YAML::Value << t.seed;
  e << YAML::Key << "activation_checkpointing" << YAML::Value << t.activation_checkpointing;
  e << YAML::Key << "device" << YAML::Value << t.device << YAML::Key << "autocast" << YAML::Value
    << t.autocast;
  e << YAML::Key << "dist_timeout_s" << YAML::Value << t.dist_timeout_s << YAML::EndMap;
  e << YAML::Key << "eval" << YAML::Value << YAML::BeginMap;
  e << YAML::Key << "every" << YAML::Value << c.eval.every << YAML::Key << "sequences"
    << YAML::Value << c.eval.sequences;
  e << YAML::Key << "at_start" << YAML::Value << c.eval.at_start << YAML::EndMap;
  e << YAML::Key << "checkpoint" << YAML::Value << YAML::BeginMap;
  e << YAML::Key << "every" << YAML::Value << c.checkpoint.every;
  e << YAML::Key << "keep_last" << YAML::Value << c.checkpoint.keep_last << YAML::EndMap;
  e << YAML::Key << "log" << YAML::Value << YAML::BeginMap;
  e << YAML::Key << "every" << YAML::Value << c.log.every << YAML::Key << "progress" << YAML::Value
    << c.log.progress;
  e << YAML::Key << "plot" << YAML::Value << c.log.plot << YAML::EndMap;
  e << YAML::EndMap;
  return std::string(e.c_str()) + "\n";
}

}  // namespace qat::train
