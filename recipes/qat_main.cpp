// The `qat` command line. Subcommands land with their capabilities: `formats` lists the
// quantization formats, `demo` runs the default job of this stage (a QAT-vs-PTQ experiment).
#include <CLI/CLI.hpp>

#include <iostream>

#include "recipes/demo.h"
#include "qat/scheme/quant_spec.h"

int main(int argc, char** argv) {
  CLI::App app{"qat: quantization-aware training, QLoRA and export of quantized language models"};
  app.require_subcommand(1);

  auto* formats = app.add_subcommand("formats", "List the quantization formats and their traits");
  qat::recipes::DemoOptions demo_opts;
  auto* demo = app.add_subcommand(
      "demo", "QAT vs post-training quantization on a teacher-student task, then convert and check "
              "that the deployed layers equal the trained ones bit for bit");
  demo->add_option("--format", demo_opts.weight_format, "weight format (e.g. int4, int3, uint4, gguf_q4_0)");
  demo->add_option("--group-size", demo_opts.group_size, "weight group size (int/uint/fp8)");
  demo->add_option("--steps", demo_opts.steps, "QAT fine-tuning steps");
  demo->add_option("--seed", demo_opts.seed, "random seed");
  demo->add_option("--metrics", demo_opts.metrics_path, "write one JSON line per step here");

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
    if (*demo) return qat::recipes::run_demo(demo_opts, std::cout);
  } catch (const std::exception& e) {
    // c10::Error carries a backtrace after the first line; the first line is the message.
    std::string msg = e.what();
    std::cerr << "qat: error: " << msg.substr(0, msg.find("\nException raised from")) << "\n";
    return 1;
  }
  return 0;
}
