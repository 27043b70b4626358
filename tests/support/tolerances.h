// The one per-dtype tolerance table for numerical comparisons, and the comparison helper
// that prints the worst element on failure.
#pragma once

#include <gtest/gtest.h>

#include <string>

#include "core/tensor.h"

namespace autotp::testing {

struct Tolerance {
  double atol;
  double rtol;
};

// |actual - expected| <= atol + rtol * |expected| per element. Values (PyTorch's defaults):
//   f64 1e-7/1e-7, f32 1e-5/1.3e-6, f16 1e-5/1e-3, bf16 1e-5/1.6e-2.
Tolerance tolerance_for(DType dtype);
// Finite-difference gradient checks in f64 with eps 1e-6: atol 1e-5, rtol 1e-3.
constexpr Tolerance kGradcheckTolerance{1e-5, 1e-3};

// gtest assertion result: all elements within `tol`, shapes equal, reference finite. On
// failure the message names `what`, the tolerance, the worst element, its index and values.
::testing::AssertionResult all_close(const Tensor& actual, const Tensor& expected, Tolerance tol,
                                     const std::string& what = "tensor");

}  // namespace autotp::testing

#define EXPECT_ALL_CLOSE(actual, expected, tol) \
  EXPECT_TRUE(::autotp::testing::all_close((actual), (expected), (tol), #actual))
