// The CUDA backend's memory entry points (core/storage.h) and device queries (core/device.h):
// allocation through each device's CudaCachingAllocator over cudaMalloc, synchronous copies.
// Compiled by nvcc, so it builds messages without fmt; user errors come from cuda_allocator.cpp.
#include <cuda_runtime_api.h>

#include <cstdio>
#include <cstring>
#include <string>

#include "core/cuda_allocator.h"
#include "core/device.h"
#include "core/storage.h"
#include "kernels/cuda/check.h"

namespace autotp {

namespace {

// Makes `device` the current device for its lifetime and restores the previous one.
class DeviceGuard {
 public:
  explicit DeviceGuard(int device) {
    AUTOTP_CUDA_CHECK(cudaGetDevice(&previous_));
    if (previous_ != device) {
      AUTOTP_CUDA_CHECK(cudaSetDevice(device));
      switched_ = true;
    }
  }
  ~DeviceGuard() {
    if (switched_ && cudaSetDevice(previous_) != cudaSuccess) cudaGetLastError();
  }
  DeviceGuard(const DeviceGuard&) = delete;
  DeviceGuard& operator=(const DeviceGuard&) = delete;

 private:
  int previous_ = 0;
  bool switched_ = false;
};

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
    DeviceGuard guard(device_);
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

}  // namespace

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
      DeviceGuard guard(dst_device.index);
      AUTOTP_CUDA_CHECK(cudaMemcpy(dst, src, bytes, cudaMemcpyDeviceToDevice));
      AUTOTP_CUDA_CHECK(cudaStreamSynchronize(nullptr));
    } else {
      AUTOTP_CUDA_CHECK(cudaMemcpyPeer(dst, dst_device.index, src, src_device.index, bytes));
      DeviceGuard guard(dst_device.index);
      AUTOTP_CUDA_CHECK(cudaDeviceSynchronize());
    }
    return;
  }
  // Host <-> device: cudaMemcpy returns once the host buffer may be reused (for pageable
  // host memory after staging; later work on the default stream is ordered after the copy).
  if (dst_device.is_cuda()) {
    DeviceGuard guard(dst_device.index);
    AUTOTP_CUDA_CHECK(cudaMemcpy(dst, src, bytes, cudaMemcpyHostToDevice));
  } else {
    DeviceGuard guard(src_device.index);
    AUTOTP_CUDA_CHECK(cudaMemcpy(dst, src, bytes, cudaMemcpyDeviceToHost));
  }
}

void memset_zero(void* ptr, size_t bytes, int device) {
  if (bytes == 0) return;
  DeviceGuard guard(device);
  AUTOTP_CUDA_CHECK(cudaMemset(ptr, 0, bytes));
}

void synchronize(int device) {
  DeviceGuard guard(device);
  AUTOTP_CUDA_CHECK(cudaDeviceSynchronize());
}

}  // namespace cuda_memory

}  // namespace autotp
