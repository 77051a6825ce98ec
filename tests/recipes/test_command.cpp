// The command-line helpers that several `qat` subcommands share (recipes/command.h).
#include "recipes/command.h"
#include "tests/support/catch_torch.h"

using Catch::Contains;
using qat::recipes::add_sampling_options;
using qat::recipes::parse_dtype_option;

TEST_CASE("dtype option spellings map to one type each, and a type the command lacks is refused",
          "[recipes]") {
  const auto all = {at::kFloat, at::kBFloat16, at::kHalf};
  for (const char* n : {"fp32", "f32", "float32"})
    CHECK(parse_dtype_option(n, all, "x") == at::kFloat);
  for (const char* n : {"bf16", "bfloat16"})
    CHECK(parse_dtype_option(n, all, "x") == at::kBFloat16);
  for (const char* n : {"fp16", "f16", "float16"})
    CHECK(parse_dtype_option(n, all, "x") == at::kHalf);
  CHECK_THROWS_WITH(parse_dtype_option("fp8", all, "generate"),
                    Contains("generate: --dtype must be one of fp32, bf16, fp16, got 'fp8'"));
  // sample-data has no fp16: the spelling is known, the type is not allowed there.
  CHECK_THROWS_WITH(parse_dtype_option("fp16", {at::kFloat, at::kBFloat16}, "sample-data"),
                    Contains("sample-data: --dtype must be one of fp32, bf16, got 'fp16'"));
  CHECK_THROWS_WITH(parse_dtype_option("FP32", all, "x"), Contains("got 'FP32'"));
}

TEST_CASE("the sampling options parse into the SamplingConfig and keep its defaults", "[recipes]") {
  const auto parse = [](const std::string& line) {
    CLI::App app;
    qat::models::SamplingConfig s{1.0};
    add_sampling_options(app, s, "seed");
    app.parse(line, /*program_name_included=*/false);
    return s;
  };
  const auto a = parse("--top-p 0.9 --top-k 40");
  CHECK(a.temperature == 1.0);
  CHECK(a.top_k == 40);
  CHECK(a.top_p == 0.9);
  CHECK(a.seed == 0);
  const auto b = parse("--seed 7 --temperature 0");
  CHECK(b.temperature == 0.0);
  CHECK(b.seed == 7);
  CHECK(b.top_p == 1.0);
  CHECK_THROWS_AS(parse("--top-k many"), CLI::ParseError);
}
