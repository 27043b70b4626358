// Differentiable reductions: sum, mean and max over dims.
#pragma once

#include <vector>

#include "core/tensor.h"

namespace autotp::ops {

// Sum over `dims` (negative dims allowed, duplicates rejected); keepdim keeps them as size 1.
Tensor sum(const Tensor& x, const std::vector<int64_t>& dims, bool keepdim = false);
Tensor sum(const Tensor& x);  // all elements -> 0-dim
Tensor mean(const Tensor& x, const std::vector<int64_t>& dims, bool keepdim = false);
Tensor mean(const Tensor& x);
// Max over one dim; the gradient flows to the first maximal element.
Tensor max(const Tensor& x, int64_t dim, bool keepdim = false);
// Index (i64) of the first maximal element along `dim`; not differentiable.
Tensor argmax(const Tensor& x, int64_t dim, bool keepdim = false);
Tensor max(const Tensor& x);  // all elements -> 0-dim

// The sum over every element of every tensor of double(x)^2, as a 0-dim f64 tensor on their
// device (one device for all; any floating dtypes; views allowed). For global gradient norms:
// no autograd. The CPU accumulates each tensor sequentially in f64 (kernels/cpu/
// sum_of_squares.h; 16-bit values widened exactly); CUDA squares and sums in f64 in one
// multi-tensor launch, per-chunk partials added in a fixed order (deterministic). On each
// device the order depends only on the tensors' sizes and order: tensors holding equal values
// give the same bits in any dtypes and at any alignment (CPU and CUDA sums differ in order).
Tensor sum_of_squares(const std::vector<Tensor>& tensors);

}  // namespace autotp::ops
