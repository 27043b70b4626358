// CUDA sum of squares over many arrays in one launch (the global gradient norm): one block per
// fixed-size chunk, squares and sums in f64 (as the CPU reference kernels/cpu/sum_of_squares.h),
// then one block adds the chunks' partial sums in a fixed order: deterministic, no atomics.
#pragma once

#include <cstdint>

#include "kernels/cuda/stream.h"

namespace autotp::kernels::cuda {

// One contiguous device array of the launch's dtype.
struct SquaresArray {
  const void* data;
  int64_t numel;
};

// Elements per chunk: each chunk is one block of the first kernel.
constexpr int64_t kSquaresChunkElements = 16384;

// Bytes of device workspace a launch over these `count` arrays (host array) needs: the array
// table, count + 1 chunk offsets and one f64 partial per chunk.
int64_t sum_of_squares_workspace_bytes(const SquaresArray* arrays, int64_t count);

// *out (device f64) = sum over every element x of every array of double(x)^2. dtype: F32,
// F64, BF16 or F16 (DTypeCode). `arrays` is a host array whose table is copied into
// `workspace` (device memory of at least sum_of_squares_workspace_bytes, 16-byte aligned);
// it may be reused on return, the workspace must stay allocated until the kernels have run
// (stream order). No arrays or no elements: *out = 0.
void sum_of_squares_multi_tensor(int dtype, const SquaresArray* arrays, int64_t count, double* out,
                                 void* workspace, int64_t workspace_bytes, cudaStream_t stream);

}  // namespace autotp::kernels::cuda
