// From the config's `data` section to the trainer's fixed-length sequences: read documents or
// records, split documents into train and held-out (before packing, so no document is in both),
// tokenize, then pack (text/jsonl) or pad (alpaca/chat).
#pragma once

#include <string>

#include "data/tokenizer/tokenizer.h"
#include "qat/transforms/gptq.h"
#include "recipes/config/recipe_config.h"
#include "trainers/trainer.h"

namespace qat::recipes {

struct TrainData {
  train::SequenceSet train, heldout;
  std::string description;  // e.g. "text corpus .../kjv (4635 documents): 1234 train / 61 held-out
                            // sequences of 256"
  int64_t documents = 0;
};

TrainData load_train_data(const RecipeConfig& cfg, const data::Tokenizer& tokenizer,
                          const std::string& chat_template);

// The training or held-out documents of a text/jsonl `data` section as one text (documents
// joined by a blank line), the same split load_train_data makes: `qat eval --reference` scores
// the held-out text by default; `qat text` writes either (for llama-perplexity, llama-imatrix).
enum class Split { kTrain, kHeldout };
std::string split_text(const RecipeConfig& cfg, Split split);

// `n` training sequences drawn by the seeded calibration sampler, in batches of `batch`, with
// their packing (positions, segments) when the data is packed: for static-scale calibration and
// GPTQ.
std::vector<transforms::CalibrationBatch> calibration_batches(const train::SequenceSet& set,
                                                              int64_t n, uint64_t seed,
                                                              int64_t batch);

}  // namespace qat::recipes
