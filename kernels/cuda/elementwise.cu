// Elementwise kernels: grid-stride loops with 64-bit indices; the op is a runtime switch
// (uniform across the grid) into the shared math of kernels/elementwise_ops.h. Operands that
// are 16-byte aligned and contiguous along the last dim go through the vectorized kernels
// (16-byte accesses, one index computation per vector; a scalar tail where n is not a multiple).
#include "kernels/cuda/check.h"
#include "kernels/cuda/elementwise.h"
#include "kernels/cuda/launch.cuh"
#include "kernels/cuda/strided_layout.cuh"
#include "kernels/cuda/vectorized.cuh"

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

template <typename T, int V>
__global__ void binary_vector_kernel(BinaryOp op, T* out, const T* a, const T* b,
                                     StridedLayout<2> layout) {
  using C = ComputeType<T>;
  for (int64_t i = global_thread_index(); i < layout.numel; i += grid_thread_count()) {
    int64_t offsets[2];
    strided_offsets(layout, i, offsets);
    const Pack<T, V> pa = load_pack<V>(a + offsets[0]);
    const Pack<T, V> pb = load_pack<V>(b + offsets[1]);
    Pack<T, V> y;
#pragma unroll
    for (int e = 0; e < V; ++e)
      y.v[e] = convert<T>(apply_binary<C>(op, widen(pa.v[e]), widen(pb.v[e])));
    store_pack<V>(out + i * V, y);
  }
}

// Contiguous unary ops, V elements per access (V = 1: the scalar kernel); the n % V last
// elements are done one by one.
template <typename T, int V>
__global__ void unary_kernel(UnaryOp op, T* out, const T* x, ComputeType<T> scalar, int64_t n) {
  using C = ComputeType<T>;
  const int64_t vectors = n / V;
  for (int64_t i = global_thread_index(); i < vectors; i += grid_thread_count()) {
    const Pack<T, V> in = load_pack<V>(x + i * V);
    Pack<T, V> y;
#pragma unroll
    for (int e = 0; e < V; ++e)
      y.v[e] = convert<T>(apply_unary<C>(op, widen(in.v[e]), scalar));
    store_pack<V>(out + i * V, y);
  }
  for (int64_t i = vectors * V + global_thread_index(); i < n; i += grid_thread_count())
    out[i] = convert<T>(apply_unary<C>(op, widen(x[i]), scalar));
}

template <typename T, int V>
__global__ void activation_backward_kernel(UnaryOp op, T* dx, const T* x, const T* dy, int64_t n) {
  using C = ComputeType<T>;
  const int64_t vectors = n / V;
  for (int64_t i = global_thread_index(); i < vectors; i += grid_thread_count()) {
    const Pack<T, V> px = load_pack<V>(x + i * V);
    const Pack<T, V> pdy = load_pack<V>(dy + i * V);
    Pack<T, V> y;
#pragma unroll
    for (int e = 0; e < V; ++e)
      y.v[e] = convert<T>(widen(pdy.v[e]) * activation_derivative<C>(op, widen(px.v[e])));
    store_pack<V>(dx + i * V, y);
  }
  for (int64_t i = vectors * V + global_thread_index(); i < n; i += grid_thread_count())
    dx[i] = convert<T>(widen(dy[i]) * activation_derivative<C>(op, widen(x[i])));
}

}  // namespace

void binary(BinaryOp op, int dtype, void* out, const void* a, const int64_t* a_strides,
            const void* b, const int64_t* b_strides, const int64_t* shape, int ndim,
            cudaStream_t stream) {
  const int64_t* const strides[2] = {a_strides, b_strides};
  const StridedLayout<2> layout = make_strided_layout<2>("binary", shape, ndim, strides);
  if (layout.numel == 0) return;
  dispatch_float_code(dtype, "binary", [&]<typename T>(TypeTag<T>) {
    constexpr int V = kVectorElems<T>;
    StridedLayout<2> vectors = layout;
    if (is_aligned(out, 16) && is_aligned(a, 16) && is_aligned(b, 16) &&
        vectorize_layout(vectors, V)) {
      binary_vector_kernel<T, V><<<blocks_for(vectors.numel), kThreadsPerBlock, 0, stream>>>(
          op, static_cast<T*>(out), static_cast<const T*>(a), static_cast<const T*>(b), vectors);
      AUTOTP_CUDA_CHECK_LAUNCH("binary_vector_kernel", {"op", static_cast<int64_t>(op)},
                               {"numel", layout.numel}, {"ndim", layout.ndim}, {"dtype", dtype});
      return;
    }
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
    const auto launch = [&]<int V>() {
      unary_kernel<T, V><<<blocks_for((n + V - 1) / V), kThreadsPerBlock, 0, stream>>>(
          op, static_cast<T*>(out), static_cast<const T*>(x), static_cast<ComputeType<T>>(scalar),
          n);
    };
    if (is_aligned(out, 16) && is_aligned(x, 16))
      launch.template operator()<kVectorElems<T>>();
    else
      launch.template operator()<1>();
    AUTOTP_CUDA_CHECK_LAUNCH("unary_kernel", {"op", static_cast<int64_t>(op)}, {"n", n},
                             {"dtype", dtype});
  });
}

void activation_backward(UnaryOp op, int dtype, void* dx, const void* x, const void* dy, int64_t n,
                         cudaStream_t stream) {
  if (n == 0) return;
  dispatch_float_code(dtype, "activation_backward", [&]<typename T>(TypeTag<T>) {
    const auto launch = [&]<int V>() {
      activation_backward_kernel<T, V>
          <<<blocks_for((n + V - 1) / V), kThreadsPerBlock, 0, stream>>>(
              op, static_cast<T*>(dx), static_cast<const T*>(x), static_cast<const T*>(dy), n);
    };
    if (is_aligned(dx, 16) && is_aligned(x, 16) && is_aligned(dy, 16))
      launch.template operator()<kVectorElems<T>>();
    else
      launch.template operator()<1>();
    AUTOTP_CUDA_CHECK_LAUNCH("activation_backward_kernel", {"op", static_cast<int64_t>(op)},
                             {"n", n}, {"dtype", dtype});
  });
}

}  // namespace autotp::kernels::cuda
