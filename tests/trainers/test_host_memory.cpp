// The host-memory policy: freed large blocks stay in malloc's heap ("keep"), measured with glibc's
// own accounting (mallinfo2: bytes in mmap()ed chunks), and the environment spelling.
#include <cstdlib>

#include "tests/support/catch_torch.h"
#include "trainers/host_memory.h"

#if defined(__GLIBC__)
#include <malloc.h>
#endif

using namespace qat;

namespace {

struct EnvVar {  // sets a variable for one test case, restores it after
  std::string name, old;
  bool had;
  EnvVar(std::string n, const char* value) : name(std::move(n)) {
    const char* o = std::getenv(name.c_str());
    had = o != nullptr;
    if (had) old = o;
    if (value)
      ::setenv(name.c_str(), value, 1);
    else
      ::unsetenv(name.c_str());
  }
  ~EnvVar() {
    if (had)
      ::setenv(name.c_str(), old.c_str(), 1);
    else
      ::unsetenv(name.c_str());
  }
};

}  // namespace

TEST_CASE("QAT_HOST_MEMORY names the policy and anything else is refused", "[host_memory]") {
  {
    EnvVar v("QAT_HOST_MEMORY", nullptr);
    CHECK(train::host_memory_from_env() == train::HostMemory::kKeep);
  }
  {
    EnvVar v("QAT_HOST_MEMORY", "system");
    CHECK(train::host_memory_from_env() == train::HostMemory::kSystem);
  }
  {
    EnvVar v("QAT_HOST_MEMORY", "keep");
    CHECK(train::host_memory_from_env() == train::HostMemory::kKeep);
  }
  {
    EnvVar v("QAT_HOST_MEMORY", "cache");
    CHECK_THROWS_WITH(train::host_memory_from_env(),
                      Catch::Contains("'keep'") && Catch::Contains("'system'"));
  }
  CHECK(train::to_string(train::HostMemory::kKeep) == "keep");
}

#if defined(__GLIBC__) && (__GLIBC__ > 2 || __GLIBC_MINOR__ >= 33)
TEST_CASE("keep serves a 64 MiB tensor from the heap, not from a fresh mmap", "[host_memory]") {
  // Bytes in mmap()ed chunks. With the C library's settings a block this size is mmap()ed
  // whenever the heap has no free chunk as large (glibc's threshold is at most 32 MiB).
  const auto mapped = [] { return mallinfo2().hblkhd; };
  constexpr int64_t kFloats = int64_t{16} << 20;  // 64 MiB
  REQUIRE(train::set_host_memory(train::HostMemory::kKeep));
  const size_t before = mapped();
  {
    at::Tensor t = at::empty({kFloats}, at::kFloat);
    t.fill_(1.0f);
    CHECK(mapped() <= before);
    CHECK(t.sum().item<double>() == static_cast<double>(kFloats));
  }
  CHECK(mapped() <= before);
}
#endif
