// Which tensor a chunk belongs to in a multi-tensor launch (the CUDA AdamW: one block per
// chunk), from each tensor's first chunk index: host and device code, tested on the CPU.
#pragma once

#include <cstdint>

#if defined(__CUDACC__)
#define AUTOTP_CHUNK_LOOKUP_FN __host__ __device__ __forceinline__
#else
#define AUTOTP_CHUNK_LOOKUP_FN inline
#endif

namespace autotp::kernels {

// first_chunk[k] is tensor k's first chunk (non-decreasing; first_chunk[0] = 0, equal
// neighbours for tensors with no chunk); `chunk` < first_chunk[count]. Returns the last tensor
// whose first chunk is at or before `chunk`: the one that owns it (an empty tensor is always
// followed by an equal entry, so it is never the last).
AUTOTP_CHUNK_LOOKUP_FN int64_t tensor_of_chunk(const int64_t* first_chunk, int64_t count,
                                               int64_t chunk) {
  int64_t lo = 0, hi = count - 1;
  while (lo < hi) {
    const int64_t mid = (lo + hi + 1) / 2;
    if (first_chunk[mid] <= chunk)
      lo = mid;
    else
      hi = mid - 1;
  }
  return lo;
}

}  // namespace autotp::kernels
