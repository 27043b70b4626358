// ScopedDevice: makes a CUDA device current for a scope and restores the previous one, for
// the backend's calls that act on the current device (events, copies, pinned memory).
#pragma once

#include <cuda_runtime_api.h>

#include <string>

#include "kernels/cuda/check.h"

namespace autotp::kernels::cuda {

class ScopedDevice {
 public:
  explicit ScopedDevice(int device) {
    AUTOTP_CUDA_CHECK(cudaGetDevice(&previous_));
    if (previous_ != device) {
      const cudaError_t status = cudaSetDevice(device);
      if (status != cudaSuccess) {  // named with the device asked for, not the current one
        const std::string call = "cudaSetDevice(" + std::to_string(device) + ")";
        detail::throw_cuda_error(status, call.c_str(), __FILE__, __LINE__);
      }
      switched_ = true;
    }
  }
  ~ScopedDevice() {
    if (switched_ && cudaSetDevice(previous_) != cudaSuccess) cudaGetLastError();
  }
  ScopedDevice(const ScopedDevice&) = delete;
  ScopedDevice& operator=(const ScopedDevice&) = delete;

 private:
  int previous_ = 0;
  bool switched_ = false;
};

}  // namespace autotp::kernels::cuda
