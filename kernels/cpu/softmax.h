// CPU reference softmax and log-softmax over the last axis of a contiguous [rows, n] view,
// forward and backward. Max-subtracted for stability; sums accumulate in double.
#pragma once

#include <cstdint>

namespace autotp::kernels::cpu {

// y[r, :] = exp(x[r, :] - max) / sum(exp(x[r, :] - max)).
template <typename T>
void softmax_forward(T* y, const T* x, int64_t rows, int64_t n);

// y[r, :] = x[r, :] - max - log(sum(exp(x[r, :] - max))).
template <typename T>
void log_softmax_forward(T* y, const T* x, int64_t rows, int64_t n);

// From the forward output y = softmax(x): dx = y * (dy - sum(dy * y)).
template <typename T>
void softmax_backward(T* dx, const T* y, const T* dy, int64_t rows, int64_t n);

// From the forward output y = log_softmax(x): dx = dy - exp(y) * sum(dy).
template <typename T>
void log_softmax_backward(T* dx, const T* y, const T* dy, int64_t rows, int64_t n);

}  // namespace autotp::kernels::cpu
