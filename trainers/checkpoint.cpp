#include "trainers/checkpoint.h"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <ATen/Context.h>
#include <ATen/core/Generator.h>
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "qat/io/remove_tree.h"
#include "qat/io/safetensors_torch.h"

namespace fs = std::filesystem;

namespace qat::train {
namespace {

constexpr char kPrefix[] = "step-";

}  // namespace

std::string checkpoint_name(int64_t step) {
  std::ostringstream s;
  s << kPrefix;
  s.width(7);
  s.fill('0');
  s << step;
  return s.str();
}

namespace {

// Steps of the complete checkpoints in dir, ascending.
std::vector<std::pair<int64_t, fs::path>> list_checkpoints(const fs::path& dir) {
  std::vector<std::pair<int64_t, fs::path>> out;
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) return out;
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    const std::string name = e.path().filename().string();
    if (name.rfind(kPrefix, 0) != 0 || !e.is_directory()) continue;
    const std::string digits = name.substr(sizeof(kPrefix) - 1);
    if (digits.empty() || !std::all_of(digits.begin(), digits.end(), ::isdigit)) continue;
    if (!fs::exists(e.path() / "trainer_state.json")) continue;
    out.emplace_back(std::stoll(digits), e.path());
  }
  std::sort(out.begin(), out.end());
  return out;
}

// Flushes a file (or a directory's entries) to disk: a checkpoint is renamed into place only
// after its bytes are durable, so a power loss cannot leave a "complete" but empty checkpoint.
void fsync_path(const fs::path& p, bool directory) {
  const int fd = ::open(p.c_str(), directory ? O_RDONLY | O_DIRECTORY : O_RDONLY);
  TORCH_CHECK(fd >= 0, "cannot open ", p.string(), " to flush it: ", std::strerror(errno));
  const int rc = ::fsync(fd);
  const int err = errno;
  ::close(fd);
  TORCH_CHECK(rc == 0 || directory, "cannot flush ", p.string(), " to disk: ", std::strerror(err));
}

std::vector<std::pair<std::string, at::Tensor>> as_list(
    const std::map<std::string, at::Tensor>& m) {
  std::vector<std::pair<std::string, at::Tensor>> out;
  for (const auto& [k, v] : m) out.emplace_back(k, v.detach().to(at::kCPU).contiguous());
  return out;
}

}  // namespace

std::string save_checkpoint(const std::string& checkpoints_dir, int64_t step,
                            const CheckpointData& data, int keep_last) {
  TORCH_CHECK(data.state.contains("step"), "checkpoint state must hold the step");
  const fs::path dir(checkpoints_dir);
  fs::create_directories(dir);
  // Leftovers of a save that was killed: never complete, safe to remove.
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    const std::string n = e.path().filename().string();
    if (n.rfind(".tmp-", 0) == 0 || n.rfind(".trash-", 0) == 0) io::remove_tree(e.path().string());
  }
  const std::string name = checkpoint_name(step);
  // Staged optimizer shards of earlier, killed saves (never of this one: it adopts its own).
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    const std::string n = e.path().filename().string();
    if (n.rfind(".shards-", 0) == 0 && n != ".shards-" + name) io::remove_tree(e.path().string());
  }
  const fs::path tmp = dir / (".tmp-" + name + "-" + std::to_string(::getpid()));
  const fs::path final_path = dir / name;
  fs::create_directories(tmp);
  io::save_safetensors((tmp / "model.safetensors").string(), as_list(data.model));
  if (!data.optimizer.empty())
    io::save_safetensors((tmp / "optimizer.safetensors").string(), as_list(data.optimizer));
  for (const std::string& f : data.adopt) {
    fs::rename(f, tmp / fs::path(f).filename(), ec);
    TORCH_CHECK(!ec, "cannot move ", f, " into the checkpoint: ", ec.message());
  }
  io::save_safetensors((tmp / "rng.safetensors").string(), as_list(data.rng));
  {
    std::ofstream out(tmp / "trainer_state.json");
    out << data.state.dump(2) << "\n";
    out.close();
    TORCH_CHECK(!out.fail(), "cannot write ", (tmp / "trainer_state.json").string(),
                ": is the disk full?");
  }
  for (const auto& e : fs::directory_iterator(tmp)) fsync_path(e.path(), false);
  fsync_path(tmp, true);
  // Re-saving a step: move the old copy aside (never delete it in place, which could leave a
  // half-deleted directory that looks complete). A crash between the two renames leaves the
  // earlier steps as the latest complete checkpoints; the next save removes the hidden copies.
  const fs::path trash = dir / (".trash-" + name + "-" + std::to_string(::getpid()));
  if (fs::exists(final_path)) {
    fs::rename(final_path, trash, ec);
    TORCH_CHECK(!ec, "cannot move the previous ", final_path.string(), " aside: ", ec.message());
  }
  fs::rename(tmp, final_path, ec);
  TORCH_CHECK(!ec, "cannot move checkpoint into place at ", final_path.string(), ": ",
              ec.message());
  fsync_path(dir, true);
  io::remove_tree(trash.string());
  io::remove_tree((dir / (".shards-" + name)).string());

  if (keep_last > 0) {
    auto all = list_checkpoints(dir);
    for (size_t i = 0; i + static_cast<size_t>(keep_last) < all.size(); ++i)
      io::remove_tree(all[i].second.string());
  }
  return final_path.string();
}

