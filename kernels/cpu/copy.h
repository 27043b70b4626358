// Strided element copy with type conversion, and fill: the CPU reference for views,
// contiguous(), to(dtype) and narrow/cat gradients.
#pragma once

#include <array>
#include <cstdint>

#include "kernels/cpu/strided_walk.h"
#include "kernels/numeric_types.h"

namespace autotp::kernels::cpu {

// dst[i] = convert(src[i]) over an `ndim`-dimensional index space `shape`; strides are in
// elements (0 for broadcast dims of src).
template <typename Dst, typename Src>
void strided_copy(Dst* dst, const int64_t* dst_strides, const Src* src, const int64_t* src_strides,
                  const int64_t* shape, int ndim) {
  for_each_strided<2>(shape, ndim, {dst_strides, src_strides},
                      [&](int64_t, const std::array<int64_t, 2>& at) {
                        dst[at[0]] = convert_value<Dst>(src[at[1]]);
                      });
}

template <typename T>
void fill(T* dst, int64_t n, T value) {
  for (int64_t i = 0; i < n; ++i)
    dst[i] = value;
}

}  // namespace autotp::kernels::cpu
