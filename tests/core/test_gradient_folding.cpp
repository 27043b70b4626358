// Where gradients meet: a node may add the sum already pending for one of its inputs inside its
// own kernels (PendingGradients), and a leaf takes over a gradient buffer nobody else holds.
// Every case checks the values against each path's gradient computed on its own, and the
// engine's summary of which sums were folded, so a fold that silently stops happening (or
// happens where it must not) fails here.
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <memory>
#include <vector>

#include "core/autograd/engine.h"
#include "core/autograd/node.h"
#include "core/ops.h"
#include "tests/support/gradcheck.h"
#include "tests/support/tolerances.h"

namespace autotp {
namespace {

using testing::random_f64;

// Integer values in [-3, 3]: products and sums of a few of them are exact in f64, so the folded
// and the separately summed gradients must agree exactly.
Tensor integers(const Shape& shape, uint64_t seed, bool requires_grad = false) {
  std::vector<double> values = random_f64(shape, seed, false, -3.49, 3.49).to_vector();
  for (double& v : values)
    v = std::round(v);
  Tensor t = Tensor::from_vector(values, shape, DType::F64);
  if (requires_grad) t.set_requires_grad();
  return t;
}

// The gradient of `loss_of(x)` with respect to a fresh copy of `x`, with only that graph.
using LossFn = std::function<Tensor(const Tensor& x)>;
Tensor gradient_of(const LossFn& loss_of, const Tensor& x) {
  Tensor leaf = x.detach().clone().set_requires_grad();
  loss_of(leaf).backward();
  return leaf.grad();
}

Tensor weighted_sum(const Tensor& y, const Tensor& c) {
  return ops::sum(ops::mul(y, c));
}

TEST(GradientFolding, ThreeProjectionsOfOneInputAccumulateDxInsideTheGemm) {
  // The shape of q, k and v projections (or gate and up) reading one normalized input.
  const Tensor x0 = integers({2, 3, 4}, 1);
  const std::vector<Tensor> weights = {integers({5, 4}, 2), integers({3, 4}, 3),
                                       integers({6, 4}, 4)};
  const std::vector<Tensor> cs = {integers({2, 3, 5}, 5), integers({2, 3, 3}, 6),
                                  integers({2, 3, 6}, 7)};
  auto path = [&](size_t i) {
    return [&, i](const Tensor& x) { return weighted_sum(ops::linear(x, weights[i]), cs[i]); };
  };
  Tensor x = x0.clone().set_requires_grad();
  const Tensor loss =
      ops::add(ops::add(path(0)(x), path(1)(x)), path(2)(x));  // three consumers of x
  const BackwardSummary summary = run_backward(loss, Tensor(), false);
  EXPECT_EQ(summary.folded_sums, 2);  // the second and third dx go into the first one's buffer
  EXPECT_EQ(summary.engine_sums, 0);
  const Tensor expected = ops::add(ops::add(gradient_of(path(0), x0), gradient_of(path(1), x0)),
                                   gradient_of(path(2), x0));
  EXPECT_EQ(x.grad().to_vector(), expected.to_vector());
}

TEST(GradientFolding, AWeightUsedByTwoLinearsAccumulatesDwInsideTheGemm) {
  const Tensor w0 = integers({3, 4}, 11);
  const Tensor a = integers({5, 4}, 12), b = integers({2, 4}, 13);
  const Tensor ca = integers({5, 3}, 14), cb = integers({2, 3}, 15);
  const LossFn via_a = [&](const Tensor& w) { return weighted_sum(ops::linear(a, w), ca); };
  const LossFn via_b = [&](const Tensor& w) { return weighted_sum(ops::linear(b, w), cb); };
  Tensor w = w0.clone().set_requires_grad();
  const BackwardSummary summary = run_backward(ops::add(via_a(w), via_b(w)), Tensor(), false);
  EXPECT_EQ(summary.folded_sums, 1);
  EXPECT_EQ(summary.engine_sums, 0);
  EXPECT_EQ(w.grad().to_vector(),
            ops::add(gradient_of(via_a, w0), gradient_of(via_b, w0)).to_vector());
}

TEST(GradientFolding, AResidualGradientIsAddedInsideTheRmsNormBackward) {
  // A pre-norm residual block: h = x + W rms_norm(x); the skip path's gradient is pending for
  // x when the norm's backward runs.
  const Tensor x0 = random_f64({2, 3, 8}, 21, false);
  Tensor w = random_f64({8}, 22, true, 0.5, 1.5);
  const Tensor proj = random_f64({8, 8}, 23, false);
  const Tensor c = random_f64({2, 3, 8}, 24, false);
  const LossFn skip = [&](const Tensor& x) { return weighted_sum(x, c); };
  const LossFn branch = [&](const Tensor& x) {
    return weighted_sum(ops::linear(ops::rms_norm(x, w, 1e-5), proj), c);
  };
  Tensor x = x0.clone().set_requires_grad();
  const Tensor h = ops::add(x, ops::linear(ops::rms_norm(x, w, 1e-5), proj));
  const BackwardSummary summary = run_backward(weighted_sum(h, c), Tensor(), false);
  EXPECT_EQ(summary.folded_sums, 1);
  EXPECT_EQ(summary.engine_sums, 0);
  const Tensor dw = w.grad();
  w.zero_grad();
  EXPECT_ALL_CLOSE(x.grad(), ops::add(gradient_of(skip, x0), gradient_of(branch, x0)),
                   testing::tolerance_for(DType::F64));
  // The weight's gradient is the branch's alone (the fold must not disturb it).
  w.zero_grad();
  gradient_of(branch, x0);
  EXPECT_ALL_CLOSE(dw, w.grad(), testing::tolerance_for(DType::F64));
}

TEST(GradientFolding, ANormWhoseOutputGradientIsThePendingSumFoldsWithoutWritingIntoIt) {
  // h = x + rms_norm(x): the add hands the same gradient buffer to x and to the norm, so the
  // norm reads it both as dy and as the sum to add; it must write dx elsewhere (dweight,
  // accumulated from dy after dx is stored, would change if dx overwrote dy).
  const Tensor x0 = random_f64({3, 6}, 31, false);
  Tensor w = random_f64({6}, 32, true, 0.5, 1.5);
  const Tensor c = random_f64({3, 6}, 33, false);
  Tensor x = x0.clone().set_requires_grad();
  const BackwardSummary summary =
      run_backward(weighted_sum(ops::add(x, ops::rms_norm(x, w, 1e-5)), c), Tensor(), false);
  EXPECT_EQ(summary.folded_sums, 1);
  EXPECT_EQ(summary.engine_sums, 0);
  const Tensor dw = w.grad();
  w.zero_grad();
  const LossFn branch = [&](const Tensor& xx) {
    return weighted_sum(ops::rms_norm(xx, w, 1e-5), c);
  };
  EXPECT_ALL_CLOSE(x.grad(), ops::add(c, gradient_of(branch, x0)),
                   testing::tolerance_for(DType::F64));
  EXPECT_ALL_CLOSE(dw, w.grad(), testing::tolerance_for(DType::F64));
}

TEST(GradientFolding, AGradientSharedWithTheNodesOwnInputIsNeverOverwritten) {
  // y = x + x W^T: the add hands one buffer to x and to the linear, which then finds it
  // pending for x while reading it as its own output gradient. Accumulating into it in place
  // would overwrite the GEMM's input; the engine must add instead.
  const Tensor x0 = integers({4, 4}, 41), weight = integers({4, 4}, 42), c = integers({4, 4}, 43);
  Tensor x = x0.clone().set_requires_grad();
  const BackwardSummary summary =
      run_backward(weighted_sum(ops::add(x, ops::linear(x, weight)), c), Tensor(), false);
  EXPECT_EQ(summary.folded_sums, 0);
  EXPECT_EQ(summary.engine_sums, 1);
  EXPECT_EQ(x.grad().to_vector(), ops::add(c, ops::matmul(c, weight)).to_vector());  // c (I + W)
}

TEST(GradientFolding, ALeafTakesOverAGradientBufferNothingElseHolds) {
  Tensor x = integers({2, 3}, 51, true);
  auto produced = std::make_shared<const void*>(nullptr);
  const Tensor y = record_op(x.detach().clone(), "Probe", {&x}, [produced](const Tensor& g) {
    Tensor fresh = ops::mul(g, 2.0);
    *produced = fresh.raw_data();
    return std::vector<Tensor>{fresh};
  });
  const Tensor upstream = integers({2, 3}, 52);
  y.backward(upstream);
  EXPECT_EQ(x.grad().raw_data(), *produced);  // no copy
  EXPECT_EQ(x.grad().to_vector(), ops::mul(upstream, 2.0).to_vector());
}

TEST(GradientFolding, ALeafCopiesAGradientThatIsStillHeldOrOnlyPartOfABuffer) {
  // Held by the op (retained graph): the leaf's gradient must not change with it.
  Tensor x = integers({2, 3}, 61, true);
  const Tensor kept = integers({2, 3}, 62);
  const Tensor y = record_op(x.detach().clone(), "Keeps", {&x},
                             [kept](const Tensor&) { return std::vector<Tensor>{kept}; });
  y.backward(kept, /*retain_graph=*/true);
  const std::vector<double> expected = kept.to_vector();
  kept.fill_(0.0);
  EXPECT_EQ(x.grad().to_vector(), expected);

  // A view of a larger buffer: copied, so the gradient does not keep the whole buffer alive.
  Tensor z = integers({2, 3}, 63, true);
  const Tensor v = record_op(z.detach().clone(), "Slice", {&z}, [](const Tensor& g) {
    return std::vector<Tensor>{ops::cat({g, g}, 0).narrow(0, 2, 2)};
  });
  v.backward(integers({2, 3}, 64));
  EXPECT_EQ(z.grad().storage()->bytes(), 6 * sizeof(double));
  EXPECT_EQ(z.grad().to_vector(), integers({2, 3}, 64).to_vector());
}

}  // namespace
}  // namespace autotp
