// CUDA reductions over the middle axis of a contiguous [outer, n, inner] view (same contract
// as kernels/cpu/reduce.h). Both are deterministic: no atomics, and the order in which terms
// are combined depends only on the sizes, never on scheduling.
#pragma once

#include <cstdint>

#include "kernels/cuda/stream.h"

namespace autotp::kernels::cuda {

// out[o, i] = sum_k x[o, k, i]. Accumulates in f32 for f32, bf16 and f16 and in f64 for f64
// (the CPU reference accumulates in f64 throughout). Dtypes: f32, f64, bf16, f16.
void sum_axis(int dtype, void* out, const void* x, int64_t outer, int64_t n, int64_t inner,
              cudaStream_t stream);

// out[o, i] = max_k x[o, k, i] and argmax[o, i] (i64) = the first k attaining it; a NaN wins
// over numbers (the first NaN). n >= 1. Dtypes: f32, f64, bf16, f16.
void max_axis(int dtype, void* out, int64_t* argmax, const void* x, int64_t outer, int64_t n,
              int64_t inner, cudaStream_t stream);

}  // namespace autotp::kernels::cuda
