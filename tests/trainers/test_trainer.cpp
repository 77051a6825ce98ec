// The training loop's promises: gradient accumulation and world size do not change the run,
// a resumed run is bit-identical to an uninterrupted one (with the cross-entropy and with
// distillation from a teacher), and failures name the step and the last good checkpoint.
#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "qat/io/remove_tree.h"
#include "tests/support/catch_torch.h"
#include "tests/support/helpers.h"
#include "tests/trainers/trainer_test_util.h"
#include "trainers/checkpoint.h"
#include "trainers/distill.h"
#include "trainers/launch.h"
#include "trainers/metrics/metrics_log.h"
#include "trainers/model_state.h"

namespace fs = std::filesystem;
using namespace qat;
using qat::test::tiny_config;
using qat::test::tiny_model;
using qat::test::tiny_sequences;

namespace {

struct Run {
  train::TrainSummary summary;
  std::map<std::string, at::Tensor> state;
  std::vector<train::Record> records;
};

// Distillation from the tiny model's float start (the same teacher in every process), chunked
// in 5 target rows, tau 2, a quarter cross-entropy.
train::LossFunction tiny_distillation() {
  auto teacher = tiny_model(tiny_config(qat::test::temp_dir(), {"method=full"}));
  train::HeadLossOptions o;
  o.temperature = 2.0;
  o.ce_weight = 0.25;
  o.chunk_rows = 5;
  return train::distillation_loss(teacher, o);
}

Run train_run(const recipes::RecipeConfig& cfg, train::Communicator& comm, int64_t stop_after = -1,
              train::LossFunction loss = train::next_token_loss_sum) {
  auto model = tiny_model(cfg);
  train::Trainer trainer(model, tiny_sequences(64, 16, 11), tiny_sequences(8, 16, 12),
                         cfg.trainer_config(), comm, nlohmann::json::object(), std::move(loss));
  if (stop_after >= 0) trainer.set_stop_after(stop_after);
  Run r;
  r.summary = trainer.fit();
  for (auto& [k, v] : train::training_state(*model)) r.state[k] = v.clone();
  r.records = train::read_metrics(cfg.output_dir + "/metrics.jsonl").records;
  return r;
}

std::vector<double> field(const std::vector<train::Record>& records, const std::string& kind,
                          const std::string& name) {
  std::vector<double> out;
  for (const auto& r : records)
    if (r.kind == kind) out.push_back(r.number(name));
  return out;
}

double max_rel_diff(const std::map<std::string, at::Tensor>& a,
                    const std::map<std::string, at::Tensor>& b) {
  REQUIRE(a.size() == b.size());
  double worst = 0;
  for (const auto& [k, v] : a) {
    const at::Tensor w = b.at(k);
    if (!v.is_floating_point()) {
      CHECK(at::equal(v, w));
      continue;
    }
    const double scale = std::max(1e-3, v.abs().max().item<double>());
    worst = std::max(worst, (v - w).abs().max().item<double>() / scale);
  }
  return worst;
}

}  // namespace

TEST_CASE("gradient accumulation 1 vs 4 gives the same losses and weights", "[trainer]") {
  const std::string dir = qat::test::temp_dir();
  train::Communicator comm;
  const Run a =
      train_run(tiny_config(dir + "/a", {"train.micro_batch=4", "train.grad_accum=1"}), comm);
  const Run b =
      train_run(tiny_config(dir + "/b", {"train.micro_batch=1", "train.grad_accum=4"}), comm);
  const auto la = field(a.records, "train", "loss"), lb = field(b.records, "train", "loss");
  REQUIRE(la.size() == 6);
  REQUIRE(lb.size() == 6);
  for (size_t i = 0; i < la.size(); ++i) CHECK(lb[i] == Approx(la[i]).epsilon(1e-5));
  // Float sums in another order: the weights agree to float32 rounding, relative to each tensor's
  // scale.
  const double rel = max_rel_diff(a.state, b.state);
  INFO("max relative weight difference " << rel);
  CHECK(rel < 1e-5);
  CHECK(la.front() != Approx(la.back()));  // it trained
  qat::io::remove_tree(dir);
}

