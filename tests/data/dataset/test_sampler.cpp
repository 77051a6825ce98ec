// The seeded PRNG and permutations (golden values: they must never drift), the distributed
// sampler's shards, accumulation invariance and resume, calibration and the held-out split.
#include <algorithm>
#include <set>

#include "data/dataset/random.h"
#include "data/dataset/sampler.h"
#include "tests/support/catch_torch.h"

using Catch::Contains;
using qat::data::DistributedSampler;
using qat::data::SamplerConfig;
using qat::data::SamplerCursor;

namespace {

SamplerConfig config(int64_t n, int64_t global, int64_t world, int64_t rank, int64_t accum,
                     uint64_t seed) {
  SamplerConfig c;
  c.num_sequences = n;
  c.global_batch_size = global;
  c.world_size = world;
  c.rank = rank;
  c.accumulation_steps = accum;
  c.seed = seed;
  return c;
}

// Every (micro_step, rank) micro-batch of a step, concatenated in micro-step-major order.
std::vector<int64_t> gathered(int64_t n, int64_t global, int64_t world, int64_t accum,
                              uint64_t seed, int64_t epoch, int64_t step) {
  std::vector<int64_t> all;
  for (int64_t m = 0; m < accum; ++m) {
    for (int64_t r = 0; r < world; ++r) {
      const auto b =
          DistributedSampler(config(n, global, world, r, accum, seed)).micro_batch(epoch, step, m);
      all.insert(all.end(), b.begin(), b.end());
    }
  }
  return all;
}

}  // namespace

TEST_CASE("SplitMix64 and the permutation match their documented algorithm (golden values)",
          "[dataset][sampler]") {
  qat::data::SplitMix64 rng(0);
  CHECK(rng.next() == 0xe220a8397b1dcdafull);  // the published SplitMix64 sequence for seed 0
  CHECK(rng.next() == 0x6e789e6aa1b965f4ull);
  CHECK(rng.next() == 0x06c45d188009454full);
  // Values from a Python transcription of random.h's comment.
  CHECK(qat::data::permutation(10, 42) == std::vector<int64_t>{3, 2, 4, 5, 8, 7, 0, 9, 6, 1});
  CHECK(qat::data::permutation(10, 43) != qat::data::permutation(10, 42));
}

TEST_CASE("Sampler global batches are fixed for a fixed seed (golden indices)",
          "[dataset][sampler]") {
  const DistributedSampler s(config(20, 8, 1, 0, 1, 1234));
  CHECK(s.steps_per_epoch() == 2);
  CHECK(s.global_batch(0, 0) == std::vector<int64_t>{12, 2, 9, 19, 16, 14, 7, 1});
  CHECK(s.global_batch(0, 1) == std::vector<int64_t>{3, 5, 8, 6, 10, 4, 17, 13});
  CHECK(s.global_batch(1, 0) == std::vector<int64_t>{14, 16, 10, 5, 1, 9, 0, 4});
  CHECK(s.global_batch(1, 1) == std::vector<int64_t>{3, 2, 11, 18, 19, 17, 13, 8});
  // Another seed, another order; no shuffle, the identity.
  CHECK(DistributedSampler(config(20, 8, 1, 0, 1, 1235)).global_batch(0, 0) !=
        s.global_batch(0, 0));
  auto c = config(20, 8, 1, 0, 1, 1234);
  c.shuffle = false;
  CHECK(DistributedSampler(c).global_batch(1, 1) ==
        std::vector<int64_t>{8, 9, 10, 11, 12, 13, 14, 15});
}

TEST_CASE("Rank shards are disjoint and cover the global batch, whatever world x accumulation",
          "[dataset][sampler]") {
  const int64_t n = 103, global = 24;
  const uint64_t seed = GENERATE(0u, 7u, 99u);
  const int64_t epoch = GENERATE(0, 3);
  const auto reference = DistributedSampler(config(n, global, 1, 0, 1, seed));
  for (int64_t step = 0; step < reference.steps_per_epoch(); ++step) {
    const auto expected = reference.global_batch(epoch, step);
    for (auto [world, accum] : std::vector<std::pair<int64_t, int64_t>>{
             {1, 4}, {2, 2}, {4, 1}, {3, 2}, {2, 3}, {1, 24}, {8, 3}}) {
      CAPTURE(seed, epoch, step, world, accum);
      auto all = gathered(n, global, world, accum, seed, epoch, step);
      CHECK(all == expected);  // same sequences, same order
      std::sort(all.begin(), all.end());
      CHECK(std::adjacent_find(all.begin(), all.end()) == all.end());  // disjoint
      CHECK(all.front() >= 0);
      CHECK(all.back() < n);
    }
  }
  // An epoch visits distinct sequences.
  std::set<int64_t> seen;
  for (int64_t step = 0; step < reference.steps_per_epoch(); ++step)
    for (int64_t i : reference.global_batch(epoch, step)) CHECK(seen.insert(i).second);
  CHECK(seen.size() == static_cast<size_t>(reference.steps_per_epoch() * global));
}

TEST_CASE("Resuming from a serialized cursor yields the uninterrupted run's indices",
          "[dataset][sampler]") {
  const auto c = config(50, 12, 2, 1, 3, 5);  // 4 steps per epoch, micro-batch 2
  DistributedSampler uninterrupted(c);
  std::vector<std::vector<std::vector<int64_t>>> expected;
  for (int i = 0; i < 11; ++i) expected.push_back(uninterrupted.next_step());

  const int stop = GENERATE(0, 1, 3, 4, 7, 10);
  CAPTURE(stop);
  DistributedSampler first(c);
  for (int i = 0; i < stop; ++i) CHECK(first.next_step() == expected[i]);
  const std::string saved = first.cursor().to_json();
  CHECK_THAT(saved, Contains("\"epoch\":" + std::to_string(stop / 4)) &&
                        Contains("\"step\":" + std::to_string(stop % 4)));

  DistributedSampler resumed(c);
  resumed.set_cursor(SamplerCursor::from_json(saved));
  for (int i = stop; i < 11; ++i) CHECK(resumed.next_step() == expected[i]);
}

