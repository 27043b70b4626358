// CUDA softmax and log-softmax over the last axis of a contiguous [rows, n] view, forward and
// backward (the contract of kernels/cpu/softmax.h), one block per row.
#pragma once

#include <cstdint>

#include "kernels/cuda/stream.h"

namespace autotp::kernels::cuda {

// Dtypes (DTypeCode): f32, f64, bf16, f16. Row sums and maxima are taken in the compute type
// (f32 for the 16-bit floats and f32, f64 for f64) in a fixed order (deterministic); 16-bit
// outputs are rounded once. All async on `stream`.

// y[r, :] = exp(x[r, :] - max - log(sum(exp(x[r, :] - max)))).
void softmax_forward(int dtype, void* y, const void* x, int64_t rows, int64_t n,
                     cudaStream_t stream);

// y[r, :] = x[r, :] - max - log(sum(exp(x[r, :] - max))).
void log_softmax_forward(int dtype, void* y, const void* x, int64_t rows, int64_t n,
                         cudaStream_t stream);

// From y = softmax(x): dx = y * (dy - sum(dy * y)).
void softmax_backward(int dtype, void* dx, const void* y, const void* dy, int64_t rows, int64_t n,
                      cudaStream_t stream);

// From y = log_softmax(x): dx = dy - exp(y) * sum(dy).
void log_softmax_backward(int dtype, void* dx, const void* y, const void* dy, int64_t rows,
                          int64_t n, cudaStream_t stream);

}  // namespace autotp::kernels::cuda
