// The CUDA memory entry points on the bare CUDA runtime, for the NCCL device check: it links
// the CPU build of autotp_core (whose ops never touch these tensors) plus this file.
#include <cuda_runtime.h>

#include "core/error.h"
#include "core/storage.h"

namespace autotp {

namespace {
void check(cudaError_t status, const char* call) {
  AUTOTP_CHECK(status == cudaSuccess, "{} failed: {}", call, cudaGetErrorString(status));
}
}  // namespace

bool cuda_available() {
  return cuda_device_count() > 0;
}

int cuda_device_count() {
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess) {
    cudaGetLastError();
    return 0;
  }
  return count;
}

namespace cuda_memory {
void* allocate(size_t bytes, int device) {
  check(cudaSetDevice(device), "cudaSetDevice");
  void* ptr = nullptr;
  check(cudaMalloc(&ptr, bytes), "cudaMalloc");
  return ptr;
}
void release(void* ptr, int device) {
  cudaSetDevice(device);
  cudaFree(ptr);
}
void copy(void* dst, Device, const void* src, Device, size_t bytes) {
  check(cudaMemcpy(dst, src, bytes, cudaMemcpyDefault), "cudaMemcpy");
}
void memset_zero(void* ptr, size_t bytes, int device) {
  check(cudaSetDevice(device), "cudaSetDevice");
  check(cudaMemset(ptr, 0, bytes), "cudaMemset");
}
}  // namespace cuda_memory

}  // namespace autotp
