#include "qat/io/safetensors_torch.h"

#include <ATen/ATen.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>

namespace qat::io {

namespace {

namespace fs = std::filesystem;

struct DtypePair {
  SafetensorsDtype st;
  at::ScalarType torch;
};
// F4 and F6_* are absent: libtorch has no 4/6-bit element type with the same shape meaning
// (float4_e2m1fn_x2 packs two values per element), so they are refused rather than guessed.
constexpr DtypePair kDtypePairs[] = {
    {SafetensorsDtype::kBool, at::kBool},
    {SafetensorsDtype::kU8, at::kByte},
    {SafetensorsDtype::kI8, at::kChar},
    {SafetensorsDtype::kF8E5M2, at::kFloat8_e5m2},
    {SafetensorsDtype::kF8E4M3, at::kFloat8_e4m3fn},
    {SafetensorsDtype::kF8E8M0, at::kFloat8_e8m0fnu},
    {SafetensorsDtype::kF8E4M3Fnuz, at::kFloat8_e4m3fnuz},
    {SafetensorsDtype::kF8E5M2Fnuz, at::kFloat8_e5m2fnuz},
    {SafetensorsDtype::kI16, at::kShort},
    {SafetensorsDtype::kU16, at::kUInt16},
    {SafetensorsDtype::kF16, at::kHalf},
    {SafetensorsDtype::kBF16, at::kBFloat16},
    {SafetensorsDtype::kI32, at::kInt},
    {SafetensorsDtype::kU32, at::kUInt32},
    {SafetensorsDtype::kF32, at::kFloat},
    {SafetensorsDtype::kC64, at::kComplexFloat},
    {SafetensorsDtype::kF64, at::kDouble},
    {SafetensorsDtype::kI64, at::kLong},
    {SafetensorsDtype::kU64, at::kUInt64},
};

std::string shard_name(size_t k, size_t n) {
  char buf[64];
  std::snprintf(buf, sizeof(buf), "model-%05zu-of-%05zu.safetensors", k, n);
  return buf;
}

// A shard name from an index must name a file beside the index, never a path elsewhere.
void check_shard_name(const std::string& index, const std::string& tensor,
                      const std::string& file) {
  TORCH_CHECK(!file.empty() && file.find('/') == std::string::npos && file != "." && file != "..",
              index, ": weight_map[\"", tensor, "\"] = \"", file,
              "\": expected a file name in the index's directory");
}

}  // namespace

at::ScalarType to_scalar_type(SafetensorsDtype dtype, const std::string& what) {
  for (const auto& p : kDtypePairs) {
    if (p.st == dtype) return p.torch;
  }
  TORCH_CHECK(false, what, ": unsupported dtype ", traits(dtype).name,
              " (libtorch has no matching element type)");
}

SafetensorsDtype to_safetensors_dtype(at::ScalarType type, const std::string& what) {
  for (const auto& p : kDtypePairs) {
    if (p.torch == type) return p.st;
  }
  TORCH_CHECK(false, what, ": unsupported dtype ", type, " (safetensors has no matching dtype)");
}

SafetensorsFile SafetensorsFile::open(const std::string& path) {
  SafetensorsFile f;
  f.file_ = MappedFile::open(path);
  f.header_ = parse_safetensors(f.file_->data(), f.file_->size(), path);
  return f;
}

std::vector<std::string> SafetensorsFile::names() const {
  std::vector<std::string> out;
  for (const auto& t : header_.tensors) out.push_back(t.name);
  return out;
}

const SafetensorsTensorInfo& SafetensorsFile::info(const std::string& name) const {
  const SafetensorsTensorInfo* t = header_.find(name);
  TORCH_CHECK(t != nullptr, path(), ": no tensor named \"", name, "\"");
  return *t;
}

at::ScalarType SafetensorsFile::dtype(const std::string& name) const {
  return to_scalar_type(info(name).dtype, path() + ": tensor \"" + name + "\"");
}

at::Tensor SafetensorsFile::tensor(const std::string& name) const {
  const SafetensorsTensorInfo& t = info(name);
  const at::ScalarType type = dtype(name);
  const size_t offset = static_cast<size_t>(header_.data_start + t.begin);
  uint8_t* ptr = file_->mutable_data(offset);
  const auto options = at::TensorOptions().dtype(type).device(at::kCPU);
  if (reinterpret_cast<uintptr_t>(ptr) % c10::elementSize(type) != 0) {
    at::Tensor out = at::empty(t.shape, options);
    std::memcpy(out.data_ptr(), ptr, t.nbytes());
    return out;
  }
  // The deleter owns a reference to the mapping: the view outlives this reader safely.
  std::shared_ptr<MappedFile> keep = file_;
  return at::from_blob(
      ptr, t.shape, [keep](void*) {}, options);
}

void SafetensorsFile::drop_pages(const std::string& name) const {
  const SafetensorsTensorInfo& t = info(name);
  file_->drop_pages(static_cast<size_t>(header_.data_start + t.begin), t.nbytes());
}

SafetensorsCheckpoint SafetensorsCheckpoint::open(const std::string& path) {
  SafetensorsCheckpoint c;
  std::string index;
  if (fs::is_directory(path)) {
    if (fs::exists(fs::path(path) / kSafetensorsIndexName)) {
      index = (fs::path(path) / kSafetensorsIndexName).string();
    } else {
      const fs::path single = fs::path(path) / kSafetensorsSingleName;
      TORCH_CHECK(fs::exists(single), path, ": expected ", kSafetensorsIndexName, " or ",
                  kSafetensorsSingleName, " in this directory, found neither");
      c.files_.push_back(SafetensorsFile::open(single.string()));
    }
  } else if (path.size() >= 5 && path.compare(path.size() - 5, 5, ".json") == 0) {
    index = path;
  } else {
    c.files_.push_back(SafetensorsFile::open(path));
  }

  if (index.empty()) {
    for (const auto& name : c.files_[0].names()) c.where_[name] = 0;
    return c;
  }
  std::ifstream in(index);
  TORCH_CHECK(in.good(), index, ": cannot open the index");
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(in);
  } catch (const nlohmann::json::exception& e) {
    TORCH_CHECK(false, index, ": not valid JSON: ", e.what());
  }
  TORCH_CHECK(j.is_object() && j.contains("weight_map") && j["weight_map"].is_object(), index,
              ": expected an object with a \"weight_map\" object");
  const fs::path dir = fs::path(index).parent_path();
  std::map<std::string, size_t> file_index;
  for (const auto& [tensor, file] : j["weight_map"].items()) {
    TORCH_CHECK(file.is_string(), index, ": weight_map[\"", tensor,
                "\"]: expected a file name string");
    const std::string fname = file.get<std::string>();
    check_shard_name(index, tensor, fname);
    auto it = file_index.find(fname);
    if (it == file_index.end()) {
      it = file_index.emplace(fname, c.files_.size()).first;
      c.files_.push_back(SafetensorsFile::open((dir / fname).string()));
    }
    TORCH_CHECK(c.files_[it->second].contains(tensor), index, ": weight_map puts \"", tensor,
                "\" in ", fname, " but that file has no such tensor");
    c.where_[tensor] = it->second;
  }
  TORCH_CHECK(!c.files_.empty(), index, ": the weight_map is empty");
  return c;
}

