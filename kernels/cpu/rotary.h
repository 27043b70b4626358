// CPU reference rotary position embedding (Hugging Face rotate-half convention) over
// contiguous rows of width dim, forward and its gradient w.r.t. x.
#pragma once

#include <cstdint>

namespace autotp::kernels::cpu {

// x, out [rows, dim] (dim even, half = dim / 2); cos, sin [table_rows, dim]; row r uses table
// row (r / row_group) % table_rows (so [S, dim] tables serve x [B, H, S, dim] with rows = B*H*S
// and row_group 1, and x in [B, S, H, dim] order with row_group H):
//   out[j] = x[j] * cos[j] - x[j + half] * sin[j]          (j < half)
//   out[j] = x[j] * cos[j] + x[j - half] * sin[j]          (j >= half)
template <typename T>
void rotary_forward(T* out, const T* x, const T* cos, const T* sin, int64_t rows, int64_t dim,
                    int64_t table_rows, int64_t row_group = 1);

// The transpose of the forward map applied to dy:
//   dx[j] = dy[j] * cos[j] + dy[j + half] * sin[j + half]   (j < half)
//   dx[j] = dy[j] * cos[j] - dy[j - half] * sin[j - half]   (j >= half)
template <typename T>
void rotary_backward(T* dx, const T* cos, const T* sin, const T* dy, int64_t rows, int64_t dim,
                     int64_t table_rows, int64_t row_group = 1);

}  // namespace autotp::kernels::cpu
