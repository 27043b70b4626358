// Vectorized access for the memory-bound kernels (.cu only): V consecutive elements moved as
// one load or store of V * sizeof(T) bytes (16 bytes: 8 bf16/f16, 4 f32, 2 f64/i64), and the
// host-side tests that decide when a kernel may take that path: every pointer aligned to the
// access and every operand contiguous along the innermost dim. Kernels keep their scalar path
// for everything else (odd widths, views off the boundary, broadcasts along the last dim).
#pragma once

#include <cstdint>

#include "kernels/cuda/strided_layout.cuh"

namespace autotp::kernels::cuda {

// Elements of T in one 16-byte access.
template <typename T>
inline constexpr int kVectorElems = sizeof(T) >= 16 ? 1 : static_cast<int>(16 / sizeof(T));

template <typename T, int V>
struct alignas(sizeof(T) * V) Pack {
  T v[V];
};

template <int V, typename T>
__device__ __forceinline__ Pack<T, V> load_pack(const T* p) {
  return *reinterpret_cast<const Pack<T, V>*>(p);
}

template <int V, typename T>
__device__ __forceinline__ void store_pack(T* p, const Pack<T, V>& pack) {
  *reinterpret_cast<Pack<T, V>*>(p) = pack;
}

inline bool is_aligned(const void* p, int64_t bytes) {
  return reinterpret_cast<uintptr_t>(p) % static_cast<uintptr_t>(bytes) == 0;
}

// Rewrites `layout` in units of v consecutive elements when every operand reads its innermost
// dim with stride 1 and both that dim's size and every other stride are multiples of v. Then
// strided_offsets over the result gives, for vector i, the element offset of its first element
// in every operand (and i * v in a contiguous output). Returns false, leaving `layout` as it
// was, otherwise.
template <int N>
bool vectorize_layout(StridedLayout<N>& layout, int64_t v) {
  const int last = layout.ndim - 1;
  if (v <= 1 || layout.shape[last] % v != 0) return false;
  for (int k = 0; k < N; ++k) {
    if (layout.strides[k][last] != 1) return false;
    for (int d = 0; d < last; ++d)
      if (layout.strides[k][d] % v != 0) return false;
  }
  layout.shape[last] /= v;
  for (int k = 0; k < N; ++k)
    layout.strides[k][last] = v;
  layout.numel /= v;
  return true;
}

}  // namespace autotp::kernels::cuda
