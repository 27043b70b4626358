// Device-dispatched copy and fill used by Tensor::copy_/fill_ (no autograd).
#pragma once

#include "core/tensor.h"

namespace autotp::ops {

// Copies `src` into `dst` elementwise, converting dtype and moving between devices as
// needed; `src` may broadcast to dst's shape. `dst` may be any strided view.
void copy_into(const Tensor& dst, const Tensor& src);
// Sets every element of `dst` (any strided view) to `value`.
void fill(const Tensor& dst, double value);

// Strides of `t` broadcast to `shape` (0 on broadcast dims); shapes must be compatible.
Strides broadcast_strides(const Tensor& t, const Shape& shape);

}  // namespace autotp::ops
