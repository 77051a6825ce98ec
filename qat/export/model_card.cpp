// README.md for Hugging Face exports: the model card users and the Hub read first. YAML front
// matter (base_model, library_name, tags), what the files are, the fidelity measured at export
// when a reference was given, and how to run the export in transformers, vLLM and llama.cpp.
#include <filesystem>
#include <iomanip>
#include <sstream>

#include "qat/export/writers.h"

namespace qat::exporting::detail {
namespace {

std::string format_description(const Job& job) {
  const std::string dtype = hf_dtype_name(job.opt.hf_dtype);
  switch (job.opt.format) {
    case ExportFormat::kHfMerged:
      return std::string(job.opt.merge_lora ? "dense safetensors (LoRA merged)"
                                            : "dense safetensors, base layers as trained") +
             " in " + dtype;
    case ExportFormat::kPeft:
      return "PEFT LoRA adapter (adapter_model.safetensors + adapter_config.json)";
    case ExportFormat::kBnbNf4:
      return "bitsandbytes NF4 4-bit linears" +
             std::string(job.opt.nf4_double_quant ? " with double quant" : "") + ", compute " +
             dtype;
    case ExportFormat::kBnbInt8:
      return "bitsandbytes 8-bit (LLM.int8) linears: int8 row-wise absmax codes, float32 SCB";
    case ExportFormat::kCompressedTensors:
      switch (job.opt.ct_scheme) {
        case CtScheme::kW4A16:
          return "compressed-tensors pack-quantized int4 W4A16, scales in " + dtype;
        case CtScheme::kW8A16:
          return "compressed-tensors pack-quantized int8 W8A16 (per channel), scales in " + dtype;
        case CtScheme::kW8A8:
          return "compressed-tensors int-quantized int8 W8A8 (per-channel weights, per-token "
                 "dynamic int8 activations), scales in " +
                 dtype;
        case CtScheme::kFp8:
          return "compressed-tensors float-quantized FP8 W8A8 (e4m3 per-channel weights, "
                 "per-token dynamic e4m3 activations), scales in " +
                 dtype;
      }
      return to_string(job.opt.format);
    default:
      return to_string(job.opt.format);
  }
}

// Adapters trained over fake-quant or NF4 layers compute the trained function only over that
// base: say which export holds it.
std::string over_quantized_base(const Job& job) {
  if (job.opt.format != ExportFormat::kPeft) return {};
  for (const LinearView& l : job.linears) {
    if (l.lora && (l.fake_quant || l.nf4)) {
      return "The adapters were trained over quantized layers (" + l.describe() +
             "): load them over the base written by `qat export " + job.source.name +
             " --format hf --no-merge --dtype fp32` (or the bnb-nf4 export of an NF4 base), not "
             "over the float original.\n\n";
    }
  }
  return {};
}

std::string fixed(double v, int digits) {
  std::ostringstream s;
  s << std::fixed << std::setprecision(digits) << v;
  return s.str();
}

std::string fidelity_section(const nlohmann::json& f) {
  if (f.is_null()) {
    return "## Fidelity\n\nNot measured at export (pass `qat export ... --reference MODEL --text "
           "FILE`).\n\n";
  }
  std::ostringstream s;
  s << "## Fidelity\n\nMeasured at export by qat's evaluator with llama-perplexity's definitions "
       "(KL(reference || model) per scored token, chunks of "
    << f.value("context", 0)
    << " tokens, second half scored), on the model being exported (before the file's own "
       "conversion of dense layers), against `"
    << f.value("reference", std::string()) << "` on `" << f.value("text", std::string()) << "` ("
    << f.value("tokens", 0) << " scored tokens):\n\n"
    << "| PPL | PPL (reference) | ΔPPL | mean KLD | KLD 99% | RMS Δp | same top-1 |\n"
    << "|---|---|---|---|---|---|---|\n"
    << "| " << fixed(f.value("ppl", 0.0), 3) << " | " << fixed(f.value("ppl_base", 0.0), 3) << " | "
    << fixed(f.value("delta_ppl", 0.0), 3) << " | " << fixed(f.value("kld_mean", 0.0), 5) << " | "
    << fixed(f.value("kld_p99", 0.0), 4) << " | " << fixed(100 * f.value("dp_rms", 0.0), 2)
    << "% | " << fixed(100 * f.value("same_top1", 0.0), 1) << "% |\n\n";
  return s.str();
}

std::string usage_section(const Job& job, const std::string& base) {
  std::ostringstream s;
  s << "## Run it\n\ntransformers:\n\n```python\nfrom transformers import AutoModelForCausalLM, "
       "AutoTokenizer\n";
  if (job.opt.format == ExportFormat::kPeft) {
    s << "from peft import PeftModel\nbase = AutoModelForCausalLM.from_pretrained(\"" << base
      << "\")\nmodel = PeftModel.from_pretrained(base, \"path/to/this/adapter\")\n"
      << "tok = AutoTokenizer.from_pretrained(\"" << base << "\")\n```\n\n";
  } else {
    s << "model = AutoModelForCausalLM.from_pretrained(\"path/to/this/dir\")\n"
      << "tok = AutoTokenizer.from_pretrained(\"path/to/this/dir\")\n"
      << "ids = tok.apply_chat_template([{\"role\": \"user\", \"content\": \"Hello\"}], "
         "add_generation_prompt=True, return_tensors=\"pt\")\n"
      << "print(tok.decode(model.generate(ids, max_new_tokens=64)[0]))  # stops at "
         "generation_config.json's eos ids\n```\n\n";
  }
  if (job.opt.format == ExportFormat::kHfMerged ||
      job.opt.format == ExportFormat::kCompressedTensors) {
    s << "vLLM:\n\n```python\nfrom vllm import LLM\nllm = LLM(\"path/to/this/dir\""
      << (job.opt.format == ExportFormat::kCompressedTensors ? ", dtype=\"bfloat16\"" : "")
      << ")\nprint(llm.generate(\"Hello\")[0].outputs[0].text)\n```\n\n";
  }
  s << "llama.cpp loads GGUF, which qat writes from the same source with the trained blocks "
       "exactly:\n\n```sh\nqat export "
    << job.source.name
    << " --format gguf --out model.gguf --ollama\nllama-cli -m model.gguf\n```\n";
  return s.str();
}

}  // namespace

void write_model_card(const Job& job, const std::string& dir) {
  const ModelCard& card = job.opt.card;
  // A PEFT adapter's base is what adapter_config.json names (--base-model); otherwise the model
  // training started from.
  const std::string base =
      job.opt.format == ExportFormat::kPeft && !job.opt.base_model_name_or_path.empty()
          ? job.opt.base_model_name_or_path
      : !card.base_model.empty() ? card.base_model
                                 : job.source.name;
  const bool peft = job.opt.format == ExportFormat::kPeft;
  std::ostringstream s;
  s << "---\nbase_model: " << nlohmann::json(base).dump()
    << "\nlibrary_name: " << (peft ? "peft" : "transformers") << "\ntags:\n- qat\n- "
    << to_string(job.opt.format) << "\n---\n\n# "
    << (job.source.name.empty() ? "qat export"
                                : std::filesystem::path(job.source.name).filename().string())
    << "\n\n"
    << "Written by " << tool_version() << ".\n\n| | |\n|---|---|\n| base model | `" << base
    << "` |\n| method | "
    << (card.method.empty() ? "none: the source's weights, converted" : card.method) << " |\n"
    << "| format | " << format_description(job) << " |\n| architecture | "
    << job.model.config().model_type << ", " << job.model.config().num_hidden_layers
    << " layers, hidden " << job.model.config().hidden_size << ", vocab "
    << job.model.config().vocab_size << " |\n\n"
    << "Each tensor's type, origin and rounding error are listed in manifest.json.\n\n"
    << over_quantized_base(job) << fidelity_section(card.fidelity) << usage_section(job, base);
  write_text(dir + "/README.md", s.str());
}

}  // namespace qat::exporting::detail
