// sum, mean and max over single, multiple and negative dims (keepdim on and off) against a
// naive loop, their gradients by full-Jacobian checks, and max's first-maximum tie rule.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>

#include "core/ops.h"
#include "tests/core/nn_test_helpers.h"
#include "tests/support/gradcheck.h"
#include "tests/support/tolerances.h"

namespace autotp {
namespace {

using testing::random_f64;
using testing::tolerance_for;

enum class Reduce { Sum, Mean, Max };

// Reduces `x` over `dims` (already non-negative) by visiting every element and folding it into
// the output element whose index drops (or, with keepdim, zeroes) the reduced dims.
Tensor naive_reduce(const Tensor& x, std::vector<int64_t> dims, bool keepdim, Reduce op) {
  const std::vector<double> v = x.to_vector();
  const Shape& shape = x.shape();
  const int64_t nd = x.dim();
  auto reduced = [&](int64_t d) { return std::find(dims.begin(), dims.end(), d) != dims.end(); };
  Shape kept;  // output shape with reduced dims as 1
  for (int64_t d = 0; d < nd; ++d)
    kept.push_back(reduced(d) ? 1 : shape[d]);
  const int64_t out_n = shape_numel(kept);
  std::vector<double> out(static_cast<size_t>(out_n),
                          op == Reduce::Max ? -std::numeric_limits<double>::infinity() : 0.0);
  int64_t count = 1;
  for (int64_t d : dims)
    count *= shape[d];
  for (int64_t flat = 0; flat < static_cast<int64_t>(v.size()); ++flat) {
    int64_t rem = flat, out_index = 0, scale = 1;
    for (int64_t d = nd - 1; d >= 0; --d) {
      const int64_t i = rem % shape[d];
      rem /= shape[d];
      out_index += (reduced(d) ? 0 : i) * scale;
      scale *= kept[d];
    }
    if (op == Reduce::Max)
      out[out_index] = std::max(out[out_index], v[flat]);
    else
      out[out_index] += v[flat];
  }
  if (op == Reduce::Mean) {
    for (double& o : out)
      o /= static_cast<double>(count);
  }
  Shape out_shape;
  for (int64_t d = 0; d < nd; ++d) {
    if (!reduced(d))
      out_shape.push_back(shape[d]);
    else if (keepdim)
      out_shape.push_back(1);
  }
  return Tensor::from_vector(out, out_shape, DType::F64);
}

std::vector<int64_t> wrapped(const std::vector<int64_t>& dims, int64_t nd) {
  std::vector<int64_t> out;
  for (int64_t d : dims)
    out.push_back(d < 0 ? d + nd : d);
  return out;
}

const std::vector<std::vector<int64_t>> kDimSets{{0},    {1},     {2},    {-1},     {-3},
                                                 {0, 2}, {-1, 0}, {1, 2}, {0, 1, 2}};

TEST(Reduce, SumAndMeanMatchTheNaiveLoopOverEveryDimSet) {
  const Tensor x = random_f64({3, 5, 7}, 1, false);
  for (const auto& dims : kDimSets) {
    for (bool keepdim : {false, true}) {
      const auto w = wrapped(dims, 3);
      EXPECT_ALL_CLOSE(ops::sum(x, dims, keepdim), naive_reduce(x, w, keepdim, Reduce::Sum),
                       tolerance_for(DType::F64));
      EXPECT_ALL_CLOSE(ops::mean(x, dims, keepdim), naive_reduce(x, w, keepdim, Reduce::Mean),
                       tolerance_for(DType::F64));
    }
  }
}

TEST(Reduce, MaxMatchesTheNaiveLoopOverEveryDim) {
  const Tensor x = random_f64({3, 5, 7}, 2, false);
  for (int64_t dim : {0, 1, 2, -1, -2}) {
    for (bool keepdim : {false, true}) {
      EXPECT_ALL_CLOSE(ops::max(x, dim, keepdim),
                       naive_reduce(x, wrapped({dim}, 3), keepdim, Reduce::Max),
                       tolerance_for(DType::F64));
    }
  }
}

TEST(Reduce, FullReductionsGiveZeroDimTensors) {
  const Tensor x = random_f64({3, 5}, 3, false);
  const Tensor s = ops::sum(x), m = ops::mean(x), mx = ops::max(x);
  EXPECT_EQ(s.shape(), Shape{});
  EXPECT_EQ(mx.shape(), Shape{});
  EXPECT_ALL_CLOSE(s, naive_reduce(x, {0, 1}, false, Reduce::Sum), tolerance_for(DType::F64));
  EXPECT_ALL_CLOSE(m, naive_reduce(x, {0, 1}, false, Reduce::Mean), tolerance_for(DType::F64));
  EXPECT_ALL_CLOSE(mx, naive_reduce(x, {0, 1}, false, Reduce::Max), tolerance_for(DType::F64));
}

TEST(Reduce, NonContiguousInputsAndF32Work) {
  const Tensor x = random_f64({5, 3, 7}, 4, false).permute({1, 2, 0});  // [3, 7, 5]
  EXPECT_ALL_CLOSE(ops::sum(x, {0, 2}), naive_reduce(x, {0, 2}, false, Reduce::Sum),
                   tolerance_for(DType::F64));
  EXPECT_ALL_CLOSE(ops::max(x, 1), naive_reduce(x, {1}, false, Reduce::Max),
                   tolerance_for(DType::F64));
  // f32 sums accumulate in double: integer values up to 2^24 stay exact
  const Tensor big = Tensor::full({3, 1000}, 16777.0);
  EXPECT_EQ(ops::sum(big, {1}).to_vector(), std::vector<double>(3, 16777000.0));
}

TEST(Reduce, SumAndMeanGradientsMatchFiniteDifferences) {
  for (const auto& dims : kDimSets) {
    for (bool keepdim : {false, true}) {
      auto sum = [&](const std::vector<Tensor>& in) { return ops::sum(in[0], dims, keepdim); };
      auto mean = [&](const std::vector<Tensor>& in) { return ops::mean(in[0], dims, keepdim); };
      EXPECT_GRADCHECK(sum, (std::vector<Tensor>{random_f64({3, 5, 7}, 5)}));
      EXPECT_GRADCHECK(mean, (std::vector<Tensor>{random_f64({3, 5, 7}, 6)}));
    }
  }
  auto all = [](const std::vector<Tensor>& in) {
    return ops::add(ops::mul(ops::sum(in[0]), 2.0), ops::mean(in[0]));
  };
  EXPECT_GRADCHECK(all, (std::vector<Tensor>{random_f64({3, 5}, 7)}));
}

TEST(Reduce, MaxGradientsMatchFiniteDifferences) {
  for (int64_t dim : {0, 1, -1}) {
    for (bool keepdim : {false, true}) {
      auto mx = [&](const std::vector<Tensor>& in) { return ops::max(in[0], dim, keepdim); };
      EXPECT_GRADCHECK(mx, (std::vector<Tensor>{random_f64({3, 5, 7}, 8)}));
    }
  }
  auto all = [](const std::vector<Tensor>& in) { return ops::max(in[0]); };
  EXPECT_GRADCHECK(all, (std::vector<Tensor>{random_f64({3, 5}, 9)}));
}

TEST(Reduce, MaxGradientGoesToTheFirstMaximalElement) {
  Tensor x = Tensor::from_vector({1, 3, 3, 2, 2, 0}, {2, 3}, DType::F64).set_requires_grad();
  ops::sum(ops::max(x, 1)).backward();
  EXPECT_EQ(x.grad().to_vector(), (std::vector<double>{0, 1, 0, 1, 0, 0}));
  EXPECT_EQ(ops::argmax(x, 1).to_vector_i64(), (std::vector<int64_t>{1, 0}));

  Tensor y = Tensor::from_vector({5, 1, 5, 2}, {2, 2}, DType::F64).set_requires_grad();
  ops::sum(ops::max(y, 0, /*keepdim=*/true)).backward();
  EXPECT_EQ(y.grad().to_vector(), (std::vector<double>{1, 0, 0, 1}));

  Tensor z = Tensor::from_vector({2, 7, 7, 1}, {4}, DType::F64).set_requires_grad();
  ops::max(z).backward();
  EXPECT_EQ(z.grad().to_vector(), (std::vector<double>{0, 1, 0, 0}));
}

TEST(Reduce, SumWithNothingToReduceReturnsANewTensor) {
  Tensor scalar = Tensor::full({}, 2.0, DType::F64).set_requires_grad();
  const Tensor s = ops::sum(scalar);
  EXPECT_FALSE(s.shares_storage(scalar));
  scalar.fill_(5.0);  // e.g. an optimizer step on a 0-dim parameter
  EXPECT_EQ(s.item(), 2.0);
  s.backward();
  EXPECT_EQ(scalar.grad().item(), 1.0);
  const Tensor x = Tensor::ones({2, 3});
  EXPECT_FALSE(ops::sum(x, {}).shares_storage(x));
  EXPECT_EQ(ops::sum(x, {}).to_vector(), x.to_vector());
}

TEST(Reduce, MaxPropagatesNaN) {
  const Tensor x = Tensor::from_vector({1, NAN, 3}, {3});
  EXPECT_TRUE(std::isnan(ops::max(x).item()));
}

TEST(Reduce, RejectsRepeatedOutOfRangeAndEmptyDims) {
  const Tensor x = Tensor::ones({3, 5});
  EXPECT_THROW(ops::sum(x, {1, -1}), Error);
  EXPECT_THROW(ops::sum(x, {2}), Error);
  EXPECT_THROW(ops::mean(x, {-3}), Error);
  EXPECT_THROW(ops::max(x, 2), Error);
  EXPECT_THROW(ops::max(Tensor::ones({3, 0}), 1), Error);
  EXPECT_THROW(ops::mean(Tensor::ones({0})), Error);
  try {
    ops::sum(x, {0, 0});
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("dim 0"), std::string::npos) << e.what();
  }
}

// ---- sum_of_squares (global gradient norms) --------------------------------------------------

TEST(SumOfSquares, AddsEachTensorsF64SumInOrderWithSixteenBitValuesWidenedExactly) {
  const Tensor a = random_f64({3, 5}, 1).to(DType::F32);
  const Tensor b = random_f64({7}, 2);                                       // f64
  const Tensor c = random_f64({4, 6}, 3).to(DType::BF16);                    // bf16 storage
  const Tensor view = random_f64({6, 4}, 4).to(DType::F32).transpose(0, 1);  // non-contiguous
  double expected = 0.0;  // each tensor's sequential sum, added in order
  for (const Tensor& t : {a, b, c, view}) {
    double sum = 0.0;
    for (double v : t.contiguous().to_vector())
      sum += v * v;
    expected += sum;
  }
  const Tensor total = ops::sum_of_squares({a, b, c, view});
  EXPECT_EQ(total.dim(), 0);
  EXPECT_EQ(total.dtype(), DType::F64);
  EXPECT_EQ(total.item(), expected);  // the same additions in the same order
  const double inf = std::numeric_limits<double>::infinity();
  EXPECT_FALSE(std::isfinite(
      ops::sum_of_squares({a, Tensor::from_vector({1.0, inf}, {2}, DType::F32)}).item()));
  EXPECT_TRUE(std::isnan(
      ops::sum_of_squares({Tensor::from_vector({std::nan("")}, {1}, DType::BF16)}).item()));
  EXPECT_ERROR_CONTAINS(ops::sum_of_squares({}), "no tensors");
  EXPECT_ERROR_CONTAINS(ops::sum_of_squares({a, Tensor::zeros({2}, DType::I64)}), "tensor 1");
}

}  // namespace
}  // namespace autotp
