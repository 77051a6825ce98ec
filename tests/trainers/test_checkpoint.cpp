// Checkpoints are atomic: a writer killed with SIGKILL in the middle of a save leaves the
// previous checkpoint as the latest complete one, loadable and intact.
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <thread>

#include "qat/io/remove_tree.h"
#include "tests/support/catch_torch.h"
#include "tests/support/helpers.h"
#include "trainers/checkpoint.h"

namespace fs = std::filesystem;
using namespace qat;

namespace {

// Step s's checkpoint holds tensors filled with s (big enough that a save takes a while).
train::CheckpointData data_for(int64_t step) {
  train::CheckpointData d;
  for (int i = 0; i < 4; ++i)
    d.model["w" + std::to_string(i)] = at::full({1 << 22}, static_cast<float>(step));
  d.optimizer["step"] = at::scalar_tensor(step, at::kLong);
  d.rng = train::rng_state(false);
  d.state = {{"step", step}};
  return d;
}

}  // namespace

TEST_CASE("checkpoint writer", "[.ckpt_writer]") {
  const char* dir = std::getenv("QAT_TEST_CKPT_DIR");
  if (dir == nullptr) return;
  for (int64_t step = 1;; ++step)
    train::save_checkpoint(dir, step, data_for(step), /*keep_last=*/2);
}

TEST_CASE("checkpoints round-trip and keep the last K", "[checkpoint]") {
  const std::string dir = qat::test::temp_dir();
  for (int64_t s = 1; s <= 4; ++s) train::save_checkpoint(dir, s * 10, data_for(s * 10), 2);
  int count = 0;
  for (const auto& e : fs::directory_iterator(dir))
    count += e.path().filename().string().rfind("step-", 0) == 0;
  CHECK(count == 2);
  const auto latest = train::latest_checkpoint(dir);
  REQUIRE(latest.has_value());
  CHECK(fs::path(*latest).filename() == "step-0000040");
  const train::CheckpointData d = train::load_checkpoint(*latest);
  CHECK(d.state.at("step") == 40);
  CHECK(at::equal(d.model.at("w3"), at::full({1 << 22}, 40.0f)));
  CHECK(at::equal(d.rng.at("cpu"), train::rng_state(false).at("cpu")));
  CHECK(train::resolve_checkpoint(dir) == *latest);
  CHECK_THROWS_WITH(train::load_checkpoint(dir + "/nothing"),
                    Catch::Contains("no such run or checkpoint"));
  io::remove_tree(dir);
}

TEST_CASE("a writer killed by SIGKILL mid-save leaves the previous checkpoint loadable",
          "[checkpoint]") {
  const std::string dir = qat::test::temp_dir();
  const std::string env_kv = "QAT_TEST_CKPT_DIR=" + dir;
  std::vector<char*> envp{const_cast<char*>(env_kv.c_str()), nullptr};
  char prog[] = "/proc/self/exe";
  char spec[] = "[ckpt_writer]";
  char* argv[] = {prog, spec, nullptr};
  pid_t pid = 0;
  REQUIRE(posix_spawn(&pid, prog, nullptr, nullptr, argv, envp.data()) == 0);
  // Wait for a complete checkpoint and a save in progress after it, then kill.
  bool killed_mid_save = false;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (std::chrono::steady_clock::now() < deadline) {
    const bool have_complete = train::latest_checkpoint(dir).has_value();
    bool saving = false;
    std::error_code ec;
    for (const auto& e : fs::directory_iterator(dir, ec))
      saving |= e.path().filename().string().rfind(".tmp-", 0) == 0;
    if (have_complete && saving) {
      ::kill(pid, SIGKILL);
      killed_mid_save = true;
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  if (!killed_mid_save) ::kill(pid, SIGKILL);
  int status = 0;
  ::waitpid(pid, &status, 0);
  REQUIRE(killed_mid_save);
  CHECK(WIFSIGNALED(status));

  const auto latest = train::latest_checkpoint(dir);
  REQUIRE(latest.has_value());
  const train::CheckpointData d = train::load_checkpoint(*latest);
  const int64_t step = d.state.at("step").get<int64_t>();
  INFO("latest complete checkpoint: " << *latest);
  CHECK(at::equal(d.model.at("w0"), at::full({1 << 22}, static_cast<float>(step))));
  CHECK(at::equal(d.model.at("w3"), at::full({1 << 22}, static_cast<float>(step))));
  // The next save clears the half-written temp directory.
  train::save_checkpoint(dir, step + 100, data_for(step + 100), 2);
  for (const auto& e : fs::directory_iterator(dir))
    CHECK(e.path().filename().string().rfind(".tmp-", 0) != 0);
  io::remove_tree(dir);
}