TEST_CASE("method lora trains only adapters over the frozen float base, and merges exactly",
          "[trainer]") {
  const std::string dir = qat::test::temp_dir();
  const auto cfg = tiny_config(dir, {"method=lora", "lora.r=4", "train.lr=1.0e-2"});
  auto model = tiny_model(cfg);
  std::map<std::string, at::Tensor> before;
  int64_t adapters = 0;
  for (const auto& p : model->named_parameters()) {
    before[p.key()] = p.value().detach().clone();
    const bool adapter = p.key().find(".lora_") != std::string::npos;
    CHECK(p.value().requires_grad() == adapter);
    adapters += adapter;
  }
  CHECK(adapters == 2 * 7 * 2);  // A and B on the 7 linears of each of the 2 layers
  train::Communicator comm;
  train::Trainer trainer(model, tiny_sequences(64, 16, 11), tiny_sequences(8, 16, 12),
                         cfg.trainer_config(), comm, nlohmann::json::object());
  trainer.fit();
  const auto loss = field(train::read_metrics(dir + "/metrics.jsonl").records, "train", "loss");
  REQUIRE(loss.size() == 6);
  CHECK(loss.back() < loss.front());
  for (const auto& p : model->named_parameters()) {
    INFO(p.key());
    if (p.value().requires_grad()) {
      CHECK_FALSE(at::equal(p.value(), before.at(p.key())));  // every adapter trained
    } else {
      CHECK(qat::test::bit_equal(p.value(), before.at(p.key())));  // the base did not move
    }
  }
  // The export's merged dense model computes what the trained adapters did.
  model->eval();
  const at::Tensor ids = tiny_sequences(2, 16, 5).tokens;
  c10::NoGradGuard no_grad;
  const at::Tensor with_adapters = model->forward(ids);
  CHECK(lora::merge_lora(*model).size() == 14);
  CHECK(at::allclose(model->forward(ids), with_adapters, 1e-5, 1e-5));
  qat::io::remove_tree(dir);
}

TEST_CASE("a resumed run is bit-identical to an uninterrupted one", "[trainer]") {
  // QAT + LoRA with dropout (the RNG must be restored), a fake-quant delay that ends after the
  // interruption (the quantizer step counters must be restored) and a cosine schedule; trained
  // on the cross-entropy, and by distillation from the float start.
  const bool distill = GENERATE(false, true);
  CAPTURE(distill);
  auto loss = [&] { return distill ? tiny_distillation() : train::next_token_loss_sum; };
  const std::vector<std::string> opts{
      "method=qat_lora",    "lora.r=4",           "lora.dropout=0.1",   "quant.delay_steps=4",
      "checkpoint.every=3", "train.grad_accum=2", "train.micro_batch=2"};
  const std::string dir = qat::test::temp_dir();
  train::Communicator comm;
  const Run full = train_run(tiny_config(dir + "/full", opts), comm, -1, loss());
  const Run first = train_run(tiny_config(dir + "/split", opts), comm, /*stop_after=*/3, loss());
  CHECK(first.summary.steps == 3);
  REQUIRE(train::latest_checkpoint(dir + "/split/checkpoints").has_value());
  const Run resumed = train_run(tiny_config(dir + "/split", opts), comm, -1, loss());
  CHECK(resumed.summary.resumed_from == 3);
  CHECK(resumed.summary.steps == 6);
  REQUIRE(full.state.size() == resumed.state.size());
  for (const auto& [k, v] : full.state) {
    INFO(k);
    CHECK(qat::test::bit_equal(v, resumed.state.at(k)));
  }
  for (const char* f : {"loss", "lr", "grad_norm"}) {
    const auto x = field(full.records, "train", f), y = field(resumed.records, "train", f);
    REQUIRE(x.size() == y.size());
    for (size_t i = 0; i < x.size(); ++i) CHECK(x[i] == y[i]);
  }
  CHECK(field(full.records, "eval", "loss") == field(resumed.records, "eval", "loss"));
  qat::io::remove_tree(dir);
}

