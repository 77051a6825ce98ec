// compressed-tensors' 8-bit schemes (w8a16, w8a8, fp8) as written, read back with our own reader:
// the tensors and config.json that vLLM's schemes select on, the trained weights exactly, and the
// activation rule that W8A8 training uses against the engine's (a float64 reference). The
// reference package's decompression is checked in test_export_interop.cpp.
#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "qat/export/linears.h"
#include "qat/fake_quant/fake_quantizer.h"
#include "qat/io/remove_tree.h"
#include "qat/io/safetensors_torch.h"
#include "tests/qat/export/export_models.h"
#include "tests/support/catch_torch.h"

namespace {

namespace fs = std::filesystem;
using namespace qat;
using exporting::CtScheme;

// A random model whose attention is fake-quantized per output channel in `fmt` (fp16 scales),
// with per-token int8 activations on q_proj when `acts`; the MLP stays dense.
std::shared_ptr<models::LlamaForCausalLM> channel_model(const std::string& fmt, bool acts) {
  auto m = test::random_model(test::export_config(), 11);
  fake_quant::FakeQuantizerConfig fq = test::weight_fq(fmt, 0, scheme::ScaleDtype::kFloat16);
  fq.spec = fq.spec.with(scheme::Granularity::per_axis(0));
  if (acts) {
    transforms::PrepareConfig pc;
    pc.include = {"q_proj"};
    pc.layer.weight = fq;
    fake_quant::FakeQuantizerConfig a;
    a.spec = scheme::QuantSpec::from_name("int8").with(scheme::Granularity::per_token());
    pc.layer.activation = a;
    transforms::prepare(*m, pc);
  }
  test::fake_quantize(*m, {acts ? "[kvo]_proj" : "self_attn.*"}, fq);
  return m;
}

exporting::ExportReport export_ct(const std::shared_ptr<models::LlamaForCausalLM>& m, CtScheme s,
                                  const std::string& out, bool requantize = false) {
  exporting::ExportSource src;
  src.model = m;
  src.tokenizer = test::smollm_tokenizer();
  src.name = "tiny";
  exporting::ExportOptions o;
  o.format = exporting::ExportFormat::kCompressedTensors;
  o.ct_scheme = s;
  o.out = out;
  o.hf_dtype = at::kHalf;
  o.requantize = requantize;
  return exporting::export_model(src, o);
}

nlohmann::json quantization_config(const std::string& dir) {
  return nlohmann::json::parse(std::ifstream(dir + "/config.json")).at("quantization_config");
}

// A scalar reference of a per-token rule: each row's scale s = scale_of(max|x|) in float32, then
// y = value_of(x, 1 / s) * s element by element.
template <typename ScaleOf, typename ValueOf>
at::Tensor per_token_reference(const at::Tensor& x, ScaleOf scale_of, ValueOf value_of) {
  const at::Tensor xf = x.contiguous().to(at::kFloat);
  at::Tensor y = at::empty_like(xf);
  const int64_t rows = xf.size(0), cols = xf.size(1);
  const float* in = xf.data_ptr<float>();
  float* out = y.data_ptr<float>();
  for (int64_t r = 0; r < rows; ++r) {
    float amax = 0;
    for (int64_t c = 0; c < cols; ++c) amax = std::max(amax, std::fabs(in[r * cols + c]));
    const float s = scale_of(amax);
    const float inv = 1.0f / s;
    for (int64_t c = 0; c < cols; ++c) out[r * cols + c] = value_of(in[r * cols + c], inv) * s;
  }
  return y;
}

// The dynamic per-token int8 rule of vLLM's kernels: s = max|x| / 127 per row (float32), q = x *
// (1 / s) rounded half to even, saturated to [-128, 127]; y = q * s. (compressed-tensors' Python
// observer divides by 127.5 instead; vLLM, which serves the file, uses 127.)
at::Tensor int8_per_token_reference(const at::Tensor& x) {
  return per_token_reference(
      x, [](float amax) { return amax > 0 ? amax / 127.0f : 1.0f; },
      [](float v, float inv) {  // an integer code: no negative zero
        return static_cast<float>(static_cast<int>(
            std::clamp(std::nearbyint(static_cast<double>(v * inv)), -128.0, 127.0)));
      });
}

}  // namespace

