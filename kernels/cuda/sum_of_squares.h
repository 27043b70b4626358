// CUDA sum of squares over many arrays in one launch (the global gradient norm): one block per
// fixed-size chunk, squares and sums in f64 (as the CPU reference kernels/cpu/sum_of_squares.h),
// then one block adds the chunks' partial sums in a fixed order: deterministic, no atomics.
#pragma once

#include <cstdint>

#include "kernels/cuda/stream.h"

namespace autotp::kernels::cuda {

// One contiguous device array of floating dtype `dtype` (DTypeCode: F32, F64, BF16 or F16).
struct SquaresArray {
  const void* data;
  int64_t numel;
  int dtype;
};

// Elements per chunk: each chunk is one block of the first kernel.
constexpr int64_t kSquaresChunkElements = 16384;

// Bytes of device workspace a launch over these `count` arrays (host array) needs: the array
// table, count + 1 chunk offsets and one f64 partial per chunk.
int64_t sum_of_squares_workspace_bytes(const SquaresArray* arrays, int64_t count);

// *out (device f64) = sum over every element x of every array of double(x)^2, the arrays'
// dtypes mixed freely in one launch. The order of the additions depends only on the arrays'
// sizes and their order in the list, never on their dtypes or addresses: arrays holding equal
// values give the same bits in any dtypes at any alignment (bf16 model gradients and their f32
// master copies give one norm). `arrays` is a host array whose table is copied into `workspace`
// (device memory of at least sum_of_squares_workspace_bytes, 16-byte aligned); it may be
// reused on return, the workspace must stay allocated until the kernels have run (stream
// order). No arrays or no elements: *out = 0. An unsupported dtype throws before any launch.
void sum_of_squares_multi_tensor(const SquaresArray* arrays, int64_t count, double* out,
                                 void* workspace, int64_t workspace_bytes, cudaStream_t stream);

}  // namespace autotp::kernels::cuda
