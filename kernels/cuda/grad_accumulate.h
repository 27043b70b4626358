// CUDA accumulation of model gradients into f32 master gradients over many tensors in one
// launch (mixed precision's accumulate_grads): each gradient widened to f32, scaled, and
// written or added in place.
#pragma once

#include <cstdint>

#include "kernels/cuda/stream.h"

namespace autotp::kernels::cuda {

// One tensor: `src` holds numel elements of the launch's source dtype, `dst` numel f32 values;
// both contiguous device arrays. add != 0: dst += g, else dst = g (dst's old contents unread).
struct AccumulateTensor {
  float* dst;
  const void* src;
  int64_t numel;
  int add;
};

// Elements per chunk: each chunk is one block.
constexpr int64_t kAccumulateChunkElements = 8192;

int64_t accumulate_workspace_bytes(const AccumulateTensor* tensors, int64_t count);

// For every element: g = f32(src) (exact for bf16/f16/f32; f64 rounds), then g = g * f32(scale1)
// when scale1 != 1, then g = g * f32(scale2) when scale2 != 1, then dst = dst + g (or dst = g):
// each a correctly rounded f32 operation, as the tensor ops to(F32), mul and add compute them.
// src_dtype: F32, F64, BF16 or F16 (DTypeCode). `tensors` is a host array staged into
// `workspace` (at least accumulate_workspace_bytes, 16-byte aligned); one launch on `stream`.
void accumulate_widened_multi_tensor(int src_dtype, double scale1, double scale2,
                                     const AccumulateTensor* tensors, int64_t count,
                                     void* workspace, int64_t workspace_bytes, cudaStream_t stream);

}  // namespace autotp::kernels::cuda
