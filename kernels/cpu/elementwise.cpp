// CPU reference elementwise kernels.
#include "kernels/cpu/elementwise.h"

#include <array>

#include "kernels/cpu/strided_walk.h"

namespace autotp::kernels::cpu {

template <typename T>
void binary(BinaryOp op, T* out, const T* a, const int64_t* a_strides, const T* b,
            const int64_t* b_strides, const int64_t* shape, int ndim) {
  for_each_strided<2>(shape, ndim, {a_strides, b_strides},
                      [&](int64_t i, const std::array<int64_t, 2>& at) {
                        out[i] = apply_binary(op, a[at[0]], b[at[1]]);
                      });
}

template <typename T>
void unary(UnaryOp op, T* out, const T* x, T scalar, int64_t n) {
  for (int64_t i = 0; i < n; ++i)
    out[i] = apply_unary(op, x[i], scalar);
}

template <typename T>
void activation_backward(UnaryOp op, T* dx, const T* x, const T* dy, int64_t n) {
  for (int64_t i = 0; i < n; ++i)
    dx[i] = dy[i] * activation_derivative(op, x[i]);
}

#define AUTOTP_INSTANTIATE(T)                                                               \
  template void binary<T>(BinaryOp, T*, const T*, const int64_t*, const T*, const int64_t*, \
                          const int64_t*, int);                                             \
  template void unary<T>(UnaryOp, T*, const T*, T, int64_t);                                \
  template void activation_backward<T>(UnaryOp, T*, const T*, const T*, int64_t);
AUTOTP_INSTANTIATE(float)
AUTOTP_INSTANTIATE(double)
#undef AUTOTP_INSTANTIATE

}  // namespace autotp::kernels::cpu
