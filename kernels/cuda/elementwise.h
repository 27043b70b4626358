// CUDA elementwise kernels: broadcast binary ops, unary ops and activation backward, with the
// op codes and math of kernels/elementwise_ops.h (same contract as kernels/cpu/elementwise.h).
#pragma once

#include <cstdint>

#include "kernels/cuda/stream.h"
#include "kernels/elementwise_ops.h"

namespace autotp::kernels::cuda {

// Dtypes (DTypeCode values): f32, f64, bf16, f16; 16-bit floats are computed in f32 and
// rounded once on store. Other dtypes throw std::invalid_argument. All async on `stream`.

// out[i] = op(a[ia], b[ib]) over `shape` (ndim dims, host arrays); out is contiguous, a and b
// are strided in elements with 0 strides on broadcast dims.
void binary(BinaryOp op, int dtype, void* out, const void* a, const int64_t* a_strides,
            const void* b, const int64_t* b_strides, const int64_t* shape, int ndim,
            cudaStream_t stream);

// out[i] = op(x[i], scalar) for n contiguous elements (scalar rounded to the compute type).
void unary(UnaryOp op, int dtype, void* out, const void* x, double scalar, int64_t n,
           cudaStream_t stream);

// dx[i] = dy[i] * op'(x[i]) for Silu, GeluTanh, GeluErf, Relu; n contiguous elements.
void activation_backward(UnaryOp op, int dtype, void* dx, const void* x, const void* dy, int64_t n,
                         cudaStream_t stream);

}  // namespace autotp::kernels::cuda
