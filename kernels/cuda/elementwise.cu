// Elementwise kernels: grid-stride loops with 64-bit indices; the op is a runtime switch
// (uniform across the grid) into the shared math of kernels/elementwise_ops.h.
#include "kernels/cuda/check.h"
#include "kernels/cuda/elementwise.h"
#include "kernels/cuda/launch.cuh"
#include "kernels/cuda/strided_layout.cuh"

namespace autotp::kernels::cuda {

namespace {

// out is contiguous in the layout's row-major order; operands 0 and 1 are a and b.
template <typename T>
__global__ void binary_kernel(BinaryOp op, T* out, const T* a, const T* b,
                              StridedLayout<2> layout) {
  using C = ComputeType<T>;
  for (int64_t i = global_thread_index(); i < layout.numel; i += grid_thread_count()) {
    int64_t offsets[2];
    strided_offsets(layout, i, offsets);
    out[i] = convert<T>(apply_binary<C>(op, widen(a[offsets[0]]), widen(b[offsets[1]])));
  }
}

template <typename T>
__global__ void unary_kernel(UnaryOp op, T* out, const T* x, ComputeType<T> scalar, int64_t n) {
  using C = ComputeType<T>;
  for (int64_t i = global_thread_index(); i < n; i += grid_thread_count()) {
    out[i] = convert<T>(apply_unary<C>(op, widen(x[i]), scalar));
  }
}

template <typename T>
__global__ void activation_backward_kernel(UnaryOp op, T* dx, const T* x, const T* dy, int64_t n) {
  using C = ComputeType<T>;
  for (int64_t i = global_thread_index(); i < n; i += grid_thread_count()) {
    dx[i] = convert<T>(widen(dy[i]) * activation_derivative<C>(op, widen(x[i])));
  }
}

}  // namespace

void binary(BinaryOp op, int dtype, void* out, const void* a, const int64_t* a_strides,
            const void* b, const int64_t* b_strides, const int64_t* shape, int ndim,
            cudaStream_t stream) {
  const int64_t* const strides[2] = {a_strides, b_strides};
  const StridedLayout<2> layout = make_strided_layout<2>("binary", shape, ndim, strides);
  if (layout.numel == 0) return;
  dispatch_float_code(dtype, "binary", [&]<typename T>(TypeTag<T>) {
    binary_kernel<T><<<blocks_for(layout.numel), kThreadsPerBlock, 0, stream>>>(
        op, static_cast<T*>(out), static_cast<const T*>(a), static_cast<const T*>(b), layout);
    AUTOTP_CUDA_CHECK_LAUNCH("binary_kernel", {"op", static_cast<int64_t>(op)},
                             {"numel", layout.numel}, {"ndim", layout.ndim}, {"dtype", dtype});
  });
}

void unary(UnaryOp op, int dtype, void* out, const void* x, double scalar, int64_t n,
           cudaStream_t stream) {
  if (n == 0) return;
  dispatch_float_code(dtype, "unary", [&]<typename T>(TypeTag<T>) {
    unary_kernel<T><<<blocks_for(n), kThreadsPerBlock, 0, stream>>>(
        op, static_cast<T*>(out), static_cast<const T*>(x), static_cast<ComputeType<T>>(scalar), n);
    AUTOTP_CUDA_CHECK_LAUNCH("unary_kernel", {"op", static_cast<int64_t>(op)}, {"n", n},
                             {"dtype", dtype});
  });
}

void activation_backward(UnaryOp op, int dtype, void* dx, const void* x, const void* dy, int64_t n,
                         cudaStream_t stream) {
  if (n == 0) return;
  dispatch_float_code(dtype, "activation_backward", [&]<typename T>(TypeTag<T>) {
    activation_backward_kernel<T><<<blocks_for(n), kThreadsPerBlock, 0, stream>>>(
        op, static_cast<T*>(dx), static_cast<const T*>(x), static_cast<const T*>(dy), n);
    AUTOTP_CUDA_CHECK_LAUNCH("activation_backward_kernel", {"op", static_cast<int64_t>(op)},
                             {"n", n}, {"dtype", dtype});
  });
}

}  // namespace autotp::kernels::cuda
