// CUDA SwiGLU kernels: out = silu(gate) * up, and both input gradients in one launch, with the
// math of kernels/elementwise_ops.h (same contract as kernels/cpu/swiglu.h).
#pragma once

#include <cstdint>

#include "kernels/cuda/stream.h"

namespace autotp::kernels::cuda {

// Dtypes (DTypeCode values): f32, f64, bf16, f16; 16-bit floats are computed in f32 and
// rounded once on store. Other dtypes throw std::invalid_argument. All async on `stream`.

// out[i] = silu(gate[ig]) * up[iu] over `shape` (ndim dims, host array); out is contiguous,
// gate and up are strided in elements.
void swiglu(int dtype, void* out, const void* gate, const int64_t* gate_strides, const void* up,
            const int64_t* up_strides, const int64_t* shape, int ndim, cudaStream_t stream);

// d_gate[i] = dy * up * sig(g) * (1 + g * (1 - sig(g))), d_up[i] = dy * silu(g), with dy, g and
// up read from grad_out, gate and up (strided in elements) over `shape`; d_gate and d_up are
// contiguous.
void swiglu_backward(int dtype, void* d_gate, void* d_up, const void* grad_out,
                     const int64_t* grad_out_strides, const void* gate, const int64_t* gate_strides,
                     const void* up, const int64_t* up_strides, const int64_t* shape, int ndim,
                     cudaStream_t stream);

}  // namespace autotp::kernels::cuda
