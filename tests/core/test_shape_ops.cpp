// cat, split (by sizes and by size), chunk and index_select: values against hand-computed
// results, gradients by full-Jacobian checks, and errors that name the shapes and dims.
#include <gtest/gtest.h>

#include <string>

#include "core/ops.h"
#include "tests/support/gradcheck.h"
#include "tests/support/tolerances.h"

namespace autotp {
namespace {

using testing::random_f64;

Tensor iota(const Shape& shape, DType dtype = DType::F32) {
  std::vector<double> v(static_cast<size_t>(shape_numel(shape)));
  for (size_t i = 0; i < v.size(); ++i)
    v[i] = static_cast<double>(i);
  return Tensor::from_vector(v, shape, dtype);
}

// Expects `fn` to throw autotp::Error whose message contains every one of `parts`.
template <typename Fn>
void expect_error_mentions(Fn&& fn, const std::vector<std::string>& parts) {
  try {
    fn();
    ADD_FAILURE() << "expected an error";
  } catch (const Error& e) {
    const std::string msg = e.what();
    for (const std::string& p : parts)
      EXPECT_NE(msg.find(p), std::string::npos) << msg;
  }
}

std::vector<Shape> shapes_of(const std::vector<Tensor>& ts) {
  std::vector<Shape> out;
  for (const Tensor& t : ts)
    out.push_back(t.shape());
  return out;
}

// ---- cat -----------------------------------------------------------------------

TEST(Cat, JoinsAlongAnyDim) {
  const Tensor a = iota({2, 2}), b = Tensor::full({2, 1}, 9), c = Tensor::full({2, 3}, 7);
  EXPECT_EQ(ops::cat({a, b, c}, 1).to_vector(),
            (std::vector<double>{0, 1, 9, 7, 7, 7, 2, 3, 9, 7, 7, 7}));
  EXPECT_EQ(ops::cat({a, b, c}, -1).shape(), (Shape{2, 6}));
  EXPECT_EQ(ops::cat({a, iota({1, 2})}, 0).to_vector(), (std::vector<double>{0, 1, 2, 3, 0, 1}));
  // a single tensor and an empty piece
  EXPECT_EQ(ops::cat({a}, 0).to_vector(), a.to_vector());
  EXPECT_EQ(ops::cat({a, Tensor::empty({2, 0})}, 1).to_vector(), a.to_vector());
}

TEST(Cat, CopiesNonContiguousInputs) {
  const Tensor t = iota({3, 2}).transpose(0, 1);  // [[0, 2, 4], [1, 3, 5]]
  const Tensor out = ops::cat({t, iota({1, 3})}, 0);
  EXPECT_EQ(out.to_vector(), (std::vector<double>{0, 2, 4, 1, 3, 5, 0, 1, 2}));
  EXPECT_FALSE(out.shares_storage(t));
}

TEST(Cat, GradientNarrowsBackToEachInput) {
  auto cat1 = [](const std::vector<Tensor>& in) { return ops::cat({in[0], in[1], in[2]}, 1); };
  EXPECT_GRADCHECK(cat1, (std::vector<Tensor>{random_f64({3, 2, 5}, 1), random_f64({3, 1, 5}, 2),
                                              random_f64({3, 3, 5}, 3)}));
  auto cat_last = [](const std::vector<Tensor>& in) {
    return ops::mul(ops::cat({in[0], in[1]}, -1), ops::cat({in[1], in[0]}, -1));
  };
  EXPECT_GRADCHECK(cat_last, (std::vector<Tensor>{random_f64({3, 5}, 4), random_f64({3, 5}, 5)}));
  // one input without a gradient
  EXPECT_GRADCHECK(cat1, (std::vector<Tensor>{random_f64({3, 2, 5}, 6, false),
                                              random_f64({3, 1, 5}, 7), random_f64({3, 3, 5}, 8)}));
  Tensor a = Tensor::zeros({2}, DType::F64).set_requires_grad();
  Tensor b = Tensor::zeros({3}, DType::F64).set_requires_grad();
  ops::cat({a, b}, 0).backward(Tensor::from_vector({1, 2, 3, 4, 5}, {5}, DType::F64));
  EXPECT_EQ(a.grad().to_vector(), (std::vector<double>{1, 2}));
  EXPECT_EQ(b.grad().to_vector(), (std::vector<double>{3, 4, 5}));
}

TEST(Cat, ErrorsNameTheShapesAndDims) {
  expect_error_mentions([] { ops::cat({}, 0); }, {"at least one"});
  expect_error_mentions(
      [] {
        ops::cat({Tensor::ones({2, 3}), Tensor::ones({4, 5})}, 1);
      },
      {"[2, 3]", "[4, 5]", "dim 0"});
  expect_error_mentions(
      [] {
        ops::cat({Tensor::ones({2, 3}), Tensor::ones({2, 3, 1})}, 0);
      },
      {"[2, 3]", "[2, 3, 1]"});
  expect_error_mentions(
      [] {
        ops::cat({Tensor::ones({2}), Tensor::ones({2}, DType::F64)}, 0);
      },
      {"f64", "f32"});
  expect_error_mentions([] { ops::cat({Tensor::ones({2})}, 1); }, {"dim 1"});
}

// ---- split / chunk ------------------------------------------------------------------

TEST(Split, BySizesReturnsViewsOfTheInput) {
  const Tensor x = iota({2, 7});
  const auto pieces = ops::split(x, {2, 0, 5}, 1);
  ASSERT_EQ(pieces.size(), 3u);
  EXPECT_EQ(shapes_of(pieces), (std::vector<Shape>{{2, 2}, {2, 0}, {2, 5}}));
  EXPECT_EQ(pieces[0].to_vector(), (std::vector<double>{0, 1, 7, 8}));
  EXPECT_EQ(pieces[2].to_vector(), (std::vector<double>{2, 3, 4, 5, 6, 9, 10, 11, 12, 13}));
  for (const Tensor& p : pieces)
    EXPECT_TRUE(p.shares_storage(x));
}

TEST(Split, BySizeMakesTheLastPieceSmaller) {
  const Tensor x = iota({7, 2});
  EXPECT_EQ(shapes_of(ops::split(x, 3, 0)), (std::vector<Shape>{{3, 2}, {3, 2}, {1, 2}}));
  EXPECT_EQ(ops::split(x, 3, 0)[2].to_vector(), (std::vector<double>{12, 13}));
  EXPECT_EQ(shapes_of(ops::split(x, 7, 0)), (std::vector<Shape>{{7, 2}}));
  EXPECT_EQ(shapes_of(ops::split(x, 10, -2)), (std::vector<Shape>{{7, 2}}));
  EXPECT_EQ(shapes_of(ops::split(x, 1, 1)), (std::vector<Shape>{{7, 1}, {7, 1}}));
}

TEST(Chunk, FollowsTorchChunkSizes) {
  auto sizes = [](int64_t n, int64_t chunks) {
    std::vector<int64_t> out;
    for (const Tensor& p : ops::chunk(iota({n, 3}), chunks, 0))
      out.push_back(p.size(0));
    return out;
  };
  EXPECT_EQ(sizes(7, 3), (std::vector<int64_t>{3, 3, 1}));
  EXPECT_EQ(sizes(6, 3), (std::vector<int64_t>{2, 2, 2}));
  EXPECT_EQ(sizes(5, 4), (std::vector<int64_t>{2, 2, 1}));  // fewer pieces than asked
  EXPECT_EQ(sizes(2, 5), (std::vector<int64_t>{1, 1}));
  EXPECT_EQ(sizes(1, 1), (std::vector<int64_t>{1}));
  EXPECT_EQ(sizes(0, 3), (std::vector<int64_t>{0, 0, 0}));
  const auto pieces = ops::chunk(iota({2, 5}), 2, -1);
  EXPECT_EQ(pieces[1].to_vector(), (std::vector<double>{3, 4, 8, 9}));
}

TEST(Split, GradientsFlowBackThroughEveryPiece) {
  auto reorder = [](const std::vector<Tensor>& in) {
    const auto p = ops::split(in[0], {2, 3, 2}, 1);
    return ops::cat({ops::exp(p[2]), p[0], ops::mul(p[1], p[1])}, 1);
  };
  EXPECT_GRADCHECK(reorder, (std::vector<Tensor>{random_f64({3, 7}, 10)}));
  auto chunks = [](const std::vector<Tensor>& in) {
    const auto p = ops::chunk(in[0], 3, 0);  // sizes 3, 3, 1 of dim 0
    return ops::add(ops::mul(p[0], p[1]), p[2]);
  };
  EXPECT_GRADCHECK(chunks, (std::vector<Tensor>{random_f64({7, 5}, 11)}));
  auto by_size = [](const std::vector<Tensor>& in) {
    const auto p = ops::split(in[0], 2, -1);  // sizes 2, 2, 1
    return ops::mul(p[1], p[2]);
  };
  EXPECT_GRADCHECK(by_size, (std::vector<Tensor>{random_f64({3, 5}, 12)}));
}

TEST(Split, ErrorsNameTheShapeAndDim) {
  expect_error_mentions(
      [] {
        ops::split(Tensor::ones({3, 7}), {2, 4}, 1);
      },
      {"[3, 7]", "dim 1", "6"});
  expect_error_mentions([] { ops::split(Tensor::ones({3, 7}), {8, -1}, 1); }, {"-1"});
  expect_error_mentions([] { ops::split(Tensor::ones({3, 7}), 0, 1); }, {"[3, 7]"});
  expect_error_mentions([] { ops::split(Tensor::ones({3, 7}), 2, 2); }, {"dim 2"});
  expect_error_mentions([] { ops::chunk(Tensor::ones({3, 7}), 0, 0); }, {"[3, 7]"});
}

// ---- expand (a view, checked here with the other shape errors) ---------------------------

TEST(Expand, RejectsNegativeSizesOtherThanMinusOne) {
  const Tensor x = Tensor::ones({1, 3});
  EXPECT_EQ(x.expand({4, -1}).shape(), (Shape{4, 3}));
  expect_error_mentions([&] { x.expand({-2, 3}); }, {"[1, 3]", "[-2, 3]"});
  expect_error_mentions([&] { x.expand({2, -2, 3}); }, {"[2, -2, 3]"});
}

// ---- index_select --------------------------------------------------------------------

TEST(IndexSelect, GathersSlicesAlongAnyDimWithRepeats) {
  const Tensor x = iota({3, 4});
  const Tensor rows = Tensor::from_vector_i64({2, 0, 2}, {3});
  EXPECT_EQ(ops::index_select(x, 0, rows).to_vector(),
            (std::vector<double>{8, 9, 10, 11, 0, 1, 2, 3, 8, 9, 10, 11}));
  const Tensor cols = Tensor::from_vector_i64({3, 1}, {2}, DType::I32);
  EXPECT_EQ(ops::index_select(x, -1, cols).to_vector(), (std::vector<double>{3, 1, 7, 5, 11, 9}));
  // middle dim of a 3-D tensor, a non-contiguous input, an empty index
  const Tensor y = iota({2, 3, 2}, DType::F64);
  EXPECT_EQ(ops::index_select(y, 1, Tensor::from_vector_i64({1}, {1})).to_vector(),
            (std::vector<double>{2, 3, 8, 9}));
  EXPECT_EQ(ops::index_select(x.transpose(0, 1), 0, Tensor::from_vector_i64({1}, {1})).to_vector(),
            (std::vector<double>{1, 5, 9}));
  EXPECT_EQ(ops::index_select(x, 0, Tensor::from_vector_i64({}, {0})).shape(), (Shape{0, 4}));
}

TEST(IndexSelect, GradientScatterAddsRepeatedIndices) {
  Tensor x = Tensor::zeros({4, 2}, DType::F64).set_requires_grad();
  const Tensor index = Tensor::from_vector_i64({1, 3, 1}, {3});
  ops::index_select(x, 0, index)
      .backward(Tensor::from_vector({1, 2, 3, 4, 5, 6}, {3, 2}, DType::F64));
  EXPECT_EQ(x.grad().to_vector(), (std::vector<double>{0, 0, 6, 8, 0, 0, 3, 4}));

  for (int64_t dim : {0, 1, 2}) {
    auto fn = [dim](const std::vector<Tensor>& in) {
      const Tensor idx = Tensor::from_vector_i64({2, 0, 2, 1}, {4}, DType::I32);
      return ops::exp(ops::index_select(in[0], dim, idx));
    };
    EXPECT_GRADCHECK(fn, (std::vector<Tensor>{random_f64({3, 3, 3}, 20 + dim)}));
  }
}

TEST(IndexSelect, ErrorsNameTheIndexAndShape) {
  const Tensor x = Tensor::ones({3, 4});
  expect_error_mentions(
      [&] {
        ops::index_select(x, 1, Tensor::from_vector_i64({0, 4}, {2}));
      },
      {"index 4", "position 1", "dim 1", "[3, 4]"});
  expect_error_mentions([&] { ops::index_select(x, 0, Tensor::from_vector_i64({-1}, {1})); },
                        {"-1"});
  expect_error_mentions(
      [&] {
        ops::index_select(x, 0, Tensor::from_vector_i64({0, 1}, {1, 2}));
      },
      {"[1, 2]"});
  expect_error_mentions([&] { ops::index_select(x, 0, Tensor::ones({2})); }, {"f32"});
  expect_error_mentions([&] { ops::index_select(x, 2, Tensor::from_vector_i64({0}, {1})); },
                        {"dim 2"});
}

}  // namespace
}  // namespace autotp
