#include "trainers/metrics/tensorboard.h"

#include <unistd.h>

#include <array>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <stdexcept>

namespace qat::train {
namespace {

namespace fs = std::filesystem;

constexpr std::array<uint32_t, 256> crc32c_table() {
  std::array<uint32_t, 256> t{};
  for (uint32_t i = 0; i < 256; ++i) {
    uint32_t c = i;
    for (int k = 0; k < 8; ++k) c = (c & 1) ? (c >> 1) ^ 0x82f63b78u : c >> 1;
    t[i] = c;
  }
  return t;
}

void put_le(std::string& out, uint64_t v, int bytes) {
  for (int i = 0; i < bytes; ++i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}

// Protobuf wire format: a field's key is (number << 3 | wire type); varints carry 7 bits a byte.
void put_varint(std::string& out, uint64_t v) {
  while (v >= 0x80) {
    out.push_back(static_cast<char>((v & 0x7f) | 0x80));
    v >>= 7;
  }
  out.push_back(static_cast<char>(v));
}
void put_key(std::string& out, int field, int wire_type) {
  put_varint(out, static_cast<uint64_t>(field << 3 | wire_type));
}
void put_bytes(std::string& out, int field, std::string_view bytes) {
  put_key(out, field, 2);
  put_varint(out, bytes.size());
  out.append(bytes);
}
void put_double(std::string& out, int field, double v) {
  uint64_t bits;
  std::memcpy(&bits, &v, sizeof bits);
  put_key(out, field, 1);
  put_le(out, bits, 8);
}
void put_float(std::string& out, int field, float v) {
  uint32_t bits;
  std::memcpy(&bits, &v, sizeof bits);
  put_key(out, field, 5);
  put_le(out, bits, 4);
}

std::string event_head(double wall_time, int64_t step) {
  std::string e;
  put_double(e, 1, wall_time);
  if (step != 0) {  // proto3 leaves default values out
    put_key(e, 2, 0);
    put_varint(e, static_cast<uint64_t>(step));
  }
  return e;
}

double now_seconds() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

std::string host_name() {
  char buf[256] = {};
  if (::gethostname(buf, sizeof buf - 1) != 0 || buf[0] == '\0') return "localhost";
  return buf;
}

bool is_event_file(const fs::path& p) {
  return p.filename().string().rfind("events.out.tfevents.", 0) == 0;
}

}  // namespace

uint32_t crc32c(std::string_view data) {
  static constexpr std::array<uint32_t, 256> table = crc32c_table();
  uint32_t c = 0xffffffffu;
  for (unsigned char b : data) c = table[(c ^ b) & 0xff] ^ (c >> 8);
  return c ^ 0xffffffffu;
}

uint32_t masked_crc32c(std::string_view data) {
  const uint32_t c = crc32c(data);
  return ((c >> 15) | (c << 17)) + 0xa282ead8u;
}

std::string tf_record(std::string_view payload) {
  std::string len;
  put_le(len, payload.size(), 8);
  std::string out = len;
  put_le(out, masked_crc32c(len), 4);
  out.append(payload);
  put_le(out, masked_crc32c(payload), 4);
  return out;
}

std::string file_version_event(double wall_time) {
  std::string e = event_head(wall_time, 0);
  put_bytes(e, 3, "brain.Event:2");
  return e;
}

std::string scalars_event(double wall_time, int64_t step,
                          const std::vector<std::pair<std::string, float>>& scalars) {
  std::string summary;
  for (const auto& [tag, value] : scalars) {
    std::string v;
    put_bytes(v, 1, tag);
    put_float(v, 2, value);
    put_bytes(summary, 1, v);
  }
  std::string e = event_head(wall_time, step);
  put_bytes(e, 5, summary);
  return e;
}

std::vector<std::pair<std::string, float>> record_scalars(const Record& record) {
  std::vector<std::pair<std::string, float>> out;
  for (const auto& [name, value] : record.fields.items()) {
    if (!value.is_number()) continue;  // strings, booleans, and NaN/Inf (null in the file)
    const double v = value.get<double>();
    if (std::isfinite(v)) out.emplace_back(record.kind + "/" + name, static_cast<float>(v));
  }
  return out;
}

TensorBoardWriter::TensorBoardWriter(std::string path, std::unique_ptr<std::FILE, FileCloser> file)
    : path_(std::move(path)), file_(std::move(file)) {}

TensorBoardWriter TensorBoardWriter::create(const std::string& dir,
                                            const std::vector<Record>& history) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) {
    throw std::runtime_error("log.tensorboard: cannot create '" + dir + "': " + ec.message());
  }
  for (const auto& entry : fs::directory_iterator(dir)) {
    if (entry.is_regular_file() && is_event_file(entry.path())) fs::remove(entry.path());
  }
  const double t = now_seconds();
  const std::string path =
      (fs::path(dir) / ("events.out.tfevents." + std::to_string(static_cast<int64_t>(t)) + "." +
                        host_name() + ".qat"))
          .string();
  std::unique_ptr<std::FILE, FileCloser> f(std::fopen(path.c_str(), "wb"));
  if (!f) {
    throw std::runtime_error("log.tensorboard: cannot open '" + path +
                             "': " + std::strerror(errno));
  }
  TensorBoardWriter w(path, std::move(f));
  w.append(file_version_event(t));
  for (const auto& r : history) w.write(r);
  return w;
}

void TensorBoardWriter::write(const Record& record) {
  const auto scalars = record_scalars(record);
  if (!scalars.empty()) append(scalars_event(now_seconds(), record.step, scalars));
}

void TensorBoardWriter::append(const std::string& event) {
  if (!file_) throw std::logic_error("TensorBoardWriter: writer was moved from");
  const std::string rec = tf_record(event);
  if (std::fwrite(rec.data(), 1, rec.size(), file_.get()) != rec.size() ||
      std::fflush(file_.get()) != 0) {
    throw std::runtime_error("log.tensorboard: cannot write '" + path_ +
                             "': " + std::strerror(errno));
  }
}

}  // namespace qat::train
