// How a command group plugs into the `qat` command line: each recipes/*_command.cpp file adds
// its subcommands to the app and records what to run when one of them is chosen. qat_main.cpp
// parses, finds the chosen subcommand and calls its `run`, which returns the exit status.
#pragma once

#include <ATen/ATen.h>

#include <CLI/CLI.hpp>
#include <functional>
#include <initializer_list>
#include <string>
#include <vector>

#include "qat/models/generate.h"

namespace qat::recipes {

struct Command {
  CLI::App* app = nullptr;   // the subcommand
  std::function<int()> run;  // runs it after parsing; exceptions become "qat: error: ..."
};

using CommandList = std::vector<Command>;

// The process's own command line (main() records it; empty until then): `--nproc` re-executes
// it once per rank.
void set_process_args(int argc, char** argv);
const std::vector<std::string>& process_args();

// The --temperature, --top-k, --top-p and --seed options of the commands that sample text
// (`generate`, `sample-data`), written into `s`; its values are the defaults shown in --help.
void add_sampling_options(CLI::App& app, models::SamplingConfig& s, const std::string& seed_help);

// A --dtype value as a floating-point type: fp32/f32/float32, bf16/bfloat16 or fp16/f16/float16.
// `allowed` lists the types the command supports; any other name, or a type not allowed, is an
// error that names `command` and the allowed spellings.
at::ScalarType parse_dtype_option(const std::string& name,
                                  std::initializer_list<at::ScalarType> allowed,
                                  const std::string& command);

}  // namespace qat::recipes
