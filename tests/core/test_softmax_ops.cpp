// softmax, log_softmax and cross_entropy: values against hand-written double references,
// stability for large logits, full-Jacobian gradient checks and error messages.
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

// Softmax (or log-softmax) of a [rows, n] row-major block, written out naively in double.
std::vector<double> reference_softmax_rows(const std::vector<double>& x, int64_t rows, int64_t n,
                                           bool log) {
  std::vector<double> y(x.size());
  for (int64_t r = 0; r < rows; ++r) {
    double sum = 0.0;
    for (int64_t k = 0; k < n; ++k)
      sum += std::exp(x[r * n + k]);
    for (int64_t k = 0; k < n; ++k) {
      y[r * n + k] = log ? x[r * n + k] - std::log(sum) : std::exp(x[r * n + k]) / sum;
    }
  }
  return y;
}

TEST(Softmax, RowsMatchExpOverSumAndSumToOne) {
  for (DType dtype : {DType::F32, DType::F64}) {
    const Tensor x = random_tensor({3, 7}, 11, dtype, -3.0, 3.0);
    const Tensor y = ops::softmax(x, -1);
    const Tensor expected =
        Tensor::from_vector(reference_softmax_rows(x.to_vector(), 3, 7, false), {3, 7}, dtype);
    EXPECT_ALL_CLOSE(y, expected, testing::tolerance_for(dtype));
    EXPECT_ALL_CLOSE(ops::sum(y, {1}), Tensor::ones({3}, dtype), testing::tolerance_for(dtype));
  }
}

TEST(Softmax, OverTheFirstDimNormalizesColumns) {
  const Tensor x = random_tensor({5, 3}, 12, DType::F64, -2.0, 2.0);
  // softmax over dim 0 of x is the transpose of the row softmax of x^T.
  const std::vector<double> xt = x.transpose(0, 1).contiguous().to_vector();
  const Tensor expected_t =
      Tensor::from_vector(reference_softmax_rows(xt, 3, 5, false), {3, 5}, DType::F64);
  EXPECT_ALL_CLOSE(ops::softmax(x, 0), expected_t.transpose(0, 1).contiguous(),
                   testing::tolerance_for(DType::F64));
}

TEST(Softmax, IsStableForLargeLogits) {
  const Tensor x =
      Tensor::from_vector({1000.0, 1001.0, 1002.0, -1000.0, -1001.0, -1002.0}, {2, 3}, DType::F32);
  // Shift invariance: softmax(c + [0, 1, 2]) = e^[0, 1, 2] / (1 + e + e^2).
  const double z = 1.0 + std::exp(1.0) + std::exp(2.0);
  const double zn = 1.0 + std::exp(-1.0) + std::exp(-2.0);
  const Tensor expected = Tensor::from_vector({1.0 / z, std::exp(1.0) / z, std::exp(2.0) / z,
                                               1.0 / zn, std::exp(-1.0) / zn, std::exp(-2.0) / zn},
                                              {2, 3}, DType::F32);
  EXPECT_ALL_CLOSE(ops::softmax(x, 1), expected, testing::tolerance_for(DType::F32));
  const Tensor expected_log =
      Tensor::from_vector({-std::log(z), 1.0 - std::log(z), 2.0 - std::log(z), -std::log(zn),
                           -1.0 - std::log(zn), -2.0 - std::log(zn)},
                          {2, 3}, DType::F32);
  EXPECT_ALL_CLOSE(ops::log_softmax(x, 1), expected_log, testing::tolerance_for(DType::F32));
}

TEST(LogSoftmax, MatchesXMinusLogSumExpOverAMiddleDim) {
  const Tensor x = random_tensor({2, 5, 3}, 13, DType::F64, -2.0, 2.0);
  const Tensor moved = x.transpose(1, 2).contiguous();  // [2, 3, 5]
  const Tensor expected = Tensor::from_vector(reference_softmax_rows(moved.to_vector(), 6, 5, true),
                                              {2, 3, 5}, DType::F64)
                              .transpose(1, 2)
                              .contiguous();
  EXPECT_ALL_CLOSE(ops::log_softmax(x, 1), expected, testing::tolerance_for(DType::F64));
}

