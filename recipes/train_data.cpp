#include "recipes/train_data.h"

#include <ATen/ATen.h>

#include <filesystem>
#include <sstream>

#include "data/dataset/corpus.h"
#include "data/dataset/instruction_dataset.h"
#include "data/dataset/packing.h"
#include "data/dataset/sampler.h"
#include "data/dataset/text_dataset.h"
#include "data/dataset/text_files.h"
#include "data/tokenizer/chat_template.h"

namespace qat::recipes {
namespace {

train::SequenceSet to_tensors(const std::vector<data::PackedSequence>& seqs, int64_t seq_len) {
  train::SequenceSet s;
  const int64_t n = static_cast<int64_t>(seqs.size());
  s.tokens = at::empty({n, seq_len}, at::kLong);
  s.labels = at::empty({n, seq_len}, at::kLong);
  s.positions = at::empty({n, seq_len}, at::kLong);
  s.segments = at::empty({n, seq_len}, at::kLong);
  auto tok = s.tokens.accessor<int64_t, 2>();
  auto lab = s.labels.accessor<int64_t, 2>();
  auto pos = s.positions.accessor<int64_t, 2>();
  auto seg = s.segments.accessor<int64_t, 2>();
  bool several_segments = false;
  for (int64_t i = 0; i < n; ++i) {
    const data::PackedSequence& q = seqs[static_cast<size_t>(i)];
    for (int64_t t = 0; t < seq_len; ++t) {
      const size_t k = static_cast<size_t>(t);
      tok[i][t] = q.tokens[k];
      lab[i][t] = q.labels[k];
      pos[i][t] = q.position_ids[k];
      seg[i][t] = q.segment_ids[k];
      several_segments |= q.segment_ids[k] != q.segment_ids[0];
    }
  }
  if (!several_segments) {
    // One document (or document piece) per row everywhere: plain causal attention, no mask needed.
    s.positions = at::Tensor();
    s.segments = at::Tensor();
  }
  return s;
}

}  // namespace

namespace {

struct SplitExamples {
  std::vector<data::Example> train, heldout;
  int64_t documents = 0;
  int64_t extra_documents = 0;  // data.extra_train's, repeats included
};

// The documents of one file or directory: JSON Lines (their `field`) or text / the corpus.
std::vector<data::Document> read_text_source(const std::string& path, bool jsonl,
                                             const std::string& field) {
  if (!jsonl) return data::read_corpus_documents(path);
  data::JsonlOptions jo;
  jo.text_field = field;
  return data::read_jsonl_documents(path, jo);
}

// The documents of a text/jsonl `data` section, capped at data.max_documents.
std::vector<data::Document> read_documents(const RecipeConfig& cfg, const std::string& path) {
  const auto& d = cfg.data;
  std::vector<data::Document> docs =
      read_text_source(path, d.format == DataFormat::kJsonl, d.field);
  if (d.max_documents > 0 && static_cast<int64_t>(docs.size()) > d.max_documents)
    docs.resize(static_cast<size_t>(d.max_documents));
  return docs;
}

// data.extra_train's documents, each file's repeated data.extra_repeat times (training only).
std::vector<data::Document> read_extra_train(const DataSection& d) {
  std::vector<data::Document> out;
  for (const std::string& path : d.extra_train) {
    TORCH_CHECK(std::filesystem::exists(path), "data.extra_train: '", path,
                "' does not exist (teacher samples are written by qat sample-data --out ", path,
                ")");
    const std::vector<data::Document> docs =
        read_text_source(path, std::filesystem::path(path).extension() == ".jsonl", d.field);
    for (int64_t r = 0; r < d.extra_repeat; ++r) out.insert(out.end(), docs.begin(), docs.end());
  }
  return out;
}

std::string data_path(const DataSection& d) {
  return d.path == "default" ? data::default_corpus_path() : d.path;
}

// The documents (text/jsonl) or records (alpaca/chat) of the `data` section, capped at
// data.max_documents, split into train and held-out before tokenizing.
SplitExamples read_examples(const RecipeConfig& cfg, const std::string& path,
                            const data::Tokenizer& tokenizer, const std::string& chat_template) {
  const auto& d = cfg.data;
  const uint64_t seed = static_cast<uint64_t>(cfg.train.seed);
  auto cap = [&](auto& v) {
    if (d.max_documents > 0 && static_cast<int64_t>(v.size()) > d.max_documents)
      v.resize(static_cast<size_t>(d.max_documents));
  };
  SplitExamples out;
  if (d.format == DataFormat::kText || d.format == DataFormat::kJsonl) {
    const std::vector<data::Document> docs = read_documents(cfg, path);
    out.documents = static_cast<int64_t>(docs.size());
    auto [tr, ho] = data::split_items(docs, d.eval_fraction, seed);
    const std::vector<data::Document> extra = read_extra_train(d);
    tr.insert(tr.end(), extra.begin(), extra.end());
    out.extra_documents = static_cast<int64_t>(extra.size());
    out.train = data::tokenize_documents(tr, tokenizer);
    out.heldout = data::tokenize_documents(ho, tokenizer);
    return out;
  }
  std::vector<data::JsonRecord> records = data::read_json_records(path);
  cap(records);
  out.documents = static_cast<int64_t>(records.size());
  auto [tr, ho] = data::split_items(records, d.eval_fraction, seed);
  if (d.format == DataFormat::kAlpaca) {
    out.train = data::alpaca_examples(tr, tokenizer);
    out.heldout = data::alpaca_examples(ho, tokenizer);
    return out;
  }
  TORCH_CHECK(!chat_template.empty(), cfg.source,
              ": data.format=chat but the model has no chat template");
  data::ChatTemplate tmpl(chat_template);
  out.train = data::chat_examples(tr, tokenizer, tmpl);
  out.heldout = data::chat_examples(ho, tokenizer, tmpl);
  return out;
}

// Packed (text/jsonl) or padded (instruction data) sequences of data.seq_len tokens.
std::vector<data::PackedSequence> to_sequences(const std::vector<data::Example>& examples,
                                               const DataSection& d, int32_t pad) {
  if (d.pack) {
    data::PackOptions po;
    po.seq_len = d.seq_len;
    po.pad_id = pad;
    return data::pack_examples(examples, po);
  }
  data::PadOptions po;
  po.seq_len = d.seq_len;
  po.pad_id = pad;
  return data::pad_examples(examples, po);
}

}  // namespace

TrainData load_train_data(const RecipeConfig& cfg, const data::Tokenizer& tokenizer,
                          const std::string& chat_template) {
  const auto& d = cfg.data;
  const std::string path = data_path(d);
  const int32_t pad = tokenizer.pad_id().value_or(tokenizer.eos_id().value_or(0));
  const SplitExamples examples = read_examples(cfg, path, tokenizer, chat_template);
  const std::vector<data::PackedSequence> train_seq = to_sequences(examples.train, d, pad);
  const std::vector<data::PackedSequence> heldout_seq = to_sequences(examples.heldout, d, pad);
  TORCH_CHECK(!train_seq.empty(), path, ": no training sequences of ", d.seq_len,
              " tokens (too little data? lower data.seq_len or data.eval_fraction)");
  TrainData out;
  out.documents = examples.documents;
  out.train = to_tensors(train_seq, d.seq_len);
  out.heldout = to_tensors(heldout_seq, d.seq_len);
  std::ostringstream desc;
  desc << to_string(d.format) << " " << path << " (" << out.documents << " documents";
  if (examples.extra_documents > 0) {
    desc << " + " << examples.extra_documents << " training-only from data.extra_train";
  }
  desc << "): " << out.train.size() << " train / " << out.heldout.size()
       << " held-out sequences of " << d.seq_len << " tokens";
  out.description = desc.str();
  return out;
}

std::vector<transforms::CalibrationBatch> calibration_batches(const train::SequenceSet& set,
                                                              int64_t n, uint64_t seed,
                                                              int64_t batch) {
  const std::vector<int64_t> idx =
      data::calibration_indices(set.size(), std::min(n, set.size()), seed);
  std::vector<transforms::CalibrationBatch> out;
  for (size_t b = 0; b < idx.size(); b += static_cast<size_t>(batch)) {
    const std::vector<int64_t> rows(
        idx.begin() + static_cast<std::ptrdiff_t>(b),
        idx.begin() + static_cast<std::ptrdiff_t>(std::min(idx.size(), b + batch)));
    const at::Tensor sel = at::tensor(rows, at::kLong);
    transforms::CalibrationBatch c{set.tokens.index_select(0, sel), std::nullopt};
    if (set.segments.defined()) {
      c.packed = models::PackedInputs{set.positions.index_select(0, sel),
                                      set.segments.index_select(0, sel)};
    }
    out.push_back(std::move(c));
  }
  return out;
}

}  // namespace qat::recipes

namespace qat::recipes {

std::string split_text(const RecipeConfig& cfg, Split split) {
  TORCH_CHECK(cfg.data.format == DataFormat::kText || cfg.data.format == DataFormat::kJsonl,
              cfg.source, ": data.format=", to_string(cfg.data.format),
              " has no plain text split; give a text with --text FILE");
  const std::vector<data::Document> docs = read_documents(cfg, data_path(cfg.data));
  auto parts =
      data::split_items(docs, cfg.data.eval_fraction, static_cast<uint64_t>(cfg.train.seed));
  if (split == Split::kTrain) {
    const std::vector<data::Document> extra = read_extra_train(cfg.data);
    parts.first.insert(parts.first.end(), extra.begin(), extra.end());
  }
  std::string text;
  for (const data::Document& doc : split == Split::kHeldout ? parts.second : parts.first) {
    if (!text.empty()) text += "\n\n";
    text += doc.text;
  }
  TORCH_CHECK(!text.empty(), cfg.source, ": no ",
              split == Split::kHeldout ? "held-out" : "training",
              " documents (check data.eval_fraction)");
  return text;
}

}  // namespace qat::recipes
