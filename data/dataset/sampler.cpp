#include "data/dataset/sampler.h"

#include <algorithm>
#include <cmath>
#include <nlohmann/json.hpp>
#include <numeric>
#include <stdexcept>

#include "data/dataset/random.h"

namespace qat::data {
namespace {

// derive_seed streams: epochs use their number; these sit far above any epoch.
constexpr uint64_t kCalibrationStream = (uint64_t{1} << 63) + 1;
constexpr uint64_t kSplitStream = (uint64_t{1} << 63) + 2;

[[noreturn]] void invalid(const std::string& what) {
  throw std::invalid_argument(what);
}

std::string str(int64_t v) {
  return std::to_string(v);
}

}  // namespace

std::string SamplerCursor::to_json() const {
  nlohmann::ordered_json j;
  j["epoch"] = epoch;
  j["step"] = step;
  if (seed) j["seed"] = *seed;
  if (num_sequences) j["num_sequences"] = *num_sequences;
  if (global_batch_size) j["global_batch_size"] = *global_batch_size;
  return j.dump();
}

SamplerCursor SamplerCursor::from_json(const std::string& json) {
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(json);
  } catch (const nlohmann::json::parse_error& e) {
    invalid(std::string("sampler cursor: invalid JSON: ") + e.what());
  }
  if (!j.is_object())
    invalid(std::string("sampler cursor: expected an object, found ") + j.type_name());
  auto integer = [&](const char* key, bool required) -> std::optional<int64_t> {
    const auto it = j.find(key);
    if (it == j.end()) {
      if (required) invalid(std::string("sampler cursor: missing field '") + key + "'");
      return std::nullopt;
    }
    if (!it->is_number_integer() || (it->is_number_unsigned() && it->get<uint64_t>() > INT64_MAX) ||
        it->get<int64_t>() < 0) {
      invalid(std::string("sampler cursor: field '") + key +
              "' must be a non-negative integer, found " + it->dump());
    }
    return it->get<int64_t>();
  };
  SamplerCursor c;
  c.epoch = *integer("epoch", true);
  c.step = *integer("step", true);
  c.num_sequences = integer("num_sequences", false);
  c.global_batch_size = integer("global_batch_size", false);
  if (const auto it = j.find("seed"); it != j.end()) {
    if (!it->is_number_unsigned() && !(it->is_number_integer() && it->get<int64_t>() >= 0))
      invalid("sampler cursor: field 'seed' must be a non-negative integer, found " + it->dump());
    c.seed = it->get<uint64_t>();
  }
  for (const auto& [key, value] : j.items()) {
    if (key != "epoch" && key != "step" && key != "seed" && key != "num_sequences" &&
        key != "global_batch_size")
      invalid("sampler cursor: unknown field '" + key + "'");
  }
  return c;
}

DistributedSampler::DistributedSampler(const SamplerConfig& config) : config_(config) {
  const auto& c = config;
  if (c.num_sequences <= 0)
    invalid("sampler: num_sequences must be > 0, got " + str(c.num_sequences));
  if (c.world_size <= 0) invalid("sampler: world_size must be > 0, got " + str(c.world_size));
  if (c.rank < 0 || c.rank >= c.world_size)
    invalid("sampler: rank must be in [0, world_size=" + str(c.world_size) + "), got " +
            str(c.rank));
  if (c.accumulation_steps <= 0)
    invalid("sampler: accumulation_steps must be > 0, got " + str(c.accumulation_steps));
  if (c.global_batch_size <= 0)
    invalid("sampler: global_batch_size must be > 0, got " + str(c.global_batch_size));
  const int64_t per_micro = c.world_size * c.accumulation_steps;
  if (c.global_batch_size % per_micro != 0) {
    invalid("sampler: global_batch_size " + str(c.global_batch_size) +
            " is not divisible by world_size * accumulation_steps = " + str(per_micro));
  }
  if (c.num_sequences < c.global_batch_size) {
    invalid("sampler: " + str(c.num_sequences) + " sequences are fewer than one global batch of " +
            str(c.global_batch_size) + "; lower global_batch_size or add data");
  }
  micro_ = c.global_batch_size / per_micro;
  steps_per_epoch_ = c.num_sequences / c.global_batch_size;
}

const std::vector<int64_t>& DistributedSampler::order(int64_t epoch) const {
  if (epoch < 0) invalid("sampler: epoch must be >= 0, got " + str(epoch));
  if (cached_epoch_ != epoch) {
    if (config_.shuffle) {
      cached_order_ = permutation(config_.num_sequences,
                                  derive_seed(config_.seed, static_cast<uint64_t>(epoch)));
    } else {
      cached_order_.resize(static_cast<size_t>(config_.num_sequences));
      std::iota(cached_order_.begin(), cached_order_.end(), int64_t{0});
    }
    cached_epoch_ = epoch;
  }
  return cached_order_;
}

