// PinnedStagingPool: buffer reuse by completion markers (queried, never waited on), growth
// within the limits, and the decline that sends a copy down the synchronous path.
#include "core/pinned_staging_pool.h"

#include <bit>
#include <cstddef>
#include <cstring>
#include <utility>

#include "core/error.h"

namespace autotp {

PinnedStagingPool::PinnedStagingPool(std::unique_ptr<StagingBackend> backend, Limits limits)
    : backend_(std::move(backend)), limits_(limits) {
  AUTOTP_ASSERT(backend_ != nullptr, "a staging pool without a backend");
  AUTOTP_ASSERT(buffer_bytes(limits_.max_copy_bytes) <= limits_.max_pinned_bytes,
                "staging limits: a copy of {} bytes needs a buffer of {}, over the pool's {}",
                limits_.max_copy_bytes, buffer_bytes(limits_.max_copy_bytes),
                limits_.max_pinned_bytes);
}

PinnedStagingPool::~PinnedStagingPool() {
  for (const Buffer& buffer : buffers_) {
    backend_->destroy_marker(buffer.marker);
    backend_->free_pinned(buffer.data);
  }
}

size_t PinnedStagingPool::buffer_bytes(size_t bytes) {
  return std::bit_ceil(bytes < kMinBufferBytes ? kMinBufferBytes : bytes);
}

std::optional<size_t> PinnedStagingPool::acquire(size_t bytes) {
  std::optional<size_t> best;
  for (size_t i = 0; i < buffers_.size(); ++i) {
    Buffer& buffer = buffers_[i];
    if (buffer.retired || buffer.bytes < bytes) continue;
    if (buffer.busy && backend_->marker_passed(buffer.marker)) buffer.busy = false;
    if (!buffer.busy && (!best || buffer.bytes < buffers_[*best].bytes)) best = i;
  }
  if (best) return best;
  if (out_of_pinned_) return std::nullopt;
  const size_t size = buffer_bytes(bytes);
  if (!make_room(size)) return std::nullopt;
  buffers_.reserve(buffers_.size() + 1);  // so that the push below cannot throw
  Buffer buffer;
  buffer.data = backend_->allocate_pinned(size);
  if (buffer.data == nullptr) {
    out_of_pinned_ = true;
    return std::nullopt;
  }
  buffer.bytes = size;
  try {
    buffer.marker = backend_->create_marker();
  } catch (...) {
    backend_->free_pinned(buffer.data);
    throw;
  }
  buffers_.push_back(buffer);
  ++stats_.buffers;
  stats_.pinned_bytes += size;
  return buffers_.size() - 1;
}

bool PinnedStagingPool::make_room(size_t size) {
  while (size > limits_.max_pinned_bytes - stats_.pinned_bytes) {
    std::optional<size_t> victim;
    for (size_t i = 0; i < buffers_.size(); ++i) {
      Buffer& buffer = buffers_[i];
      if (buffer.retired || buffer.bytes >= size) continue;
      if (buffer.busy && backend_->marker_passed(buffer.marker)) buffer.busy = false;
      if (!buffer.busy && (!victim || buffer.bytes > buffers_[*victim].bytes)) victim = i;
    }
    if (!victim) return false;
    const Buffer freed = buffers_[*victim];
    buffers_.erase(buffers_.begin() + static_cast<std::ptrdiff_t>(*victim));
    backend_->destroy_marker(freed.marker);
    backend_->free_pinned(freed.data);
    --stats_.buffers;
    stats_.pinned_bytes -= freed.bytes;
  }
  return true;
}

bool PinnedStagingPool::stage(const void* src, size_t bytes,
                              const std::function<void(const void*)>& enqueue) {
  std::lock_guard<std::mutex> lock(mutex_);
  const std::optional<size_t> index =
      bytes <= limits_.max_copy_bytes ? acquire(bytes) : std::nullopt;
  if (!index) {
    ++stats_.unstaged_copies;
    return false;
  }
  Buffer& buffer = buffers_[*index];
  if (bytes > 0) std::memcpy(buffer.data, src, bytes);
  try {
    enqueue(buffer.data);
    backend_->record_marker(buffer.marker);
  } catch (...) {
    buffer.retired = true;  // its copy may be queued with no marker behind it
    throw;
  }
  buffer.busy = true;
  ++stats_.staged_copies;
  return true;
}

PinnedStagingPool::Stats PinnedStagingPool::stats() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return stats_;
}

}  // namespace autotp
