// A read-only memory-mapped file (RAII, move-only), used by the token and text data sources.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace autotp {

class MappedFile {
 public:
  // Maps the whole file; throws autotp::Error naming the path when it cannot be opened or
  // mapped, or when it is empty.
  explicit MappedFile(const std::string& path);
  ~MappedFile();
  MappedFile(MappedFile&& other) noexcept;
  MappedFile& operator=(MappedFile&& other) noexcept;
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  const uint8_t* data() const { return data_; }
  size_t size() const { return size_; }
  const std::string& path() const { return path_; }

 private:
  void release();

  std::string path_;
  const uint8_t* data_ = nullptr;
  size_t size_ = 0;
};

}  // namespace autotp
