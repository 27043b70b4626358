// The CUDA backend's memory entry points (core/storage.h) and device queries (core/device.h):
// allocation through each device's CudaCachingAllocator over cudaMalloc; copies, host -> device
// ones staged through pinned memory without a host wait. Compiled by nvcc, so it builds
// messages without fmt; user errors come from cuda_allocator.cpp.
#include <cuda_runtime_api.h>

#include <atomic>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <string>
#include <vector>

#include "core/cuda_allocator.h"
#include "core/device.h"
#include "core/pinned_staging_pool.h"
#include "core/storage.h"
#include "kernels/cuda/check.h"
#include "kernels/cuda/device_guard.h"

namespace autotp {

namespace {

using kernels::cuda::ScopedDevice;

std::string gib(size_t bytes) {
  char text[32];
  std::snprintf(text, sizeof(text), "%.2f GiB", static_cast<double>(bytes) / (1u << 30));
  return text;
}

// cudaMalloc / cudaFree on one device.
class CudaDeviceMemory final : public RawDeviceMemory {
 public:
  explicit CudaDeviceMemory(int device) : device_(device) {}

  void* allocate(size_t bytes) override {
    ScopedDevice guard(device_);
    void* ptr = nullptr;
    const cudaError_t error = cudaMalloc(&ptr, bytes);
    if (error == cudaErrorMemoryAllocation) {
      cudaGetLastError();  // clear it, so the next launch check does not report it
      return nullptr;
    }
    if (error != cudaSuccess) {
      kernels::cuda::detail::throw_cuda_error(error, "cudaMalloc(&ptr, bytes)", __FILE__, __LINE__);
    }
    return ptr;
  }

  void free(void* ptr) noexcept override {
    int previous = 0;
    const bool switched = cudaGetDevice(&previous) == cudaSuccess && previous != device_ &&
                          cudaSetDevice(device_) == cudaSuccess;
    const cudaError_t error = cudaFree(ptr);
    if (switched && cudaSetDevice(previous) != cudaSuccess) cudaGetLastError();
    // At process exit the runtime may already be unloaded; the driver frees everything then.
    if (error != cudaSuccess && error != cudaErrorCudartUnloading) {
      std::fprintf(stderr, "autotp: cudaFree(%p) on cuda:%d failed with %s (%s)\n", ptr, device_,
                   cudaGetErrorName(error), cudaGetErrorString(error));
      cudaGetLastError();
    }
  }

  std::string describe() const override {
    const std::string name = "cuda:" + std::to_string(device_);
    size_t free_bytes = 0, total_bytes = 0;
    int previous = 0;
    const bool ok = cudaGetDevice(&previous) == cudaSuccess &&
                    cudaSetDevice(device_) == cudaSuccess &&
                    cudaMemGetInfo(&free_bytes, &total_bytes) == cudaSuccess &&
                    cudaSetDevice(previous) == cudaSuccess;
    if (!ok) {
      cudaGetLastError();  // leave no error behind for the next launch check
      return name + " free memory unknown";
    }
    return name + " has " + gib(free_bytes) + " free of " + gib(total_bytes);
  }

 private:
  int device_;
};

// Pinned buffers and events of one device for its PinnedStagingPool. The events are recorded
// on the legacy default stream, where every op launches and the staged copies are queued.
class CudaStagingBackend final : public StagingBackend {
 public:
  explicit CudaStagingBackend(int device) : device_(device) {}

  void* allocate_pinned(size_t bytes) override {
    ScopedDevice guard(device_);
    void* ptr = nullptr;
    const cudaError_t error = cudaHostAlloc(&ptr, bytes, cudaHostAllocPortable);
    if (error != cudaSuccess) {
      // Out of pinned memory, or a machine that cannot pin host memory (some sandboxes refuse
      // it): the pool asks for no more and copies go the synchronous way, which is correct
      // but slower, so it is said once. A sticky error of an earlier kernel would surface at
      // the next checked call, which cudaGetLastError does not clear.
      cudaGetLastError();
      if (!warned_.exchange(true)) {
        std::fprintf(stderr,
                     "autotp: warning: cudaHostAlloc of %zu bytes failed with %s (%s): "
                     "host-to-device copies are synchronous from now on (slower, same results)\n",
                     bytes, cudaGetErrorName(error), cudaGetErrorString(error));
      }
      return nullptr;
    }
    return ptr;
  }

  void free_pinned(void* ptr) noexcept override {
    const cudaError_t error = cudaFreeHost(ptr);
    if (error != cudaSuccess && error != cudaErrorCudartUnloading) {
      std::fprintf(stderr, "autotp: cudaFreeHost(%p) failed with %s (%s)\n", ptr,
                   cudaGetErrorName(error), cudaGetErrorString(error));
      cudaGetLastError();
    }
  }

  Marker create_marker() override {
    ScopedDevice guard(device_);
    cudaEvent_t event = nullptr;
    AUTOTP_CUDA_CHECK(cudaEventCreateWithFlags(&event, cudaEventDisableTiming));
    return event;
  }

  void destroy_marker(Marker marker) noexcept override {
    if (cudaEventDestroy(static_cast<cudaEvent_t>(marker)) != cudaSuccess) cudaGetLastError();
  }

  void record_marker(Marker marker) override {
    ScopedDevice guard(device_);
    AUTOTP_CUDA_CHECK(cudaEventRecord(static_cast<cudaEvent_t>(marker), cudaStreamLegacy));
  }

