// Shape and stride helpers shared by tensors, views and kernels.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace autotp {

using Shape = std::vector<int64_t>;
using Strides = std::vector<int64_t>;

int64_t shape_numel(const Shape& shape);
// Row-major strides of a contiguous tensor of this shape.
Strides contiguous_strides(const Shape& shape);
// "[2, 3, 4]"
std::string shape_str(const Shape& shape);
// Wraps a possibly negative dim into [0, ndim); throws naming `what` when out of range.
int64_t wrap_dim(int64_t dim, int64_t ndim, const char* what);
// The broadcast of two shapes (NumPy rules); throws naming both shapes when incompatible.
Shape broadcast_shapes(const Shape& a, const Shape& b);

}  // namespace autotp
