// Processes and collectives for data-parallel training on c10d.
//
// Every rank runs the same program. DistEnv says who this process is: from the torchrun/SLURM
// style environment (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT) that `qat train
// --nproc N` also sets for the ranks it spawns. Communicator wraps one c10d backend: Gloo for CPU
// tensors, NCCL for CUDA tensors; with one rank it has no backend and every collective is a no-op,
// so the single-process path never opens a socket.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/util/intrusive_ptr.h>

#include <chrono>
#include <memory>
#include <stdexcept>
#include <string>

namespace c10d {
class Backend;
class Store;
class Work;
}  // namespace c10d

namespace qat::train {

struct DistEnv {
  int rank = 0;
  int world_size = 1;
  int local_rank = 0;
  std::string master_addr = "127.0.0.1";
  int master_port = 29500;
  // The rendezvous store is already served at MASTER_ADDR:MASTER_PORT by the launcher
  // (QAT_LAUNCHER_STORE=1, set by `qat train --nproc`), so rank 0 connects as a client like the
  // others. Otherwise (multi-node, torchrun-style environments) rank 0 serves it.
  bool launcher_store = false;

  // Reads RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT and QAT_LAUNCHER_STORE; all absent
  // means one process.
  // Inconsistent values (RANK >= WORLD_SIZE, a non-number) are errors naming the variable.
  static DistEnv from_env();
  bool is_main() const { return rank == 0; }
};

// A collective failed or timed out: another rank exited, hung or became unreachable.
class CommError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// A pending collective: wait() blocks until it is done (for NCCL: orders the current stream).
class PendingWork {
 public:
  PendingWork();
  explicit PendingWork(c10::intrusive_ptr<c10d::Work> work);
  PendingWork(PendingWork&&) noexcept;
  PendingWork& operator=(PendingWork&&) noexcept;
  ~PendingWork();
  void wait();

 private:
  c10::intrusive_ptr<c10d::Work> work_;
};

class Communicator {
 public:
  // Connects to the other ranks through a TCPStore at master_addr:master_port (rank 0 serves it).
  // `device` picks the backend: NCCL for CUDA, Gloo for CPU. `timeout` bounds every collective,
  // so a lost rank ends the run with an error instead of hanging.
  Communicator(const DistEnv& env, at::Device device, std::chrono::milliseconds timeout);
  // One process, no backend.
  Communicator();
  ~Communicator();

  int rank() const { return env_.rank; }
  int world_size() const { return env_.world_size; }
  bool distributed() const { return env_.world_size > 1; }
  const std::string& backend_name() const { return backend_name_; }

  // Sum over ranks, in place. The async form returns work to wait on. Failures throw CommError.
  PendingWork all_reduce_sum_async(at::Tensor& t);
  void all_reduce_sum(at::Tensor& t);
  void broadcast(at::Tensor& t, int root);
  void barrier();
  // Sharded collectives over flat tensors laid out rank-major ([world_size x n]): rank r's part is
  // elements [r*n, (r+1)*n). reduce_scatter_sum: `out` (n elements) = the sum over ranks of each
  // rank's part r of `in` (world_size*n). all_gather: `out` (world_size*n) = every rank's `in`
  // (n), in rank order. With one process both are a copy. NCCL runs them natively; libtorch's
  // Gloo emulates the reduce-scatter with an all-reduce of the whole input (full-size traffic).
  void reduce_scatter_sum(at::Tensor& out, at::Tensor& in);
  void all_gather(at::Tensor& out, at::Tensor& in);
  // Bytes this rank has handed to collectives (their input tensors) since construction: what a
  // step moves, for the tests and the memory plan (not the wire traffic of a given algorithm).
  int64_t bytes_communicated() const { return bytes_communicated_; }

 private:
  DistEnv env_;
  std::string backend_name_ = "none";
  c10::intrusive_ptr<c10d::Store> store_;
  c10::intrusive_ptr<c10d::Backend> backend_;
  int64_t bytes_communicated_ = 0;
};

// Backend factories (gloo_backend.cpp and nccl_backend.cpp keep each library's headers in one
// translation unit: Debian's gloo headers differ from the ones libtorch was built with).
c10::intrusive_ptr<c10d::Backend> make_gloo_backend(const c10::intrusive_ptr<c10d::Store>& store,
                                                    int rank, int world_size,
                                                    std::chrono::milliseconds timeout);
c10::intrusive_ptr<c10d::Backend> make_nccl_backend(const c10::intrusive_ptr<c10d::Store>& store,
                                                    int rank, int world_size,
                                                    std::chrono::milliseconds timeout);

}  // namespace qat::train