std::vector<int64_t> DistributedSampler::global_batch(int64_t epoch, int64_t step) const {
  if (step < 0 || step >= steps_per_epoch_)
    invalid("sampler: step must be in [0, " + str(steps_per_epoch_) + "), got " + str(step));
  const auto& o = order(epoch);
  const auto begin = o.begin() + step * config_.global_batch_size;
  return std::vector<int64_t>(begin, begin + config_.global_batch_size);
}

std::vector<int64_t> DistributedSampler::micro_batch(int64_t epoch, int64_t step,
                                                     int64_t micro_step) const {
  if (step < 0 || step >= steps_per_epoch_)
    invalid("sampler: step must be in [0, " + str(steps_per_epoch_) + "), got " + str(step));
  if (micro_step < 0 || micro_step >= config_.accumulation_steps) {
    invalid("sampler: micro_step must be in [0, " + str(config_.accumulation_steps) + "), got " +
            str(micro_step));
  }
  const auto& o = order(epoch);
  const int64_t offset =
      step * config_.global_batch_size + (micro_step * config_.world_size + config_.rank) * micro_;
  return std::vector<int64_t>(o.begin() + offset, o.begin() + offset + micro_);
}

std::vector<std::vector<int64_t>> DistributedSampler::next_step() {
  std::vector<std::vector<int64_t>> out;
  for (int64_t m = 0; m < config_.accumulation_steps; ++m)
    out.push_back(micro_batch(epoch_, step_, m));
  if (++step_ == steps_per_epoch_) {
    step_ = 0;
    ++epoch_;
  }
  return out;
}

SamplerCursor DistributedSampler::cursor() const {
  SamplerCursor c;
  c.epoch = epoch_;
  c.step = step_;
  c.seed = config_.seed;
  c.num_sequences = config_.num_sequences;
  c.global_batch_size = config_.global_batch_size;
  return c;
}

void DistributedSampler::set_cursor(const SamplerCursor& c) {
  auto mismatch = [](const char* what, const std::string& saved, const std::string& now) {
    invalid(std::string("sampler: the cursor was saved with ") + what + " = " + saved +
            " but this run has " + now + "; resuming would visit different data");
  };
  if (c.seed && *c.seed != config_.seed)
    mismatch("seed", std::to_string(*c.seed), std::to_string(config_.seed));
  if (c.num_sequences && *c.num_sequences != config_.num_sequences)
    mismatch("num_sequences", str(*c.num_sequences), str(config_.num_sequences));
  if (c.global_batch_size && *c.global_batch_size != config_.global_batch_size)
    mismatch("global_batch_size", str(*c.global_batch_size), str(config_.global_batch_size));
  if (c.epoch < 0) invalid("sampler: cursor epoch must be >= 0, got " + str(c.epoch));
  if (c.step < 0 || c.step >= steps_per_epoch_) {
    invalid("sampler: cursor step " + str(c.step) + " is outside the epoch of " +
            str(steps_per_epoch_) + " steps");
  }
  epoch_ = c.epoch;
  step_ = c.step;
}

std::vector<int64_t> calibration_indices(int64_t num_sequences, int64_t count, uint64_t seed) {
  if (count < 0 || count > num_sequences) {
    invalid("calibration_indices: count must be in [0, num_sequences=" + str(num_sequences) +
            "], got " + str(count));
  }
  std::vector<int64_t> p(static_cast<size_t>(num_sequences));
  std::iota(p.begin(), p.end(), int64_t{0});
  shuffle_prefix(p, static_cast<size_t>(count), derive_seed(seed, kCalibrationStream));
  p.resize(static_cast<size_t>(count));
  return p;
}

SplitIndices split_indices(int64_t num_documents, double heldout_fraction, uint64_t seed) {
  if (!(heldout_fraction >= 0.0 && heldout_fraction < 1.0)) {
    invalid("split_indices: heldout_fraction must be in [0, 1), got " +
            std::to_string(heldout_fraction));
  }
  if (num_documents < 0) invalid("split_indices: num_documents must be >= 0");
  int64_t held = std::llround(static_cast<double>(num_documents) * heldout_fraction);
  if (heldout_fraction > 0.0) {
    if (num_documents < 2) {
      invalid("split_indices: " + str(num_documents) +
              " document(s) cannot be split into train and held-out");
    }
    held = std::clamp<int64_t>(held, 1, num_documents - 1);
  }
  std::vector<int64_t> p(static_cast<size_t>(num_documents));
  std::iota(p.begin(), p.end(), int64_t{0});
  shuffle_prefix(p, static_cast<size_t>(held), derive_seed(seed, kSplitStream));
  SplitIndices s;
  s.heldout.assign(p.begin(), p.begin() + held);
  s.train.assign(p.begin() + held, p.end());
  std::sort(s.heldout.begin(), s.heldout.end());
  std::sort(s.train.begin(), s.train.end());
  return s;
}

}  // namespace qat::data