TEST(Softmax, GradientsMatchFiniteDifferencesOverEveryDim) {
  for (int64_t dim : {0, 1, -1}) {
    const Tensor x =
        testing::random_f64({3, 5, 2}, 20 + static_cast<uint64_t>(dim + 1), true, -2.0, 2.0);
    EXPECT_GRADCHECK([dim](const std::vector<Tensor>& in) { return ops::softmax(in[0], dim); },
                     std::vector<Tensor>{x})
        << "dim " << dim;
    EXPECT_GRADCHECK([dim](const std::vector<Tensor>& in) { return ops::log_softmax(in[0], dim); },
                     std::vector<Tensor>{x})
        << "dim " << dim;
  }
}

TEST(Softmax, GradientFlowsThroughANonContiguousInput) {
  const Tensor x = testing::random_f64({5, 3}, 24, true, -2.0, 2.0);
  EXPECT_GRADCHECK(
      [](const std::vector<Tensor>& in) { return ops::softmax(in[0].transpose(0, 1), 1); },
      std::vector<Tensor>{x});
}

TEST(Softmax, RejectsAnOutOfRangeDim) {
  EXPECT_ERROR_CONTAINS(ops::softmax(Tensor::zeros({2, 3}), 2), "dim 2");
  EXPECT_ERROR_CONTAINS(ops::log_softmax(Tensor::zeros({2, 3}, DType::I64), 1), "i64");
}

// Mean over non-ignored rows of -log_softmax(logits[r])[target[r]], written out by hand.
double reference_cross_entropy(const std::vector<double>& logits, const std::vector<int64_t>& t,
                               int64_t classes, int64_t ignore_index) {
  double total = 0.0;
  int64_t count = 0;
  for (size_t r = 0; r < t.size(); ++r) {
    if (t[r] == ignore_index) continue;
    double sum = 0.0;
    for (int64_t c = 0; c < classes; ++c)
      sum += std::exp(logits[r * classes + c]);
    total += -(logits[r * classes + t[r]] - std::log(sum));
    ++count;
  }
  return count == 0 ? 0.0 : total / static_cast<double>(count);
}

TEST(CrossEntropy, MatchesNegativeLogSoftmaxPickedByHandWithIgnoredRows) {
  const std::vector<int64_t> targets{2, 0, 6, -100, 3};
  for (DType dtype : {DType::F32, DType::F64}) {
    for (DType index_dtype : {DType::I64, DType::I32}) {
      const Tensor logits = random_tensor({5, 7}, 30, dtype, -3.0, 3.0);
      const Tensor t = Tensor::from_vector_i64(targets, {5}, index_dtype);
      const Tensor loss = ops::cross_entropy(logits, t);
      EXPECT_EQ(loss.dim(), 0);
      EXPECT_EQ(loss.dtype(), dtype);
      const double expected = reference_cross_entropy(logits.to_vector(), targets, 7, -100);
      EXPECT_ALL_CLOSE(loss, Tensor::full({}, expected, dtype), testing::tolerance_for(dtype));
    }
  }
}

TEST(CrossEntropy, HonoursACustomIgnoreIndex) {
  const std::vector<int64_t> targets{0, 4, 0, 1};
  const Tensor logits = random_tensor({4, 5}, 31, DType::F64, -2.0, 2.0);
  const Tensor loss =
      ops::cross_entropy(logits, Tensor::from_vector_i64(targets, {4}), /*ignore_index=*/0);
  const double expected = reference_cross_entropy(logits.to_vector(), targets, 5, 0);
  EXPECT_ALL_CLOSE(loss, Tensor::full({}, expected, DType::F64),
                   testing::tolerance_for(DType::F64));
}

TEST(CrossEntropy, GradientsMatchFiniteDifferencesWithIgnoredRows) {
  const Tensor logits = testing::random_f64({5, 3}, 32, true, -2.0, 2.0);
  for (DType index_dtype : {DType::I64, DType::I32}) {
    const Tensor t = Tensor::from_vector_i64({1, -100, 2, 0, -100}, {5}, index_dtype);
    EXPECT_GRADCHECK([t](const std::vector<Tensor>& in) { return ops::cross_entropy(in[0], t); },
                     std::vector<Tensor>{logits});
  }
}

