#include "trainers/metrics/metrics_log.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <cstring>
#include <fstream>
#include <sstream>
#include <stdexcept>

namespace qat::train {

namespace {

std::string errno_text() {
  return std::strerror(errno);
}

// One line of the file, with the text kept so a rewrite reproduces it exactly.
struct Line {
  std::string text;
  bool terminated = false;  // ended with '\n'
};

std::vector<Line> split_lines(const std::string& data) {
  std::vector<Line> lines;
  std::size_t begin = 0;
  while (begin < data.size()) {
    const std::size_t end = data.find('\n', begin);
    if (end == std::string::npos) {
      lines.push_back({data.substr(begin), false});
      break;
    }
    lines.push_back({data.substr(begin, end - begin), true});
    begin = end + 1;
  }
  return lines;
}

// Parses one line into a Record; throws std::runtime_error with `where` in the message.
Record parse_line(const std::string& text, const std::string& where) {
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(text);
  } catch (const nlohmann::json::parse_error& e) {
    throw std::runtime_error(where + ": not valid JSON (" + e.what() + ")");
  }
  if (!j.is_object()) throw std::runtime_error(where + ": expected a JSON object");
  const auto step = j.find("step");
  if (step == j.end() || !step->is_number_integer()) {
    throw std::runtime_error(where + ": \"step\" must be an integer");
  }
  const auto kind = j.find("kind");
  if (kind == j.end() || !kind->is_string()) {
    throw std::runtime_error(where + ": \"kind\" must be a string");
  }
  Record r;
  r.step = step->get<int64_t>();
  r.kind = kind->get<std::string>();
  j.erase("step");
  j.erase("kind");
  r.fields = std::move(j);
  return r;
}

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("cannot open metrics file '" + path + "': " + errno_text());
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Parses the file's lines; a bad last line is reported in `warning` and left out of the result.
std::vector<std::pair<Line, Record>> parse_file(const std::string& path, std::string& warning) {
  const std::vector<Line> lines = split_lines(read_file(path));
  std::vector<std::pair<Line, Record>> out;
  for (std::size_t i = 0; i < lines.size(); ++i) {
    if (lines[i].text.empty()) continue;
    const std::string where = path + ":" + std::to_string(i + 1);
    try {
      out.emplace_back(lines[i], parse_line(lines[i].text, where));
    } catch (const std::runtime_error& e) {
      if (i + 1 != lines.size()) throw;
      warning = std::string("skipped a torn last line (") + e.what() +
                "), probably from a crash mid-write";
    }
  }
  return out;
}

// Writes `data` to path.tmp, fsyncs it and renames it over `path`: readers see the old file or the
// new one, never a mix.
void replace_file(const std::string& path, const std::string& data) {
  const std::string tmp = path + ".tmp";
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) throw std::runtime_error("cannot write '" + tmp + "': " + errno_text());
  std::size_t done = 0;
  while (done < data.size()) {
    const ssize_t n = ::write(fd, data.data() + done, data.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      const std::string err = errno_text();
      ::close(fd);
      throw std::runtime_error("cannot write '" + tmp + "': " + err);
    }
    done += static_cast<std::size_t>(n);
  }
  if (::fsync(fd) != 0 || ::close(fd) != 0) {
    throw std::runtime_error("cannot write '" + tmp + "': " + errno_text());
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    throw std::runtime_error("cannot rename '" + tmp + "' to '" + path + "': " + errno_text());
  }
}

bool file_exists(const std::string& path) {
  return ::access(path.c_str(), F_OK) == 0;
}

}  // namespace

double Record::number(const std::string& name) const {
  const auto it = fields.find(name);
  if (it == fields.end() || !it->is_number()) return std::nan("");
  return it->get<double>();
}

std::string to_json_line(const Record& record) {
  std::string line = "{\"step\":" + std::to_string(record.step) +
                     ",\"kind\":" + nlohmann::json(record.kind).dump();
  for (const auto& [key, value] : record.fields.items()) {
    line += "," + nlohmann::json(key).dump() + ":" + value.dump();
  }
  return line + "}";
}

MetricsFile read_metrics(const std::string& path) {
  MetricsFile file;
  for (auto& [line, record] : parse_file(path, file.warning)) {
    file.records.push_back(std::move(record));
  }
  return file;
}

void FileCloser::operator()(std::FILE* f) const {
  std::fclose(f);
}

MetricsWriter::MetricsWriter(std::string path, std::unique_ptr<std::FILE, FileCloser> file)
    : path_(std::move(path)), file_(std::move(file)) {}

MetricsWriter MetricsWriter::create(const std::string& path) {
  std::unique_ptr<std::FILE, FileCloser> f(std::fopen(path.c_str(), "wb"));
  if (!f) throw std::runtime_error("cannot open metrics file '" + path + "': " + errno_text());
  return MetricsWriter(path, std::move(f));
}

MetricsWriter MetricsWriter::open(const std::string& path, int64_t resume_step) {
  std::size_t kept = 0;
  std::size_t dropped = 0;
  std::string warning;
  if (file_exists(path)) {
    std::string data;
    for (const auto& [line, record] : parse_file(path, warning)) {
      if (record.step > resume_step) {
        ++dropped;
        continue;
      }
      data += line.text + "\n";
      ++kept;
    }
    replace_file(path, data);
  }
  std::unique_ptr<std::FILE, FileCloser> f(std::fopen(path.c_str(), "ab"));
  if (!f) throw std::runtime_error("cannot open metrics file '" + path + "': " + errno_text());
  MetricsWriter writer(path, std::move(f));
  writer.kept_ = kept;
  writer.dropped_ = dropped;
  writer.warning_ = std::move(warning);
  return writer;
}

void MetricsWriter::write(int64_t step, const std::string& kind, const nlohmann::json& fields) {
  Record r;
  r.step = step;
  r.kind = kind;
  if (!fields.is_null()) r.fields = fields;
  write(r);
}

void MetricsWriter::write(const Record& record) {
  if (!file_) throw std::logic_error("MetricsWriter::write: writer was moved from");
  if (!record.fields.is_object()) {
    throw std::invalid_argument("MetricsWriter::write: fields must be a JSON object, got " +
                                std::string(record.fields.type_name()));
  }
  if (record.fields.contains("step") || record.fields.contains("kind")) {
    throw std::invalid_argument(
        "MetricsWriter::write: fields must not contain \"step\" or \"kind\" (pass them as "
        "arguments)");
  }
  const std::string line = to_json_line(record) + "\n";
  if (std::fwrite(line.data(), 1, line.size(), file_.get()) != line.size() ||
      std::fflush(file_.get()) != 0) {
    throw std::runtime_error("cannot write metrics file '" + path_ + "': " + errno_text());
  }
}

}  // namespace qat::train
