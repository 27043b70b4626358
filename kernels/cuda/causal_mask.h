// CUDA causal masking of attention scores [batch, sq, sk] (end-aligned diagonal), the contract
// of kernels/cpu/causal_mask.h; the same kernel with value 0 is the gradient.
#pragma once

#include <cstdint>

#include "kernels/cuda/stream.h"

namespace autotp::kernels::cuda {

// out[b, i, j] = x[b, i, j] when j <= i + (sk - sq), else value (rounded to the dtype).
// Dtypes (DTypeCode): f32, f64, bf16, f16. out may alias x. Async on `stream`.
void causal_mask_fill(int dtype, void* out, const void* x, int64_t batch, int64_t sq, int64_t sk,
                      double value, cudaStream_t stream);

}  // namespace autotp::kernels::cuda
