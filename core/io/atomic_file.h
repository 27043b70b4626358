// Atomic file replacement: content goes to "<path>.tmp.<pid>", is fsync'ed and renamed over
// <path>, so a reader (or a crash) sees the old file or the complete new one, never a mix.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>

namespace autotp::io {

// Writes one file atomically. The temporary file is removed when the writer is destroyed
// without a successful commit() (an exception mid-write leaves the old file untouched).
class AtomicFileWriter {
 public:
  // Creates the temporary file next to `path`; throws autotp::Error naming both on failure.
  explicit AtomicFileWriter(std::string path);
  ~AtomicFileWriter();
  AtomicFileWriter(const AtomicFileWriter&) = delete;
  AtomicFileWriter& operator=(const AtomicFileWriter&) = delete;

  void write(const void* data, size_t bytes);
  void write(std::string_view text) { write(text.data(), text.size()); }
  uint64_t bytes_written() const { return written_; }

  // Flushes the data to disk (fsync), renames the temporary file over the target and syncs
  // the directory. After this the writer holds nothing.
  void commit();

  const std::string& path() const { return path_; }
  const std::string& temp_path() const { return temp_path_; }

 private:
  [[noreturn]] void fail(std::string_view what, int error) const;

  std::string path_;
  std::string temp_path_;
  int fd_ = -1;
  bool committed_ = false;
  uint64_t written_ = 0;
};

// The temporary name AtomicFileWriter uses for `path` in this process.
std::string atomic_temp_path(const std::string& path);

// Writes `content` to `path` atomically.
void write_file_atomically(const std::string& path, std::string_view content);
// Calls `fill` with a writer for `path`, then commits; if `fill` throws, `path` is untouched.
void write_file_atomically(const std::string& path,
                           const std::function<void(AtomicFileWriter&)>& fill);

}  // namespace autotp::io
