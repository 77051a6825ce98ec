// train.shard: optimizer (trainers/shard.h): the pieces cover every parameter once, a sharded run
// equals the unsharded one bit for bit at the same world size (1, 2 and 4 ranks on Gloo; qat,
// qlora, qat_lora), resumes bit-identically, re-shards 2 -> 1 and 1 -> 2 ranks, owns 1/N of the
// optimizer state as the memory plan says, and a lost rank still ends the run with the step.
#include <array>
#include <cstdlib>
#include <fstream>
#include <sstream>

#include "qat/io/remove_tree.h"
#include "recipes/memory_plan.h"
#include "tests/support/catch_torch.h"
#include "tests/support/helpers.h"
#include "tests/trainers/trainer_test_util.h"
#include "trainers/checkpoint.h"
#include "trainers/launch.h"
#include "trainers/metrics/metrics_log.h"
#include "trainers/model_state.h"
#include "trainers/shard.h"

using namespace qat;

namespace {

struct ShardRun {
  std::vector<double> losses;
  std::map<std::string, at::Tensor> state;  // the last checkpoint's model state
};

// The config every sharding test trains: 4 sequences a step in all (per rank micro_batch x
// grad_accum x ranks), the method and shard mode given, `extra` overrides separated by spaces.
std::vector<std::string> shard_overrides(const std::string& method, const std::string& shard,
                                         int world, const std::string& extra) {
  std::vector<std::string> o{"method=" + method,
                             "train.shard=" + shard,
                             "train.micro_batch=" + std::to_string(4 / world),
                             "train.grad_accum=1",
                             "train.dist_timeout_s=30",
                             "checkpoint.every=3"};
  if (method != "qat") o.push_back("lora.r=4");
  std::istringstream words(extra);  // more overrides, separated by spaces
  for (std::string w; words >> w;) o.push_back(w);
  return o;
}

ShardRun read_run(const std::string& dir) {
  ShardRun r;
  for (const auto& rec : train::read_metrics(dir + "/metrics.jsonl").records)
    if (rec.kind == "train") r.losses.push_back(rec.number("loss"));
  r.state = train::load_checkpoint(dir).model;
  return r;
}

// Trains in this process (one rank), stopping after `stop_after` steps of this call if >= 0.
train::TrainSummary train_here(const std::string& dir, const std::vector<std::string>& overrides,
                               int64_t stop_after = -1) {
  const auto cfg = qat::test::tiny_config(dir, overrides);
  train::Communicator comm;
  auto model = qat::test::tiny_model(cfg);
  train::Trainer trainer(model, qat::test::tiny_sequences(64, 16, 11),
                         qat::test::tiny_sequences(8, 16, 12), cfg.trainer_config(), comm);
  if (stop_after >= 0) trainer.set_stop_after(stop_after);
  return trainer.fit();
}

// Launches `world` ranks of the hidden worker below on `dir`.
void train_ranks(int world, const std::string& dir, const std::string& method,
                 const std::string& shard, const std::map<std::string, std::string>& env = {},
                 const std::string& extra = "") {
  std::map<std::string, std::string> e = env;
  e["QAT_TEST_OUT"] = dir;
  e["QAT_TEST_METHOD"] = method;
  e["QAT_TEST_SHARD"] = shard;
  e["QAT_TEST_EXTRA"] = extra;
  const train::LaunchResult r = train::launch_local(world, {"/proc/self/exe", "[shard_worker]"}, e);
  INFO(r.message);
  REQUIRE(r.exit_code == 0);
}

void check_same_bits(const ShardRun& a, const ShardRun& b) {
  REQUIRE(a.losses.size() == b.losses.size());
  for (size_t i = 0; i < a.losses.size(); ++i) CHECK(a.losses[i] == b.losses[i]);
  REQUIRE(a.state.size() == b.state.size());
  for (const auto& [k, v] : a.state) {
    INFO(k);
    CHECK(at::equal(v, b.state.at(k)));
  }
}

// Losses within `rel` relative, weights within `rel` of each tensor's largest magnitude.
void check_close(const ShardRun& a, const ShardRun& b, double rel) {
  REQUIRE(a.losses.size() == b.losses.size());
  for (size_t i = 0; i < a.losses.size(); ++i)
    CHECK(b.losses[i] == Approx(a.losses[i]).epsilon(rel));
  REQUIRE(a.state.size() == b.state.size());
  double worst = 0;
  for (const auto& [k, v] : a.state) {
    if (!v.is_floating_point()) {
      CHECK(at::equal(v, b.state.at(k)));
      continue;
    }
    const double scale = std::max(1e-3, v.abs().max().item<double>());
    worst = std::max(worst, (v - b.state.at(k)).abs().max().item<double>() / scale);
  }
  INFO("largest relative weight difference " << worst);
  CHECK(worst < rel);
}

}  // namespace

