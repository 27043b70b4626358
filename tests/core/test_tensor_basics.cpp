// Tensor factories, views that share storage, contiguous(), dtype conversion and printing.
#include <gtest/gtest.h>

#include <cmath>

#include "core/ops.h"
#include "tests/support/tolerances.h"

namespace autotp {
namespace {

Tensor iota(const Shape& shape, DType dtype = DType::F32) {
  std::vector<double> v(shape_numel(shape));
  for (size_t i = 0; i < v.size(); ++i)
    v[i] = static_cast<double>(i);
  return Tensor::from_vector(v, shape, dtype);
}

TEST(TensorFactories, ZerosOnesFullArangeHaveTheRequestedValues) {
  EXPECT_EQ(Tensor::zeros({2, 3}).to_vector(), std::vector<double>(6, 0.0));
  EXPECT_EQ(Tensor::ones({4}, DType::BF16).to_vector(), std::vector<double>(4, 1.0));
  EXPECT_EQ(Tensor::full({2}, 2.5, DType::F64).to_vector(), (std::vector<double>{2.5, 2.5}));
  EXPECT_EQ(Tensor::arange(5).to_vector_i64(), (std::vector<int64_t>{0, 1, 2, 3, 4}));
  EXPECT_EQ(Tensor::arange(1.0, 2.0, 0.25).to_vector(),
            (std::vector<double>{1.0, 1.25, 1.5, 1.75}));
  EXPECT_EQ(Tensor::arange(3).dtype(), DType::I64);
}

TEST(TensorFactories, FromVectorRejectsAWrongElementCount) {
  EXPECT_THROW(Tensor::from_vector({1, 2, 3}, {2, 2}), Error);
}

TEST(TensorViews, TransposeSharesStorageAndContiguousCopies) {
  Tensor a = iota({2, 3});
  Tensor t = a.transpose(0, 1);
  EXPECT_TRUE(t.shares_storage(a));
  EXPECT_FALSE(t.is_contiguous());
  EXPECT_EQ(t.shape(), (Shape{3, 2}));
  EXPECT_EQ(t.to_vector(), (std::vector<double>{0, 3, 1, 4, 2, 5}));
  Tensor c = t.contiguous();
  EXPECT_TRUE(c.is_contiguous());
  EXPECT_FALSE(c.shares_storage(a));
  EXPECT_EQ(c.to_vector(), t.to_vector());
}

TEST(TensorViews, NarrowSelectUnsqueezeSqueezeExpandAndPermute) {
  Tensor a = iota({2, 3, 4});
  EXPECT_EQ(a.narrow(2, 1, 2).to_vector(),
            (std::vector<double>{1, 2, 5, 6, 9, 10, 13, 14, 17, 18, 21, 22}));
  EXPECT_EQ(a.select(1, -1).to_vector(), (std::vector<double>{8, 9, 10, 11, 20, 21, 22, 23}));
  EXPECT_EQ(a.unsqueeze(1).shape(), (Shape{2, 1, 3, 4}));
  EXPECT_EQ(a.unsqueeze(-1).shape(), (Shape{2, 3, 4, 1}));
  EXPECT_EQ(a.unsqueeze(1).squeeze(1).shape(), (Shape{2, 3, 4}));
  EXPECT_THROW(a.squeeze(0), Error);
  Tensor row = iota({1, 3});
  Tensor e = row.expand({2, 3});
  EXPECT_TRUE(e.shares_storage(row));
  EXPECT_EQ(e.strides()[0], 0);
  EXPECT_EQ(e.to_vector(), (std::vector<double>{0, 1, 2, 0, 1, 2}));
  EXPECT_THROW(row.expand({2, 4}), Error);
  Tensor p = a.permute({2, 0, 1});
  EXPECT_EQ(p.shape(), (Shape{4, 2, 3}));
  EXPECT_EQ(p.select(0, 1).to_vector(), (std::vector<double>{1, 5, 9, 13, 17, 21}));
  EXPECT_THROW(a.narrow(1, 2, 2), Error);
}

TEST(TensorViews, ViewAndReshapeInferMinusOneAndReshapeCopiesWhenNeeded) {
  Tensor a = iota({2, 6});
  Tensor v = a.view({3, -1});
  EXPECT_EQ(v.shape(), (Shape{3, 4}));
  EXPECT_TRUE(v.shares_storage(a));
  Tensor t = a.transpose(0, 1);  // [6, 2], not viewable as [12]
  EXPECT_THROW(t.view({12}), Error);
  Tensor r = t.reshape({12});
  EXPECT_FALSE(r.shares_storage(a));
  EXPECT_EQ(r.to_vector(), t.contiguous().to_vector());
  EXPECT_THROW(a.view({5, -1}), Error);
  // A view of a narrowed tensor splits a dim that stays contiguous.
  Tensor n = iota({4, 6}).narrow(1, 0, 4).view({4, 2, 2});
  EXPECT_EQ(n.select(0, 1).to_vector(), (std::vector<double>{6, 7, 8, 9}));
}

TEST(TensorDType, ConversionsRoundTripAndRoundToNearestEven) {
  Tensor a = Tensor::from_vector({1.0, -2.5, 3.0e-8, 65504.0, 1.0 + 1.0 / 512}, {5});
  EXPECT_EQ(a.to(DType::F16).to(DType::F32).to_vector()[3], 65504.0);
  // bf16 keeps 8 mantissa bits: 1 + 2^-9 rounds to 1 (ties to even).
  EXPECT_EQ(a.to(DType::BF16).to_vector()[4], 1.0);
  EXPECT_EQ(a.to(DType::F64).to_vector()[1], -2.5);
  EXPECT_EQ(Tensor::from_vector({2.7, -1.2}, {2}).to(DType::I32).to_vector_i64(),
            (std::vector<int64_t>{2, -1}));
  // f16 subnormals (smallest 2^-24): 3e-8 lies above the halfway point 2^-25 and rounds up to
  // 2^-24; the ties 2^-25 and 3 x 2^-25 go to the even neighbour (0 and 2 x 2^-24). A conversion
  // that flushes subnormals or truncates fails one of them.
  EXPECT_EQ(a.to(DType::F16).to_vector()[2], std::ldexp(1.0, -24));
  const Tensor ties = Tensor::from_vector({std::ldexp(1.0, -25), std::ldexp(3.0, -25)}, {2});
  EXPECT_EQ(ties.to(DType::F16).to_vector(), (std::vector<double>{0.0, std::ldexp(1.0, -23)}));
  EXPECT_EQ(dtype_from_name("bfloat16"), DType::BF16);
  EXPECT_THROW(dtype_from_name("float8"), Error);
}

TEST(TensorPrinting, ShowsDTypeShapeDeviceAndAbbreviatesLongDims) {
  const std::string s = iota({2, 10}).str();
  EXPECT_NE(s.find("dtype=f32"), std::string::npos);
  EXPECT_NE(s.find("shape=[2, 10]"), std::string::npos);
  EXPECT_NE(s.find("device=cpu"), std::string::npos);
  EXPECT_NE(s.find("..."), std::string::npos);
  EXPECT_NE(s.find("[[0, 1, 2, ..., 7, 8, 9]"), std::string::npos) << s;
}

TEST(TensorCuda, CudaTensorsFailClearlyWithoutAGpu_CUDA) {
  if (cuda_available()) GTEST_SKIP() << "a GPU is present; covered by the CUDA suites";
  try {
    Tensor::zeros({2}, DType::F32, Device::cuda());
    FAIL() << "expected an error";
  } catch (const std::exception& e) {
    EXPECT_NE(std::string(e.what()).find("CUDA"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace autotp
