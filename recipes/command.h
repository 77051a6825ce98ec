// How a command group plugs into the `qat` command line: each recipes/*_command.cpp file adds
// its subcommands to the app and records what to run when one of them is chosen. qat_main.cpp
// parses, finds the chosen subcommand and calls its `run`, which returns the exit status.
#pragma once

#include <CLI/CLI.hpp>
#include <functional>
#include <string>
#include <vector>

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

}  // namespace qat::recipes
