// CPU reference index_select / index_add: one contiguous inner row copied or added per index.
#include "kernels/cpu/index.h"

namespace autotp::kernels::cpu {

template <typename T, typename I>
void index_select(T* out, const T* x, const I* index, int64_t outer, int64_t n, int64_t inner,
                  int64_t count) {
  for (int64_t o = 0; o < outer; ++o) {
    for (int64_t j = 0; j < count; ++j) {
      const T* src = x + (o * n + static_cast<int64_t>(index[j])) * inner;
      T* dst = out + (o * count + j) * inner;
      for (int64_t i = 0; i < inner; ++i)
        dst[i] = src[i];
    }
  }
}

template <typename T, typename I>
void index_add(T* out, const T* src, const I* index, int64_t outer, int64_t n, int64_t inner,
               int64_t count) {
  for (int64_t o = 0; o < outer; ++o) {
    for (int64_t j = 0; j < count; ++j) {
      const T* row = src + (o * count + j) * inner;
      T* dst = out + (o * n + static_cast<int64_t>(index[j])) * inner;
      for (int64_t i = 0; i < inner; ++i)
        dst[i] += row[i];
    }
  }
}

#define AUTOTP_INSTANTIATE(T, I)                                                                \
  template void index_select<T, I>(T*, const T*, const I*, int64_t, int64_t, int64_t, int64_t); \
  template void index_add<T, I>(T*, const T*, const I*, int64_t, int64_t, int64_t, int64_t);
AUTOTP_INSTANTIATE(float, int64_t)
AUTOTP_INSTANTIATE(float, int32_t)
AUTOTP_INSTANTIATE(double, int64_t)
AUTOTP_INSTANTIATE(double, int32_t)
#undef AUTOTP_INSTANTIATE

}  // namespace autotp::kernels::cpu
