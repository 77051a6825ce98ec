// export_model(): validates the output path, classifies the model's linears once, runs the
// format's writer into a temporary path, writes manifest.json and renames into place, so a
// failed export never leaves a half-written checkpoint at `out`.
#include "qat/export/export.h"

#include <ATen/ATen.h>
#include <ftw.h>
#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <iomanip>
#include <map>
#include <numeric>
#include <regex>
#include <set>
#include <sstream>

#include "qat/export/tokenizer_convert.h"
#include "qat/export/writers.h"
#include "qat/io/gguf_blocks.h"
#include "qat/io/gguf_file.h"
#include "qat/io/remove_tree.h"
#include "qat/models/pretrained.h"

namespace qat::exporting {

namespace fs = std::filesystem;

namespace {

const std::vector<std::pair<std::string, ExportFormat>>& format_names() {
  static const std::vector<std::pair<std::string, ExportFormat>> kNames = {
      {"gguf", ExportFormat::kGguf},
      {"hf", ExportFormat::kHfMerged},
      {"peft", ExportFormat::kPeft},
      {"bnb-nf4", ExportFormat::kBnbNf4},
      {"bnb-int8", ExportFormat::kBnbInt8},
      {"ct", ExportFormat::kCompressedTensors},
      {"compressed-tensors", ExportFormat::kCompressedTensors},
      {"gguf-lora", ExportFormat::kGgufLora},
  };
  return kNames;
}

// The first name of each scheme is the one to_string gives.
const std::vector<std::pair<std::string, CtScheme>>& ct_scheme_names() {
  static const std::vector<std::pair<std::string, CtScheme>> kNames = {
      {"w4a16", CtScheme::kW4A16}, {"w8a16", CtScheme::kW8A16},     {"w8a8", CtScheme::kW8A8},
      {"fp8", CtScheme::kFp8},     {"fp8-dynamic", CtScheme::kFp8},
  };
  return kNames;
}

std::string human_bytes(double b) {
  std::ostringstream s;
  s << std::fixed << std::setprecision(2);
  if (b >= 1 << 30)
    s << b / (1 << 30) << " GiB";
  else if (b >= 1 << 20)
    s << b / (1 << 20) << " MiB";
  else if (b >= 1 << 10)
    s << b / (1 << 10) << " KiB";
  else
    s << b << " B";
  return s.str();
}

// "blk.3.attn_q.weight" -> "blk.*.attn_q.weight": the tensor's kind across layers.
std::string tensor_kind(const std::string& name) {
  static const std::regex kLayer(R"(\.\d+\.)");
  return std::regex_replace(name, kLayer, ".*.");
}

nlohmann::json build_manifest(const ExportSource& src, const ExportOptions& opt,
                              const ExportReport& r) {
  nlohmann::json kinds = nlohmann::json::object();
  std::map<std::string, std::set<std::string>> seen;
  for (const auto& t : r.tensors) {
    const std::string k = tensor_kind(t.name);
    const std::string v = t.type + " (" + t.origin + ")";
    if (seen[k].insert(v).second) kinds[k].push_back(v);
  }
  nlohmann::json tensors = nlohmann::json::array();
  for (const auto& t : r.tensors) {
    nlohmann::json j = {{"name", t.name},     {"type", t.type},
                        {"origin", t.origin}, {"numel", t.numel},
                        {"bytes", t.bytes},   {"theoretical_bits", t.theoretical_bits}};
    if (t.max_abs_err) j["max_abs_err"] = *t.max_abs_err;
    if (t.rel_fro_err) j["rel_fro_err"] = *t.rel_fro_err;
    tensors.push_back(std::move(j));
  }
  nlohmann::json files = nlohmann::json::array();
  for (const auto& f : r.files) {
    const fs::path p = is_single_file(opt.format) ? fs::path(r.out) : fs::path(r.out) / f;
    files.push_back({{"name", f}, {"bytes", static_cast<int64_t>(fs::file_size(p))}});
  }
  const std::time_t now = std::time(nullptr);
  char when[32];
  std::strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", std::gmtime(&now));
  return {{"format", to_string(r.format)},
          {"tool", "qat"},
          {"tool_version", tool_version()},
          {"created", when},
          {"source", src.name},
          {"model", src.model->config().to_hf_json()},
          {"scheme", kinds},
          {"sizes",
           {{"file_bytes", r.file_bytes},
            {"tensor_bytes", r.tensor_bytes},
            {"theoretical_bytes", r.theoretical_bytes},
            {"metadata_bytes", r.metadata_bytes},
            {"on_disk_over_theoretical",
             static_cast<double>(r.file_bytes) /
                 static_cast<double>(std::max<int64_t>(1, r.theoretical_bytes))}}},
          {"files", files},
          {"notes", r.notes},
          {"tensors", tensors}};
}

}  // namespace

std::string tool_version() {
  return "qat 0.1.0";
}

ExportFormat export_format_from_name(const std::string& name) {
  for (const auto& [n, f] : format_names()) {
    if (n == name) return f;
  }
  TORCH_CHECK(
      name != "gptq", "export: GPTQ checkpoints are not written; use --format ct (int4 ",
      "compressed-tensors pack-quantized), which vLLM loads as well (docs/export.md says why)");
  TORCH_CHECK(false, "export: unknown format '", name, "' (known: ", known_export_formats(), ")");
}

CtScheme ct_scheme_from_name(const std::string& name) {
  for (const auto& [n, s] : ct_scheme_names()) {
    if (n == name) return s;
  }
  TORCH_CHECK(false, "unknown compressed-tensors scheme '", name,
              "': expected w4a16, w8a16, w8a8 or fp8 (fp8-dynamic)");
}

std::string to_string(CtScheme s) {
  for (const auto& [n, t] : ct_scheme_names()) {
    if (t == s) return n;
  }
  return "?";
}

std::string to_string(ExportFormat f) {
  for (const auto& [n, g] : format_names()) {
    if (g == f) return n;
  }
  return "?";
}

std::string known_export_formats() {
  return "gguf, hf, peft, bnb-nf4, bnb-int8, ct (compressed-tensors), gguf-lora";
}

bool is_single_file(ExportFormat f) {
  return f == ExportFormat::kGguf || f == ExportFormat::kGgufLora;
}

std::vector<io::GgmlType> gguf_export_types() {
  std::vector<io::GgmlType> types;
  for (const auto& b : io::kBlockFormats) types.push_back(b.type);
  types.insert(types.end(), {io::GgmlType::kF16, io::GgmlType::kBF16, io::GgmlType::kF32});
  return types;
}

namespace {
std::string lower(std::string n) {
  std::transform(n.begin(), n.end(), n.begin(), [](unsigned char c) { return std::tolower(c); });
  return n;
}
}  // namespace

std::string known_gguf_types() {
  std::string known;
  for (io::GgmlType t : gguf_export_types())
    known += (known.empty() ? "" : ", ") + lower(io::ggml_type_name(t));
  return known;
}

io::GgmlType gguf_type_from_name(const std::string& name) {
  for (io::GgmlType t : gguf_export_types()) {
    if (lower(io::ggml_type_name(t)) == lower(name)) return t;
  }
  TORCH_CHECK(false, "export: unknown GGUF type '", name, "' (known: ", known_gguf_types(), ")");
}

TokenizerSource tokenizer_source(const std::string& path, const std::string& chat_template) {
  TokenizerSource t;
  t.chat_template = chat_template;
  if (fs::is_directory(path)) {
    if (fs::exists(fs::path(path) / "tokenizer.json") ||
        fs::exists(fs::path(path) / "tokenizer.model"))
      t.hf_dir = path;
  } else {
    const io::GgufFile f = io::GgufFile::open(path);
    io::GgufMetadata tok;
    for (const auto& [k, v] : f.metadata().entries()) {
      if (k.rfind("tokenizer.", 0) == 0) tok.set(k, v);
    }
    if (tok.has("tokenizer.ggml.model")) t.gguf = std::move(tok);
  }
  return t;
}

ExportSource load_export_source(const std::string& path) {
  TORCH_CHECK(fs::exists(path), "export: '", path,
              "' does not exist (pass a .gguf file, an HF directory or a run directory)");
  models::Pretrained p = models::load_pretrained(path);
  ExportSource s;
  s.model = p.model;
  s.name = path;
  s.tokenizer = tokenizer_source(path, p.chat_template);
  return s;
}

namespace {

// <out without .gguf>.Modelfile: where --ollama writes.
fs::path modelfile_path(const std::string& gguf) {
  return fs::path(gguf).replace_extension(".Modelfile");
}

// The output path can be written: not there (or --force), a file for GGUF, its parent created.
void check_output(const ExportOptions& opt) {
  TORCH_CHECK(!opt.out.empty(), "export: no output path given (--out)");
  TORCH_CHECK(!opt.ollama || opt.format == ExportFormat::kGguf,
              "export: --ollama writes a Modelfile beside a GGUF model; use it with --format gguf");
  TORCH_CHECK(!opt.ollama || opt.force || !fs::exists(modelfile_path(opt.out)), "export: '",
              modelfile_path(opt.out).string(), "' already exists; pass --force to replace it");
  const fs::path out(opt.out);
  TORCH_CHECK(opt.force || !fs::exists(out), "export: output '", opt.out,
              "' already exists; pass --force to replace it");
  if (is_single_file(opt.format)) {
    TORCH_CHECK(!fs::is_directory(out), "export: --out '", opt.out, "' is a directory; ",
                to_string(opt.format), " export writes one file (e.g. model.gguf)");
  }
  if (out.has_parent_path()) fs::create_directories(out.parent_path());
}

// The format's writer into `tmp` (a file for GGUF, a directory otherwise).
void run_writer(detail::Job& job, const fs::path& tmp) {
  if (!is_single_file(job.opt.format)) fs::create_directories(tmp);
  switch (job.opt.format) {
    case ExportFormat::kGguf:
      detail::write_gguf(job, tmp.string());
      return;
    case ExportFormat::kHfMerged:
      detail::write_hf_merged(job, tmp.string());
      break;
    case ExportFormat::kPeft:
      detail::write_peft(job, tmp.string());
      break;
    case ExportFormat::kBnbNf4:
      detail::write_bnb_nf4(job, tmp.string());
      break;
    case ExportFormat::kBnbInt8:
      detail::write_bnb_int8(job, tmp.string());
      break;
    case ExportFormat::kCompressedTensors:
      if (job.opt.ct_scheme == CtScheme::kW4A16)
        detail::write_compressed_tensors(job, tmp.string());
      else
        detail::write_compressed_tensors_8bit(job, tmp.string());
      break;
    case ExportFormat::kGgufLora:
      detail::write_gguf_lora(job, tmp.string());
      return;
  }
  detail::write_model_card(job, tmp.string());
}

// Sizes: every file written, against the tensors' theoretical bits.
void measure_sizes(ExportReport& report, const fs::path& out, ExportFormat format) {
  if (is_single_file(format)) {
    report.files = {out.filename().string()};
    report.file_bytes = static_cast<int64_t>(fs::file_size(out));
  } else {
    for (const auto& e : fs::recursive_directory_iterator(out)) {
      if (!e.is_regular_file()) continue;
      report.files.push_back(fs::relative(e.path(), out).string());
      report.file_bytes += static_cast<int64_t>(e.file_size());
    }
    std::sort(report.files.begin(), report.files.end());
  }
  double theoretical_bits = 0;
  for (const auto& t : report.tensors) {
    report.tensor_bytes += t.bytes;
    theoretical_bits += t.theoretical_bits * static_cast<double>(t.numel);
  }
  report.theoretical_bytes = static_cast<int64_t>(std::ceil(theoretical_bits / 8.0));
  report.metadata_bytes = report.file_bytes - report.tensor_bytes;
}

// <out without .gguf>.Modelfile beside the GGUF, its stop strings from the exported tokenizer.
void write_ollama_modelfile(const ExportSource& source, const ExportOptions& opt,
                            ExportReport& report) {
  const io::GgufMetadata tok =
      gguf_tokenizer_metadata(source.tokenizer, source.model->config().vocab_size);
  const bool has_template =
      tok.has("tokenizer.chat_template") || !source.tokenizer.chat_template.empty();
  const fs::path gguf(opt.out);
  const fs::path modelfile = modelfile_path(opt.out);
  detail::write_text(modelfile.string(),
                     ollama_modelfile(gguf.filename().string(), stop_tokens(tok), has_template));
  report.notes.push_back("Ollama: " + modelfile.string() + " (ollama create <name> -f " +
                         modelfile.string() + ")");
}

}  // namespace

// Written to <out>.partial and renamed, so a failed export leaves no half-written output.
ExportReport export_model(const ExportSource& source, const ExportOptions& opt) {
  TORCH_CHECK(source.model, "export: no model given");
  check_output(opt);
  const fs::path out(opt.out);
  ExportReport report;
  report.format = opt.format;
  report.out = opt.out;
  detail::Job job{source, opt, *source.model, collect_linears(*source.model), {}, report};
  job.others = non_linear_tensors(*source.model, job.linears);
  const bool adapters_only =
      opt.format == ExportFormat::kPeft || opt.format == ExportFormat::kGgufLora;
  if (!opt.merge_lora && !adapters_only) {
    int left_out = 0;
    for (LinearView& l : job.linears) {
      if (!l.lora) continue;
      l.lora = nullptr;
      l.layer = l.base;
      ++left_out;
    }
    if (left_out > 0)
      report.notes.push_back(std::to_string(left_out) +
                             " LoRA adapters left out (--no-merge): the file holds the base "
                             "layers as trained; export the adapters with --format peft or "
                             "gguf-lora");
  }

  const fs::path tmp = fs::path(opt.out + ".partial");
  io::remove_tree(tmp);
  try {
    run_writer(job, tmp);
    if (opt.ollama) write_ollama_modelfile(source, opt, report);
  } catch (...) {
    try {
      io::remove_tree(tmp);
    } catch (...) {  // keep the writer's error, which says what to fix
    }
    throw;
  }
  if (fs::exists(out)) io::remove_tree(out);
  fs::rename(tmp, out);

  measure_sizes(report, out, opt.format);
  report.manifest = build_manifest(source, opt, report);
  const fs::path manifest =
      is_single_file(opt.format) ? fs::path(opt.out + ".manifest.json") : out / "manifest.json";
  detail::write_json(manifest.string(), report.manifest);
  return report;
}

std::string ExportReport::summary() const {
  std::ostringstream s;
  s << "export " << to_string(format) << " -> " << out << "\n";
  const int64_t n = std::accumulate(tensors.begin(), tensors.end(), int64_t{0},
                                    [](int64_t a, const TensorRecord& t) { return a + t.numel; });
  auto row = [&](const char* what, double bytes, const std::string& extra) {
    s << "  " << std::left << std::setw(22) << what << std::right << std::setw(12)
      << human_bytes(bytes) << "  " << extra << "\n";
  };
  std::ostringstream bits;
  bits << std::fixed << std::setprecision(3)
       << (n ? 8.0 * static_cast<double>(theoretical_bytes) / n : 0) << " bits/param over " << n
       << " params";
  row("theoretical (tensors)", static_cast<double>(theoretical_bytes), bits.str());
  row("tensor payload", static_cast<double>(tensor_bytes), "");
  row("metadata + padding", static_cast<double>(metadata_bytes), "headers, config, tokenizer");
  std::ostringstream ratio;
  ratio << std::fixed << std::setprecision(4)
        << static_cast<double>(file_bytes) /
               static_cast<double>(std::max<int64_t>(1, theoretical_bytes))
        << "x theoretical";
  row("on disk", static_cast<double>(file_bytes), ratio.str());
  std::map<std::string, int> kinds;
  for (const auto& t : tensors) ++kinds[t.type + " " + t.origin];
  s << "  tensors:\n";
  for (const auto& [k, c] : kinds) s << "    " << std::setw(5) << c << "  " << k << "\n";
  const TensorRecord* worst = nullptr;
  for (const auto& t : tensors) {
    if (t.rel_fro_err && (!worst || *t.rel_fro_err > *worst->rel_fro_err)) worst = &t;
  }
  if (worst) {
    s << "  largest rounding error: " << worst->name << " (" << worst->origin << "): max|d| "
      << *worst->max_abs_err << ", rel. Frobenius " << *worst->rel_fro_err << "\n";
  }
  for (const auto& note : notes) s << "  note: " << note << "\n";
  return s.str();
}

}  // namespace qat::exporting
