// CPU reference elementwise kernels: broadcast binary ops, unary ops, activation backward.
#pragma once

#include <cstdint>

#include "kernels/elementwise_ops.h"

namespace autotp::kernels::cpu {

// out[i] = op(a[ia], b[ib]) over `shape` (ndim dims); out is contiguous, a and b are
// strided in elements with 0 strides on broadcast dims.
template <typename T>
void binary(BinaryOp op, T* out, const T* a, const int64_t* a_strides, const T* b,
            const int64_t* b_strides, const int64_t* shape, int ndim);

// out[i] = op(x[i], scalar), contiguous, n elements.
template <typename T>
void unary(UnaryOp op, T* out, const T* x, T scalar, int64_t n);

// dx[i] = dy[i] * op'(x[i]) for Silu, GeluTanh, GeluErf, Relu.
template <typename T>
void activation_backward(UnaryOp op, T* dx, const T* x, const T* dy, int64_t n);

}  // namespace autotp::kernels::cpu
