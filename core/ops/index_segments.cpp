// Stable grouping of index positions by value for the CUDA segmented scatter-add.
#include "core/ops/index_segments.h"

#include <algorithm>
#include <numeric>

namespace autotp::ops::detail {

IndexSegments make_index_segments(const std::vector<int64_t>& index, Device device) {
  const int64_t count = static_cast<int64_t>(index.size());
  std::vector<int64_t> order(index.size());
  std::iota(order.begin(), order.end(), int64_t{0});
  std::stable_sort(order.begin(), order.end(),
                   [&](int64_t a, int64_t b) { return index[a] < index[b]; });
  std::vector<int64_t> starts, values;
  for (int64_t p = 0; p < count; ++p) {
    const int64_t value = index[order[p]];
    if (values.empty() || values.back() != value) {
      starts.push_back(p);
      values.push_back(value);
    }
  }
  starts.push_back(count);
  IndexSegments segments;
  segments.segments = static_cast<int64_t>(values.size());
  segments.order = Tensor::from_vector_i64(order, {count}, DType::I64, device);
  segments.starts =
      Tensor::from_vector_i64(starts, {static_cast<int64_t>(starts.size())}, DType::I64, device);
  segments.values = Tensor::from_vector_i64(values, {segments.segments}, DType::I64, device);
  return segments;
}

}  // namespace autotp::ops::detail