  bool marker_passed(Marker marker) override {
    const cudaError_t status = cudaEventQuery(static_cast<cudaEvent_t>(marker));
    if (status == cudaSuccess) return true;
    if (status == cudaErrorNotReady) {
      cudaGetLastError();  // not an error: leave nothing for the next launch check
      return false;
    }
    kernels::cuda::detail::throw_cuda_error(status, "cudaEventQuery(marker)", __FILE__, __LINE__);
  }

 private:
  std::atomic<bool> warned_{false};
  int device_;
};

// The staging pool of `device` (a visible device): created on first use and, like the
// allocators, never destroyed, so a copy staged during static destruction still finds it.
PinnedStagingPool& staging_pool(int device) {
  struct Registry {
    std::mutex mutex;
    std::vector<std::unique_ptr<PinnedStagingPool>> by_device;
  };
  static Registry* const registry = new Registry();
  std::lock_guard<std::mutex> lock(registry->mutex);
  if (registry->by_device.size() <= static_cast<size_t>(device))
    registry->by_device.resize(static_cast<size_t>(device) + 1);
  std::unique_ptr<PinnedStagingPool>& slot = registry->by_device[static_cast<size_t>(device)];
  if (!slot) {
    slot = std::make_unique<PinnedStagingPool>(std::make_unique<CudaStagingBackend>(device),
                                               PinnedStagingPool::Limits{});
  }
  return *slot;
}

}  // namespace

PinnedStagingPool::Stats cuda_staging_stats(int device) {
  CudaCachingAllocator::for_device(device);  // a clear error for a device that is not visible
  return staging_pool(device).stats();
}

std::unique_ptr<RawDeviceMemory> make_cuda_device_memory(int device) {
  return std::make_unique<CudaDeviceMemory>(device);
}

int cuda_device_count() {
  // Fixed for the life of the process (CUDA_VISIBLE_DEVICES is read once), so query it once.
  // Without a driver or device cudaGetDeviceCount fails: that means 0 devices, not an error.
  static const int count = [] {
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess) {
      cudaGetLastError();
      return 0;
    }
    return n;
  }();
  return count;
}

std::string cuda_device_name(int device) {
  cudaDeviceProp prop{};
  AUTOTP_CUDA_CHECK(cudaGetDeviceProperties(&prop, device));
  return prop.name;
}

bool cuda_available() {
  return cuda_device_count() > 0;
}

void cuda_set_current_device(int device) {
  AUTOTP_CUDA_CHECK(cudaSetDevice(device));
}

namespace cuda_memory {

void* allocate(size_t bytes, int device) {
  return CudaCachingAllocator::for_device(device).allocate(bytes);
}

void release(void* ptr, int device) {
  // Called from ~Storage: the allocator of a device that held memory exists, so this does not
  // throw; guard anyway, since an exception here would end the program.
  try {
    CudaCachingAllocator::for_device(device).release(ptr);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "autotp: releasing CUDA memory on cuda:%d failed: %s\n", device, e.what());
  }
}

void copy(void* dst, Device dst_device, const void* src, Device src_device, size_t bytes) {
  if (bytes == 0) return;
  if (dst_device.is_cpu() && src_device.is_cpu()) {
    std::memcpy(dst, src, bytes);
    return;
  }
  if (dst_device.is_cuda() && src_device.is_cuda()) {
    if (dst_device.index == src_device.index) {
      ScopedDevice guard(dst_device.index);
      AUTOTP_CUDA_CHECK(cudaMemcpy(dst, src, bytes, cudaMemcpyDeviceToDevice));
      AUTOTP_CUDA_CHECK(cudaStreamSynchronize(nullptr));
    } else {
      AUTOTP_CUDA_CHECK(cudaMemcpyPeer(dst, dst_device.index, src, src_device.index, bytes));
      ScopedDevice guard(dst_device.index);
      AUTOTP_CUDA_CHECK(cudaDeviceSynchronize());
    }
    return;
  }
  // Host -> device: through a pinned buffer and cudaMemcpyAsync on the legacy default stream,
  // so later work there (every op) is ordered after the copy and the host does not wait. A
  // copy the pool declines takes cudaMemcpy, which returns once `src` may be reused (for
  // pageable memory after the stream has drained). Device -> host waits for the copy.
  if (dst_device.is_cuda()) {
    ScopedDevice guard(dst_device.index);
    const bool staged = staging_pool(dst_device.index).stage(src, bytes, [&](const void* pinned) {
      AUTOTP_CUDA_CHECK(
          cudaMemcpyAsync(dst, pinned, bytes, cudaMemcpyHostToDevice, cudaStreamLegacy));
    });
    if (!staged) AUTOTP_CUDA_CHECK(cudaMemcpy(dst, src, bytes, cudaMemcpyHostToDevice));
  } else {
    ScopedDevice guard(src_device.index);
    AUTOTP_CUDA_CHECK(cudaMemcpy(dst, src, bytes, cudaMemcpyDeviceToHost));
  }
}

void memset_zero(void* ptr, size_t bytes, int device) {
  if (bytes == 0) return;
  ScopedDevice guard(device);
  AUTOTP_CUDA_CHECK(cudaMemset(ptr, 0, bytes));
}

void synchronize(int device) {
  ScopedDevice guard(device);
  AUTOTP_CUDA_CHECK(cudaDeviceSynchronize());
}

}  // namespace cuda_memory

}  // namespace autotp