TEST_CASE("Sampler configs and cursors are validated", "[dataset][sampler][errors]") {
  CHECK_THROWS_WITH(DistributedSampler(config(100, 10, 4, 0, 1, 0)),
                    Contains("global_batch_size 10 is not divisible by world_size * "
                             "accumulation_steps = 4"));
  CHECK_THROWS_WITH(DistributedSampler(config(5, 8, 1, 0, 1, 0)),
                    Contains("5 sequences are fewer than one global batch of 8"));
  CHECK_THROWS_WITH(DistributedSampler(config(10, 2, 2, 2, 1, 0)), Contains("rank must be in [0"));
  const DistributedSampler s(config(20, 4, 1, 0, 2, 9));
  CHECK_THROWS_WITH(s.micro_batch(0, 5, 0), Contains("step must be in [0, 5), got 5"));
  CHECK_THROWS_WITH(s.micro_batch(0, 0, 2), Contains("micro_step must be in [0, 2)"));

  CHECK_THROWS_WITH(SamplerCursor::from_json("{\"epoch\": 1"), Contains("invalid JSON"));
  CHECK_THROWS_WITH(SamplerCursor::from_json("{\"epoch\": 1}"), Contains("missing field 'step'"));
  CHECK_THROWS_WITH(SamplerCursor::from_json("{\"epoch\": -1, \"step\": 0}"),
                    Contains("'epoch' must be a non-negative integer, found -1"));
  CHECK_THROWS_WITH(SamplerCursor::from_json("{\"epoch\": 0, \"step\": \"2\"}"),
                    Contains("'step' must be a non-negative integer"));
  CHECK_THROWS_WITH(SamplerCursor::from_json("{\"epoch\": 0, \"step\": 0, \"stp\": 1}"),
                    Contains("unknown field 'stp'"));
  DistributedSampler t(config(20, 4, 1, 0, 2, 9));
  CHECK_THROWS_WITH(t.set_cursor(SamplerCursor::from_json("{\"epoch\":0,\"step\":1,\"seed\":8}")),
                    Contains("saved with seed = 8 but this run has 9"));
  CHECK_THROWS_WITH(
      t.set_cursor(SamplerCursor::from_json("{\"epoch\":0,\"step\":1,\"num_sequences\":21}")),
      Contains("num_sequences = 21"));
  CHECK_THROWS_WITH(t.set_cursor(SamplerCursor::from_json("{\"epoch\":0,\"step\":5}")),
                    Contains("cursor step 5 is outside the epoch of 5 steps"));
  const auto round_trip = SamplerCursor::from_json(t.cursor().to_json());
  CHECK(round_trip.seed == 9u);
  CHECK(round_trip.num_sequences == 20);
}

TEST_CASE("Calibration indices are distinct, seeded and fixed (golden)", "[dataset][sampler]") {
  CHECK(qat::data::calibration_indices(100, 5, 7) == std::vector<int64_t>{37, 29, 49, 24, 97});
  const auto a = qat::data::calibration_indices(1000, 64, 1);
  CHECK(a == qat::data::calibration_indices(1000, 64, 1));
  CHECK(a != qat::data::calibration_indices(1000, 64, 2));
  CHECK(std::set<int64_t>(a.begin(), a.end()).size() == 64);
  // A larger set extends a smaller one with the same seed.
  const auto b = qat::data::calibration_indices(1000, 128, 1);
  CHECK(std::equal(a.begin(), a.end(), b.begin()));
  CHECK(qat::data::calibration_indices(10, 10, 3).size() == 10);
  CHECK_THROWS_WITH(qat::data::calibration_indices(10, 11, 3), Contains("count must be in [0"));
}

TEST_CASE("The held-out split is deterministic, disjoint and by document", "[dataset][sampler]") {
  const auto s = qat::data::split_indices(10, 0.3, 3);
  CHECK(s.heldout == std::vector<int64_t>{1, 3, 9});
  CHECK(s.train == std::vector<int64_t>{0, 2, 4, 5, 6, 7, 8});
  const auto big = qat::data::split_indices(1000, 0.05, 11);
  CHECK(big.heldout.size() == 50);
  CHECK(big.train.size() == 950);
  std::vector<int64_t> all = big.train;
  all.insert(all.end(), big.heldout.begin(), big.heldout.end());
  std::sort(all.begin(), all.end());
  for (int64_t i = 0; i < 1000; ++i) CHECK(all[i] == i);
  CHECK(qat::data::split_indices(1000, 0.05, 12).heldout != big.heldout);
  CHECK(qat::data::split_indices(3, 0.01, 0).heldout.size() == 1);  // at least one
  CHECK(qat::data::split_indices(3, 0.0, 0).train.size() == 3);
  const auto [train, held] =
      qat::data::split_items(std::vector<std::string>{"a", "b", "c", "d"}, 0.5, 1);
  CHECK(train.size() == 2);
  CHECK(held.size() == 2);
  CHECK_THROWS_WITH(qat::data::split_indices(10, 1.0, 0),
                    Contains("heldout_fraction must be in [0, 1)"));
  CHECK_THROWS_WITH(qat::data::split_indices(1, 0.5, 0), Contains("cannot be split"));
}
