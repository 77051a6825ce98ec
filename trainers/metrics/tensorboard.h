// TensorBoard event files, written without TensorFlow or protobuf: metrics.jsonl stays the source
// of truth, and `log.tensorboard: true` mirrors every numeric field of its records as a scalar
// "<kind>/<field>" (train/loss, train/lr, eval/perplexity, ...) that `tensorboard --logdir`
// plots.
//
// The file is a sequence of TFRecords, each
//   uint64 length | uint32 masked_crc32c(length) | payload | uint32 masked_crc32c(payload)
// (little endian; masked_crc32c(x) = rotate_right(crc32c(x), 15) + 0xa282ead8), whose payload is
// a serialized tensorflow.Event protobuf: wall_time (field 1, double), step (2, int64), then
// either file_version (3, "brain.Event:2", the first record) or summary (5) with one
// Summary.Value per scalar: tag (1, string) and simple_value (2, float).
#pragma once

#include <cstdint>
#include <cstdio>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "trainers/metrics/metrics_log.h"

namespace qat::train {

// CRC-32C (Castagnoli, reflected polynomial 0x82f63b78), as TFRecord frames use it.
uint32_t crc32c(std::string_view data);
uint32_t masked_crc32c(std::string_view data);

// One TFRecord: the framing above around `payload`.
std::string tf_record(std::string_view payload);

// Serialized tensorflow.Event messages.
std::string file_version_event(double wall_time);
std::string scalars_event(double wall_time, int64_t step,
                          const std::vector<std::pair<std::string, float>>& scalars);

// The scalars of a metrics record: every finite number among its fields, tagged
// "<kind>/<field>", in key order (as metrics.jsonl writes them).
std::vector<std::pair<std::string, float>> record_scalars(const Record& record);

class TensorBoardWriter {
 public:
  // Starts a fresh event file in `dir` (created if missing) after removing the event files an
  // earlier writer left there, then writes `history` into it: a resumed run replays the records
  // metrics.jsonl kept, so the event file holds the same steps as metrics.jsonl, once each.
  static TensorBoardWriter create(const std::string& dir, const std::vector<Record>& history = {});

  TensorBoardWriter(TensorBoardWriter&&) noexcept = default;
  TensorBoardWriter& operator=(TensorBoardWriter&&) noexcept = default;

  // Appends the record's scalars (nothing for a record without numbers) and flushes.
  void write(const Record& record);
  const std::string& path() const { return path_; }

 private:
  TensorBoardWriter(std::string path, std::unique_ptr<std::FILE, FileCloser> file);
  void append(const std::string& event);

  std::string path_;
  std::unique_ptr<std::FILE, FileCloser> file_;
};

}  // namespace qat::train
