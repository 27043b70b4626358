// AtomicFileWriter: POSIX open/write/fsync/rename with a per-process temporary name.
#include "core/io/atomic_file.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>

#include "core/error.h"

namespace autotp::io {

std::string atomic_temp_path(const std::string& path) {
  return path + ".tmp." + std::to_string(static_cast<long>(::getpid()));
}

AtomicFileWriter::AtomicFileWriter(std::string path)
    : path_(std::move(path)), temp_path_(atomic_temp_path(path_)) {
  AUTOTP_CHECK(!path_.empty(), "cannot write a file with an empty path");
  fd_ = ::open(temp_path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd_ < 0) fail("cannot create the temporary file", errno);
}

AtomicFileWriter::~AtomicFileWriter() {
  if (fd_ >= 0) ::close(fd_);
  if (!committed_) ::unlink(temp_path_.c_str());  // best effort; the target is untouched
}

void AtomicFileWriter::fail(std::string_view what, int error) const {
  AUTOTP_FAIL("cannot write '{}': {} '{}': {}", path_, what, temp_path_, std::strerror(error));
}

void AtomicFileWriter::write(const void* data, size_t bytes) {
  AUTOTP_ASSERT(fd_ >= 0 && !committed_, "write on a closed AtomicFileWriter for '{}'", path_);
  const char* p = static_cast<const char*>(data);
  while (bytes > 0) {
    const ssize_t n = ::write(fd_, p, bytes);
    if (n < 0) {
      if (errno == EINTR) continue;
      fail("writing failed for", errno);
    }
    p += n;
    bytes -= static_cast<size_t>(n);
    written_ += static_cast<uint64_t>(n);
  }
}

void AtomicFileWriter::commit() {
  AUTOTP_ASSERT(fd_ >= 0 && !committed_, "commit on a closed AtomicFileWriter for '{}'", path_);
  if (::fsync(fd_) != 0) fail("fsync failed for", errno);
  const int fd = fd_;
  fd_ = -1;
  if (::close(fd) != 0) fail("close failed for", errno);
  if (::rename(temp_path_.c_str(), path_.c_str()) != 0) fail("cannot rename", errno);
  committed_ = true;
  // Make the rename itself durable. Some file systems cannot sync a directory: not an error.
  std::string dir = std::filesystem::path(path_).parent_path().string();
  if (dir.empty()) dir = ".";
  const int dir_fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dir_fd >= 0) {
    ::fsync(dir_fd);
    ::close(dir_fd);
  }
}

void write_file_atomically(const std::string& path, std::string_view content) {
  AtomicFileWriter writer(path);
  writer.write(content);
  writer.commit();
}

void write_file_atomically(const std::string& path,
                           const std::function<void(AtomicFileWriter&)>& fill) {
  AtomicFileWriter writer(path);
  fill(writer);
  writer.commit();
}

}  // namespace autotp::io
