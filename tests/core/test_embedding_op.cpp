// embedding: row lookup for ids of any shape and dtype, scatter-add backward with repeated
// ids, a full-Jacobian gradient check and errors naming the bad id.
#include <gtest/gtest.h>

#include <vector>

#include "core/ops.h"
#include "tests/core/nn_test_helpers.h"
#include "tests/support/gradcheck.h"
#include "tests/support/tolerances.h"

namespace autotp {
namespace {

using testing::random_tensor;

TEST(Embedding, LooksUpTheRowOfEveryIdKeepingTheIdsShape) {
  const Tensor weight = random_tensor({5, 3}, 60, DType::F32);
  const std::vector<double> w = weight.to_vector();
  const std::vector<int64_t> ids{4, 0, 2, 2, 1, 4};
  for (DType index_dtype : {DType::I64, DType::I32}) {
    const Tensor out = ops::embedding(weight, Tensor::from_vector_i64(ids, {2, 3}, index_dtype));
    ASSERT_EQ(out.shape(), (Shape{2, 3, 3}));
    std::vector<double> expected;
    for (int64_t id : ids) {
      for (int64_t j = 0; j < 3; ++j)
        expected.push_back(w[id * 3 + j]);
    }
    EXPECT_EQ(out.to_vector(), expected);  // a gather copies values exactly
  }
  const Tensor scalar_id = Tensor::from_vector_i64({3}, {});
  EXPECT_EQ(ops::embedding(weight, scalar_id).shape(), (Shape{3}));
  EXPECT_EQ(ops::embedding(weight, scalar_id).to_vector(),
            (std::vector<double>{w[9], w[10], w[11]}));
}

TEST(Embedding, BackwardScatterAddsRowsOfRepeatedIds) {
  Tensor weight = random_tensor({5, 2}, 61, DType::F64);
  weight.set_requires_grad(true);
  const std::vector<int64_t> ids{3, 0, 3, 3};
  const Tensor out = ops::embedding(weight, Tensor::from_vector_i64(ids, {4}, DType::I32));
  const Tensor g = random_tensor({4, 2}, 62, DType::F64);
  out.backward(g);
  const std::vector<double> gv = g.to_vector();
  std::vector<double> expected(10, 0.0);
  for (size_t i = 0; i < ids.size(); ++i) {
    for (int64_t j = 0; j < 2; ++j)
      expected[ids[i] * 2 + j] += gv[i * 2 + j];
  }
  EXPECT_ALL_CLOSE(weight.grad(), Tensor::from_vector(expected, {5, 2}, DType::F64),
                   testing::tolerance_for(DType::F64));
}

TEST(Embedding, GradientMatchesFiniteDifferences) {
  const Tensor weight = testing::random_f64({5, 3}, 63);
  const Tensor ids = Tensor::from_vector_i64({1, 4, 1, 0, 4, 4}, {3, 2});
  EXPECT_GRADCHECK([ids](const std::vector<Tensor>& in) { return ops::embedding(in[0], ids); },
                   std::vector<Tensor>{weight});
}

TEST(Embedding, StridedIdsLookUpAndScatterLikeContiguousOnes) {
  // Ids are read on the host and copied to the table's device contiguous: a transposed view
  // must give what its contiguous copy gives, forward and backward.
  const Tensor ids = Tensor::from_vector_i64({4, 0, 2, 2, 1, 4}, {2, 3}).transpose(0, 1);
  ASSERT_FALSE(ids.is_contiguous());
  Tensor a = random_tensor({5, 3}, 62, DType::F64);
  Tensor b = a.clone().detach();
  a.set_requires_grad(true);
  b.set_requires_grad(true);
  const Tensor out_strided = ops::embedding(a, ids);
  const Tensor out_contiguous = ops::embedding(b, ids.contiguous());
  EXPECT_EQ(out_strided.to_vector(), out_contiguous.to_vector());
  const Tensor g = random_tensor({3, 2, 3}, 63, DType::F64);
  ops::sum(ops::mul(out_strided, g)).backward();
  ops::sum(ops::mul(out_contiguous, g)).backward();
  EXPECT_EQ(a.grad().to_vector(), b.grad().to_vector());
}

TEST(Embedding, RejectsOutOfRangeIdsAndBadArgumentsNamingThem) {
  const Tensor weight = Tensor::zeros({5, 3});
  EXPECT_ERROR_CONTAINS(ops::embedding(weight, Tensor::from_vector_i64({0, 5}, {2})), "id 5");
  EXPECT_ERROR_CONTAINS(ops::embedding(weight, Tensor::from_vector_i64({-1}, {1}, DType::I32)),
                        "id -1");
  EXPECT_ERROR_CONTAINS(ops::embedding(weight, Tensor::zeros({2})), "i64 or i32");
  EXPECT_ERROR_CONTAINS(ops::embedding(Tensor::zeros({5}), Tensor::from_vector_i64({0}, {1})),
                        "[5]");
}

}  // namespace
}  // namespace autotp
