#include "recipes/plan_command.h"

#include <iostream>
#include <memory>

#include "recipes/config/recipe_config.h"
#include "recipes/memory_plan.h"
#include "recipes/methods.h"

namespace qat::recipes {
namespace {

struct PlanOptions {
  std::string config;
  std::vector<std::string> overrides;
  int nproc = 1;
};

int run_plan(const PlanOptions& o) {
  const RecipeConfig cfg = load_recipe_config(o.config, o.overrides);
  const models::LlamaConfig shape = model_shape(cfg);
  std::cout << "qat plan: " << to_string(cfg.method) << " on " << resolve_model_path(cfg.model.path)
            << " (" << shape.num_hidden_layers << " layers, hidden " << shape.hidden_size
            << ", vocab " << shape.vocab_size << "), micro-batch " << cfg.train.micro_batch << " x "
            << cfg.data.seq_len << " tokens"
            << (cfg.train.activation_checkpointing ? ", activation checkpointing" : "") << "\n\n"
            << plan_memory(shape, cfg, o.nproc).table();
  return 0;
}

}  // namespace

void add_plan_command(CLI::App& app, CommandList& commands) {
  auto o = std::make_shared<PlanOptions>();
  auto* plan = app.add_subcommand(
      "plan", "Predict a training run's memory per rank from the model's shape (no weights read)");
  plan->add_option("config", o->config, "recipe YAML (see recipes/configs/)")
      ->required()
      ->check(CLI::ExistingFile);
  plan->add_option("overrides", o->overrides, "key=value overrides, as qat train takes them");
  plan->add_option("--nproc", o->nproc, "ranks the run would use (as qat train --nproc)")
      ->check(CLI::Range(1, 1024));
  commands.push_back({plan, [o] { return run_plan(*o); }});
}

}  // namespace qat::recipes
