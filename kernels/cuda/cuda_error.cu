// Builds CudaError messages: the failed call or kernel, the CUDA / cuBLAS error name and text,
// the current device and the source location.
#include <cublas_api.h>
#include <cuda_runtime_api.h>

#include <stdexcept>
#include <string>

#include "kernels/cuda/check.h"
#include "kernels/cuda/dtype_codes.h"

namespace autotp::kernels::cuda {

namespace {

// "cuda:0", or "cuda:?" when even cudaGetDevice fails.
std::string current_device() {
  int device = -1;
  if (cudaGetDevice(&device) != cudaSuccess) {
    cudaGetLastError();  // do not leave this secondary failure behind as the "last error"
    return "cuda:?";
  }
  return "cuda:" + std::to_string(device);
}

std::string location(const char* file, int line) {
  return std::string(file) + ":" + std::to_string(line);
}

std::string cuda_error_text(int status) {
  const auto error = static_cast<cudaError_t>(status);
  return std::string(cudaGetErrorName(error)) + " (" + cudaGetErrorString(error) + ")";
}

}  // namespace

namespace detail {

void throw_cuda_error(int status, const char* call, const char* file, int line) {
  cudaGetLastError();  // reset the (non-sticky) error, so the next launch check does not see it
  throw CudaError("CUDA error: " + std::string(call) + " failed with " + cuda_error_text(status) +
                  " on " + current_device() + " at " + location(file, line));
}

void throw_cublas_error(int status, const char* call, const char* file, int line) {
  const auto error = static_cast<cublasStatus_t>(status);
  throw CudaError("cuBLAS error: " + std::string(call) + " failed with " +
                  cublasGetStatusName(error) + " (" + cublasGetStatusString(error) + ") on " +
                  current_device() + " at " + location(file, line));
}

void check_launch(const char* kernel, std::initializer_list<LaunchSize> sizes, const char* file,
                  int line) {
  const cudaError_t error = cudaGetLastError();
  if (error == cudaSuccess) return;
  std::string size_text;
  for (const LaunchSize& s : sizes) {
    if (!size_text.empty()) size_text += ", ";
    size_text += std::string(s.name) + "=" + std::to_string(s.value);
  }
  throw CudaError("CUDA error: kernel " + std::string(kernel) + " (" + size_text +
                  ") failed with " + cuda_error_text(static_cast<int>(error)) + " on " +
                  current_device() + " at " + location(file, line) +
                  " (an error of earlier asynchronous work also surfaces here; run with "
                  "CUDA_LAUNCH_BLOCKING=1 to pin it to its kernel)");
}

}  // namespace detail

void throw_unsupported_dtype(const char* kernel, int dtype, const char* supported) {
  throw std::invalid_argument(std::string(kernel) + ": dtype " + dtype_code_name(dtype) +
                              " is not supported on CUDA (expected " + supported + ")");
}

}  // namespace autotp::kernels::cuda
