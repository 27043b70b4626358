// CPU reference sum of squares with double accumulation.
#include "kernels/cpu/sum_of_squares.h"

namespace autotp::kernels::cpu {

template <typename T>
double sum_of_squares(const T* x, int64_t n) {
  double total = 0.0;
  for (int64_t i = 0; i < n; ++i) {
    const double v = static_cast<double>(x[i]);
    total += v * v;
  }
  return total;
}

template double sum_of_squares<float>(const float*, int64_t);
template double sum_of_squares<double>(const double*, int64_t);

}  // namespace autotp::kernels::cpu
