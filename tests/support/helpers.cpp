#include "tests/support/helpers.h"

#include <ftw.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <stdexcept>

#if defined(QAT_WITH_CUDA)
#include <ATen/cuda/CUDAContext.h>
#endif

namespace qat::test {

at::Tensor adversarial(std::vector<int64_t> shape, uint64_t seed) {
  at::Tensor x = randn(shape, seed);
  at::Generator gen = at::detail::createCPUGenerator(seed + 1);
  const at::Tensor u = at::rand(x.sizes(), gen);
  // 10% exact zeros, 10% values on a coarse grid (ties after scaling), 2% large outliers,
  // and a few exact duplicates of the extreme value.
  x = at::where(u < 0.1, at::zeros_like(x), x);
  x = at::where((u >= 0.1) & (u < 0.2), (x * 4).round() / 4, x);
  x = at::where((u >= 0.2) & (u < 0.22), x * 100, x);
  return x;
}

std::string python() {
  if (const char* p = std::getenv("QAT_PYTHON")) return p;
  return QAT_TEST_PYTHON;
}

int run_python(const std::string& script, const std::vector<std::string>& args) {
  std::ostringstream cmd;
  cmd << "'" << python() << "' '" << QAT_TEST_REF_DIR << "/" << script << "'";
  for (const auto& a : args) cmd << " '" << a << "'";
  return std::system(cmd.str().c_str());
}

namespace {
int remove_entry(const char* path, const struct stat*, int, struct FTW*) {
  return ::remove(path);
}

// Every directory temp_dir() hands out lives under one root per test process, removed when the
// process exits (set QAT_KEEP_TEST_TMP=1 to keep it for a post-mortem). The tests write
// checkpoints and GGUF files of a real model; left behind, one full run filled a CI disk.
// The removal uses nftw, not std::filesystem: libtorch.so exports its own std::filesystem
// symbols, and calling them from an exit-time destructor crashed (a jump to address 0).
class TempRoot {
 public:
  const std::string& path() {
    if (path_.empty()) {
      std::mt19937_64 rng(std::random_device{}());
      path_ =
          (std::filesystem::temp_directory_path() / ("qat-test-" + std::to_string(rng()))).string();
      std::filesystem::create_directories(path_);
    }
    return path_;
  }
  ~TempRoot() {
    if (path_.empty() || std::getenv("QAT_KEEP_TEST_TMP") != nullptr) return;
    ::nftw(path_.c_str(), remove_entry, 16, FTW_DEPTH | FTW_PHYS);  // best effort
  }

 private:
  std::string path_;
};
}  // namespace

std::string temp_dir() {
  static TempRoot root;
  static std::atomic<int> next{0};
  const std::filesystem::path dir = std::filesystem::path(root.path()) / std::to_string(next++);
  std::filesystem::create_directories(dir);
  return dir.string();
}

void write_f32(const std::string& path, const at::Tensor& t) {
  const at::Tensor c = t.to(at::kFloat).contiguous();
  std::ofstream f(path, std::ios::binary);
  f.write(static_cast<const char*>(c.data_ptr()), c.numel() * 4);
}

std::vector<uint8_t> read_bytes(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return std::vector<uint8_t>(std::istreambuf_iterator<char>(f), {});
}

BlockReference run_block_reference(const std::string& script, const std::string& format,
                                   const at::Tensor& x) {
  const std::string dir = temp_dir();
  write_f32(dir + "/x.f32", x);
  const int rc = run_python(script, {format, std::to_string(x.size(0)), std::to_string(x.size(1)),
                                     dir + "/x.f32", dir + "/blocks.bin", dir + "/deq.f32"});
  if (rc != 0)
    throw std::runtime_error(script + " " + format + " failed with status " + std::to_string(rc));
  BlockReference r;
  r.blocks = read_bytes(dir + "/blocks.bin");
  const std::vector<uint8_t> d = read_bytes(dir + "/deq.f32");
  if (d.size() != static_cast<size_t>(x.numel() * 4)) {
    throw std::runtime_error(script + " wrote " + std::to_string(d.size()) +
                             " bytes of dequantized values, expected " +
                             std::to_string(x.numel() * 4));
  }
  r.dequant = at::empty(x.sizes(), at::kFloat);
  std::memcpy(r.dequant.data_ptr(), d.data(), d.size());
  return r;
}

bool cuda_available() {
#if defined(QAT_WITH_CUDA)
  return at::cuda::is_available();
#else
  return false;
#endif
}

bool bit_equal(const at::Tensor& a, const at::Tensor& b) {
  if (a.sizes() != b.sizes() || a.scalar_type() != b.scalar_type()) return false;
  const at::Tensor ac = a.contiguous().cpu(), bc = b.contiguous().cpu();
  return std::memcmp(ac.data_ptr(), bc.data_ptr(), ac.numel() * ac.element_size()) == 0;
}

}  // namespace qat::test
