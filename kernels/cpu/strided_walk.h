// The row-major walk over an index space shared by the CPU reference kernels that read (or
// write) strided operands: an odometer over the outer dims, a plain loop over the last one.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <vector>

namespace autotp::kernels::cpu {

// Calls fn(i, offsets) for every row-major index i of `shape` (ndim dims; ndim 0 is one
// element), where offsets[k] is the element offset of index i in operand k, whose strides (in
// elements, 0 for broadcast dims) are strides[k]. Nothing is called for an empty shape.
template <size_t N, typename Fn>
void for_each_strided(const int64_t* shape, int ndim, const std::array<const int64_t*, N>& strides,
                      Fn&& fn) {
  int64_t total = 1;
  for (int d = 0; d < ndim; ++d)
    total *= shape[d];
  if (total == 0) return;
  std::array<int64_t, N> offsets{};
  if (ndim == 0) {
    fn(int64_t{0}, offsets);
    return;
  }
  std::vector<int64_t> index(static_cast<size_t>(ndim), 0);
  const int last = ndim - 1;
  const int64_t inner = shape[last];
  for (int64_t done = 0; done < total; done += inner) {
    std::array<int64_t, N> at = offsets;
    for (int64_t i = 0; i < inner; ++i) {
      fn(done + i, at);
      for (size_t k = 0; k < N; ++k)
        at[k] += strides[k][last];
    }
    for (int d = last - 1; d >= 0; --d) {
      for (size_t k = 0; k < N; ++k)
        offsets[k] += strides[k][d];
      if (++index[static_cast<size_t>(d)] < shape[d]) break;
      for (size_t k = 0; k < N; ++k)
        offsets[k] -= strides[k][d] * shape[d];
      index[static_cast<size_t>(d)] = 0;
    }
  }
}

}  // namespace autotp::kernels::cpu