TEST_CASE("ct w8a8 writes int8 weights and per-token dynamic int8 activations as vLLM reads them",
          "[export][ct]") {
  const std::string dir = test::temp_dir() + "/w8a8";
  auto m = channel_model("int8", /*acts=*/true);
  const auto report = export_ct(m, CtScheme::kW8A8, dir);
  const nlohmann::json qc = quantization_config(dir);
  CHECK(qc.at("format") == "int-quantized");
  const nlohmann::json g = qc.at("config_groups").at("group_0");
  CHECK(g.at("weights").at("strategy") == "channel");
  CHECK(g.at("weights").at("type") == "int");
  CHECK(g.at("input_activations").at("strategy") == "token");
  CHECK(g.at("input_activations").at("dynamic") == true);
  CHECK(qc.at("ignore") == nlohmann::json::array({"lm_head"}));
  const auto file = io::load_safetensors(dir);
  int exact = 0;
  for (const auto& l : exporting::collect_linears(*m)) {
    if (l.name == "lm_head") {
      CHECK(file.count("lm_head.weight") == 1);
      continue;
    }
    CAPTURE(l.name);
    const at::Tensor w = file.at(l.name + ".weight");
    const at::Tensor s = file.at(l.name + ".weight_scale");
    CHECK(w.scalar_type() == at::kChar);
    CHECK(s.scalar_type() == at::kHalf);
    CHECK(s.sizes() == at::IntArrayRef({w.size(0), 1}));
    const at::Tensor deq = w.to(at::kFloat) * s.to(at::kFloat);
    if (l.fake_quant) {
      CHECK(test::bit_equal(deq, l.fake_quant->effective_weight()));
      ++exact;
    }
  }
  CHECK(exact == 8);  // 2 layers x 4 attention projections
  // q_proj trained its activations as the engine runs them: no note. None for the others either.
  for (const auto& n : report.notes) CHECK(n.find("activations trained") == std::string::npos);
  io::remove_tree(fs::path(dir).parent_path().string());
}

TEST_CASE("W8A8 activation fake quant is vLLM's per-token int8 rule, ties rounded to even",
          "[export][ct]") {
  fake_quant::FakeQuantizerConfig a;
  a.spec = scheme::QuantSpec::from_name("int8").with(scheme::Granularity::per_token());
  fake_quant::FakeQuantizer fq(a);
  at::Tensor x = at::randn({16, 64}, at::detail::createCPUGenerator(3)) * 3;
  {  // rows whose values sit exactly on half steps: max 127 -> s = 1, x = k + 0.5
    auto acc = x.accessor<float, 2>();
    for (int64_t c = 0; c < 64; ++c) acc[0][c] = static_cast<float>(c % 9) - 4.5f;
    acc[0][0] = 127.0f;
    acc[1][0] = 0.0f;
  }
  x[2].zero_();  // an all-zero token
  const at::Tensor y = fq->forward(x);
  const at::Tensor want = int8_per_token_reference(x);
  CHECK(test::bit_equal(y, want));
  // 0.5 -> 0, 1.5 -> 2, -2.5 -> -2: half to even, not away from zero.
  CHECK(y[0][4].item<float>() == 0.0f);   // 4 % 9 - 4.5 = -0.5
  CHECK(y[0][6].item<float>() == 2.0f);   // 1.5
  CHECK(y[0][2].item<float>() == -2.0f);  // -2.5
}

// vLLM's per-token FP8 rule where no fused CPU/GPU kernel takes over (QuantFP8.forward_native, the
// path its CPU build runs): s = max(max|x| / 448, 1 / (448 * 512)) in float32, q = e4m3(clamp(x *
// (1 / s), -448, 448)) rounded half to even, y = q * s.
at::Tensor fp8_per_token_reference(const at::Tensor& x) {
  return per_token_reference(
      x, [](float amax) { return std::max(amax / 448.0f, 1.0f / (448.0f * 512.0f)); },
      [](float v, float inv) {
        return static_cast<float>(c10::Float8_e4m3fn(std::clamp(v * inv, -448.0f, 448.0f)));
      });
}

