// Device-side basics shared by the CUDA kernels (.cu only): the storage type of each dtype code,
// f32 compute for 16-bit floats, conversions that match the CPU's convert_value, dtype dispatch
// and grid sizing for grid-stride loops with 64-bit indices.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <algorithm>
#include <cstdint>
#include <type_traits>

#include "kernels/cuda/cuda_error.h"
#include "kernels/cuda/dtype_codes.h"

namespace autotp::kernels::cuda {

using bf16 = __nv_bfloat16;
using f16 = __half;

template <typename T>
struct TypeTag {
  using type = T;
};

template <typename T>
inline constexpr bool kIs16BitFloat = std::is_same_v<T, bf16> || std::is_same_v<T, f16>;

// The type arithmetic runs in: f32 for the 16-bit floats, T itself otherwise.
template <typename T>
using ComputeType = std::conditional_t<kIs16BitFloat<T>, float, T>;

template <typename T>
__device__ __forceinline__ ComputeType<T> widen(T v) {
  if constexpr (std::is_same_v<T, bf16>) {
    return __bfloat162float(v);
  } else if constexpr (std::is_same_v<T, f16>) {
    return __half2float(v);
  } else {
    return v;
  }
}

// Dst from Src exactly as the CPU's convert_value: 16-bit floats are converted through f32
// (round to nearest even, so f64 -> bf16 rounds twice, like the CPU), floats to integers
// truncate.
template <typename Dst, typename Src>
__device__ __forceinline__ Dst convert(Src v) {
  if constexpr (std::is_same_v<Dst, Src>) {
    return v;
  } else {
    const auto wide = widen(v);
    if constexpr (std::is_same_v<Dst, bf16>) {
      return __float2bfloat16_rn(static_cast<float>(wide));
    } else if constexpr (std::is_same_v<Dst, f16>) {
      return __float2half_rn(static_cast<float>(wide));
    } else {
      return static_cast<Dst>(wide);
    }
  }
}

// Calls fn(TypeTag<T>{}) with the storage type of a floating dtype code; other codes throw.
template <typename Fn>
void dispatch_float_code(int dtype, const char* kernel, Fn&& fn) {
  switch (static_cast<DTypeCode>(dtype)) {
    case DTypeCode::F32:
      fn(TypeTag<float>{});
      return;
    case DTypeCode::F64:
      fn(TypeTag<double>{});
      return;
    case DTypeCode::BF16:
      fn(TypeTag<bf16>{});
      return;
    case DTypeCode::F16:
      fn(TypeTag<f16>{});
      return;
    default:
      throw_unsupported_dtype(kernel, dtype, "f32, f64, bf16 or f16");
  }
}

// Same for every dtype code.
template <typename Fn>
void dispatch_any_code(int dtype, const char* kernel, Fn&& fn) {
  switch (static_cast<DTypeCode>(dtype)) {
    case DTypeCode::F32:
      fn(TypeTag<float>{});
      return;
    case DTypeCode::F64:
      fn(TypeTag<double>{});
      return;
    case DTypeCode::BF16:
      fn(TypeTag<bf16>{});
      return;
    case DTypeCode::F16:
      fn(TypeTag<f16>{});
      return;
    case DTypeCode::I32:
      fn(TypeTag<int32_t>{});
      return;
    case DTypeCode::I64:
      fn(TypeTag<int64_t>{});
      return;
  }
  throw_unsupported_dtype(kernel, dtype, "f32, f64, bf16, f16, i32 or i64");
}

constexpr int kThreadsPerBlock = 256;
// Grids are capped here; grid-stride loops cover larger sizes.
constexpr int64_t kMaxBlocks = 65535;

inline unsigned blocks_for(int64_t n, int threads = kThreadsPerBlock) {
  return static_cast<unsigned>(std::clamp<int64_t>((n + threads - 1) / threads, 1, kMaxBlocks));
}

__device__ __forceinline__ int64_t global_thread_index() {
  return static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
}

__device__ __forceinline__ int64_t grid_thread_count() {
  return static_cast<int64_t>(gridDim.x) * blockDim.x;
}

}  // namespace autotp::kernels::cuda
