// A read-only view of a whole file through mmap (plain C++, POSIX).
//
// The mapping is MAP_PRIVATE with PROT_READ|PROT_WRITE: tensors that view it can be written in
// place (the kernel copies the touched pages: copy-on-write), and the file itself never changes.
// Tensors made from it hold a shared_ptr to keep the mapping alive after the reader is gone.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

namespace qat::io {

class MappedFile {
 public:
  // Throws std::runtime_error naming the path and the OS error.
  static std::shared_ptr<MappedFile> open(const std::string& path);
  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  const uint8_t* data() const { return data_; }
  // Writable (copy-on-write) address of byte `offset`, for zero-copy tensors.
  uint8_t* mutable_data(size_t offset) const { return data_ + offset; }
  size_t size() const { return size_; }
  const std::string& path() const { return path_; }
  // Gives the pages wholly inside [offset, offset + length) back to the kernel (madvise
  // MADV_DONTNEED): they leave the process's resident set, and reading them again reads the file
  // again. Copy-on-write changes to them are lost, so call it only when no tensor views them.
  void drop_pages(size_t offset, size_t length) const;

 private:
  MappedFile() = default;
  uint8_t* data_ = nullptr;
  size_t size_ = 0;
  std::string path_;
};

}  // namespace qat::io
