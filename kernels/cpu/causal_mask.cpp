// CPU reference causal mask fill.
#include "kernels/cpu/causal_mask.h"

namespace autotp::kernels::cpu {

template <typename T>
void causal_mask_fill(T* out, const T* x, int64_t batch, int64_t sq, int64_t sk, T value) {
  const int64_t offset = sk - sq;
  for (int64_t b = 0; b < batch; ++b) {
    for (int64_t i = 0; i < sq; ++i) {
      const int64_t row = (b * sq + i) * sk;
      for (int64_t j = 0; j < sk; ++j)
        out[row + j] = j <= i + offset ? x[row + j] : value;
    }
  }
}

template void causal_mask_fill<float>(float*, const float*, int64_t, int64_t, int64_t, float);
template void causal_mask_fill<double>(double*, const double*, int64_t, int64_t, int64_t, double);

}  // namespace autotp::kernels::cpu
