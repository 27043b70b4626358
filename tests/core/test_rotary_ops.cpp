// Rotary embedding: the cos/sin tables against HF's default-rope formula, apply_rotary
// against the rotate-half formula written out (plain and broadcast tables), norm preservation,
// gradient checks w.r.t. x and argument errors.
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

// out = x * cos + rotate_half(x) * sin for x [rows, dim]; the table row of x row r is
// table_row(r). rotate_half([x1, x2]) = [-x2, x1].
template <typename TableRow>
std::vector<double> reference_rotary(const std::vector<double>& x, const std::vector<double>& cos,
                                     const std::vector<double>& sin, int64_t rows, int64_t dim,
                                     TableRow table_row) {
  const int64_t half = dim / 2;
  std::vector<double> out(x.size());
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t t = table_row(r);
    for (int64_t j = 0; j < dim; ++j) {
      const double rotated = j < half ? -x[r * dim + j + half] : x[r * dim + j - half];
      out[r * dim + j] = x[r * dim + j] * cos[t * dim + j] + rotated * sin[t * dim + j];
    }
  }
  return out;
}

TEST(RotaryTables, MatchTheDefaultRopeFormula) {
  const int64_t seq = 5, dim = 6;
  const double theta = 10000.0;
  auto [cos, sin] = ops::rotary_tables(seq, dim, theta, DType::F64);
  ASSERT_EQ(cos.shape(), (Shape{seq, dim}));
  ASSERT_EQ(sin.shape(), (Shape{seq, dim}));
  std::vector<double> expected_cos, expected_sin;
  for (int64_t s = 0; s < seq; ++s) {
    // emb = cat(freqs, freqs): the first and second halves share frequencies 0, 1, 2.
    for (int64_t half = 0; half < 2; ++half) {
      for (int64_t i = 0; i < dim / 2; ++i) {
        const double inv_freq = std::pow(theta, -2.0 * static_cast<double>(i) / dim);
        expected_cos.push_back(std::cos(static_cast<double>(s) * inv_freq));
        expected_sin.push_back(std::sin(static_cast<double>(s) * inv_freq));
      }
    }
  }
  EXPECT_ALL_CLOSE(cos, Tensor::from_vector(expected_cos, {seq, dim}, DType::F64),
                   testing::tolerance_for(DType::F64));
  EXPECT_ALL_CLOSE(sin, Tensor::from_vector(expected_sin, {seq, dim}, DType::F64),
                   testing::tolerance_for(DType::F64));
  // Position 0 is the identity rotation; frequency 0 turns by one radian per position.
  EXPECT_EQ(cos.select(0, 0).to_vector(), std::vector<double>(dim, 1.0));
  EXPECT_EQ(sin.select(0, 0).to_vector(), std::vector<double>(dim, 0.0));
  EXPECT_NEAR(sin.to_vector()[3 * dim + 0], std::sin(3.0), 1e-15);
  auto [cos32, sin32] = ops::rotary_tables(seq, dim, theta);
  EXPECT_EQ(cos32.dtype(), DType::F32);
  EXPECT_ALL_CLOSE(cos32, cos.to(DType::F32), testing::tolerance_for(DType::F32));
}

