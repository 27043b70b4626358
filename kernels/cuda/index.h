// CUDA gather/scatter along one axis of a contiguous [outer, n, inner] view: index_select, and
// a deterministic (atomic-free) index_add over indices sorted into segments by the caller.
// They serve index_select and embedding (outer = 1, n = vocab, inner = dim), both directions.
#pragma once

#include <cstdint>

#include "kernels/cuda/stream.h"

namespace autotp::kernels::cuda {

// Dtypes (DTypeCode): f32, f64, bf16, f16 for the data; i32 or i64 for `index`. Async.

// out[o, j, i] = x[o, index[j], i] for j < count; out is [outer, count, inner], x is
// [outer, n, inner]. Every index must lie in [0, n) (the caller checks).
void index_select(int dtype, int index_dtype, void* out, const void* x, const void* index,
                  int64_t outer, int64_t n, int64_t inner, int64_t count, cudaStream_t stream);

// The scatter-add that is index_select's gradient, without atomics: the caller groups the
// positions j < count by their index value (a stable sort on the host), segment s holding the
// positions order[starts[s]] .. order[starts[s + 1] - 1] (increasing), all with the value
// values[s] (distinct across segments, in [0, n)). Then for every o, s, i:
//   out[o, values[s], i] += src[o, order[starts[s]], i] + src[o, order[starts[s] + 1], i] + ...
// summed in that order in the compute type (f32 for f32 and the 16-bit floats, f64 for f64)
// and added to out with one rounding. Each output element is written by one thread, so the
// result is deterministic; for f32 into zeros it equals the CPU's sequential index_add bit for
// bit. out is [outer, n, inner], src [outer, count, inner]; order, starts and values are i64
// device arrays of count, segments + 1 and segments elements.
void index_add_sorted(int dtype, void* out, const void* src, const int64_t* order,
                      const int64_t* starts, const int64_t* values, int64_t segments, int64_t outer,
                      int64_t n, int64_t inner, int64_t count, cudaStream_t stream);

}  // namespace autotp::kernels::cuda