TEST_CASE("shard pieces cover every element once, in 16-element lines", "[trainer][shard]") {
  for (const int64_t numel : {1, 15, 16, 17, 100, 4096, 4099, 1000003}) {
    for (const int world : {1, 2, 3, 4, 8}) {
      CAPTURE(numel, world);
      int64_t next = 0;
      for (int r = 0; r < world; ++r) {
        const train::ShardRange s = train::shard_range(numel, world, r);
        CHECK(s.begin == next);
        CHECK(s.size() <= train::shard_piece_size(numel, world));
        if (s.end < numel) CHECK(s.size() % 16 == 0);
        next = s.end;
      }
      CHECK(next == numel);
    }
  }
}

TEST_CASE("shard worker", "[.shard_worker]") {
  const char* out = std::getenv("QAT_TEST_OUT");
  if (out == nullptr) return;  // only meaningful under the launcher
  const train::DistEnv env = train::DistEnv::from_env();
  const char* extra = std::getenv("QAT_TEST_EXTRA");
  const auto cfg = qat::test::tiny_config(
      out, shard_overrides(std::getenv("QAT_TEST_METHOD"), std::getenv("QAT_TEST_SHARD"),
                           env.world_size, extra ? extra : ""));
  train::Communicator comm(env, at::Device(at::kCPU),
                           std::chrono::seconds(cfg.train.dist_timeout_s));
  auto model = qat::test::tiny_model(cfg);
  train::Trainer trainer(model, qat::test::tiny_sequences(64, 16, 11),
                         qat::test::tiny_sequences(8, 16, 12), cfg.trainer_config(), comm);
  if (const char* stop = std::getenv("QAT_TEST_STOP")) trainer.set_stop_after(std::atoll(stop));
  const char* die_at = std::getenv("QAT_TEST_DIE_AT");
  if (die_at != nullptr && env.rank == 1) {
    const int64_t at_step = std::atoll(die_at);
    trainer.set_step_callback([at_step](int64_t done) {
      if (done == at_step) std::_Exit(3);  // a rank dies without a word
    });
  }
  try {
    const train::TrainSummary s = trainer.fit();
    const recipes::MemoryPlan plan = recipes::plan_memory(
        qat::test::tiny_llama_config(qat::test::kTinyVocab, false), cfg, env.world_size);
    std::ofstream(std::string(out) + "/owned-rank" + std::to_string(env.rank) + ".txt")
        << s.optimizer_state_bytes << " " << plan.gradients + plan.optimizer << " "
        << comm.bytes_communicated();
  } catch (const train::TrainingError& e) {
    std::ofstream(std::string(out) + "/error-rank" + std::to_string(env.rank) + ".txt") << e.what();
    std::_Exit(2);
  }
}

TEST_CASE("one rank: a sharded run is the unsharded run bit for bit", "[trainer][shard]") {
  const std::string method = GENERATE(as<std::string>{}, "qat", "qlora", "qat_lora");
  CAPTURE(method);
  const std::string dir = qat::test::temp_dir();
  const std::string dropout = method == "qat" ? "" : "lora.dropout=0.1";
  train_here(dir + "/none", shard_overrides(method, "none", 1, dropout));
  train_here(dir + "/opt", shard_overrides(method, "optimizer", 1, dropout));
  check_same_bits(read_run(dir + "/none"), read_run(dir + "/opt"));
  qat::io::remove_tree(dir);
}

