// Shared test helpers: deterministic random tensors, the reference Python, CUDA detection.
#pragma once

#include <ATen/ATen.h>

#include <string>
#include <vector>

namespace qat::test {

// Normal(0, std) float32 tensor from a fixed seed (the same on every machine).
inline at::Tensor randn(std::vector<int64_t> shape, uint64_t seed, double std = 1.0) {
  at::Generator gen = at::detail::createCPUGenerator(seed);
  return at::normal(0.0, std, shape, gen, at::TensorOptions().dtype(at::kFloat));
}

// Heavy-tailed values with exact ties, zeros and outliers: the adversarial mix for quantizers.
at::Tensor adversarial(std::vector<int64_t> shape, uint64_t seed);

// The venv's python (QAT_PYTHON env var, else the one CMake found).
std::string python();
// Runs `python script args...` from tests/ref; returns its exit status.
int run_python(const std::string& script, const std::vector<std::string>& args);
// A fresh temporary directory for one test; removed with its contents when the test process exits.
std::string temp_dir();

void write_f32(const std::string& path, const at::Tensor& t);
std::vector<uint8_t> read_bytes(const std::string& path);

// What a reference block quantizer wrote for a float32 matrix x [rows, cols]: the blocks, and
// their dequantization (float32, x's shape). `script` (in tests/ref) is called as
// SCRIPT FORMAT ROWS COLS IN_F32 OUT_BLOCKS OUT_DEQUANT_F32. Throws when it fails.
struct BlockReference {
  std::vector<uint8_t> blocks;
  at::Tensor dequant;
};
BlockReference run_block_reference(const std::string& script, const std::string& format,
                                   const at::Tensor& x);

bool cuda_available();

// Bitwise equality of two float tensors (NaN == NaN when the bits match).
bool bit_equal(const at::Tensor& a, const at::Tensor& b);

}  // namespace qat::test