std::optional<std::string> latest_checkpoint(const std::string& checkpoints_dir) {
  auto all = list_checkpoints(checkpoints_dir);
  if (all.empty()) return std::nullopt;
  return all.back().second.string();
}

std::string resolve_checkpoint(const std::string& path) {
  const fs::path p(path);
  TORCH_CHECK(fs::exists(p), "no such run or checkpoint: ", path);
  if (fs::exists(p / "trainer_state.json")) return p.string();
  for (const fs::path& dir : {p / "checkpoints", p}) {
    if (auto latest = latest_checkpoint(dir.string())) return *latest;
  }
  TORCH_CHECK(false, path,
              " holds no complete checkpoint (expected a run directory with "
              "checkpoints/step-N/trainer_state.json, or such a step directory)");
  return {};
}

namespace {

nlohmann::json read_state(const fs::path& dir) {
  std::ifstream in(dir / "trainer_state.json");
  TORCH_CHECK(in, "cannot read ", (dir / "trainer_state.json").string());
  nlohmann::json state;
  try {
    state = nlohmann::json::parse(in);
  } catch (const std::exception& e) {
    TORCH_CHECK(false, (dir / "trainer_state.json").string(), " is not valid JSON: ", e.what());
  }
  TORCH_CHECK(state.is_object() && state.contains("step"), (dir / "trainer_state.json").string(),
              " has no step");
  return state;
}

}  // namespace

int64_t checkpoint_step(const std::string& checkpoint_dir) {
  return read_state(checkpoint_dir).at("step").get<int64_t>();
}

CheckpointData load_checkpoint(const std::string& path) {
  const fs::path dir = resolve_checkpoint(path);
  CheckpointData d;
  auto load = [&](const char* file) {
    const fs::path f = dir / file;
    TORCH_CHECK(fs::exists(f), "checkpoint ", dir.string(), " lacks ", file);
    std::map<std::string, at::Tensor> out;
    for (auto& [k, v] : io::load_safetensors(f.string())) out[k] = v.clone();  // own the memory
    return out;
  };
  d.model = load("model.safetensors");
  d.optimizer = load_optimizer_state(dir.string());
  d.rng = load("rng.safetensors");
  d.state = read_state(dir);
  return d;
}

std::string optimizer_shard_path(const std::string& checkpoints_dir, int64_t step, int rank,
                                 int world_size) {
  return (fs::path(checkpoints_dir) / (".shards-" + checkpoint_name(step)) /
          ("optimizer-rank-" + std::to_string(rank) + "-of-" + std::to_string(world_size) +
           ".safetensors"))
      .string();
}

void save_optimizer_shard(const std::string& path, const std::map<std::string, at::Tensor>& shard) {
  fs::create_directories(fs::path(path).parent_path());
  io::save_safetensors(path, as_list(shard));
  fsync_path(path, false);
}

