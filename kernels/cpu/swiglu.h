// CPU reference SwiGLU kernels: out = silu(gate) * up, and both input gradients in one pass
// (math in kernels/elementwise_ops.h; same contract as kernels/cuda/swiglu.h).
#pragma once

#include <cstdint>

namespace autotp::kernels::cpu {

// out[i] = silu(gate[ig]) * up[iu] over `shape` (ndim dims, ndim may be 0); out is contiguous,
// gate and up are strided in elements.
template <typename T>
void swiglu(T* out, const T* gate, const int64_t* gate_strides, const T* up,
            const int64_t* up_strides, const int64_t* shape, int ndim);

// d_gate[i] = dy * up * sig(g) * (1 + g * (1 - sig(g))), d_up[i] = dy * silu(g), with dy, g and
// up read from grad_out, gate and up (strided in elements) over `shape`; d_gate and d_up are
// contiguous.
template <typename T>
void swiglu_backward(T* d_gate, T* d_up, const T* grad_out, const int64_t* grad_out_strides,
                     const T* gate, const int64_t* gate_strides, const T* up,
                     const int64_t* up_strides, const int64_t* shape, int ndim);

}  // namespace autotp::kernels::cpu
