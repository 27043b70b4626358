// CPU reference gather/scatter along one axis of a contiguous [outer, n, inner] view:
// index_select (forward) and index_add (its gradient), both deterministic.
#pragma once

#include <cstdint>

namespace autotp::kernels::cpu {

// out[o, j, i] = x[o, index[j], i] for j < count; out is [outer, count, inner], x is
// [outer, n, inner]. Every index must lie in [0, n) (the caller checks).
template <typename T, typename I>
void index_select(T* out, const T* x, const I* index, int64_t outer, int64_t n, int64_t inner,
                  int64_t count);

// out[o, index[j], i] += src[o, j, i] for j < count, in increasing j (so repeated indices sum
// in a fixed order: deterministic). out is [outer, n, inner], src is [outer, count, inner].
template <typename T, typename I>
void index_add(T* out, const T* src, const I* index, int64_t outer, int64_t n, int64_t inner,
               int64_t count);

}  // namespace autotp::kernels::cpu
