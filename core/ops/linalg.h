// Differentiable matrix products: matmul (batched, broadcasting batch dims) and linear.
#pragma once

#include "core/tensor.h"

namespace autotp::ops {

// a [..., M, K] @ b [..., K, N] -> [..., M, N]; batch dims broadcast (NumPy rules).
// A 2-D b [K, N] is shared by every batch of a. 1-D operands are not accepted.
Tensor matmul(const Tensor& a, const Tensor& b);

// PyTorch's linear: x [..., in] @ weight[out, in]^T (+ bias [out]) -> [..., out].
// `bias` may be undefined.
Tensor linear(const Tensor& x, const Tensor& weight, const Tensor& bias = Tensor());

}  // namespace autotp::ops