std::vector<std::string> SafetensorsCheckpoint::names() const {
  std::vector<std::string> out;
  for (const auto& [name, file] : where_) out.push_back(name);
  return out;
}

const SafetensorsFile& SafetensorsCheckpoint::file_of(const std::string& name) const {
  const auto it = where_.find(name);
  TORCH_CHECK(it != where_.end(), "safetensors checkpoint: no tensor named \"", name, "\"");
  return files_[it->second];
}

std::map<std::string, at::Tensor> load_safetensors(const std::string& path) {
  const SafetensorsCheckpoint c = SafetensorsCheckpoint::open(path);
  std::map<std::string, at::Tensor> out;
  for (const auto& name : c.names()) out.emplace(name, c.tensor(name));
  return out;
}

void save_safetensors(const std::string& path,
                      const std::vector<std::pair<std::string, at::Tensor>>& tensors,
                      const std::map<std::string, std::string>& metadata) {
  std::vector<SafetensorsEntry> entries;
  std::map<std::string, const at::Tensor*> by_name;
  for (const auto& [name, t] : tensors) {
    TORCH_CHECK(t.defined(), path, ": tensor \"", name, "\" is undefined");
    entries.push_back({name,
                       to_safetensors_dtype(t.scalar_type(), path + ": tensor \"" + name + "\""),
                       t.sizes().vec()});
    by_name[name] = &t;
  }
  SafetensorsLayout layout;
  try {
    layout = plan_safetensors(entries, metadata);
  } catch (const std::runtime_error& e) {
    TORCH_CHECK(false, path, ": ", e.what());
  }
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    TORCH_CHECK(out.good(), tmp, ": cannot open for writing");
    out.write(layout.header_bytes.data(), static_cast<std::streamsize>(layout.header_bytes.size()));
    for (const auto& info : layout.tensors) {
      const at::Tensor c = by_name.at(info.name)->detach().cpu().contiguous();
      out.write(static_cast<const char*>(c.data_ptr()),
                static_cast<std::streamsize>(info.nbytes()));
    }
    out.flush();
    TORCH_CHECK(out.good(), tmp, ": write failed");
  }
  std::error_code ec;
  fs::rename(tmp, path, ec);
  TORCH_CHECK(!ec, path, ": cannot rename ", tmp, ": ", ec.message());
}

