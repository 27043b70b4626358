// CPU reference reductions.
#include "kernels/cpu/reduce.h"

#include <algorithm>
#include <vector>

namespace autotp::kernels::cpu {

template <typename T>
void sum_axis(T* out, const T* x, int64_t outer, int64_t n, int64_t inner) {
  std::vector<double> acc(static_cast<size_t>(inner));
  for (int64_t o = 0; o < outer; ++o) {
    std::fill(acc.begin(), acc.end(), 0.0);
    const T* block = x + o * n * inner;
    for (int64_t k = 0; k < n; ++k) {
      const T* row = block + k * inner;
      for (int64_t i = 0; i < inner; ++i)
        acc[i] += static_cast<double>(row[i]);
    }
    for (int64_t i = 0; i < inner; ++i)
      out[o * inner + i] = static_cast<T>(acc[i]);
  }
}

template <typename T>
void max_axis(T* out, int64_t* argmax, const T* x, int64_t outer, int64_t n, int64_t inner) {
  for (int64_t o = 0; o < outer; ++o) {
    const T* block = x + o * n * inner;
    for (int64_t i = 0; i < inner; ++i) {
      T best = block[i];
      int64_t best_k = 0;
      for (int64_t k = 1; k < n; ++k) {
        const T v = block[k * inner + i];
        if (v > best || (v != v && best == best)) {  // NaN propagates
          best = v;
          best_k = k;
        }
      }
      out[o * inner + i] = best;
      argmax[o * inner + i] = best_k;
    }
  }
}

template void sum_axis<float>(float*, const float*, int64_t, int64_t, int64_t);
template void sum_axis<double>(double*, const double*, int64_t, int64_t, int64_t);
template void max_axis<float>(float*, int64_t*, const float*, int64_t, int64_t, int64_t);
template void max_axis<double>(double*, int64_t*, const double*, int64_t, int64_t, int64_t);

}  // namespace autotp::kernels::cpu
