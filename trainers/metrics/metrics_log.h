// metrics.jsonl: one JSON object per line, {"step": 120, "kind": "train", "loss": 2.731, ...},
// appended and flushed line by line so a crash loses at most the line being written. Resuming a
// run from the checkpoint at step S rewrites the file (temp file + rename) without the lines of
// steps > S, so the resumed run's file equals the uninterrupted run's, byte for byte.
#pragma once

#include <cstdint>
#include <cstdio>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace qat::train {

// One line of metrics.jsonl. `fields` is a JSON object holding everything but "step" and "kind"
// (numbers, strings, ...; NaN and Inf are written as null).
struct Record {
  int64_t step = 0;
  std::string kind;  // "train", "eval", ...
  nlohmann::json fields = nlohmann::json::object();

  // The field as a double; NaN when it is missing, null or not a number.
  double number(const std::string& name) const;
};

// The JSON line for `record` (no trailing newline): "step", "kind", then the fields in key order.
std::string to_json_line(const Record& record);

struct MetricsFile {
  std::vector<Record> records;
  // Empty when the file was clean; otherwise says what was skipped (a torn last line: a crash
  // while the line was being written).
  std::string warning;
};

// Reads a metrics.jsonl file. A last line that is not a complete JSON object is skipped with a
// warning; any other malformed line throws std::runtime_error naming the path and line number.
MetricsFile read_metrics(const std::string& path);

// Closes a C stream: the deleter of the append-only files MetricsWriter and TensorBoardWriter keep.
struct FileCloser {
  void operator()(std::FILE* f) const;
};

class MetricsWriter {
 public:
  // Starts a new file at `path`, replacing any existing one.
  static MetricsWriter create(const std::string& path);
  // Resume: keeps the records with step <= resume_step (in order, byte for byte) and drops the
  // later ones and a torn last line, rewriting the file atomically; then appends. A missing file
  // is created.
  static MetricsWriter open(const std::string& path, int64_t resume_step);

  MetricsWriter(MetricsWriter&&) noexcept = default;
  MetricsWriter& operator=(MetricsWriter&&) noexcept = default;

  // Appends one line and flushes it. `fields` must be a JSON object (or null) without the keys
  // "step" and "kind".
  void write(int64_t step, const std::string& kind, const nlohmann::json& fields);
  void write(const Record& record);

  const std::string& path() const { return path_; }
  // What open() did: records kept and dropped, and the torn-line warning (empty if none).
  std::size_t kept() const { return kept_; }
  std::size_t dropped() const { return dropped_; }
  const std::string& warning() const { return warning_; }

 private:
  MetricsWriter(std::string path, std::unique_ptr<std::FILE, FileCloser> file);

  std::string path_;
  std::unique_ptr<std::FILE, FileCloser> file_;
  std::size_t kept_ = 0;
  std::size_t dropped_ = 0;
  std::string warning_;
};

}  // namespace qat::train