std::vector<std::string> save_safetensors_sharded(
    const std::string& dir, const std::vector<std::pair<std::string, at::Tensor>>& tensors,
    uint64_t max_shard_bytes, const std::map<std::string, std::string>& metadata) {
  TORCH_CHECK(max_shard_bytes > 0, dir, ": max_shard_bytes must be positive");
  fs::create_directories(dir);
  std::vector<std::vector<std::pair<std::string, at::Tensor>>> shards(1);
  uint64_t shard_bytes = 0, total = 0;
  std::set<std::string> seen;
  for (const auto& entry : tensors) {
    TORCH_CHECK(seen.insert(entry.first).second, dir, ": duplicate tensor name \"", entry.first,
                "\"");
    const uint64_t n = static_cast<uint64_t>(entry.second.numel()) * entry.second.element_size();
    if (!shards.back().empty() && shard_bytes + n > max_shard_bytes) {
      shards.emplace_back();
      shard_bytes = 0;
    }
    shards.back().push_back(entry);
    shard_bytes += n;
    total += n;
  }
  if (shards.size() == 1) {
    save_safetensors((fs::path(dir) / kSafetensorsSingleName).string(), tensors, metadata);
    return {kSafetensorsSingleName};
  }
  std::vector<std::string> written;
  nlohmann::json weight_map = nlohmann::json::object();
  for (size_t k = 0; k < shards.size(); ++k) {
    const std::string name = shard_name(k + 1, shards.size());
    save_safetensors((fs::path(dir) / name).string(), shards[k], metadata);
    for (const auto& entry : shards[k]) weight_map[entry.first] = name;
    written.push_back(name);
  }
  const nlohmann::json index = {{"metadata", {{"total_size", total}}}, {"weight_map", weight_map}};
  std::ofstream out(fs::path(dir) / kSafetensorsIndexName);
  out << index.dump(2) << "\n";
  TORCH_CHECK(out.good(), dir, ": cannot write ", kSafetensorsIndexName);
  written.push_back(kSafetensorsIndexName);
  return written;
}

}  // namespace qat::io
