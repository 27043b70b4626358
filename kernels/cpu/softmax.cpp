// CPU reference softmax and log-softmax kernels (last axis), forward and backward.
#include "kernels/cpu/softmax.h"

#include <cmath>

namespace autotp::kernels::cpu {

namespace {

// max_k x[k] and log(sum_k exp(x[k] - max)) of one row (n >= 1).
template <typename T>
void row_max_and_log_sum(const T* x, int64_t n, double* max_out, double* log_sum_out) {
  double m = static_cast<double>(x[0]);
  for (int64_t k = 1; k < n; ++k)
    m = std::fmax(m, static_cast<double>(x[k]));
  double sum = 0.0;
  for (int64_t k = 0; k < n; ++k)
    sum += std::exp(static_cast<double>(x[k]) - m);
  *max_out = m;
  *log_sum_out = std::log(sum);
}

}  // namespace

template <typename T>
void softmax_forward(T* y, const T* x, int64_t rows, int64_t n) {
  if (n == 0) return;
  for (int64_t r = 0; r < rows; ++r) {
    const T* xr = x + r * n;
    T* yr = y + r * n;
    double m = 0.0, log_sum = 0.0;
    row_max_and_log_sum(xr, n, &m, &log_sum);
    for (int64_t k = 0; k < n; ++k) {
      yr[k] = static_cast<T>(std::exp(static_cast<double>(xr[k]) - m - log_sum));
    }
  }
}

template <typename T>
void log_softmax_forward(T* y, const T* x, int64_t rows, int64_t n) {
  if (n == 0) return;
  for (int64_t r = 0; r < rows; ++r) {
    const T* xr = x + r * n;
    T* yr = y + r * n;
    double m = 0.0, log_sum = 0.0;
    row_max_and_log_sum(xr, n, &m, &log_sum);
    for (int64_t k = 0; k < n; ++k)
      yr[k] = static_cast<T>(static_cast<double>(xr[k]) - m - log_sum);
  }
}

template <typename T>
void softmax_backward(T* dx, const T* y, const T* dy, int64_t rows, int64_t n) {
  for (int64_t r = 0; r < rows; ++r) {
    const T* yr = y + r * n;
    const T* dyr = dy + r * n;
    T* dxr = dx + r * n;
    double dot = 0.0;
    for (int64_t k = 0; k < n; ++k)
      dot += static_cast<double>(dyr[k]) * static_cast<double>(yr[k]);
    for (int64_t k = 0; k < n; ++k) {
      dxr[k] = static_cast<T>(static_cast<double>(yr[k]) * (static_cast<double>(dyr[k]) - dot));
    }
  }
}

template <typename T>
void log_softmax_backward(T* dx, const T* y, const T* dy, int64_t rows, int64_t n) {
  for (int64_t r = 0; r < rows; ++r) {
    const T* yr = y + r * n;
    const T* dyr = dy + r * n;
    T* dxr = dx + r * n;
    double sum = 0.0;
    for (int64_t k = 0; k < n; ++k)
      sum += static_cast<double>(dyr[k]);
    for (int64_t k = 0; k < n; ++k) {
      dxr[k] =
          static_cast<T>(static_cast<double>(dyr[k]) - std::exp(static_cast<double>(yr[k])) * sum);
    }
  }
}

#define AUTOTP_INSTANTIATE(T)                                                  \
  template void softmax_forward<T>(T*, const T*, int64_t, int64_t);            \
  template void log_softmax_forward<T>(T*, const T*, int64_t, int64_t);        \
  template void softmax_backward<T>(T*, const T*, const T*, int64_t, int64_t); \
  template void log_softmax_backward<T>(T*, const T*, const T*, int64_t, int64_t);
AUTOTP_INSTANTIATE(float)
AUTOTP_INSTANTIATE(double)
#undef AUTOTP_INSTANTIATE

}  // namespace autotp::kernels::cpu
