// Strided element copy with type conversion, and fill: the CPU reference for views,
// contiguous(), to(dtype) and narrow/cat gradients.
#pragma once

#include <cstdint>
#include <vector>

#include "kernels/numeric_types.h"

namespace autotp::kernels::cpu {

// dst[i] = convert(src[i]) over an `ndim`-dimensional index space `shape`; strides are in
// elements (0 for broadcast dims of src).
template <typename Dst, typename Src>
void strided_copy(Dst* dst, const int64_t* dst_strides, const Src* src, const int64_t* src_strides,
                  const int64_t* shape, int ndim) {
  int64_t total = 1;
  for (int d = 0; d < ndim; ++d)
    total *= shape[d];
  if (total == 0) return;
  if (ndim == 0) {
    *dst = convert_value<Dst>(*src);
    return;
  }
  // Walk the index space with an odometer over all but the last dim.
  std::vector<int64_t> index(ndim, 0);
  const int last = ndim - 1;
  const int64_t inner = shape[last];
  const int64_t ds = dst_strides[last], ss = src_strides[last];
  int64_t dst_off = 0, src_off = 0;
  for (int64_t done = 0; done < total; done += inner) {
    for (int64_t i = 0; i < inner; ++i)
      dst[dst_off + i * ds] = convert_value<Dst>(src[src_off + i * ss]);
    for (int d = last - 1; d >= 0; --d) {
      dst_off += dst_strides[d];
      src_off += src_strides[d];
      if (++index[d] < shape[d]) break;
      dst_off -= dst_strides[d] * shape[d];
      src_off -= src_strides[d] * shape[d];
      index[d] = 0;
    }
  }
}

template <typename T>
void fill(T* dst, int64_t n, T value) {
  for (int64_t i = 0; i < n; ++i)
    dst[i] = value;
}

}  // namespace autotp::kernels::cpu
