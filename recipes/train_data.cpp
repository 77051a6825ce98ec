#include "recipes/train_data.h"

#include <ATen/ATen.h>

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

TrainData load_train_data(const train::TrainConfig& cfg, const data::Tokenizer& tokenizer,
                          const std::string& chat_template) {
  const auto& d = cfg.data;
  const std::string path = d.path == "default" ? data::default_corpus_path() : d.path;
  const uint64_t seed = static_cast<uint64_t>(cfg.train.seed);
  const int32_t pad = tokenizer.pad_id().value_or(tokenizer.eos_id().value_or(0));
  TrainData out;
  std::vector<data::Example> train_ex, heldout_ex;
  auto cap = [&](auto& v) {
    if (d.max_documents > 0 && static_cast<int64_t>(v.size()) > d.max_documents)
      v.resize(static_cast<size_t>(d.max_documents));
  };
  if (d.format == "text" || d.format == "jsonl") {
    std::vector<data::Document> docs;
    if (d.format == "jsonl") {
      data::JsonlOptions jo;
      jo.text_field = d.field;
      docs = data::read_jsonl_documents(path, jo);
    } else {
      docs = data::read_corpus_documents(path);
    }
    cap(docs);
    out.documents = static_cast<int64_t>(docs.size());
    auto [tr, ho] = data::split_items(docs, d.eval_fraction, seed);
    train_ex = data::tokenize_documents(tr, tokenizer);
    heldout_ex = data::tokenize_documents(ho, tokenizer);
  } else {
    std::vector<data::JsonRecord> records = data::read_json_records(path);
    cap(records);
    out.documents = static_cast<int64_t>(records.size());
    auto [tr, ho] = data::split_items(records, d.eval_fraction, seed);
    if (d.format == "alpaca") {
      train_ex = data::alpaca_examples(tr, tokenizer);
      heldout_ex = data::alpaca_examples(ho, tokenizer);
    } else {
      TORCH_CHECK(!chat_template.empty(), cfg.source,
                  ": data.format=chat but the model has no chat template");
      data::ChatTemplate tmpl(chat_template);
      train_ex = data::chat_examples(tr, tokenizer, tmpl);
      heldout_ex = data::chat_examples(ho, tokenizer, tmpl);
    }
  }
  std::vector<data::PackedSequence> train_seq, heldout_seq;
  if (d.pack) {
    data::PackOptions po;
    po.seq_len = d.seq_len;
    po.pad_id = pad;
    train_seq = data::pack_examples(train_ex, po);
    heldout_seq = data::pack_examples(heldout_ex, po);
  } else {
    data::PadOptions po;
    po.seq_len = d.seq_len;
    po.pad_id = pad;
    train_seq = data::pad_examples(train_ex, po);
    heldout_seq = data::pad_examples(heldout_ex, po);
  }
  TORCH_CHECK(!train_seq.empty(), path, ": no training sequences of ", d.seq_len,
              " tokens (too little data? lower data.seq_len or data.eval_fraction)");
  out.train = to_tensors(train_seq, d.seq_len);
  out.heldout = to_tensors(heldout_seq, d.seq_len);
  std::ostringstream desc;
  desc << d.format << " " << path << " (" << out.documents << " documents): " << out.train.size()
       << " train / " << out.heldout.size() << " held-out sequences of " << d.seq_len << " tokens";
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
