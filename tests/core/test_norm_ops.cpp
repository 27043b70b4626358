// rms_norm and layer_norm: values against the formulas written out in double, with and
// without weight/bias, full-Jacobian gradient checks (x, weight, bias) and shape errors.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "core/ops.h"
#include "tests/core/nn_test_helpers.h"
#include "tests/support/gradcheck.h"
#include "tests/support/tolerances.h"

namespace autotp {
namespace {

using testing::random_tensor;

// HF LlamaRMSNorm on [rows, dim]: x / sqrt(mean(x^2) + eps) * w (w empty = ones).
std::vector<double> reference_rms_norm(const std::vector<double>& x, const std::vector<double>& w,
                                       int64_t rows, int64_t dim, double eps) {
  std::vector<double> y(x.size());
  for (int64_t r = 0; r < rows; ++r) {
    double ms = 0.0;
    for (int64_t j = 0; j < dim; ++j)
      ms += x[r * dim + j] * x[r * dim + j];
    ms /= static_cast<double>(dim);
    for (int64_t j = 0; j < dim; ++j) {
      y[r * dim + j] = x[r * dim + j] / std::sqrt(ms + eps) * (w.empty() ? 1.0 : w[j]);
    }
  }
  return y;
}

// torch.nn.LayerNorm on [rows, dim] with biased variance; empty w / b mean ones / zeros.
std::vector<double> reference_layer_norm(const std::vector<double>& x, const std::vector<double>& w,
                                         const std::vector<double>& b, int64_t rows, int64_t dim,
                                         double eps) {
  std::vector<double> y(x.size());
  for (int64_t r = 0; r < rows; ++r) {
    double mean = 0.0, var = 0.0;
    for (int64_t j = 0; j < dim; ++j)
      mean += x[r * dim + j];
    mean /= static_cast<double>(dim);
    for (int64_t j = 0; j < dim; ++j)
      var += (x[r * dim + j] - mean) * (x[r * dim + j] - mean);
    var /= static_cast<double>(dim);
    for (int64_t j = 0; j < dim; ++j) {
      y[r * dim + j] = (x[r * dim + j] - mean) / std::sqrt(var + eps) * (w.empty() ? 1.0 : w[j]) +
                       (b.empty() ? 0.0 : b[j]);
    }
  }
  return y;
}

TEST(RmsNorm, MatchesTheLlamaRmsNormFormulaWithAndWithoutWeight) {
  for (DType dtype : {DType::F32, DType::F64}) {
    const Tensor x = random_tensor({2, 3, 7}, 40, dtype, -2.0, 2.0);
    const Tensor w = random_tensor({7}, 41, dtype, 0.5, 1.5);
    const double eps = 1e-5;
    EXPECT_ALL_CLOSE(
        ops::rms_norm(x, w, eps),
        Tensor::from_vector(reference_rms_norm(x.to_vector(), w.to_vector(), 6, 7, eps), {2, 3, 7},
                            dtype),
        testing::tolerance_for(dtype));
    EXPECT_ALL_CLOSE(
        ops::rms_norm(x, Tensor(), eps),
        Tensor::from_vector(reference_rms_norm(x.to_vector(), {}, 6, 7, eps), {2, 3, 7}, dtype),
        testing::tolerance_for(dtype));
  }
}

TEST(RmsNorm, NormalizesRowsToUnitRootMeanSquare) {
  const Tensor x = random_tensor({4, 5}, 42, DType::F64, -3.0, 3.0);
  const Tensor y = ops::rms_norm(x, Tensor(), 0.0);
  EXPECT_ALL_CLOSE(ops::mean(ops::mul(y, y), {1}), Tensor::ones({4}, DType::F64),
                   testing::tolerance_for(DType::F64));
}

TEST(RmsNorm, GradientsMatchFiniteDifferencesForXAndWeight) {
  const Tensor x = testing::random_f64({3, 5}, 43, true, -2.0, 2.0);
  const Tensor w = testing::random_f64({5}, 44, true, 0.5, 1.5);
  EXPECT_GRADCHECK([](const std::vector<Tensor>& in) { return ops::rms_norm(in[0], in[1], 1e-5); },
                   (std::vector<Tensor>{x, w}));
  const Tensor x3 = testing::random_f64({2, 3, 5}, 45, true, -2.0, 2.0);
  EXPECT_GRADCHECK([](const std::vector<Tensor>& in) { return ops::rms_norm(in[0], in[1], 1e-3); },
                   (std::vector<Tensor>{x3, w}));
}

TEST(RmsNorm, GradientsMatchFiniteDifferencesWithoutWeight) {
  const Tensor x = testing::random_f64({3, 5}, 46, true, -2.0, 2.0);
  EXPECT_GRADCHECK(
      [](const std::vector<Tensor>& in) { return ops::rms_norm(in[0], Tensor(), 1e-5); },
      std::vector<Tensor>{x});
}

TEST(RmsNorm, WeightGradientAloneMatchesFiniteDifferences) {
  const Tensor x = testing::random_f64({3, 5}, 47, /*requires_grad=*/false, -2.0, 2.0);
  const Tensor w = testing::random_f64({5}, 48, true, 0.5, 1.5);
  EXPECT_GRADCHECK([](const std::vector<Tensor>& in) { return ops::rms_norm(in[0], in[1], 1e-5); },
                   (std::vector<Tensor>{x, w}));
}

TEST(LayerNorm, MatchesTheFormulaForEveryWeightBiasCombination) {
  for (DType dtype : {DType::F32, DType::F64}) {
    const Tensor x = random_tensor({3, 7}, 50, dtype, -2.0, 2.0);
    const Tensor w = random_tensor({7}, 51, dtype, 0.5, 1.5);
    const Tensor b = random_tensor({7}, 52, dtype);
    const double eps = 1e-5;
    for (bool with_w : {false, true}) {
      for (bool with_b : {false, true}) {
        const Tensor y = ops::layer_norm(x, with_w ? w : Tensor(), with_b ? b : Tensor(), eps);
        const std::vector<double> expected =
            reference_layer_norm(x.to_vector(), with_w ? w.to_vector() : std::vector<double>{},
                                 with_b ? b.to_vector() : std::vector<double>{}, 3, 7, eps);
        EXPECT_ALL_CLOSE(y, Tensor::from_vector(expected, {3, 7}, dtype),
                         testing::tolerance_for(dtype))
            << "weight " << with_w << ", bias " << with_b << ", dtype " << dtype_name(dtype);
      }
    }
  }
}

TEST(LayerNorm, GradientsMatchFiniteDifferencesForEveryWeightBiasCombination) {
  const Tensor x = testing::random_f64({2, 3, 5}, 53, true, -2.0, 2.0);
  const Tensor w = testing::random_f64({5}, 54, true, 0.5, 1.5);
  const Tensor b = testing::random_f64({5}, 55, true);
  EXPECT_GRADCHECK(
      [](const std::vector<Tensor>& in) { return ops::layer_norm(in[0], in[1], in[2], 1e-5); },
      (std::vector<Tensor>{x, w, b}));
  EXPECT_GRADCHECK(
      [](const std::vector<Tensor>& in) { return ops::layer_norm(in[0], in[1], Tensor(), 1e-5); },
      (std::vector<Tensor>{x, w}));
  EXPECT_GRADCHECK(
      [](const std::vector<Tensor>& in) { return ops::layer_norm(in[0], Tensor(), in[1], 1e-5); },
      (std::vector<Tensor>{x, b}));
  EXPECT_GRADCHECK(
      [](const std::vector<Tensor>& in) {
        return ops::layer_norm(in[0], Tensor(), Tensor(), 1e-5);
      },
      std::vector<Tensor>{x});
}

TEST(Norms, RejectMismatchedParametersNamingTheShapes) {
  const Tensor x = Tensor::zeros({3, 5});
  EXPECT_ERROR_CONTAINS(ops::rms_norm(x, Tensor::ones({4}), 1e-5), "weight of shape [4]");
  EXPECT_ERROR_CONTAINS(ops::rms_norm(x, Tensor::ones({5}, DType::F64), 1e-5), "f64");
  EXPECT_ERROR_CONTAINS(ops::layer_norm(x, Tensor::ones({5}), Tensor::zeros({5, 1}), 1e-5),
                        "bias of shape [5, 1]");
  EXPECT_ERROR_CONTAINS(ops::layer_norm(Tensor::zeros({}), Tensor(), Tensor(), 1e-5),
                        "at least one dim");
  EXPECT_ERROR_CONTAINS(ops::rms_norm(x, Tensor(), -1.0), "eps");
}

}  // namespace
}  // namespace autotp
