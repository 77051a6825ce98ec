// Which sequences each rank trains on, step by step: a distributed, resumable, seeded sampler,
// the calibration subset for range setting, and the train/held-out split of documents.
//
// Layout of one optimizer step (global batch G = world_size * micro_batch_size * accumulation):
// epoch e visits the sequences in the order permutation(num_sequences, derive_seed(seed, e))
// (identity when shuffle is off); step s takes positions [s*G, (s+1)*G) of that order; within
// it, micro-step m of rank r takes the micro_batch_size positions starting at
// (m * world_size + r) * micro_batch_size. So the set of sequences of a step depends only on
// (seed, num_sequences, G, epoch, step): 1 rank x 4 accumulation steps and 2 ranks x 2 see the
// same global batch, and a run can resume on a different world size. The last
// num_sequences mod G sequences of each epoch's order are skipped (a different few each epoch).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace qat::data {

struct SamplerConfig {
  int64_t num_sequences = 0;
  int64_t global_batch_size = 0;  // sequences per optimizer step, over all ranks
  int64_t world_size = 1;
  int64_t rank = 0;
  int64_t accumulation_steps = 1;  // micro-steps per optimizer step
  uint64_t seed = 0;
  bool shuffle = true;
};

// Where a run is: the next step to run. JSON: {"epoch": E, "step": S, "seed": ...,
// "num_sequences": ..., "global_batch_size": ...}; the last three identify the data order and
// are checked when the cursor is restored (absent ones are not checked).
struct SamplerCursor {
  int64_t epoch = 0;
  int64_t step = 0;  // within the epoch
  std::optional<uint64_t> seed;
  std::optional<int64_t> num_sequences, global_batch_size;

  std::string to_json() const;
  // Throws std::invalid_argument naming the field on malformed input.
  static SamplerCursor from_json(const std::string& json);
};

class DistributedSampler {
 public:
  // Validates the config: sizes > 0, 0 <= rank < world_size, global batch divisible by
  // world_size * accumulation_steps, num_sequences >= global batch.
  explicit DistributedSampler(const SamplerConfig& config);

  int64_t micro_batch_size() const { return micro_; }
  int64_t steps_per_epoch() const { return steps_per_epoch_; }
  const SamplerConfig& config() const { return config_; }

  // All G sequence indices of optimizer step `step` of `epoch`, in micro-step-major, rank-minor
  // order (the concatenation of every (micro_step, rank) micro-batch).
  std::vector<int64_t> global_batch(int64_t epoch, int64_t step) const;
  // This rank's micro-batch `micro_step` of that step.
  std::vector<int64_t> micro_batch(int64_t epoch, int64_t step, int64_t micro_step) const;

  // Iteration: this rank's accumulation_steps micro-batches of the step at the cursor, then the
  // cursor moves to the next step (and epoch).
  std::vector<std::vector<int64_t>> next_step();
  SamplerCursor cursor() const;
  // Resumes from a saved cursor; an error when its seed / num_sequences / global_batch_size
  // differ from this sampler's or its step is outside the epoch.
  void set_cursor(const SamplerCursor& cursor);

 private:
  const std::vector<int64_t>& order(int64_t epoch) const;

  SamplerConfig config_;
  int64_t micro_ = 0;
  int64_t steps_per_epoch_ = 0;
  int64_t epoch_ = 0, step_ = 0;
  mutable int64_t cached_epoch_ = -1;  // the epoch whose order is cached
  mutable std::vector<int64_t> cached_order_;
};

// `count` distinct sequence indices for calibration (range setting), chosen by `seed`
// independently of the training order; the same on every machine. count <= num_sequences.
std::vector<int64_t> calibration_indices(int64_t num_sequences, int64_t count, uint64_t seed);

struct SplitIndices {
  std::vector<int64_t> train, heldout;  // ascending: documents keep their order
};

// Deterministic split of num_documents documents: round(num_documents * heldout_fraction)
// documents chosen by `seed` are held out (at least one when the fraction is > 0, and at least
// one is left for training). Split documents before packing so no document is in both.
SplitIndices split_indices(int64_t num_documents, double heldout_fraction, uint64_t seed);

// The two halves of `items` by split_indices.
template <typename T>
std::pair<std::vector<T>, std::vector<T>> split_items(const std::vector<T>& items,
                                                      double heldout_fraction, uint64_t seed) {
  const SplitIndices s = split_indices(static_cast<int64_t>(items.size()), heldout_fraction, seed);
  std::pair<std::vector<T>, std::vector<T>> out;
  for (int64_t i : s.train) out.first.push_back(items[static_cast<size_t>(i)]);
  for (int64_t i : s.heldout) out.second.push_back(items[static_cast<size_t>(i)]);
  return out;
}

}  // namespace qat::data