TEST_CASE("FP8 activation fake quant is vLLM's per-token e4m3 rule", "[export][ct]") {
  fake_quant::FakeQuantizerConfig a;
  a.spec = scheme::QuantSpec::from_name("fp8_e4m3").with(scheme::Granularity::per_token());
  fake_quant::FakeQuantizer fq(a);
  at::Tensor x = at::randn({32, 96}, at::detail::createCPUGenerator(5)) * 3;
  x[1].mul_(1e3);  // a token with large activations
  x[2].zero_();    // an all-zero token: 0 either way
  const at::Tensor y = fq->forward(x);
  CHECK(test::bit_equal(y, fp8_per_token_reference(x)));
  // Not covered: a token whose max |x| is below 1/512, where vLLM's scale stops at 1 / (448 * 512)
  // and ours keeps max|x| / 448 (activations that small do not occur after RMSNorm).
}

TEST_CASE("ct w8a16 packs int8 codes four to an int32 word, lowest byte first", "[export][ct]") {
  const std::string dir = test::temp_dir() + "/w8a16";
  auto m = channel_model("int8", /*acts=*/false);
  export_ct(m, CtScheme::kW8A16, dir);
  const nlohmann::json qc = quantization_config(dir);
  CHECK(qc.at("format") == "pack-quantized");
  CHECK(qc.at("config_groups").at("group_0").at("input_activations").is_null());
  CHECK(qc.at("config_groups").at("group_0").at("weights").at("num_bits") == 8);
  const auto file = io::load_safetensors(dir);
  for (const auto& l : exporting::collect_linears(*m)) {
    if (!l.fake_quant) continue;
    CAPTURE(l.name);
    const at::Tensor packed = file.at(l.name + ".weight_packed");
    const at::Tensor scale = file.at(l.name + ".weight_scale").to(at::kFloat);
    const at::Tensor shape = file.at(l.name + ".weight_shape");
    const int64_t n = shape[0].item<int64_t>(), k = shape[1].item<int64_t>();
    REQUIRE(packed.sizes() == at::IntArrayRef({n, k / 4}));
    at::Tensor codes = at::empty({n, k}, at::kFloat);
    const auto words = packed.accessor<int32_t, 2>();
    auto c = codes.accessor<float, 2>();
    for (int64_t i = 0; i < n; ++i)
      for (int64_t j = 0; j < k; ++j) {
        const uint32_t word = static_cast<uint32_t>(words[i][j / 4]);
        c[i][j] = static_cast<float>(static_cast<int>((word >> (8 * (j % 4))) & 0xFF) - 128);
      }
    CHECK(test::bit_equal(codes * scale, l.fake_quant->effective_weight()));
  }
  io::remove_tree(fs::path(dir).parent_path().string());
}

TEST_CASE("ct fp8 stores e4m3 weights, and what a scheme cannot hold is refused or requantized",
          "[export][ct]") {
  const std::string root = test::temp_dir();
  auto m = channel_model("fp8_e4m3", /*acts=*/false);
  export_ct(m, CtScheme::kFp8, root + "/fp8");
  CHECK(quantization_config(root + "/fp8").at("format") == "float-quantized");
  const auto file = io::load_safetensors(root + "/fp8");
  for (const auto& l : exporting::collect_linears(*m)) {
    if (!l.fake_quant) continue;
    CAPTURE(l.name);
    const at::Tensor w = file.at(l.name + ".weight");
    CHECK(w.scalar_type() == at::kFloat8_e4m3fn);
    CHECK(test::bit_equal(w.to(at::kFloat) * file.at(l.name + ".weight_scale").to(at::kFloat),
                          l.fake_quant->effective_weight()));
  }
  // e4m3 weights into an int8 scheme: refused with the fix, then requantized on request.
  REQUIRE_THROWS_WITH(export_ct(m, CtScheme::kW8A8, root + "/bad"),
                      Catch::Contains("cannot store exactly") && Catch::Contains("--requantize"));
  const auto r = export_ct(m, CtScheme::kW8A8, root + "/re", /*requantize=*/true);
  int requantized = 0;
  for (const auto& t : r.tensors) requantized += t.origin.rfind("requantized", 0) == 0;
  CHECK(requantized == 8);
  REQUIRE_THROWS_WITH(exporting::ct_scheme_from_name("w4a8"),
                      Catch::Contains("w4a16, w8a16, w8a8 or fp8"));
  io::remove_tree(root);
}
