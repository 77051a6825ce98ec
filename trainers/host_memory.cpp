#include "trainers/host_memory.h"

#include <c10/util/Exception.h>

#include <cstdlib>
#include <string>

#if defined(__GLIBC__)
#include <malloc.h>
#endif

namespace qat::train {

bool set_host_memory(HostMemory policy) {
#if defined(__GLIBC__)
  if (policy == HostMemory::kSystem) return true;
  // mallopt(3): M_MMAP_MAX 0 serves large requests from the arenas' heaps instead of mmap(), where
  // free() keeps a block for the next request of a similar size; M_TRIM_THRESHOLD -1 disables
  // trimming, so free() never hands the top of the heap back for the next step to fault in again.
  return mallopt(M_MMAP_MAX, 0) == 1 && mallopt(M_TRIM_THRESHOLD, -1) == 1;
#else
  (void)policy;
  return false;
#endif
}

HostMemory host_memory_from_env() {
  const char* v = std::getenv("QAT_HOST_MEMORY");
  if (v == nullptr || *v == '\0') return HostMemory::kKeep;
  const std::string s = v;
  if (s == "keep") return HostMemory::kKeep;
  if (s == "system") return HostMemory::kSystem;
  TORCH_CHECK(false, "QAT_HOST_MEMORY='", s,
              "' is not a host-memory policy: use 'keep' (freed memory stays in the process for "
              "reuse, the default) or 'system' (the C library's defaults)");
}

std::string to_string(HostMemory policy) {
  return policy == HostMemory::kKeep ? "keep" : "system";
}

}  // namespace qat::train