TEST(RotaryTables, FromInverseFrequenciesUseTheGivenFrequencies) {
  // Custom frequencies (as a scaled rope produces): angle = pos * inv_freq[j % half].
  const std::vector<double> inv_freq = {0.7, 0.05, 0.003};
  auto [cos, sin] = ops::rotary_tables_from_inv_freq(4, inv_freq, DType::F64);
  ASSERT_EQ(cos.shape(), (Shape{4, 6}));
  std::vector<double> expected_cos, expected_sin;
  for (int s = 0; s < 4; ++s) {
    for (int j = 0; j < 6; ++j) {
      expected_cos.push_back(std::cos(s * inv_freq[j % 3]));
      expected_sin.push_back(std::sin(s * inv_freq[j % 3]));
    }
  }
  EXPECT_ALL_CLOSE(cos, Tensor::from_vector(expected_cos, {4, 6}, DType::F64),
                   testing::tolerance_for(DType::F64));
  EXPECT_ALL_CLOSE(sin, Tensor::from_vector(expected_sin, {4, 6}, DType::F64),
                   testing::tolerance_for(DType::F64));
  // The default rope is the special case rope_inv_freq(D, theta), bit for bit.
  const std::vector<double> inv = ops::rope_inv_freq(6, 500.0);
  ASSERT_EQ(inv.size(), 3u);
  EXPECT_EQ(inv[1], 1.0 / std::pow(500.0, 2.0 / 6.0));
  auto [cos_a, sin_a] = ops::rotary_tables_from_inv_freq(5, inv, DType::F64);
  auto [cos_b, sin_b] = ops::rotary_tables(5, 6, 500.0, DType::F64);
  EXPECT_EQ(cos_a.to_vector(), cos_b.to_vector());
  EXPECT_EQ(sin_a.to_vector(), sin_b.to_vector());
  EXPECT_ERROR_CONTAINS(ops::rotary_tables_from_inv_freq(4, {}), "inv_freq is empty");
  EXPECT_ERROR_CONTAINS(ops::rope_inv_freq(6, -1.0), "theta must be positive");
}

TEST(ApplyRotary, MatchesTheRotateHalfFormulaWithSequenceTables) {
  const int64_t b = 2, h = 3, s = 5, d = 4;
  for (DType dtype : {DType::F32, DType::F64}) {
    const Tensor x = random_tensor({b, h, s, d}, 70, dtype);
    const Tensor cos = random_tensor({s, d}, 71, dtype);
    const Tensor sin = random_tensor({s, d}, 72, dtype);
    const Tensor out = ops::apply_rotary(x, cos, sin);
    const std::vector<double> expected =
        reference_rotary(x.to_vector(), cos.to_vector(), sin.to_vector(), b * h * s, d,
                         [s](int64_t r) { return r % s; });
    EXPECT_ALL_CLOSE(out, Tensor::from_vector(expected, {b, h, s, d}, dtype),
                     testing::tolerance_for(dtype));
  }
}

TEST(ApplyRotary, MatchesTheFormulaWithPerBatchTablesBroadcastOverHeads) {
  const int64_t b = 2, h = 3, s = 5, d = 6;
  const Tensor x = random_tensor({b, h, s, d}, 73);
  const Tensor cos = random_tensor({b, 1, s, d}, 74);
  const Tensor sin = random_tensor({b, 1, s, d}, 75);
  const std::vector<double> expected =
      reference_rotary(x.to_vector(), cos.to_vector(), sin.to_vector(), b * h * s, d,
                       [h, s](int64_t r) { return (r / (h * s)) * s + r % s; });
  EXPECT_ALL_CLOSE(ops::apply_rotary(x, cos, sin),
                   Tensor::from_vector(expected, {b, h, s, d}, DType::F64),
                   testing::tolerance_for(DType::F64));
}

TEST(ApplyRotary, WithRealTablesPreservesTheNormOfEveryRotatedPair) {
  const int64_t s = 7, d = 8;
  auto [cos, sin] = ops::rotary_tables(s, d, 500.0, DType::F64);
  const Tensor x = random_tensor({1, 2, s, d}, 76);
  const std::vector<double> xv = x.to_vector(), yv = ops::apply_rotary(x, cos, sin).to_vector();
  for (int64_t r = 0; r < 2 * s; ++r) {
    for (int64_t j = 0; j < d / 2; ++j) {
      const double a = xv[r * d + j], b = xv[r * d + j + d / 2];
      const double c = yv[r * d + j], e = yv[r * d + j + d / 2];
      EXPECT_NEAR(a * a + b * b, c * c + e * e, 1e-12) << "row " << r << ", pair " << j;
    }
  }
}

