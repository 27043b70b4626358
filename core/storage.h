// Storage: one owned, aligned byte buffer on a device, shared by all tensor views of it.
#pragma once

#include <cstddef>
#include <memory>

#include "core/device.h"

namespace autotp {

class Storage {
 public:
  // Allocates `bytes` on `device` (uninitialized). CPU memory is 64-byte aligned.
  Storage(size_t bytes, Device device);
  ~Storage();
  Storage(const Storage&) = delete;
  Storage& operator=(const Storage&) = delete;

  void* data() { return data_; }
  const void* data() const { return data_; }
  size_t bytes() const { return bytes_; }
  Device device() const { return device_; }

 private:
  void* data_ = nullptr;
  size_t bytes_ = 0;
  Device device_;
};

// Device memory entry points, implemented by the CUDA backend (core/cuda_memory.cu) or,
// in builds without CUDA, by core/cuda_memory_nocuda.cpp, which reports that clearly.
namespace cuda_memory {
void* allocate(size_t bytes, int device);
void release(void* ptr, int device);
// Copies `bytes` between any two of host/device memory. Returns once `src` may be reused: a
// host -> device copy of up to 16 MiB is staged through pinned memory (PinnedStagingPool) and
// queued on the device's legacy default stream, ordered before every later op there, without
// a host wait; other copies wait for completion.
void copy(void* dst, Device dst_device, const void* src, Device src_device, size_t bytes);
void memset_zero(void* ptr, size_t bytes, int device);
// Waits until all work queued on `device` has finished (for timing and error surfacing).
void synchronize(int device);
}  // namespace cuda_memory

}  // namespace autotp
