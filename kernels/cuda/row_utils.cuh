// Device helpers of the row kernels (softmax, cross entropy, norms, attention; .cu only):
// exp/log/max in the compute type, warp and block reductions in a fixed order (the result
// depends only on blockDim, never on scheduling), row block sizes and index-dtype dispatch.
#pragma once

#include <cstdint>
#include <type_traits>

#include "kernels/cuda/cuda_error.h"
#include "kernels/cuda/dtype_codes.h"
#include "kernels/cuda/launch.cuh"

namespace autotp::kernels::cuda {

template <typename C>
__device__ __forceinline__ C math_exp(C v) {
  if constexpr (std::is_same_v<C, float>)
    return expf(v);
  else
    return exp(v);
}

// 2^x from one MUFU.EX2 (ex2.approx.ftz: relative error ~2^-22, results below 2^-126 flush to 0,
// -inf gives 0): for kernels whose 16-bit data cannot carry expf's last bits and whose loops
// the extra instructions of expf would leave issue-bound.
__device__ __forceinline__ float approx_exp2(float x) {
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
  return y;
}

template <typename C>
__device__ __forceinline__ C math_log(C v) {
  if constexpr (std::is_same_v<C, float>)
    return logf(v);
  else
    return log(v);
}

template <typename C>
__device__ __forceinline__ C math_sqrt(C v) {
  if constexpr (std::is_same_v<C, float>)
    return sqrtf(v);
  else
    return sqrt(v);
}

// fmax: a NaN operand is ignored unless both are NaN (the CPU reference's std::fmax).
template <typename C>
__device__ __forceinline__ C math_max(C a, C b) {
  if constexpr (std::is_same_v<C, float>)
    return fmaxf(a, b);
  else
    return fmax(a, b);
}

template <typename C>
__device__ __forceinline__ C negative_infinity() {
  if constexpr (std::is_same_v<C, float>)
    return -__int_as_float(0x7f800000);
  else
    return -__longlong_as_double(0x7ff0000000000000LL);
}

// Butterfly sum over the 32 lanes of a warp; every lane gets the same total. All 32 lanes
// must call it.
template <typename C>
__device__ __forceinline__ C warp_sum(C v) {
#pragma unroll
  for (int offset = 16; offset > 0; offset /= 2)
    v += __shfl_xor_sync(0xffffffffu, v, offset);
  return v;
}

template <typename C>
__device__ __forceinline__ C warp_max(C v) {
#pragma unroll
  for (int offset = 16; offset > 0; offset /= 2) {
    v = math_max(v, __shfl_xor_sync(0xffffffffu, v, offset));
  }
  return v;
}

// Sum / max over the whole block (blockDim.x a multiple of 32, at most 1024); every thread
// gets the same result. `scratch` is a __shared__ array of 32 elements, reusable by the next
// call. Contains __syncthreads(): every thread of the block must call it.
template <typename C>
__device__ C block_sum(C v, C* scratch) {
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  const int warps = static_cast<int>(blockDim.x / 32);
  v = warp_sum(v);
  __syncthreads();  // the previous call's readers are done with scratch
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  return warp_sum(lane < warps ? scratch[lane] : C(0));
}

template <typename C>
__device__ C block_max(C v, C* scratch) {
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  const int warps = static_cast<int>(blockDim.x / 32);
  v = warp_max(v);
  __syncthreads();
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  return warp_max(lane < warps ? scratch[lane] : negative_infinity<C>());
}

// Threads of a block that owns one row of n elements: a multiple of 32 up to 512.
inline int threads_for_row(int64_t n) {
  if (n <= 64) return 32;
  if (n <= 1024) return 128;
  if (n <= 8192) return 256;
  return 512;
}

// Blocks for a grid-stride loop over `rows` rows, one block per row at a time.
inline unsigned blocks_for_rows(int64_t rows) {
  return static_cast<unsigned>(std::clamp<int64_t>(rows, 1, kMaxBlocks));
}

// Calls fn(TypeTag<I>{}) for an index dtype code (i32 or i64); other codes throw.
template <typename Fn>
void dispatch_index_code(int dtype, const char* kernel, Fn&& fn) {
  switch (static_cast<DTypeCode>(dtype)) {
    case DTypeCode::I32:
      fn(TypeTag<int32_t>{});
      return;
    case DTypeCode::I64:
      fn(TypeTag<int64_t>{});
      return;
    default:
      throw_unsupported_dtype(kernel, dtype, "i32 or i64 indices");
  }
}

}  // namespace autotp::kernels::cuda
