// CudaCachingAllocator: device memory cached in size-class bins, so a freed block is reused
// without another cudaMalloc; with statistics, release_cached() and a clear out-of-memory error.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

namespace autotp {

// The raw device calls the allocator makes: cudaMalloc / cudaFree on one device for the CUDA
// backend (core/cuda_memory.cu), a fake in the allocator's CPU tests.
class RawDeviceMemory {
 public:
  virtual ~RawDeviceMemory() = default;
  // Returns nullptr when the device is out of memory; throws for any other failure.
  virtual void* allocate(size_t bytes) = 0;
  // Must not throw (called from destructors); reports failures on stderr.
  virtual void free(void* ptr) noexcept = 0;
  // One line on the device's memory for error messages, e.g. "cuda:0 has 1.2 GiB free of 80 GiB".
  virtual std::string describe() const = 0;
};

// The CUDA backend's RawDeviceMemory for `device` (throws without the CUDA backend).
std::unique_ptr<RawDeviceMemory> make_cuda_device_memory(int device);

class CudaCachingAllocator {
 public:
  struct Stats {
    size_t current_bytes = 0;   // in blocks handed out now (rounded sizes)
    size_t peak_bytes = 0;      // highest current_bytes since construction or reset_peak()
    size_t reserved_bytes = 0;  // obtained from the device and not yet returned: live + cached
    size_t cached_bytes = 0;    // free blocks kept for reuse (reserved - current)
    int64_t device_malloc_calls = 0;  // cudaMalloc calls made (reuse does not make one)
    int64_t device_free_calls = 0;    // cudaFree calls made
  };

  CudaCachingAllocator(int device, std::unique_ptr<RawDeviceMemory> raw);
  ~CudaCachingAllocator();  // returns every block it still holds to the device
  CudaCachingAllocator(const CudaCachingAllocator&) = delete;
  CudaCachingAllocator& operator=(const CudaCachingAllocator&) = delete;

  // The allocator of CUDA device `device`: the one process-wide object of the CUDA backend.
  // Storage frees device memory from its destructor, with no context to carry an allocator,
  // so each device's allocator is created on first use and owned by a function-local static.
  // It is never destroyed (deliberately leaked), so tensors destroyed during static
  // destruction can still return their memory; the driver reclaims it at exit. Throws
  // autotp::Error when `device` is not a visible CUDA device.
  static CudaCachingAllocator& for_device(int device);

  // The size class of a request: at least 512 B; up to 1 KiB rounded to 512 B multiples,
  // above that to a quarter of the request's power-of-two octave (<= 25% waste, 4 classes per
  // octave). Free blocks are reused only for requests of the same class.
  static size_t round_size(size_t bytes);

  // A block of at least `bytes` (nullptr for 0). Reuses a cached block of the same class, else
  // calls cudaMalloc; when that fails it returns every cached block to the device and retries
  // once, then throws autotp::Error naming the request and the statistics.
  void* allocate(size_t bytes);
  // Returns a block from allocate() to the cache (no cudaFree). Null is ignored. Thread-safe.
  void release(void* ptr) noexcept;
  // Returns every cached (free) block to the device with cudaFree.
  void release_cached();

  Stats stats() const;
  void reset_peak();
  int device() const { return device_; }

 private:
  void release_cached_locked();

  int device_;
  std::unique_ptr<RawDeviceMemory> raw_;
  mutable std::mutex mutex_;
  std::unordered_map<void*, size_t> live_;                 // block -> its class size
  std::unordered_map<size_t, std::vector<void*>> cached_;  // class size -> free blocks
  Stats stats_;
};

}  // namespace autotp
