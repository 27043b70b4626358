// CPU reference reductions over the middle axis of a contiguous [outer, n, inner] view.
#pragma once

#include <cstdint>

namespace autotp::kernels::cpu {

// out[o, i] = sum_k x[o, k, i]; accumulates in double for f32 and f64 alike.
template <typename T>
void sum_axis(T* out, const T* x, int64_t outer, int64_t n, int64_t inner);

// out[o, i] = max_k x[o, k, i], argmax[o, i] = the first k attaining it (n >= 1).
template <typename T>
void max_axis(T* out, int64_t* argmax, const T* x, int64_t outer, int64_t n, int64_t inner);

}  // namespace autotp::kernels::cpu