TEST(CrossEntropy, GradientIsSoftmaxMinusOneHotOverCountAndZeroOnIgnoredRows) {
  const Tensor logits = testing::random_f64({3, 4}, 33, true, -2.0, 2.0);
  const Tensor t = Tensor::from_vector_i64({3, -100, 1}, {3});
  ops::cross_entropy(logits, t).backward();
  const std::vector<double> x = logits.to_vector();
  const std::vector<double> p = reference_softmax_rows(x, 3, 4, false);
  std::vector<double> expected(12, 0.0);
  for (int64_t c = 0; c < 4; ++c) {
    expected[0 * 4 + c] = (p[0 * 4 + c] - (c == 3 ? 1.0 : 0.0)) / 2.0;
    expected[2 * 4 + c] = (p[2 * 4 + c] - (c == 1 ? 1.0 : 0.0)) / 2.0;
  }
  EXPECT_ALL_CLOSE(logits.grad(), Tensor::from_vector(expected, {3, 4}, DType::F64),
                   testing::tolerance_for(DType::F64));
}

TEST(CrossEntropy, AllRowsIgnoredGivesZeroLossAndZeroGradient) {
  Tensor logits = random_tensor({3, 4}, 34, DType::F32);
  logits.set_requires_grad(true);
  const Tensor loss = ops::cross_entropy(logits, Tensor::from_vector_i64({-100, -100, -100}, {3}));
  EXPECT_EQ(loss.item(), 0.0);
  loss.backward();
  ASSERT_TRUE(logits.grad().defined());
  EXPECT_EQ(logits.grad().to_vector(), std::vector<double>(12, 0.0));
}

TEST(CrossEntropy, StridedTargetsGiveTheLossAndGradientOfContiguousOnes) {
  // Targets are read on the host and copied to the logits' device contiguous: a column of a
  // [N, 2] block (stride 2) must give what its contiguous copy gives.
  const Tensor block = Tensor::from_vector_i64({2, 9, -100, 9, 0, 9, 3, 9, 1, 9}, {5, 2});
  const Tensor strided = block.select(1, 0);  // [5], stride 2
  ASSERT_FALSE(strided.is_contiguous());
  const Tensor contiguous = Tensor::from_vector_i64({2, -100, 0, 3, 1}, {5});
  Tensor a = random_tensor({5, 4}, 35, DType::F64);
  Tensor b = a.clone().detach();
  a.set_requires_grad(true);
  b.set_requires_grad(true);
  const Tensor loss_strided = ops::cross_entropy(a, strided);
  const Tensor loss_contiguous = ops::cross_entropy(b, contiguous);
  loss_strided.backward();
  loss_contiguous.backward();
  EXPECT_EQ(loss_strided.item(), loss_contiguous.item());
  EXPECT_EQ(a.grad().to_vector(), b.grad().to_vector());
  EXPECT_ERROR_CONTAINS(ops::cross_entropy(a, block.select(1, 1)), "target 9 at row 0");
}

TEST(CrossEntropy, RejectsOutOfRangeTargetsAndBadShapesNamingThem) {
  const Tensor logits = Tensor::zeros({3, 7});
  EXPECT_ERROR_CONTAINS(ops::cross_entropy(logits, Tensor::from_vector_i64({0, 1, 7}, {3})),
                        "target 7 at row 2");
  EXPECT_ERROR_CONTAINS(ops::cross_entropy(logits, Tensor::from_vector_i64({-1, 1, 2}, {3})),
                        "target -1 at row 0");
  EXPECT_ERROR_CONTAINS(ops::cross_entropy(logits, Tensor::from_vector_i64({0, 1}, {2})), "[2]");
  EXPECT_ERROR_CONTAINS(
      ops::cross_entropy(Tensor::zeros({3, 7, 1}), Tensor::zeros({3}, DType::I64)), "[3, 7, 1]");
  EXPECT_ERROR_CONTAINS(ops::cross_entropy(logits, Tensor::zeros({3}, DType::F32)), "i64 or i32");
}

}  // namespace
}  // namespace autotp
