// Differentiable shape ops that copy: cat, split/chunk and index_select.
#pragma once

#include <vector>

#include "core/tensor.h"

namespace autotp::ops {

// Concatenates along `dim`; all other dims, dtypes and devices must match.
Tensor cat(const std::vector<Tensor>& tensors, int64_t dim);
// Pieces of `sizes` along `dim` (sizes sum to the dim). Views of x.
std::vector<Tensor> split(const Tensor& x, const std::vector<int64_t>& sizes, int64_t dim);
// Pieces of `size` along `dim` (the last may be smaller). Views of x.
std::vector<Tensor> split(const Tensor& x, int64_t size, int64_t dim);
// `chunks` nearly equal pieces (ceil(n / chunks) each, the last smaller), like torch.chunk.
std::vector<Tensor> chunk(const Tensor& x, int64_t chunks, int64_t dim);
// x's slices at `index` (1-D i64/i32) along `dim`; gradient scatter-adds back.
Tensor index_select(const Tensor& x, int64_t dim, const Tensor& index);

}  // namespace autotp::ops
