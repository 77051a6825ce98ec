// The only translation unit that includes NCCL headers (see dist.h). Built without CUDA, asking
// for NCCL is an error.
#include <c10/util/Exception.h>

#include "trainers/dist.h"

#if defined(QAT_WITH_NCCL)
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#endif

namespace qat::train {

c10::intrusive_ptr<c10d::Backend> make_nccl_backend(const c10::intrusive_ptr<c10d::Store>& store,
                                                    int rank, int world_size,
                                                    std::chrono::milliseconds timeout) {
#if defined(QAT_WITH_NCCL)
  auto opts = c10d::ProcessGroupNCCL::Options::create();
  opts->timeout = timeout;
  return c10::make_intrusive<c10d::ProcessGroupNCCL>(store, rank, world_size, opts);
#else
  (void)store, (void)rank, (void)world_size, (void)timeout;
  TORCH_CHECK(false,
              "this build has no NCCL (configure with CUDA and the nvidia-nccl headers) -- "
              "train on CPU with Gloo instead (device: cpu)");
#endif
}

}  // namespace qat::train
