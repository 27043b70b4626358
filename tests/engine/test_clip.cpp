// Global gradient norm and clipping against hand-computed and naive references.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "engine/clip.h"
#include "tests/core/nn_test_helpers.h"
#include "tests/support/tolerances.h"

namespace autotp {
namespace {

Tensor param_with_grad(const std::vector<double>& grad, const Shape& shape,
                       DType dtype = DType::F32) {
  Tensor p = Tensor::zeros(shape, dtype).set_requires_grad(true);
  p.set_grad(Tensor::from_vector(grad, shape, dtype));
  return p;
}

TEST(GradNorm, IsTheL2NormOverEveryGradient) {
  // 3-4-12-13: sqrt(9 + 16 + 144) = 13 exactly.
  const NamedTensors params = {{"a", param_with_grad({3, 4}, {2})},
                               {"b", param_with_grad({12}, {1, 1})},
                               {"no_grad", Tensor::ones({5}).set_requires_grad(true)}};
  EXPECT_EQ(grad_sq_sum(params), 169.0);
  EXPECT_EQ(global_grad_norm(params), 13.0);
}

TEST(GradNorm, MatchesANaiveDoubleSumOnRandomF32Gradients) {
  NamedTensors params;
  double naive = 0.0;
  for (int k = 0; k < 3; ++k) {
    const Tensor g = testing::random_tensor({5, 7 + k}, 40 + k, DType::F32, -3.0, 3.0);
    Tensor p = Tensor::zeros(g.shape()).set_requires_grad(true);
    p.set_grad(g.transpose(0, 1).contiguous().transpose(0, 1));  // a strided gradient
    params.emplace_back("p" + std::to_string(k), p);
    for (double v : g.to_vector())
      naive += v * v;
  }
  ASSERT_GT(naive, 0.0);
  EXPECT_NEAR(global_grad_norm(params), std::sqrt(naive), 1e-12 * std::sqrt(naive));
}

TEST(ClipGradNorm, ScalesEveryGradientByMaxNormOverNormAndReturnsThePreClipNorm) {
  const NamedTensors params = {{"a", param_with_grad({3, 4}, {2}, DType::F64)},
                               {"b", param_with_grad({12}, {1}, DType::F64)}};
  const double coef = 6.5 / (13.0 + 1e-6);  // PyTorch: max_norm / (total_norm + 1e-6)
  EXPECT_EQ(clip_grad_norm(params, 6.5), 13.0);
  EXPECT_ALL_CLOSE(params[0].second.grad(),
                   Tensor::from_vector({3 * coef, 4 * coef}, {2}, DType::F64),
                   testing::tolerance_for(DType::F64));
  EXPECT_ALL_CLOSE(params[1].second.grad(), Tensor::from_vector({12 * coef}, {1}, DType::F64),
                   testing::tolerance_for(DType::F64));
  EXPECT_NEAR(global_grad_norm(params), 6.5, 1e-6);
}

TEST(ClipGradNorm, LeavesGradientsAloneWhenTheNormIsBelowTheLimit) {
  const NamedTensors params = {{"a", param_with_grad({3, 4}, {2})}};
  EXPECT_EQ(clip_grad_norm(params, 5.0), 5.0);  // coef 5 / (5 + 1e-6) < 1: clipped slightly
  EXPECT_LT(params[0].second.grad().to_vector()[1], 4.0);
  const NamedTensors small = {{"a", param_with_grad({3, 4}, {2})}};
  EXPECT_EQ(clip_grad_norm(small, 100.0), 5.0);
  EXPECT_EQ(small[0].second.grad().to_vector(), (std::vector<double>{3, 4}));
}

TEST(ClipGradNorm, ANonFiniteNormIsReturnedAndGradientsAreNotScaled) {
  const double inf = std::numeric_limits<double>::infinity();
  const NamedTensors params = {{"a", param_with_grad({inf, 1.0}, {2})}};
  EXPECT_TRUE(std::isinf(clip_grad_norm(params, 1.0)));
  EXPECT_EQ(params[0].second.grad().to_vector()[1], 1.0);
}

TEST(ClipGradNorm, RejectsANonPositiveMaxNorm) {
  const NamedTensors params = {{"a", param_with_grad({1}, {1})}};
  EXPECT_ERROR_CONTAINS(clip_grad_norm(params, 0.0), "max_norm must be > 0");
  EXPECT_EQ(clip_coefficient(10.0, 1.0), 1.0 / (10.0 + 1e-6));
  EXPECT_EQ(clip_coefficient(0.5, 1.0), 1.0);
}

}  // namespace
}  // namespace autotp
