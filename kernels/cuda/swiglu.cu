// SwiGLU kernels: grid-stride loops with 64-bit indices over a StridedLayout of the inputs,
// writing contiguous outputs; one launch forward, one launch for both gradients. Inputs that
// are contiguous along their last dim (the MLP's gate and up projections) and 16-byte aligned
// take the vectorized kernels: 16-byte loads and stores, one index computation per vector.
#include "kernels/cuda/check.h"
#include "kernels/cuda/launch.cuh"
#include "kernels/cuda/strided_layout.cuh"
#include "kernels/cuda/swiglu.h"
#include "kernels/cuda/vectorized.cuh"
#include "kernels/elementwise_ops.h"

namespace autotp::kernels::cuda {

namespace {

// The gate's sigmoid in the compute type. 16-bit tensors take the hardware's approximate
// exponential and reciprocal (MUFU.EX2, MUFU.RCP; relative error near 1e-6, far below the
// result's bf16/f16 rounding) instead of expf and an IEEE division: those cost about 25
// instructions per element and left the kernels issue-bound (sm_90 SASS). Still 0 far below
// zero (e^-g overflows, its reciprocal is 0; also for g in about (-88.7, -87.3), where
// __fdividef gives 0 for divisors above 2^126 and the exact value is below 1e-37), 1 far above,
// NaN for NaN. f32 and f64 tensors keep the CPU kernel's correctly rounded formula.
template <typename T>
__device__ __forceinline__ ComputeType<T> gate_sigmoid(ComputeType<T> g) {
  if constexpr (sizeof(T) == 2) {
    return __fdividef(1.0f, 1.0f + __expf(-g));
  } else {
    return stable_sigmoid(g);
  }
}

template <typename T>
__device__ __forceinline__ ComputeType<T> swiglu_of(ComputeType<T> g, ComputeType<T> u) {
  return swiglu_value_from(g, u, gate_sigmoid<T>(g));
}

template <typename T>
__device__ __forceinline__ void swiglu_gradients_of(ComputeType<T> dy, ComputeType<T> g,
                                                    ComputeType<T> u, ComputeType<T>& d_gate,
                                                    ComputeType<T>& d_up) {
  swiglu_gradients_from(dy, g, u, gate_sigmoid<T>(g), d_gate, d_up);
}

// Operands 0 and 1 of the layout are gate and up.
template <typename T>
__global__ void swiglu_kernel(T* out, const T* gate, const T* up, StridedLayout<2> layout) {
  using C = ComputeType<T>;
  for (int64_t i = global_thread_index(); i < layout.numel; i += grid_thread_count()) {
    int64_t offsets[2];
    strided_offsets(layout, i, offsets);
    out[i] = convert<T>(swiglu_of<T>(widen(gate[offsets[0]]), widen(up[offsets[1]])));
  }
}

// The same over a vectorized layout (vectorize_layout): V elements per index.
template <typename T, int V>
__global__ void swiglu_vector_kernel(T* out, const T* gate, const T* up, StridedLayout<2> layout) {
  using C = ComputeType<T>;
  for (int64_t i = global_thread_index(); i < layout.numel; i += grid_thread_count()) {
    int64_t offsets[2];
    strided_offsets(layout, i, offsets);
    const Pack<T, V> g = load_pack<V>(gate + offsets[0]);
    const Pack<T, V> u = load_pack<V>(up + offsets[1]);
    Pack<T, V> y;
#pragma unroll
    for (int e = 0; e < V; ++e)
      y.v[e] = convert<T>(swiglu_of<T>(widen(g.v[e]), widen(u.v[e])));
    store_pack<V>(out + i * V, y);
  }
}

// Operands 0, 1 and 2 of the layout are grad_out, gate and up.
template <typename T>
__global__ void swiglu_backward_kernel(T* d_gate, T* d_up, const T* grad_out, const T* gate,
                                       const T* up, StridedLayout<3> layout) {
  using C = ComputeType<T>;
  for (int64_t i = global_thread_index(); i < layout.numel; i += grid_thread_count()) {
    int64_t offsets[3];
    strided_offsets(layout, i, offsets);
    C dg, du;
    swiglu_gradients_of<T>(widen(grad_out[offsets[0]]), widen(gate[offsets[1]]),
                           widen(up[offsets[2]]), dg, du);
    d_gate[i] = convert<T>(dg);
    d_up[i] = convert<T>(du);
  }
}

template <typename T, int V>
__global__ void swiglu_backward_vector_kernel(T* d_gate, T* d_up, const T* grad_out, const T* gate,
                                              const T* up, StridedLayout<3> layout) {
  using C = ComputeType<T>;
  for (int64_t i = global_thread_index(); i < layout.numel; i += grid_thread_count()) {
    int64_t offsets[3];
    strided_offsets(layout, i, offsets);
    const Pack<T, V> dy = load_pack<V>(grad_out + offsets[0]);
    const Pack<T, V> g = load_pack<V>(gate + offsets[1]);
    const Pack<T, V> u = load_pack<V>(up + offsets[2]);
    Pack<T, V> dg_out, du_out;
#pragma unroll
    for (int e = 0; e < V; ++e) {
      C dg, du;
      swiglu_gradients_of<T>(widen(dy.v[e]), widen(g.v[e]), widen(u.v[e]), dg, du);
      dg_out.v[e] = convert<T>(dg);
      du_out.v[e] = convert<T>(du);
    }
    store_pack<V>(d_gate + i * V, dg_out);
    store_pack<V>(d_up + i * V, du_out);
  }
}

}  // namespace

void swiglu(int dtype, void* out, const void* gate, const int64_t* gate_strides, const void* up,
            const int64_t* up_strides, const int64_t* shape, int ndim, cudaStream_t stream) {
  const int64_t* const strides[2] = {gate_strides, up_strides};
  const StridedLayout<2> layout = make_strided_layout<2>("swiglu", shape, ndim, strides);
  if (layout.numel == 0) return;
  dispatch_float_code(dtype, "swiglu", [&]<typename T>(TypeTag<T>) {
    constexpr int V = kVectorElems<T>;
    StridedLayout<2> vectors = layout;
    if (is_aligned(out, 16) && is_aligned(gate, 16) && is_aligned(up, 16) &&
        vectorize_layout(vectors, V)) {
      swiglu_vector_kernel<T, V><<<blocks_for(vectors.numel), kThreadsPerBlock, 0, stream>>>(
          static_cast<T*>(out), static_cast<const T*>(gate), static_cast<const T*>(up), vectors);
      AUTOTP_CUDA_CHECK_LAUNCH("swiglu_vector_kernel", {"numel", layout.numel},
                               {"ndim", layout.ndim}, {"dtype", dtype});
      return;
    }
    swiglu_kernel<T><<<blocks_for(layout.numel), kThreadsPerBlock, 0, stream>>>(
        static_cast<T*>(out), static_cast<const T*>(gate), static_cast<const T*>(up), layout);
    AUTOTP_CUDA_CHECK_LAUNCH("swiglu_kernel", {"numel", layout.numel}, {"ndim", layout.ndim},
                             {"dtype", dtype});
  });
}

void swiglu_backward(int dtype, void* d_gate, void* d_up, const void* grad_out,
                     const int64_t* grad_out_strides, const void* gate, const int64_t* gate_strides,
                     const void* up, const int64_t* up_strides, const int64_t* shape, int ndim,
                     cudaStream_t stream) {
  const int64_t* const strides[3] = {grad_out_strides, gate_strides, up_strides};
  const StridedLayout<3> layout = make_strided_layout<3>("swiglu_backward", shape, ndim, strides);
  if (layout.numel == 0) return;
  dispatch_float_code(dtype, "swiglu_backward", [&]<typename T>(TypeTag<T>) {
    constexpr int V = kVectorElems<T>;
    StridedLayout<3> vectors = layout;
    if (is_aligned(d_gate, 16) && is_aligned(d_up, 16) && is_aligned(grad_out, 16) &&
        is_aligned(gate, 16) && is_aligned(up, 16) && vectorize_layout(vectors, V)) {
      swiglu_backward_vector_kernel<T, V>
          <<<blocks_for(vectors.numel), kThreadsPerBlock, 0, stream>>>(
              static_cast<T*>(d_gate), static_cast<T*>(d_up), static_cast<const T*>(grad_out),
              static_cast<const T*>(gate), static_cast<const T*>(up), vectors);
      AUTOTP_CUDA_CHECK_LAUNCH("swiglu_backward_vector_kernel", {"numel", layout.numel},
                               {"ndim", layout.ndim}, {"dtype", dtype});
      return;
    }
    swiglu_backward_kernel<T><<<blocks_for(layout.numel), kThreadsPerBlock, 0, stream>>>(
        static_cast<T*>(d_gate), static_cast<T*>(d_up), static_cast<const T*>(grad_out),
        static_cast<const T*>(gate), static_cast<const T*>(up), layout);
    AUTOTP_CUDA_CHECK_LAUNCH("swiglu_backward_kernel", {"numel", layout.numel},
                             {"ndim", layout.ndim}, {"dtype", dtype});
  });
}

}  // namespace autotp::kernels::cuda
