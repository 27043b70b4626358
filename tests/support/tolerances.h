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

// |actual - expected| <= atol + rtol * |expected| per element. Values: f32 1e-5/1.3e-6, f16
// 1e-5/1e-3, bf16 1e-5/1.6e-2 (PyTorch's defaults); f64 1e-11/1e-11, far below PyTorch's
// 1e-7: f64 comparisons here are of the same formulas (a reference loop, another rank split),
// whose rounding differs by a few hundred ulps at most (2.2e-16 each), while an f64 op that
// computed in f32 somewhere (or a reference rounded to f32) errs by ~1e-8 and must fail.
Tolerance tolerance_for(DType dtype);
// CUDA f64 against the CPU's f64: the same formulas summed in other orders (cuBLAS, parallel
// reductions, online softmax) through whole models; an f32 step inside an f64 kernel (~1e-7
// relative) still fails.
constexpr Tolerance kCudaF64Tolerance{1e-9, 1e-9};
// Finite-difference gradient checks in f64 with eps 1e-6 (central differences: truncation
// ~1e-12 times the third derivative, rounding ~1e-10 times |f|): atol 1e-7, rtol 1e-5.
constexpr Tolerance kGradcheckTolerance{1e-7, 1e-5};

// gtest assertion result: all elements within `tol`, shapes equal, reference finite. On
// failure the message names `what`, the tolerance, the worst element, its index and values.
::testing::AssertionResult all_close(const Tensor& actual, const Tensor& expected, Tolerance tol,
                                     const std::string& what = "tensor");

}  // namespace autotp::testing

#define EXPECT_ALL_CLOSE(actual, expected, tol) \
  EXPECT_TRUE(::autotp::testing::all_close((actual), (expected), (tol), #actual))
