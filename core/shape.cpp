// Shape and stride helpers.
#include "core/shape.h"

#include <algorithm>

#include <fmt/ranges.h>

#include "core/error.h"

namespace autotp {

int64_t shape_numel(const Shape& shape) {
  int64_t n = 1;
  for (int64_t s : shape)
    n *= s;
  return n;
}

Strides contiguous_strides(const Shape& shape) {
  Strides strides(shape.size());
  int64_t running = 1;
  for (size_t i = shape.size(); i-- > 0;) {
    strides[i] = running;
    running *= std::max<int64_t>(shape[i], 1);
  }
  return strides;
}

std::string shape_str(const Shape& shape) {
  return fmt::format("[{}]", fmt::join(shape, ", "));
}

int64_t wrap_dim(int64_t dim, int64_t ndim, const char* what) {
  const int64_t wrapped = dim < 0 ? dim + ndim : dim;
  AUTOTP_CHECK(wrapped >= 0 && wrapped < ndim, "{}: dim {} is out of range for a tensor of {} dims",
               what, dim, ndim);
  return wrapped;
}

Shape broadcast_shapes(const Shape& a, const Shape& b) {
  const size_t n = std::max(a.size(), b.size());
  Shape out(n);
  for (size_t i = 0; i < n; ++i) {
    const int64_t da = i < n - a.size() ? 1 : a[i - (n - a.size())];
    const int64_t db = i < n - b.size() ? 1 : b[i - (n - b.size())];
    AUTOTP_CHECK(da == db || da == 1 || db == 1,
                 "shapes {} and {} cannot be broadcast together (dim {}: {} vs {})", shape_str(a),
                 shape_str(b), i, da, db);
    out[i] = da == 1 ? db : da;
  }
  return out;
}

}  // namespace autotp