TEST_CASE("log.tensorboard mirrors metrics.jsonl, each step once across a resume", "[trainer]") {
  const std::string dir = qat::test::temp_dir();
  const std::vector<std::string> opts{"log.tensorboard=true", "checkpoint.every=3"};
  train::Communicator comm;
  train_run(tiny_config(dir, opts), comm, /*stop_after=*/4);  // saves step 4 as it stops
  const Run run = train_run(tiny_config(dir, opts), comm);    // replays steps 0-4, then 5 and 6
  REQUIRE(run.summary.resumed_from == 4);
  REQUIRE(qat::test::run_python("tensorboard_read.py", {dir + "/tensorboard", dir + "/tb.json"}) ==
          0);
  std::ifstream in(dir + "/tb.json");
  const auto j = nlohmann::json::parse(in);
  CHECK(j["files"] == 1);
  for (const char* kind : {"train", "eval"}) {
    const auto expected = field(run.records, kind, "loss");
    const auto& got = j["scalars"][std::string(kind) + "/loss"];
    REQUIRE(got.size() == expected.size());
    for (size_t i = 0; i < expected.size(); ++i) {
      CHECK(got[i][1].get<double>() == static_cast<double>(static_cast<float>(expected[i])));
    }
  }
  CHECK(j["scalars"]["train/loss"].back()[0] == 6);
  qat::io::remove_tree(dir);
}

TEST_CASE("a NaN loss stops the run naming the step and the last good checkpoint", "[trainer]") {
  const std::string dir = qat::test::temp_dir();
  const std::vector<std::string> opts{"method=qat_lora", "train.steps=2", "checkpoint.every=2"};
  train::Communicator comm;
  train_run(tiny_config(dir, opts), comm);
  // A frozen weight (not in the checkpoint) goes bad: the resumed run's next step is NaN.
  auto cfg = tiny_config(dir, {"method=qat_lora", "train.steps=4", "checkpoint.every=2"});
  auto model = tiny_model(cfg);
  {
    c10::NoGradGuard no_grad;
    model->model().embed_tokens()->weight.fill_(std::nan(""));
  }
  train::Trainer trainer(model, tiny_sequences(64, 16, 11), tiny_sequences(8, 16, 12),
                         cfg.trainer_config(), comm);
  try {
    trainer.fit();
    FAIL("no error");
  } catch (const train::TrainingError& e) {
    const std::string msg = e.what();
    INFO(msg);
    CHECK(msg.find("step 3") != std::string::npos);
    CHECK(msg.find("NaN") != std::string::npos);
    CHECK(msg.find("step-0000002") != std::string::npos);
  }
  qat::io::remove_tree(dir);
}

TEST_CASE("the trainer refuses data smaller than one global batch", "[trainer]") {
  const std::string dir = qat::test::temp_dir();
  auto cfg = tiny_config(dir, {"train.micro_batch=8", "train.grad_accum=16"});
  train::Communicator comm;
  CHECK_THROWS_WITH(train::Trainer(tiny_model(cfg), tiny_sequences(64, 16, 1),
                                   tiny_sequences(8, 16, 2), cfg.trainer_config(), comm),
                    Catch::Contains("global batch of 128"));
  qat::io::remove_tree(dir);
}

// ---- Two ranks (Gloo, two processes) -----------------------------------------------------------
// The parent re-runs this test binary once per rank through launch_local (as `qat train --nproc`
// does); the hidden worker test below trains on its rank.

