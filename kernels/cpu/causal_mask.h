// CPU reference causal masking of attention scores [batch, sq, sk] (end-aligned diagonal);
// the same kernel with value 0 is the gradient.
#pragma once

#include <cstdint>

namespace autotp::kernels::cpu {

// out[b, i, j] = x[b, i, j] when j <= i + (sk - sq), else value. out may alias x.
template <typename T>
void causal_mask_fill(T* out, const T* x, int64_t batch, int64_t sq, int64_t sk, T value);

}  // namespace autotp::kernels::cpu
