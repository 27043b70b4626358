// ScopedDevice: makes a CUDA device current for a scope and restores the previous one, for
// the backend's calls that act on the current device (events, copies, pinned memory).
#pragma once

#include <cuda_runtime_api.h>

#include "kernels/cuda/check.h"

namespace autotp::kernels::cuda {

class ScopedDevice {
 public:
  explicit ScopedDevice(int device) {
    AUTOTP_CUDA_CHECK(cudaGetDevice(&previous_));
    if (previous_ != device) {
      AUTOTP_CUDA_CHECK(cudaSetDevice(device));
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
