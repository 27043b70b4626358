// The caching allocator's bookkeeping (size classes, reuse, statistics, out-of-memory message);
// plain C++ over RawDeviceMemory, so its logic is tested on the CPU with a fake device.
#include "core/cuda_allocator.h"

#include <algorithm>
#include <bit>
#include <cstdio>

#include "core/device.h"
#include "core/error.h"

namespace autotp {

namespace {

constexpr size_t kMinBlock = 512;

// "1.5 MiB"
std::string human_bytes(size_t bytes) {
  static const char* const kUnits[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
  double value = static_cast<double>(bytes);
  int unit = 0;
  while (value >= 1024.0 && unit < 6) {
    value /= 1024.0;
    ++unit;
  }
  return unit == 0 ? fmt::format("{} B", bytes) : fmt::format("{:.2f} {}", value, kUnits[unit]);
}

}  // namespace

CudaCachingAllocator::CudaCachingAllocator(int device, std::unique_ptr<RawDeviceMemory> raw)
    : device_(device), raw_(std::move(raw)) {
  AUTOTP_ASSERT(raw_ != nullptr, "CudaCachingAllocator for cuda:{} without device memory", device);
}

CudaCachingAllocator::~CudaCachingAllocator() {
  std::lock_guard<std::mutex> lock(mutex_);
  release_cached_locked();
  for (const auto& [ptr, size] : live_)
    raw_->free(ptr);
}

size_t CudaCachingAllocator::round_size(size_t bytes) {
  if (bytes <= kMinBlock) return kMinBlock;
  if (bytes <= 2 * kMinBlock) return 2 * kMinBlock;
  if (bytes > (SIZE_MAX >> 2)) return bytes;  // no device has this; let the allocation fail
  const size_t step = std::bit_floor(bytes) / 4;
  return (bytes + step - 1) / step * step;
}

void* CudaCachingAllocator::allocate(size_t bytes) {
  if (bytes == 0) return nullptr;
  const size_t size = round_size(bytes);
  std::lock_guard<std::mutex> lock(mutex_);
  void* ptr = nullptr;
  if (auto it = cached_.find(size); it != cached_.end() && !it->second.empty()) {
    ptr = it->second.back();
    it->second.pop_back();
    stats_.cached_bytes -= size;
  } else {
    ++stats_.device_malloc_calls;
    ptr = raw_->allocate(size);
    if (ptr == nullptr && stats_.cached_bytes > 0) {
      // Free blocks of other classes may be what stands in the way: return them and retry.
      release_cached_locked();
      ++stats_.device_malloc_calls;
      ptr = raw_->allocate(size);
    }
    if (ptr == nullptr) {
      AUTOTP_FAIL(
          "CUDA out of memory on cuda:{}: cannot allocate {} bytes ({}, size class {} bytes). "
          "autotp's allocator on this device holds current {} bytes ({}) in live tensors, "
          "peak {} bytes ({}), reserved {} bytes ({}) with its cache already returned; {}",
          device_, bytes, human_bytes(bytes), size, stats_.current_bytes,
          human_bytes(stats_.current_bytes), stats_.peak_bytes, human_bytes(stats_.peak_bytes),
          stats_.reserved_bytes, human_bytes(stats_.reserved_bytes), raw_->describe());
    }
    stats_.reserved_bytes += size;
  }
  live_.emplace(ptr, size);
  stats_.current_bytes += size;
  stats_.peak_bytes = std::max(stats_.peak_bytes, stats_.current_bytes);
  return ptr;
}

void CudaCachingAllocator::release(void* ptr) noexcept {
  if (ptr == nullptr) return;
  std::lock_guard<std::mutex> lock(mutex_);
  const auto it = live_.find(ptr);
  if (it == live_.end()) {
    // Called from destructors, so it cannot throw: report the broken invariant instead.
    std::fprintf(stderr,
                 "autotp internal error (a bug, please report it): release of %p, which the "
                 "allocator of cuda:%d did not hand out\n",
                 ptr, device_);
    return;
  }
  const size_t size = it->second;
  live_.erase(it);
  stats_.current_bytes -= size;
  cached_[size].push_back(ptr);
  stats_.cached_bytes += size;
}

void CudaCachingAllocator::release_cached() {
  std::lock_guard<std::mutex> lock(mutex_);
  release_cached_locked();
}

void CudaCachingAllocator::release_cached_locked() {
  for (auto& [size, blocks] : cached_) {
    for (void* ptr : blocks) {
      raw_->free(ptr);
      ++stats_.device_free_calls;
      stats_.reserved_bytes -= size;
    }
  }
  cached_.clear();
  stats_.cached_bytes = 0;
}

CudaCachingAllocator::Stats CudaCachingAllocator::stats() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return stats_;
}

void CudaCachingAllocator::reset_peak() {
  std::lock_guard<std::mutex> lock(mutex_);
  stats_.peak_bytes = stats_.current_bytes;
}

CudaCachingAllocator& CudaCachingAllocator::for_device(int device) {
  const int count = cuda_device_count();
#ifdef AUTOTP_WITH_CUDA
  AUTOTP_CHECK(count > 0,
               "cuda:{} was requested but no CUDA device is visible to this process (check the "
               "NVIDIA driver and CUDA_VISIBLE_DEVICES)",
               device);
#else
  AUTOTP_CHECK(count > 0,
               "cuda:{} was requested but this autotp was built without the CUDA backend", device);
#endif
  AUTOTP_CHECK(device >= 0 && device < count,
               "cuda:{} was requested but only {} CUDA device(s) are visible (cuda:0 to cuda:{})",
               device, count, count - 1);
  // The one process-wide object (see the header): created on first use, never destroyed.
  struct Registry {
    std::mutex mutex;
    std::vector<std::unique_ptr<CudaCachingAllocator>> by_device;
  };
  static Registry* const registry = new Registry();
  std::lock_guard<std::mutex> lock(registry->mutex);
  if (registry->by_device.size() < static_cast<size_t>(count)) registry->by_device.resize(count);
  std::unique_ptr<CudaCachingAllocator>& slot = registry->by_device[device];
  if (!slot) slot = std::make_unique<CudaCachingAllocator>(device, make_cuda_device_memory(device));
  return *slot;
}

}  // namespace autotp
