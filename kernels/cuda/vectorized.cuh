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

// (vectorize_layout, which rewrites a StridedLayout in units of V elements, is in
// strided_layout.cuh with the rest of the host-side layout code.)
inline bool is_aligned(const void* p, int64_t bytes) {
  return reinterpret_cast<uintptr_t>(p) % static_cast<uintptr_t>(bytes) == 0;
}

}  // namespace autotp::kernels::cuda