TEST_CASE("dist worker", "[.dist_worker]") {
  const char* out = std::getenv("QAT_TEST_OUT");
  if (out == nullptr) return;  // only meaningful under the launcher
  const train::DistEnv env = train::DistEnv::from_env();
  auto cfg =
      tiny_config(out, {"train.micro_batch=2", "train.grad_accum=1", "train.dist_timeout_s=30"});
  train::Communicator comm(env, at::Device(at::kCPU),
                           std::chrono::seconds(cfg.train.dist_timeout_s));
  auto model = tiny_model(cfg);
  const bool distill = std::getenv("QAT_TEST_DISTILL") != nullptr;
  train::Trainer trainer(model, tiny_sequences(64, 16, 11), tiny_sequences(8, 16, 12),
                         cfg.trainer_config(), comm, nlohmann::json::object(),
                         distill ? tiny_distillation() : train::next_token_loss_sum);
  const char* die_at = std::getenv("QAT_TEST_DIE_AT");
  if (die_at != nullptr && env.rank == 1) {
    const int64_t at_step = std::atoll(die_at);
    trainer.set_step_callback([at_step](int64_t done) {
      if (done == at_step) std::_Exit(3);  // a rank dies without a word
    });
  }
  try {
    trainer.fit();
  } catch (const train::TrainingError& e) {
    std::ofstream(std::string(out) + "/error-rank" + std::to_string(env.rank) + ".txt") << e.what();
    std::_Exit(2);
  }
}

TEST_CASE("1 rank vs 2 ranks (Gloo, two processes) train the same model", "[trainer][dist]") {
  // With the cross-entropy, and with distillation (its loss is normalised by the global target
  // count as the cross-entropy is).
  const bool distill = GENERATE(false, true);
  CAPTURE(distill);
  const std::string dir = qat::test::temp_dir();
  std::map<std::string, std::string> env{{"QAT_TEST_OUT", dir + "/two"}};
  if (distill) env["QAT_TEST_DISTILL"] = "1";
  const train::LaunchResult r = train::launch_local(2, {"/proc/self/exe", "[dist_worker]"}, env);
  INFO(r.message);
  REQUIRE(r.exit_code == 0);
  train::Communicator comm;
  // One rank with the same global batch: 2 micro-batches of 2.
  const Run one =
      train_run(tiny_config(dir + "/one", {"train.micro_batch=2", "train.grad_accum=2"}), comm, -1,
                distill ? tiny_distillation() : train::next_token_loss_sum);
  const train::CheckpointData two = train::load_checkpoint(dir + "/two");
  CHECK(two.state.at("world_size") == 2);
  const auto two_records = train::read_metrics(dir + "/two/metrics.jsonl").records;
  const auto l1 = field(one.records, "train", "loss"), l2 = field(two_records, "train", "loss");
  REQUIRE(l1.size() == l2.size());
  for (size_t i = 0; i < l1.size(); ++i) CHECK(l2[i] == Approx(l1[i]).epsilon(1e-5));
  const double rel = max_rel_diff(one.state, two.model);
  INFO("max relative weight difference " << rel);
  CHECK(rel < 1e-5);
  qat::io::remove_tree(dir);
}

TEST_CASE("a lost rank ends the run with the step and the last checkpoint", "[trainer][dist]") {
  const std::string dir = qat::test::temp_dir();
  const train::LaunchResult r =
      train::launch_local(2, {"/proc/self/exe", "[dist_worker]"},
                          {{"QAT_TEST_OUT", dir}, {"QAT_TEST_DIE_AT", "2"}}, /*grace=*/60);
  CHECK(r.exit_code != 0);
  CHECK(r.message.find("rank 1 exited with code 3") != std::string::npos);
  std::ifstream in(dir + "/error-rank0.txt");
  REQUIRE(in);
  const std::string msg((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  INFO(msg);
  CHECK(msg.find("step 3") != std::string::npos);
  CHECK(msg.find("lost contact") != std::string::npos);
  qat::io::remove_tree(dir);
}
