// CPU reference cross-entropy kernels: mean NLL of softmax(logits) and its logits gradient.
#include "kernels/cpu/cross_entropy.h"

#include <cmath>

namespace autotp::kernels::cpu {

namespace {

// log(sum_c exp(x[c])) computed as max + log(sum exp(x - max)) (classes >= 1).
template <typename T>
double log_sum_exp(const T* x, int64_t classes) {
  double m = static_cast<double>(x[0]);
  for (int64_t c = 1; c < classes; ++c)
    m = std::fmax(m, static_cast<double>(x[c]));
  double sum = 0.0;
  for (int64_t c = 0; c < classes; ++c)
    sum += std::exp(static_cast<double>(x[c]) - m);
  return m + std::log(sum);
}

template <typename Index>
int64_t count_targets(const Index* targets, int64_t rows, int64_t ignore_index) {
  int64_t count = 0;
  for (int64_t r = 0; r < rows; ++r)
    count += static_cast<int64_t>(targets[r]) != ignore_index;
  return count;
}

}  // namespace

template <typename T, typename Index>
void cross_entropy_forward(T* loss, const T* logits, const Index* targets, int64_t rows,
                           int64_t classes, int64_t ignore_index) {
  double total = 0.0;
  int64_t count = 0;
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t t = static_cast<int64_t>(targets[r]);
    if (t == ignore_index) continue;
    const T* x = logits + r * classes;
    total += log_sum_exp(x, classes) - static_cast<double>(x[t]);
    ++count;
  }
  *loss = static_cast<T>(count == 0 ? 0.0 : total / static_cast<double>(count));
}

template <typename T, typename Index>
void cross_entropy_backward(T* dlogits, const T* logits, const Index* targets, const T* dloss,
                            int64_t rows, int64_t classes, int64_t ignore_index) {
  const int64_t count = count_targets(targets, rows, ignore_index);
  const double scale = count == 0 ? 0.0 : static_cast<double>(*dloss) / static_cast<double>(count);
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t t = static_cast<int64_t>(targets[r]);
    const T* x = logits + r * classes;
    T* dx = dlogits + r * classes;
    if (t == ignore_index) {
      for (int64_t c = 0; c < classes; ++c)
        dx[c] = T(0);
      continue;
    }
    const double lse = log_sum_exp(x, classes);
    for (int64_t c = 0; c < classes; ++c) {
      const double p = std::exp(static_cast<double>(x[c]) - lse);
      dx[c] = static_cast<T>(scale * (p - (c == t ? 1.0 : 0.0)));
    }
  }
}

#define AUTOTP_INSTANTIATE(T, Index)                                                            \
  template void cross_entropy_forward<T, Index>(T*, const T*, const Index*, int64_t, int64_t,   \
                                                int64_t);                                       \
  template void cross_entropy_backward<T, Index>(T*, const T*, const Index*, const T*, int64_t, \
                                                 int64_t, int64_t);
AUTOTP_INSTANTIATE(float, int32_t)
AUTOTP_INSTANTIATE(float, int64_t)
AUTOTP_INSTANTIATE(double, int32_t)
AUTOTP_INSTANTIATE(double, int64_t)
#undef AUTOTP_INSTANTIATE

}  // namespace autotp::kernels::cpu
