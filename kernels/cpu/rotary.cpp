// CPU reference rotary embedding kernels (rotate-half), forward and backward.
#include "kernels/cpu/rotary.h"

namespace autotp::kernels::cpu {

template <typename T>
void rotary_forward(T* out, const T* x, const T* cos, const T* sin, int64_t rows, int64_t dim,
                    int64_t table_rows, int64_t row_group) {
  const int64_t half = dim / 2;
  for (int64_t r = 0; r < rows; ++r) {
    const T* xr = x + r * dim;
    const int64_t position = (r / row_group) % table_rows;
    const T* c = cos + position * dim;
    const T* s = sin + position * dim;
    T* o = out + r * dim;
    for (int64_t j = 0; j < half; ++j)
      o[j] = xr[j] * c[j] - xr[j + half] * s[j];
    for (int64_t j = half; j < dim; ++j)
      o[j] = xr[j] * c[j] + xr[j - half] * s[j];
  }
}

template <typename T>
void rotary_backward(T* dx, const T* cos, const T* sin, const T* dy, int64_t rows, int64_t dim,
                     int64_t table_rows, int64_t row_group) {
  const int64_t half = dim / 2;
  for (int64_t r = 0; r < rows; ++r) {
    const T* g = dy + r * dim;
    const int64_t position = (r / row_group) % table_rows;
    const T* c = cos + position * dim;
    const T* s = sin + position * dim;
    T* d = dx + r * dim;
    for (int64_t j = 0; j < half; ++j)
      d[j] = g[j] * c[j] + g[j + half] * s[j + half];
    for (int64_t j = half; j < dim; ++j)
      d[j] = g[j] * c[j] - g[j - half] * s[j - half];
  }
}

#define AUTOTP_INSTANTIATE(T)                                                                   \
  template void rotary_forward<T>(T*, const T*, const T*, const T*, int64_t, int64_t, int64_t,  \
                                  int64_t);                                                     \
  template void rotary_backward<T>(T*, const T*, const T*, const T*, int64_t, int64_t, int64_t, \
                                   int64_t);
AUTOTP_INSTANTIATE(float)
AUTOTP_INSTANTIATE(double)
#undef AUTOTP_INSTANTIATE

}  // namespace autotp::kernels::cpu
