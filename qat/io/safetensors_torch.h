// safetensors <-> at::Tensor: lazy memory-mapped readers (one file or a sharded checkpoint) and
// writers (one file or shards + model.safetensors.index.json).
//
// Reads are zero-copy: tensor(name) is an at::from_blob view into the file's private mapping,
// whose deleter holds the mapping, so tensors stay valid after the reader is destroyed. The
// mapping is copy-on-write: writing into a loaded tensor never changes the file. A tensor whose
// bytes are not aligned to its element size (possible only in files from other writers) is
// copied instead, so every returned tensor is safe for vectorised kernels.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "qat/io/mapped_file.h"
#include "qat/io/safetensors.h"

namespace qat::io {

// The libtorch dtype of a safetensors dtype; F4, F6_E2M3 and F6_E3M2 have none and throw
// "unsupported dtype" (c10::Error) naming `what`.
at::ScalarType to_scalar_type(SafetensorsDtype dtype, const std::string& what = "safetensors");
SafetensorsDtype to_safetensors_dtype(at::ScalarType type, const std::string& what = "safetensors");

// One .safetensors file, memory-mapped and validated on open.
class SafetensorsFile {
 public:
  // Throws (std::runtime_error) if the file cannot be mapped or breaks any format rule.
  static SafetensorsFile open(const std::string& path);

  const std::string& path() const { return file_->path(); }
  std::vector<std::string> names() const;  // in header order
  bool contains(const std::string& name) const { return header_.find(name) != nullptr; }
  // Throws naming the file and the tensor when absent.
  const SafetensorsTensorInfo& info(const std::string& name) const;
  at::ScalarType dtype(const std::string& name) const;
  std::vector<int64_t> shape(const std::string& name) const { return info(name).shape; }
  // A CPU tensor viewing the mapping (see the file comment).
  at::Tensor tensor(const std::string& name) const;
  // Drops the tensor's pages from the resident set (MappedFile::drop_pages) once it has been
  // copied out and no view of it is used any more: a streamed load reads a file larger than
  // memory without the file's pages adding up.
  void drop_pages(const std::string& name) const;
  const std::map<std::string, std::string>& metadata() const { return header_.metadata; }
  const SafetensorsHeader& header() const { return header_; }

 private:
  std::shared_ptr<MappedFile> file_;
  SafetensorsHeader header_;
};

// A checkpoint: a single file, or the shards named by a model.safetensors.index.json.
class SafetensorsCheckpoint {
 public:
  // `path` is a .safetensors file, an *.index.json, or a directory holding
  // model.safetensors.index.json or model.safetensors.
  static SafetensorsCheckpoint open(const std::string& path);

  std::vector<std::string> names() const;  // sorted
  bool contains(const std::string& name) const { return where_.count(name) != 0; }
  const SafetensorsFile& file_of(const std::string& name) const;
  const SafetensorsTensorInfo& info(const std::string& name) const {
    return file_of(name).info(name);
  }
  at::ScalarType dtype(const std::string& name) const { return file_of(name).dtype(name); }
  std::vector<int64_t> shape(const std::string& name) const { return info(name).shape; }
  at::Tensor tensor(const std::string& name) const { return file_of(name).tensor(name); }
  void drop_pages(const std::string& name) const { file_of(name).drop_pages(name); }
  // The first file's __metadata__ (every shard we write carries the same).
  const std::map<std::string, std::string>& metadata() const { return files_.front().metadata(); }
  const std::vector<SafetensorsFile>& files() const { return files_; }

 private:
  std::vector<SafetensorsFile> files_;
  std::map<std::string, size_t> where_;  // tensor -> index in files_
};

// Every tensor of a file, index or directory (zero-copy views; see above).
std::map<std::string, at::Tensor> load_safetensors(const std::string& path);

// Writes one file: header sorted as the reference writer (dtype, then name), padded to 8 bytes,
// "__metadata__" = {"format": "pt"} + `metadata`. Tensors may be on any device and strided.
// Writes to `path`.tmp and renames, so a crash never leaves a half-written file at `path`.
void save_safetensors(const std::string& path,
                      const std::vector<std::pair<std::string, at::Tensor>>& tensors,
                      const std::map<std::string, std::string>& metadata = {});

// Writes a checkpoint into `dir` as transformers' save_pretrained does: tensors are assigned in
// order to shards of at most `max_shard_bytes` (a larger tensor gets a shard of its own); one
// shard is written as model.safetensors, several as model-0000k-of-0000n.safetensors plus
// model.safetensors.index.json {"metadata": {"total_size": ...}, "weight_map": {...}}.
// Returns the file names written (relative to dir).
std::vector<std::string> save_safetensors_sharded(
    const std::string& dir, const std::vector<std::pair<std::string, at::Tensor>>& tensors,
    uint64_t max_shard_bytes, const std::map<std::string, std::string>& metadata = {});

inline constexpr char kSafetensorsIndexName[] = "model.safetensors.index.json";
inline constexpr char kSafetensorsSingleName[] = "model.safetensors";

}  // namespace qat::io
