// AUTOTP_CUDA_CHECK / AUTOTP_CUBLAS_CHECK wrap a CUDA runtime / cuBLAS call and throw CudaError
// on failure; AUTOTP_CUDA_CHECK_LAUNCH follows each kernel launch, naming the kernel and sizes.
#pragma once

#include "kernels/cuda/cuda_error.h"

// AUTOTP_CUDA_CHECK(cudaMemcpy(...)): throws CudaError with the call text, error, device,
// file:line.
#define AUTOTP_CUDA_CHECK(call)                                                               \
  do {                                                                                        \
    const int autotp_cuda_status_ = static_cast<int>(call);                                   \
    if (autotp_cuda_status_ != 0) {                                                           \
      ::autotp::kernels::cuda::detail::throw_cuda_error(autotp_cuda_status_, #call, __FILE__, \
                                                        __LINE__);                            \
    }                                                                                         \
  } while (0)

// AUTOTP_CUBLAS_CHECK(cublasLtMatmul(...)): same for cuBLAS / cuBLASLt status codes.
#define AUTOTP_CUBLAS_CHECK(call)                                                                 \
  do {                                                                                            \
    const int autotp_cublas_status_ = static_cast<int>(call);                                     \
    if (autotp_cublas_status_ != 0) {                                                             \
      ::autotp::kernels::cuda::detail::throw_cublas_error(autotp_cublas_status_, #call, __FILE__, \
                                                          __LINE__);                              \
    }                                                                                             \
  } while (0)

// AUTOTP_CUDA_CHECK_LAUNCH("binary<bf16>", {"n", n}, {"ndim", ndim}): right after a launch.
// Checks cudaGetLastError() (it does not synchronize, so errors inside the kernel surface at
// the next synchronizing call).
#define AUTOTP_CUDA_CHECK_LAUNCH(kernel, ...) \
  ::autotp::kernels::cuda::detail::check_launch((kernel), {__VA_ARGS__}, __FILE__, __LINE__)
