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

}  // namespace autotp::ops
