// Tolerance table and all_close.
#include "tests/support/tolerances.h"

#include <cmath>

namespace autotp::testing {

Tolerance tolerance_for(DType dtype) {
  switch (dtype) {
    case DType::F64:
      return {1e-11, 1e-11};
    case DType::F32:
      return {1e-5, 1.3e-6};
    case DType::F16:
      return {1e-5, 1e-3};
    case DType::BF16:
      return {1e-5, 1.6e-2};
    default:
      return {0.0, 0.0};
  }
}

::testing::AssertionResult all_close(const Tensor& actual, const Tensor& expected, Tolerance tol,
                                     const std::string& what) {
  if (actual.shape() != expected.shape()) {
    return ::testing::AssertionFailure() << what << ": shape " << shape_str(actual.shape())
                                         << " != expected " << shape_str(expected.shape());
  }
  const std::vector<double> a = actual.to_vector(), e = expected.to_vector();
  double worst_excess = 0.0;
  size_t worst = 0;
  bool failed = false;
  for (size_t i = 0; i < e.size(); ++i) {
    if (!std::isfinite(e[i])) {
      return ::testing::AssertionFailure()
             << what << ": the reference is not finite at index " << i << " (" << e[i] << ")";
    }
    const double diff = std::fabs(a[i] - e[i]);
    const double allowed = tol.atol + tol.rtol * std::fabs(e[i]);
    if (!(diff <= allowed)) {
      const double excess = std::isfinite(diff) ? diff - allowed : INFINITY;
      if (!failed || excess > worst_excess) {
        worst_excess = excess;
        worst = i;
      }
      failed = true;
    }
  }
  if (!failed) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure()
         << what << " differs from the reference (atol " << tol.atol << ", rtol " << tol.rtol
         << "): worst element at flat index " << worst << ": actual " << a[worst] << ", expected "
         << e[worst] << ", |diff| " << std::fabs(a[worst] - e[worst]) << " (shape "
         << shape_str(actual.shape()) << ")";
}

}  // namespace autotp::testing
