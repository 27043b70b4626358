// CUDA rotary position embedding (Hugging Face rotate-half convention) over contiguous rows of
// width dim, forward and its gradient w.r.t. x (the contract of kernels/cpu/rotary.h).
#pragma once

#include <cstdint>

#include "kernels/cuda/stream.h"

namespace autotp::kernels::cuda {

// Dtypes (DTypeCode): f32, f64, bf16, f16 (x, cos, sin and out share it; 16-bit computed in
// f32, rounded once). x, out [rows, dim] (dim even, half = dim / 2); cos, sin [table_rows,
// dim]; row r uses table row (r / row_group) % table_rows (row_group >= 1; H for rows in
// [B, S, H, dim] order, whose H consecutive rows share a position):
//   out[j] = x[j] * cos[j] - x[j + half] * sin[j]          (j < half)
//   out[j] = x[j] * cos[j] + x[j - half] * sin[j]          (j >= half)
void rotary_forward(int dtype, void* out, const void* x, const void* cos, const void* sin,
                    int64_t rows, int64_t dim, int64_t table_rows, int64_t row_group,
                    cudaStream_t stream);

// The transpose of the forward map applied to dy:
//   dx[j] = dy[j] * cos[j] + dy[j + half] * sin[j + half]   (j < half)
//   dx[j] = dy[j] * cos[j] - dy[j - half] * sin[j - half]   (j >= half)
void rotary_backward(int dtype, void* dx, const void* cos, const void* sin, const void* dy,
                     int64_t rows, int64_t dim, int64_t table_rows, int64_t row_group,
                     cudaStream_t stream);

}  // namespace autotp::kernels::cuda
