// Internal: positions of an index tensor grouped by index value (a stable sort on the host),
// uploaded for the CUDA kernels' deterministic scatter-add (kernels/cuda/index.h).
#pragma once

#include <cstdint>
#include <vector>

#include "core/tensor.h"

namespace autotp::ops::detail {

struct IndexSegments {
  Tensor order;   // [count] i64: positions j sorted by index[j], ties in increasing j
  Tensor starts;  // [segments + 1] i64: segment s is order[starts[s] .. starts[s + 1])
  Tensor values;  // [segments] i64: the index value of segment s (increasing, distinct)
  int64_t segments = 0;
};

// Groups the positions of `index` (host values) by value and copies the arrays to `device`.
IndexSegments make_index_segments(const std::vector<int64_t>& index, Device device);

}  // namespace autotp::ops::detail
