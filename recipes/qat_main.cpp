// The `qat` command line: `demo` (the default job), `train`, `eval`, `text`, `ptq`, `export`,
// `generate`, `sample-data`, `inspect`, `formats`. Command groups live in recipes/*_command.cpp and
// default_job.cpp.
#include <CLI/CLI.hpp>
#include <iostream>

#include "recipes/command.h"
#include "recipes/default_job.h"
#include "recipes/eval_command.h"
#include "recipes/export_command.h"
#include "recipes/model_commands.h"
#include "recipes/plan_command.h"
#include "recipes/ptq_command.h"
#include "recipes/sample_data_command.h"
#include "recipes/train_command.h"
#include "trainers/host_memory.h"

int main(int argc, char** argv) {
  CLI::App app{"qat: quantization-aware training, QLoRA and export of quantized language models"};
  app.require_subcommand(1);
  qat::recipes::set_process_args(argc, argv);
  qat::recipes::CommandList commands;
  qat::recipes::add_model_commands(app, commands);
  qat::recipes::add_default_job_command(app, commands);
  qat::recipes::add_train_commands(app, commands);
  qat::recipes::add_plan_command(app, commands);
  qat::recipes::add_eval_command(app, commands);
  qat::recipes::add_ptq_command(app, commands);
  qat::recipes::add_export_command(app, commands);
  qat::recipes::add_sample_data_command(app, commands);

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  try {
    (void)qat::train::host_memory_from_env();  // a bad QAT_HOST_MEMORY fails before any work
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
