// CPU reference embedding gather and scatter-add kernels.
#include "kernels/cpu/embedding.h"

namespace autotp::kernels::cpu {

template <typename T, typename Index>
void embedding_forward(T* out, const T* weight, const Index* ids, int64_t n_ids, int64_t dim) {
  for (int64_t i = 0; i < n_ids; ++i) {
    const T* row = weight + static_cast<int64_t>(ids[i]) * dim;
    for (int64_t j = 0; j < dim; ++j)
      out[i * dim + j] = row[j];
  }
}

template <typename T, typename Index>
void embedding_backward(T* dweight, const Index* ids, const T* dout, int64_t n_ids, int64_t vocab,
                        int64_t dim) {
  for (int64_t k = 0; k < vocab * dim; ++k)
    dweight[k] = T(0);
  for (int64_t i = 0; i < n_ids; ++i) {
    T* row = dweight + static_cast<int64_t>(ids[i]) * dim;
    for (int64_t j = 0; j < dim; ++j)
      row[j] += dout[i * dim + j];
  }
}

#define AUTOTP_INSTANTIATE(T, Index)                                                       \
  template void embedding_forward<T, Index>(T*, const T*, const Index*, int64_t, int64_t); \
  template void embedding_backward<T, Index>(T*, const Index*, const T*, int64_t, int64_t, int64_t);
AUTOTP_INSTANTIATE(float, int32_t)
AUTOTP_INSTANTIATE(float, int64_t)
AUTOTP_INSTANTIATE(double, int32_t)
AUTOTP_INSTANTIATE(double, int64_t)
#undef AUTOTP_INSTANTIATE

}  // namespace autotp::kernels::cpu