TEST_CASE("2 and 4 ranks: sharded == unsharded bit for bit, 1/N of the state as planned",
          "[trainer][shard][dist]") {
  const std::string method = GENERATE(as<std::string>{}, "qat", "qlora", "qat_lora");
  const int world = GENERATE(2, 4);
  CAPTURE(method, world);
  const std::string dir = qat::test::temp_dir();
  // LoRA dropout draws from each rank's generator, the same with and without sharding. Without
  // clipping: the sharded gradient norm is summed in another order (per piece), the update not.
  const std::string extra =
      std::string("train.max_grad_norm=0") + (method == "qat" ? "" : " lora.dropout=0.1");
  train_ranks(world, dir + "/none", method, "none", {}, extra);
  train_ranks(world, dir + "/opt", method, "optimizer", {}, extra);
  // Two ranks sum two values per element in either layout (a + b == b + a): the same bits. With
  // four, Gloo's ring adds an element's four values in an order set by its place in the buffer,
  // and the sharded buffer is laid out rank-major: float summation order, within 1e-5.
  if (world == 2)
    check_same_bits(read_run(dir + "/none"), read_run(dir + "/opt"));
  else
    check_close(read_run(dir + "/none"), read_run(dir + "/opt"), 1e-5);
  // The optimizer state per rank: the unsharded rank's / N (up to the 16-element pieces), rank 0
  // exactly as the memory plan predicts.
  auto read_owned = [&](const std::string& run, int rank) {
    std::ifstream in(dir + "/" + run + "/owned-rank" + std::to_string(rank) + ".txt");
    int64_t owned = 0, planned = 0, moved = 0;
    in >> owned >> planned >> moved;
    return std::array<int64_t, 3>{owned, planned, moved};
  };
  const int64_t whole = read_owned("none", 0)[0];
  const auto rank0 = read_owned("opt", 0);
  CHECK(rank0[0] == rank0[1]);
  int64_t sum = 0;
  for (int r = 0; r < world; ++r) {
    const int64_t owned = read_owned("opt", r)[0];
    CHECK(owned <= rank0[0]);
    sum += owned;
  }
  CHECK(sum == whole);
  CHECK(static_cast<double>(rank0[0]) <= static_cast<double>(whole) / world * 1.25);
  qat::io::remove_tree(dir);
}

TEST_CASE("with clipping, a sharded run follows the unsharded one within 1e-6",
          "[trainer][shard][dist]") {
  // The gradient norm is the only difference: per piece in float32, the squares summed in float64
  // (per parameter without sharding), so the clipping coefficient can differ in its last bits.
  const std::string dir = qat::test::temp_dir();
  train_ranks(2, dir + "/none", "qat", "none", {}, "train.max_grad_norm=0.05");
  train_ranks(2, dir + "/opt", "qat", "optimizer", {}, "train.max_grad_norm=0.05");
  check_close(read_run(dir + "/none"), read_run(dir + "/opt"), 1e-6);
  qat::io::remove_tree(dir);
}

TEST_CASE("a sharded run resumes bit for bit and re-shards 2 -> 1 and 1 -> 2 ranks",
          "[trainer][shard][dist]") {
  const std::string dir = qat::test::temp_dir();
  // Reference: 2 ranks sharded, 6 steps in one go; the same interrupted after 3 and resumed.
  train_ranks(2, dir + "/whole", "qlora", "optimizer");
  train_ranks(2, dir + "/resumed", "qlora", "optimizer", {{"QAT_TEST_STOP", "3"}});
  CHECK(train::checkpoint_step(train::resolve_checkpoint(dir + "/resumed")) == 3);
  train_ranks(2, dir + "/resumed", "qlora", "optimizer");
  check_same_bits(read_run(dir + "/whole"), read_run(dir + "/resumed"));

  // 2 ranks for 3 steps, then one rank (same global batch) continues from the two shards; and
  // one rank for 3 steps, then 2 ranks continue from its single shard. Both follow the unsharded
  // one-rank run within float summation order.
  train_ranks(2, dir + "/two-one", "qlora", "optimizer", {{"QAT_TEST_STOP", "3"}});
  train_here(dir + "/two-one", shard_overrides("qlora", "optimizer", 1, ""));
  train_here(dir + "/one-two", shard_overrides("qlora", "optimizer", 1, ""), 3);
  train_ranks(2, dir + "/one-two", "qlora", "optimizer");
  train_here(dir + "/one", shard_overrides("qlora", "none", 1, ""));
  const ShardRun one = read_run(dir + "/one");
  for (const std::string run : {"two-one", "one-two"}) {
    CAPTURE(run);
    check_close(one, read_run(dir + "/" + run), 1e-5);
  }
  qat::io::remove_tree(dir);
}

TEST_CASE("a lost rank ends a sharded run with the step and the last checkpoint",
          "[trainer][shard][dist]") {
  const std::string dir = qat::test::temp_dir();
  const train::LaunchResult r = train::launch_local(2, {"/proc/self/exe", "[shard_worker]"},
                                                    {{"QAT_TEST_OUT", dir},
                                                     {"QAT_TEST_METHOD", "qat"},
                                                     {"QAT_TEST_SHARD", "optimizer"},
                                                     {"QAT_TEST_EXTRA", ""},
                                                     {"QAT_TEST_DIE_AT", "4"}},
                                                    /*grace=*/60);
  CHECK(r.exit_code != 0);
  std::ifstream in(dir + "/error-rank0.txt");
  REQUIRE(in);
  const std::string msg((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  INFO(msg);
  CHECK(msg.find("step 5") != std::string::npos);
  CHECK(msg.find("lost contact") != std::string::npos);
  CHECK(msg.find("step-0000003") != std::string::npos);
  qat::io::remove_tree(dir);
}
