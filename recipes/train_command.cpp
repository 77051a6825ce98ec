// `qat train`: load the config, build the model for its method, load the data, and run the
// trainer on every rank; with --nproc N it first spawns N local ranks of itself.
#include "recipes/train_command.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <iostream>

#include "qat/models/llama.h"
#include "recipes/memory_plan.h"
#include "recipes/methods.h"
#include "recipes/train_data.h"
#include "trainers/autocast.h"
#include "trainers/checkpoint.h"
#include "trainers/dist.h"
#include "trainers/host_memory.h"
#include "trainers/launch.h"
#include "trainers/metrics/format.h"
#include "trainers/metrics/table.h"
#include "trainers/model_state.h"
#include "trainers/trainer.h"

namespace fs = std::filesystem;

namespace qat::recipes {
namespace {

struct TrainOptions {
  std::string config;
  std::vector<std::string> overrides;
  int nproc = 1;
};

at::Device device_of(const RecipeConfig& cfg, const train::DistEnv& env) {
  if (cfg.train.device == train::Device::kCuda)
    return at::Device(at::kCUDA, static_cast<c10::DeviceIndex>(env.local_rank));
  return at::Device(at::kCPU);
}

int64_t count_params(torch::nn::Module& m, bool trainable_only) {
  int64_t n = 0;
  for (const auto& p : m.parameters())
    if (!trainable_only || p.requires_grad()) n += p.numel();
  return n;
}

void print_run_header(const RecipeConfig& cfg, const models::Pretrained& p, const TrainData& data,
                      const train::DistEnv& env, const train::Communicator& comm) {
  std::cerr << "qat train: " << to_string(cfg.method) << " on " << p.source << "\n"
            << "  parameters: " << count_params(*p.model, false) << " total, "
            << count_params(*p.model, true) << " trainable\n"
            << "  data: " << data.description << "\n"
            << "  ranks: " << env.world_size << " (" << comm.backend_name() << "), global batch "
            << cfg.global_batch(env.world_size) << " x " << cfg.data.seq_len << " tokens"
            << (cfg.train.shard == train::ShardMode::kOptimizer
                    ? ", gradients and AdamW state sharded (train.shard optimizer)"
                    : "")
            << "\n"
            << "  precision: " << train::resolve_precision(cfg.train).reason << "\n"
            << "  memory plan: " << plan_memory(p.model->config(), cfg, env.world_size).summary()
            << " (qat plan)\n"
            << "  output: " << cfg.output_dir << "\n";
  if (cfg.distill.enabled) {
    const DistillSection& d = cfg.distill;
    std::cerr << "  distill: teacher " << (d.teacher == "start" ? p.source : d.teacher) << " ("
              << to_string(d.teacher_dtype) << "), temperature " << d.temperature << ", ce_weight "
              << d.ce_weight << "\n";
  }
}

void print_run_summary(const train::TrainSummary& s) {
  train::Table t("run summary");
  t.add_column("");
  t.add_column("value");
  t.add_row({"steps", std::to_string(s.steps)});
  if (s.first_eval) t.add_row({"eval loss (start)", train::format_fixed(s.first_eval->loss, 4)});
  if (s.last_eval) {
    t.add_row({"eval loss (end)", train::format_fixed(s.last_eval->loss, 4)});
    t.add_row({"perplexity (end)", train::format_fixed(s.last_eval->perplexity, 3)});
  }
  t.add_row({"time", train::format_duration(s.train_seconds)});
  t.add_row({"throughput", train::format_rate(s.tokens_per_second, "tok/s")});
  t.add_row({"peak memory", train::format_bytes(s.peak_memory_bytes)});
  t.add_row({"checkpoint", s.last_checkpoint});
  std::cout << t.to_text();
}

// --nproc N: this process becomes the launcher of N ranks of itself.
int launch_ranks(int nproc) {
  std::vector<std::string> args = process_args();
  TORCH_CHECK(!args.empty(),
              "qat train --nproc: the command line was not recorded (main() calls "
              "set_process_args)");
  args[0] = "/proc/self/exe";
  const train::LaunchResult r = train::launch_local(nproc, args);
  if (r.exit_code != 0) std::cerr << "qat train: " << r.message << "\n";
  return r.exit_code;
}

// The training recipe, every method: config -> model with the method applied -> data ->
// (quant.init) -> trainer -> summary. Runs on every rank.
int run_train(const TrainOptions& o) {
  if (o.nproc > 1 && std::getenv("RANK") == nullptr) return launch_ranks(o.nproc);
  const RecipeConfig cfg = load_recipe_config(o.config, o.overrides);
  train::prepare_output_dir(cfg.output_dir);  // before the slow loads
  const train::DistEnv env = train::DistEnv::from_env();
  models::Pretrained p = build_model(cfg, env.local_rank);
  train::Communicator comm(env, device_of(cfg, env),
                           std::chrono::seconds(cfg.train.dist_timeout_s));
  TrainData data = load_train_data(cfg, *p.tokenizer, p.chat_template);
  if (env.rank == 0) print_run_header(cfg, p, data, env, comm);
  // quant.init: gptq rounds the fresh model by GPTQ before step 1. Every rank computes it on the
  // same sequences; the trainer then starts all ranks from rank 0's weights.
  if (!train::latest_checkpoint(cfg.output_dir + "/checkpoints")) {
    const std::string line = init_quantized_weights(*p.model, cfg, data.train);
    if (env.rank == 0 && !line.empty()) std::cerr << "  " << line << "\n";
  }
  nlohmann::json info = {
      {"model", p.source}, {"data", data.description}, {"init", to_string(cfg.quant.init)}};
  if (cfg.distill.enabled) info["teacher"] = cfg.distill.teacher;
  train::Trainer trainer(p.model, data.train, data.heldout, cfg.trainer_config(), comm, info,
                         training_loss(cfg, env.local_rank));
  train::TrainSummary s;
  try {
    train::set_host_memory(train::host_memory_from_env());  // trainers/host_memory.h
    s = trainer.fit();
  } catch (const train::TrainingError& e) {
    std::cerr << "qat train: error: " << e.what() << "\n";
    return 1;
  }
  if (env.rank == 0) print_run_summary(s);
  return 0;
}

}  // namespace

void add_train_commands(CLI::App& app, CommandList& commands) {
  auto o = std::make_shared<TrainOptions>();
  auto* train = app.add_subcommand(
      "train", "Fine-tune a model with a recipe config (QAT, QLoRA, QAT+LoRA, full)");
  train->add_option("config", o->config, "recipe YAML (see recipes/configs/)")
      ->required()
      ->check(CLI::ExistingFile);
  train->add_option("overrides", o->overrides,
                    "key=value overrides, e.g. train.lr=1e-4 train.steps=50");
  train
      ->add_option("--nproc", o->nproc,
                   "local ranks to spawn (data parallel; Gloo on CPU, NCCL on GPU)")
      ->check(CLI::Range(1, 1024));
  commands.push_back({train, [o] { return run_train(*o); }});
}

}  // namespace qat::recipes