TEST(ApplyRotary, GradientMatchesFiniteDifferences) {
  const Tensor x = testing::random_f64({1, 3, 5, 6}, 77);
  const Tensor cos = random_tensor({5, 6}, 78), sin = random_tensor({5, 6}, 79);
  EXPECT_GRADCHECK(
      ([cos, sin](const std::vector<Tensor>& in) { return ops::apply_rotary(in[0], cos, sin); }),
      std::vector<Tensor>{x});
  const Tensor x2 = testing::random_f64({2, 3, 3, 4}, 80);
  const Tensor cos_b = random_tensor({2, 1, 3, 4}, 81), sin_b = random_tensor({2, 1, 3, 4}, 82);
  EXPECT_GRADCHECK(([cos_b, sin_b](const std::vector<Tensor>& in) {
                     return ops::apply_rotary(in[0], cos_b, sin_b);
                   }),
                   std::vector<Tensor>{x2});
  // A non-contiguous x: [B, S, H, D] transposed to [B, H, S, D] as attention layers do.
  const Tensor x3 = testing::random_f64({1, 5, 2, 6}, 83);
  EXPECT_GRADCHECK(([cos, sin](const std::vector<Tensor>& in) {
                     return ops::apply_rotary(in[0].transpose(1, 2), cos, sin);
                   }),
                   std::vector<Tensor>{x3});
}

// Attention layers rotate per-head views of [B, S, H, D] projections. Such an input is rotated
// in its own memory order (H consecutive rows per position) and the output keeps that order,
// so transposing it back costs nothing; the gradient takes the layout of the incoming one.
// Every value equals the contiguous input's, bit for bit.
constexpr testing::Tolerance kExact{0.0, 0.0};

TEST(ApplyRotary, ASequenceMajorInputKeepsItsLayoutAndGivesTheContiguousResultExactly) {
  const int64_t b = 2, s = 5, h = 3, d = 6;
  const Tensor cos = random_tensor({s, d}, 84), sin = random_tensor({s, d}, 85);
  Tensor projection = random_tensor({b, s, h, d}, 86);  // [B, S, H, D]
  projection.set_requires_grad(true);
  const Tensor out = ops::apply_rotary(projection.transpose(1, 2), cos, sin);  // [B, H, S, D]
  const Tensor reference =
      ops::apply_rotary(projection.detach().transpose(1, 2).contiguous(), cos, sin);
  EXPECT_FALSE(out.is_contiguous());
  EXPECT_TRUE(out.transpose(1, 2).is_contiguous()) << "the output is not in [B, S, H, D] order";
  EXPECT_ALL_CLOSE(out, reference, kExact);

  // The reference gradient: the same map applied to a contiguous incoming gradient.
  const Tensor g = random_tensor({b, h, s, d}, 87);
  Tensor leaf = projection.detach().transpose(1, 2).contiguous();
  leaf.set_requires_grad(true);
  ops::apply_rotary(leaf, cos, sin).backward(g);
  const Tensor expected = leaf.grad().transpose(1, 2);  // [B, S, H, D]
  // A contiguous incoming gradient, then one in sequence order.
  out.backward(g, /*retain_graph=*/true);
  EXPECT_ALL_CLOSE(projection.grad(), expected, kExact);
  projection.zero_grad();
  out.backward(g.transpose(1, 2).contiguous().transpose(1, 2));
  EXPECT_ALL_CLOSE(projection.grad(), expected, kExact);
  EXPECT_TRUE(projection.grad().is_contiguous());
}

TEST(ApplyRotary, RejectsOddHeadDimsMismatchedTablesAndTablesNeedingGrad) {
  const Tensor x = Tensor::zeros({1, 2, 5, 4});
  const Tensor table = Tensor::zeros({5, 4});
  EXPECT_ERROR_CONTAINS(
      ops::apply_rotary(Tensor::zeros({1, 2, 5, 3}), Tensor::zeros({5, 3}), Tensor::zeros({5, 3})),
      "head dim 3");
  EXPECT_ERROR_CONTAINS(ops::apply_rotary(x, Tensor::zeros({4, 4}), Tensor::zeros({4, 4})),
                        "[4, 4]");
  EXPECT_ERROR_CONTAINS(ops::apply_rotary(x, table, Tensor::zeros({5, 2})), "[5, 2]");
  Tensor needs_grad = Tensor::zeros({5, 4});
  needs_grad.set_requires_grad(true);
  EXPECT_ERROR_CONTAINS(ops::apply_rotary(x, needs_grad, table), "cos/sin");
  EXPECT_ERROR_CONTAINS(ops::rotary_tables(4, 5, 10000.0), "head_dim");
}

}  // namespace
}  // namespace autotp
