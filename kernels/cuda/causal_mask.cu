// Causal mask fill: one thread per element (grid-stride, 64-bit indices).
#include "kernels/cuda/causal_mask.h"
#include "kernels/cuda/check.h"
#include "kernels/cuda/launch.cuh"

namespace autotp::kernels::cuda {

namespace {

template <typename T>
__global__ void causal_mask_kernel(T* out, const T* x, int64_t total, int64_t sq, int64_t sk,
                                   ComputeType<T> value) {
  const int64_t offset = sk - sq;
  for (int64_t e = global_thread_index(); e < total; e += grid_thread_count()) {
    const int64_t j = e % sk, i = (e / sk) % sq;
    out[e] = j <= i + offset ? x[e] : convert<T>(value);
  }
}

}  // namespace

void causal_mask_fill(int dtype, void* out, const void* x, int64_t batch, int64_t sq, int64_t sk,
                      double value, cudaStream_t stream) {
  const int64_t total = batch * sq * sk;
  if (total == 0) return;
  dispatch_float_code(dtype, "causal_mask_fill", [&]<typename T>(TypeTag<T>) {
    causal_mask_kernel<T><<<blocks_for(total), kThreadsPerBlock, 0, stream>>>(
        static_cast<T*>(out), static_cast<const T*>(x), total, sq, sk,
        static_cast<ComputeType<T>>(value));
    AUTOTP_CUDA_CHECK_LAUNCH("causal_mask_kernel", {"batch", batch}, {"sq", sq}, {"sk", sk},
                             {"dtype", dtype});
  });
}

}  // namespace autotp::kernels::cuda
