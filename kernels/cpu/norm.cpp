// CPU reference RMSNorm / LayerNorm kernels, forward and backward, double accumulation.
#include "kernels/cpu/norm.h"

#include <cmath>
#include <vector>

namespace autotp::kernels::cpu {

namespace {

template <typename T>
double weight_at(const T* weight, int64_t j) {
  return weight ? static_cast<double>(weight[j]) : 1.0;
}

}  // namespace

template <typename T>
void rms_norm_forward(T* y, T* rstd, const T* x, const T* weight, int64_t rows, int64_t dim,
                      double eps) {
  for (int64_t r = 0; r < rows; ++r) {
    const T* xr = x + r * dim;
    T* yr = y + r * dim;
    double sum_sq = 0.0;
    for (int64_t j = 0; j < dim; ++j)
      sum_sq += static_cast<double>(xr[j]) * static_cast<double>(xr[j]);
    const double rs = 1.0 / std::sqrt(sum_sq / static_cast<double>(dim) + eps);
    rstd[r] = static_cast<T>(rs);
    for (int64_t j = 0; j < dim; ++j) {
      yr[j] = static_cast<T>(static_cast<double>(xr[j]) * rs * weight_at(weight, j));
    }
  }
}

template <typename T>
void rms_norm_backward(T* dx, T* dweight, const T* x, const T* weight, const T* rstd, const T* dy,
                       const T* dx_addend, int64_t rows, int64_t dim) {
  std::vector<double> dw(dweight ? static_cast<size_t>(dim) : 0, 0.0);
  for (int64_t r = 0; r < rows; ++r) {
    const T* xr = x + r * dim;
    const T* dyr = dy + r * dim;
    T* dxr = dx + r * dim;
    const T* addr = dx_addend ? dx_addend + r * dim : nullptr;
    const double rs = static_cast<double>(rstd[r]);
    double mean_gx = 0.0;
    for (int64_t j = 0; j < dim; ++j) {
      mean_gx += static_cast<double>(dyr[j]) * weight_at(weight, j) * static_cast<double>(xr[j]);
    }
    mean_gx /= static_cast<double>(dim);
    for (int64_t j = 0; j < dim; ++j) {
      const double xj = static_cast<double>(xr[j]);
      const double g = static_cast<double>(dyr[j]) * weight_at(weight, j);
      const double add = addr ? static_cast<double>(addr[j]) : 0.0;
      dxr[j] = static_cast<T>(rs * (g - xj * rs * rs * mean_gx) + add);
      if (dweight) dw[j] += static_cast<double>(dyr[j]) * xj * rs;
    }
  }
  if (dweight) {
    for (int64_t j = 0; j < dim; ++j)
      dweight[j] = static_cast<T>(dw[j]);
  }
}

template <typename T>
void layer_norm_forward(T* y, T* mean, T* rstd, const T* x, const T* weight, const T* bias,
                        int64_t rows, int64_t dim, double eps) {
  for (int64_t r = 0; r < rows; ++r) {
    const T* xr = x + r * dim;
    T* yr = y + r * dim;
    double mu = 0.0;
    for (int64_t j = 0; j < dim; ++j)
      mu += static_cast<double>(xr[j]);
    mu /= static_cast<double>(dim);
    double var = 0.0;
    for (int64_t j = 0; j < dim; ++j) {
      const double c = static_cast<double>(xr[j]) - mu;
      var += c * c;
    }
    var /= static_cast<double>(dim);
    const double rs = 1.0 / std::sqrt(var + eps);
    mean[r] = static_cast<T>(mu);
    rstd[r] = static_cast<T>(rs);
    for (int64_t j = 0; j < dim; ++j) {
      const double xhat = (static_cast<double>(xr[j]) - mu) * rs;
      const double b = bias ? static_cast<double>(bias[j]) : 0.0;
      yr[j] = static_cast<T>(xhat * weight_at(weight, j) + b);
    }
  }
}

template <typename T>
void layer_norm_backward(T* dx, T* dweight, T* dbias, const T* x, const T* weight, const T* mean,
                         const T* rstd, const T* dy, int64_t rows, int64_t dim) {
  std::vector<double> dw(dweight ? static_cast<size_t>(dim) : 0, 0.0);
  std::vector<double> db(dbias ? static_cast<size_t>(dim) : 0, 0.0);
  const double n = static_cast<double>(dim);
  for (int64_t r = 0; r < rows; ++r) {
    const T* xr = x + r * dim;
    const T* dyr = dy + r * dim;
    T* dxr = dx + r * dim;
    const double mu = static_cast<double>(mean[r]);
    const double rs = static_cast<double>(rstd[r]);
    double mean_g = 0.0, mean_g_xhat = 0.0;
    for (int64_t j = 0; j < dim; ++j) {
      const double xhat = (static_cast<double>(xr[j]) - mu) * rs;
      const double g = static_cast<double>(dyr[j]) * weight_at(weight, j);
      mean_g += g;
      mean_g_xhat += g * xhat;
    }
    mean_g /= n;
    mean_g_xhat /= n;
    for (int64_t j = 0; j < dim; ++j) {
      const double xhat = (static_cast<double>(xr[j]) - mu) * rs;
      const double g = static_cast<double>(dyr[j]) * weight_at(weight, j);
      dxr[j] = static_cast<T>(rs * (g - mean_g - xhat * mean_g_xhat));
      if (dweight) dw[j] += static_cast<double>(dyr[j]) * xhat;
      if (dbias) db[j] += static_cast<double>(dyr[j]);
    }
  }
  for (int64_t j = 0; j < dim; ++j) {
    if (dweight) dweight[j] = static_cast<T>(dw[j]);
    if (dbias) dbias[j] = static_cast<T>(db[j]);
  }
}

#define AUTOTP_INSTANTIATE(T)                                                                     \
  template void rms_norm_forward<T>(T*, T*, const T*, const T*, int64_t, int64_t, double);        \
  template void rms_norm_backward<T>(T*, T*, const T*, const T*, const T*, const T*, const T*,    \
                                     int64_t, int64_t);                                           \
  template void layer_norm_forward<T>(T*, T*, T*, const T*, const T*, const T*, int64_t, int64_t, \
                                      double);                                                    \
  template void layer_norm_backward<T>(T*, T*, T*, const T*, const T*, const T*, const T*,        \
                                       const T*, int64_t, int64_t);
AUTOTP_INSTANTIATE(float)
AUTOTP_INSTANTIATE(double)
#undef AUTOTP_INSTANTIATE

}  // namespace autotp::kernels::cpu
