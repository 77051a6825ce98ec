// The only translation unit that includes Gloo headers (see dist.h).
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>

#include "trainers/dist.h"

namespace qat::train {

c10::intrusive_ptr<c10d::Backend> make_gloo_backend(const c10::intrusive_ptr<c10d::Store>& store,
                                                    int rank, int world_size,
                                                    std::chrono::milliseconds timeout) {
  auto opts = c10d::ProcessGroupGloo::Options::create(timeout);
  opts->devices.push_back(c10d::ProcessGroupGloo::createDeviceForHostname("127.0.0.1"));
  return c10::make_intrusive<c10d::ProcessGroupGloo>(store, rank, world_size, opts);
}

}  // namespace qat::train
