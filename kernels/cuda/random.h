// CUDA Philox fills: element i of a fill at counter offset o is kernels/philox.h evaluated at
// (seed, o + i), bit-identical to the CPU fill in core/random.cpp.
#pragma once

#include <cstdint>

#include "kernels/cuda/stream.h"

namespace autotp::kernels::cuda {

// data[i] = uniform(seed, offset + i, a, b) (a = lo, b = hi), or normal(...) with a = mean,
// b = std when `normal`; computed in f64 and converted like the CPU (16-bit floats through
// f32). Dtypes: f32, f64, bf16, f16. n contiguous elements, async on `stream`.
void fill_random(int dtype, void* data, int64_t n, uint64_t seed, uint64_t offset, bool normal,
                 double a, double b, cudaStream_t stream);

}  // namespace autotp::kernels::cuda
