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

// residual + linear(x, weight, bias) with the residual [..., out] as the GEMM's C input: added
// in the GEMM's f32 accumulator and rounded once with the product (a residual connection after
// an output projection, without a separate add over the activations). `bias` may be undefined.
Tensor linear_add(const Tensor& x, const Tensor& weight, const Tensor& bias,
                  const Tensor& residual);

}  // namespace autotp::ops
