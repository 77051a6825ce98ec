#include "trainers/dist.h"

#include <cstdlib>
#include <torch/csrc/distributed/c10d/Backend.hpp>
#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#include <torch/csrc/distributed/c10d/Work.hpp>

namespace qat::train {
namespace {

std::optional<std::string> env(const char* name) {
  const char* v = std::getenv(name);
  if (v == nullptr || *v == '\0') return std::nullopt;
  return std::string(v);
}

int env_int(const char* name, int fallback) {
  const auto v = env(name);
  if (!v) return fallback;
  try {
    size_t used = 0;
    const int x = std::stoi(*v, &used);
    TORCH_CHECK(used == v->size(), "");
    return x;
  } catch (...) {
    TORCH_CHECK(false, "environment variable ", name, "='", *v, "' is not an integer");
  }
  return fallback;
}

}  // namespace

DistEnv DistEnv::from_env() {
  DistEnv e;
  e.world_size = env_int("WORLD_SIZE", 1);
  e.rank = env_int("RANK", 0);
  e.local_rank = env_int("LOCAL_RANK", e.rank);
  e.master_addr = env("MASTER_ADDR").value_or("127.0.0.1");
  e.master_port = env_int("MASTER_PORT", 29500);
  e.launcher_store = env_int("QAT_LAUNCHER_STORE", 0) == 1;
  TORCH_CHECK(e.world_size >= 1, "WORLD_SIZE must be >= 1, got ", e.world_size);
  TORCH_CHECK(e.rank >= 0 && e.rank < e.world_size, "RANK=", e.rank,
              " is outside [0, WORLD_SIZE=", e.world_size, ")");
  TORCH_CHECK(e.local_rank >= 0, "LOCAL_RANK must be >= 0, got ", e.local_rank);
  TORCH_CHECK(e.master_port > 0 && e.master_port < 65536, "MASTER_PORT=", e.master_port,
              " is not a TCP port");
  return e;
}

PendingWork::PendingWork() = default;
PendingWork::PendingWork(c10::intrusive_ptr<c10d::Work> work) : work_(std::move(work)) {}
PendingWork::PendingWork(PendingWork&&) noexcept = default;
PendingWork& PendingWork::operator=(PendingWork&&) noexcept = default;
PendingWork::~PendingWork() = default;

void PendingWork::wait() {
  if (!work_) return;
  auto work = std::move(work_);
  try {
    work->wait();
  } catch (const std::exception& e) {
    throw CommError(std::string("a collective failed: ") + e.what());
  }
}

Communicator::Communicator(const DistEnv& env, at::Device device, std::chrono::milliseconds timeout)
    : env_(env) {
  if (env.world_size == 1) return;
  c10d::TCPStoreOptions opts;
  opts.port = static_cast<std::uint16_t>(env.master_port);
  opts.isServer = env.rank == 0 && !env.launcher_store;
  opts.numWorkers = static_cast<size_t>(env.world_size);
  opts.waitWorkers = true;
  opts.timeout = timeout;
  try {
    store_ = c10::make_intrusive<c10d::TCPStore>(env.master_addr, opts);
  } catch (const std::exception& e) {
    TORCH_CHECK(false, "rank ", env.rank, " could not reach the rendezvous at ", env.master_addr,
                ":", env.master_port, " (", std::string(e.what()).substr(0, 200),
                "): check MASTER_ADDR/MASTER_PORT and that every rank started");
  }
  auto prefixed = c10::make_intrusive<c10d::PrefixStore>("qat", store_);
  if (device.is_cuda()) {
    // Make NCCL's wait() block and throw on a timeout or a lost peer, so the trainer can name the
    // step and the last checkpoint instead of the watchdog aborting the process.
    ::setenv("TORCH_NCCL_BLOCKING_WAIT", "1", /*overwrite=*/0);
    backend_ = make_nccl_backend(prefixed, env.rank, env.world_size, timeout);
    backend_name_ = "nccl";
  } else {
    backend_ = make_gloo_backend(prefixed, env.rank, env.world_size, timeout);
    backend_name_ = "gloo";
  }
}

Communicator::Communicator() = default;
Communicator::~Communicator() = default;

PendingWork Communicator::all_reduce_sum_async(at::Tensor& t) {
  if (!backend_) return {};
  bytes_communicated_ += static_cast<int64_t>(t.nbytes());
  std::vector<at::Tensor> ts{t};
  c10d::AllreduceOptions opts;
  opts.reduceOp = c10d::ReduceOp::SUM;
  try {
    return PendingWork(backend_->allreduce(ts, opts));
  } catch (const std::exception& e) {
    throw CommError(std::string("all_reduce failed: ") + e.what());
  }
}

void Communicator::all_reduce_sum(at::Tensor& t) {
  all_reduce_sum_async(t).wait();
}

void Communicator::broadcast(at::Tensor& t, int root) {
  if (!backend_) return;
  std::vector<at::Tensor> ts{t};
  c10d::BroadcastOptions opts;
  opts.rootRank = root;
  try {
    backend_->broadcast(ts, opts)->wait();
  } catch (const std::exception& e) {
    throw CommError(std::string("broadcast failed: ") + e.what());
  }
}

void Communicator::reduce_scatter_sum(at::Tensor& out, at::Tensor& in) {
  TORCH_CHECK(in.numel() == out.numel() * world_size(), "reduce_scatter_sum: the input has ",
              in.numel(), " elements, expected ", world_size(), " x ", out.numel());
  TORCH_CHECK(in.is_contiguous() && out.is_contiguous(), "reduce_scatter_sum: contiguous tensors");
  bytes_communicated_ += static_cast<int64_t>(in.nbytes());
  if (!backend_) {
    out.copy_(in);
    return;
  }
  c10d::ReduceScatterOptions opts;
  opts.reduceOp = c10d::ReduceOp::SUM;
  try {
    backend_->_reduce_scatter_base(out, in, opts)->wait();
  } catch (const std::exception& e) {
    throw CommError(std::string("reduce_scatter failed: ") + e.what());
  }
}

void Communicator::all_gather(at::Tensor& out, at::Tensor& in) {
  TORCH_CHECK(out.numel() == in.numel() * world_size(), "all_gather: the output has ", out.numel(),
              " elements, expected ", world_size(), " x ", in.numel());
  TORCH_CHECK(in.is_contiguous() && out.is_contiguous(), "all_gather: contiguous tensors");
  bytes_communicated_ += static_cast<int64_t>(in.nbytes());
  if (!backend_) {
    out.copy_(in);
    return;
  }
  try {
    backend_->_allgather_base(out, in, c10d::AllgatherOptions())->wait();
  } catch (const std::exception& e) {
    throw CommError(std::string("all_gather failed: ") + e.what());
  }
}

void Communicator::barrier() {
  if (!backend_) return;
  try {
    backend_->barrier()->wait();
  } catch (const std::exception& e) {
    throw CommError(std::string("barrier failed: ") + e.what());
  }
}

}  // namespace qat::train
