// Gradient check: the full Jacobian from autograd against central finite differences in f64.
#pragma once

#include <functional>
#include <vector>

#include <gtest/gtest.h>

#include "core/tensor.h"
#include "tests/support/tolerances.h"

namespace autotp::testing {

using TensorFn = std::function<Tensor(const std::vector<Tensor>& inputs)>;

// `inputs` are f64 tensors; those with requires_grad are checked. For every output element
// the autograd row of the Jacobian is compared with (f(x + eps) - f(x - eps)) / 2eps.
// Also checks that the reference Jacobian is not all zero (no vacuous pass).
::testing::AssertionResult gradcheck(const TensorFn& fn, const std::vector<Tensor>& inputs,
                                     double eps = 1e-6, Tolerance tol = kGradcheckTolerance);

// Random f64 tensor in [lo, hi) from a fixed seed, optionally requiring grad.
Tensor random_f64(const Shape& shape, uint64_t seed, bool requires_grad = true, double lo = -1.0,
                  double hi = 1.0);

}  // namespace autotp::testing

#define EXPECT_GRADCHECK(fn, inputs) EXPECT_TRUE(::autotp::testing::gradcheck((fn), (inputs)))
