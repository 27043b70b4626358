// CPU reference elementwise kernels.
#include "kernels/cpu/elementwise.h"

#include <vector>

namespace autotp::kernels::cpu {

template <typename T>
void binary(BinaryOp op, T* out, const T* a, const int64_t* a_strides, const T* b,
            const int64_t* b_strides, const int64_t* shape, int ndim) {
  int64_t total = 1;
  for (int d = 0; d < ndim; ++d)
    total *= shape[d];
  if (total == 0) return;
  if (ndim == 0) {
    *out = apply_binary(op, *a, *b);
    return;
  }
  std::vector<int64_t> index(ndim, 0);
  const int last = ndim - 1;
  const int64_t inner = shape[last], as = a_strides[last], bs = b_strides[last];
  int64_t a_off = 0, b_off = 0;
  for (int64_t done = 0; done < total; done += inner) {
    T* o = out + done;
    for (int64_t i = 0; i < inner; ++i)
      o[i] = apply_binary(op, a[a_off + i * as], b[b_off + i * bs]);
    for (int d = last - 1; d >= 0; --d) {
      a_off += a_strides[d];
      b_off += b_strides[d];
      if (++index[d] < shape[d]) break;
      a_off -= a_strides[d] * shape[d];
      b_off -= b_strides[d] * shape[d];
      index[d] = 0;
    }
  }
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