namespace {

// The optimizer-rank-R-of-N.safetensors files of a checkpoint directory, by rank; checks that
// exactly ranks 0..N-1 of one N are there.
std::vector<fs::path> optimizer_shards(const fs::path& dir) {
  std::map<int, fs::path> by_rank;
  int world = -1;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    const std::string n = e.path().filename().string();
    int r = -1, w = -1;
    if (std::sscanf(n.c_str(), "optimizer-rank-%d-of-%d.safetensors", &r, &w) != 2) continue;
    TORCH_CHECK(world < 0 || w == world, dir.string(),
                " holds optimizer shards of two world sizes (", world, " and ", w,
                "): the checkpoint is damaged");
    world = w;
    by_rank[r] = e.path();
  }
  std::vector<fs::path> out;
  for (int r = 0; r < world; ++r) {
    TORCH_CHECK(by_rank.count(r), "checkpoint ", dir.string(), " lacks optimizer-rank-", r, "-of-",
                world, ".safetensors (one shard per rank of the run that saved it)");
    out.push_back(by_rank[r]);
  }
  TORCH_CHECK(world < 0 || static_cast<int>(by_rank.size()) == world, "checkpoint ", dir.string(),
              " holds optimizer shards for ranks beyond ", world - 1);
  return out;
}

}  // namespace

std::map<std::string, at::Tensor> load_optimizer_state(const std::string& checkpoint_dir) {
  const fs::path dir(checkpoint_dir);
  std::map<std::string, at::Tensor> out;
  if (fs::exists(dir / "optimizer.safetensors")) {
    for (auto& [k, v] : io::load_safetensors((dir / "optimizer.safetensors").string()))
      out[k] = v.clone();
    return out;
  }
  const std::vector<fs::path> shards = optimizer_shards(dir);
  TORCH_CHECK(!shards.empty(), "checkpoint ", dir.string(),
              " lacks optimizer.safetensors (and has no optimizer-rank-R-of-N shards)");
  std::map<std::string, std::vector<at::Tensor>> pieces;
  for (const fs::path& f : shards) {
    for (auto& [k, v] : io::load_safetensors(f.string())) {
      if (k == "step") {
        TORCH_CHECK(!out.count("step") || out["step"].item<int64_t>() == v.item<int64_t>(),
                    f.string(), " is at another optimizer step than rank 0's shard");
        out["step"] = v.clone();
        continue;
      }
      TORCH_CHECK(v.dim() == 1, f.string(), ": optimizer shard entry '", k, "' is not 1-d");
      pieces[k].push_back(v);
    }
  }
  TORCH_CHECK(out.count("step"), "the optimizer shards of ", dir.string(), " hold no step");
  for (auto& [k, list] : pieces) out[k] = at::cat(list);
  return out;
}

std::map<std::string, at::Tensor> rng_state(bool cuda) {
  std::map<std::string, at::Tensor> out;
  {
    auto gen = at::detail::getDefaultCPUGenerator();
    std::lock_guard<std::mutex> lock(gen.mutex());
    out["cpu"] = gen.get_state();
  }
  if (cuda && at::hasCUDA()) {
    const auto& hooks = at::detail::getCUDAHooks();
    const auto idx = hooks.getCurrentDevice();
    auto gen = hooks.getDefaultGenerator(idx);
    std::lock_guard<std::mutex> lock(gen.mutex());
    out["cuda"] = gen.get_state();
  }
  return out;
}

void set_rng_state(const std::map<std::string, at::Tensor>& state) {
  if (auto it = state.find("cpu"); it != state.end()) {
    auto gen = at::detail::getDefaultCPUGenerator();
    std::lock_guard<std::mutex> lock(gen.mutex());
    gen.set_state(it->second);
  }
  if (auto it = state.find("cuda"); it != state.end() && at::hasCUDA()) {
    const auto& hooks = at::detail::getCUDAHooks();
    auto gen = hooks.getDefaultGenerator(hooks.getCurrentDevice());
    std::lock_guard<std::mutex> lock(gen.mutex());
    gen.set_state(it->second);
  }
}

}  // namespace qat::train
