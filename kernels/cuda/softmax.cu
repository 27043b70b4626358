// Softmax kernels: a block per row (grid-stride over rows); the row's max and sum come from
// block reductions in the compute type, then each thread writes its strided elements.
#include "kernels/cuda/check.h"
#include "kernels/cuda/launch.cuh"
#include "kernels/cuda/row_utils.cuh"
#include "kernels/cuda/softmax.h"

namespace autotp::kernels::cuda {

namespace {

template <typename T, bool kLog>
__global__ void softmax_forward_kernel(T* y, const T* x, int64_t rows, int64_t n) {
  using C = ComputeType<T>;
  __shared__ C scratch[32];
  for (int64_t row = blockIdx.x; row < rows; row += gridDim.x) {
    const T* xr = x + row * n;
    T* yr = y + row * n;
    C m = negative_infinity<C>();
    for (int64_t k = threadIdx.x; k < n; k += blockDim.x)
      m = math_max(m, widen(xr[k]));
    m = block_max(m, scratch);
    C sum = 0;
    for (int64_t k = threadIdx.x; k < n; k += blockDim.x)
      sum += math_exp(widen(xr[k]) - m);
    const C log_sum = math_log(block_sum(sum, scratch));
    for (int64_t k = threadIdx.x; k < n; k += blockDim.x) {
      const C shifted = widen(xr[k]) - m - log_sum;
      yr[k] = convert<T>(kLog ? shifted : math_exp(shifted));
    }
  }
}

template <typename T, bool kLog>
__global__ void softmax_backward_kernel(T* dx, const T* y, const T* dy, int64_t rows, int64_t n) {
  using C = ComputeType<T>;
  __shared__ C scratch[32];
  for (int64_t row = blockIdx.x; row < rows; row += gridDim.x) {
    const T* yr = y + row * n;
    const T* dyr = dy + row * n;
    T* dxr = dx + row * n;
    C partial = 0;  // log: sum(dy); softmax: sum(dy * y)
    for (int64_t k = threadIdx.x; k < n; k += blockDim.x) {
      partial += kLog ? widen(dyr[k]) : widen(dyr[k]) * widen(yr[k]);
    }
    const C total = block_sum(partial, scratch);
    for (int64_t k = threadIdx.x; k < n; k += blockDim.x) {
      const C yk = widen(yr[k]), gk = widen(dyr[k]);
      dxr[k] = convert<T>(kLog ? gk - math_exp(yk) * total : yk * (gk - total));
    }
  }
}

template <bool kLog>
void launch_forward(const char* name, int dtype, void* y, const void* x, int64_t rows, int64_t n,
                    cudaStream_t stream) {
  if (rows == 0 || n == 0) return;
  dispatch_float_code(dtype, name, [&]<typename T>(TypeTag<T>) {
    softmax_forward_kernel<T, kLog><<<blocks_for_rows(rows), threads_for_row(n), 0, stream>>>(
        static_cast<T*>(y), static_cast<const T*>(x), rows, n);
    AUTOTP_CUDA_CHECK_LAUNCH(kLog ? "log_softmax_forward_kernel" : "softmax_forward_kernel",
                             {"rows", rows}, {"n", n}, {"dtype", dtype});
  });
}

template <bool kLog>
void launch_backward(const char* name, int dtype, void* dx, const void* y, const void* dy,
                     int64_t rows, int64_t n, cudaStream_t stream) {
  if (rows == 0 || n == 0) return;
  dispatch_float_code(dtype, name, [&]<typename T>(TypeTag<T>) {
    softmax_backward_kernel<T, kLog><<<blocks_for_rows(rows), threads_for_row(n), 0, stream>>>(
        static_cast<T*>(dx), static_cast<const T*>(y), static_cast<const T*>(dy), rows, n);
    AUTOTP_CUDA_CHECK_LAUNCH(kLog ? "log_softmax_backward_kernel" : "softmax_backward_kernel",
                             {"rows", rows}, {"n", n}, {"dtype", dtype});
  });
}

}  // namespace

void softmax_forward(int dtype, void* y, const void* x, int64_t rows, int64_t n,
                     cudaStream_t stream) {
  launch_forward<false>("softmax_forward", dtype, y, x, rows, n, stream);
}

void log_softmax_forward(int dtype, void* y, const void* x, int64_t rows, int64_t n,
                         cudaStream_t stream) {
  launch_forward<true>("log_softmax_forward", dtype, y, x, rows, n, stream);
}

void softmax_backward(int dtype, void* dx, const void* y, const void* dy, int64_t rows, int64_t n,
                      cudaStream_t stream) {
  launch_backward<false>("softmax_backward", dtype, dx, y, dy, rows, n, stream);
}

void log_softmax_backward(int dtype, void* dx, const void* y, const void* dy, int64_t rows,
                          int64_t n, cudaStream_t stream) {
  launch_backward<true>("log_softmax_backward", dtype, dx, y, dy, rows, n, stream);
}

}  // namespace autotp::kernels::cuda
