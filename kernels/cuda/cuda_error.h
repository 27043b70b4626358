// CudaError, thrown by the CUDA backend when a CUDA runtime or cuBLAS call or a kernel launch
// fails; the message carries the call text, the CUDA error, the device and file:line.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <stdexcept>

namespace autotp::kernels::cuda {

// kernels/ may not include core/, so this is not an autotp::Error; both are std::runtime_error.
class CudaError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// One named size of a kernel launch, printed by the launch check ("n=1000003").
struct LaunchSize {
  const char* name;
  int64_t value;
};

namespace detail {
// `status` is a cudaError_t / cublasStatus_t value (0 = success is handled by the macros).
[[noreturn]] void throw_cuda_error(int status, const char* call, const char* file, int line);
[[noreturn]] void throw_cublas_error(int status, const char* call, const char* file, int line);
// Throws CudaError naming `kernel` and its sizes when the last launch failed.
void check_launch(const char* kernel, std::initializer_list<LaunchSize> sizes, const char* file,
                  int line);
}  // namespace detail

// Throws std::invalid_argument: "<kernel>: dtype <name> is not supported on CUDA (expected ...)".
[[noreturn]] void throw_unsupported_dtype(const char* kernel, int dtype, const char* supported);

}  // namespace autotp::kernels::cuda
