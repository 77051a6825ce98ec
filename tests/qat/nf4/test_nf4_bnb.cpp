// NF4 + double quant against bitsandbytes 0.50.2 on the CPU (tests/ref/bnb_nf4_ref.py writes every
// case, inputs and outputs, into one safetensors file in a single Python call): packed codes,
// absmax, double-quant codes, nested absmax and offset byte-identical, dequantized values 0 ulp.
#include <ATen/ATen.h>

#include <catch2/catch.hpp>
#include <map>
#include <string>

#include "ops/nf4.h"
#include "qat/io/safetensors_torch.h"
#include "qat/nf4/nf4_tensor.h"
#include "tests/support/helpers.h"

using qat::nf4::NF4Config;
using qat::nf4::NF4Tensor;

TEST_CASE("NF4 and double quant are byte-identical to bitsandbytes quantize_4bit on the CPU",
          "[nf4][interop]") {
  const std::string dir = qat::test::temp_dir();
  const std::string path = dir + "/nf4_cases.safetensors";
  REQUIRE(qat::test::run_python("bnb_nf4_ref.py", {"cases", path}) == 0);
  const std::map<std::string, at::Tensor> ref = qat::io::load_safetensors(path);
  REQUIRE(qat::test::bit_equal(ref.at("dynamic_map"), qat::ops::dynamic_map_signed()));
  int cases = 0;
  for (int k = 0; ref.count("case" + std::to_string(k) + ".x"); ++k, ++cases) {
    const std::string p = "case" + std::to_string(k);
    const at::Tensor x = ref.at(p + ".x");
    const int64_t bs = ref.at(p + ".blocksize").item<int64_t>();
    // bitsandbytes' CPU dequantize_4bit returns a 1-d shape [n] as [1, n]: compare in x's shape.
    auto deq = [&](const std::string& key) { return ref.at(p + key).reshape(x.sizes()); };
    CAPTURE(k, x.sizes(), x.scalar_type(), bs);

    const NF4Tensor plain = NF4Tensor::quantize(x, NF4Config{bs, false, 256});
    REQUIRE(plain.codes().sizes() == ref.at(p + ".packed").sizes());
    REQUIRE(at::equal(plain.codes(), ref.at(p + ".packed")));
    REQUIRE(qat::test::bit_equal(plain.absmax(), ref.at(p + ".absmax")));
    REQUIRE(qat::test::bit_equal(plain.dequantize(), deq(".deq")));
    REQUIRE(qat::test::bit_equal(plain.dequantize(at::kFloat), deq(".deq_f32")));

    const NF4Tensor dq = NF4Tensor::quantize(x, NF4Config{bs, true, 256});
    REQUIRE(at::equal(dq.codes(), ref.at(p + ".packed")));
    REQUIRE(at::equal(dq.absmax(), ref.at(p + ".dq.absmax")));
    REQUIRE(qat::test::bit_equal(dq.nested_absmax(), ref.at(p + ".dq.nested_absmax")));
    REQUIRE(qat::test::bit_equal(dq.offset(), ref.at(p + ".dq.offset")));
    REQUIRE(qat::test::bit_equal(dq.dequantize(), deq(".dq.deq")));
  }
  REQUIRE(cases >= 30);
}
