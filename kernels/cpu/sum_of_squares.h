// CPU reference sum of squares with double accumulation (for global gradient norms).
#pragma once

#include <cstdint>

namespace autotp::kernels::cpu {

// sum_i double(x[i])^2 over a contiguous array, accumulated sequentially in double
// (deterministic: the same input always gives the same bits).
template <typename T>
double sum_of_squares(const T* x, int64_t n);

}  // namespace autotp::kernels::cpu
