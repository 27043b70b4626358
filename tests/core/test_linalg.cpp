// matmul, linear and linear_add against a naive triple loop (odd sizes, transposed and strided
// views, broadcast batches), their gradients by full-Jacobian checks, and their shape errors.
#include <gtest/gtest.h>

#include <cmath>
#include <string>

#include "core/ops.h"
#include "tests/support/gradcheck.h"
#include "tests/support/tolerances.h"

namespace autotp {
namespace {

using testing::random_f64;
using testing::tolerance_for;

const testing::Tolerance kExactSums{0.0, 0.0};  // integer-valued sums: exact

// Integers in [-3, 3]: f32 products and sums of them are exact, so results must match exactly.
Tensor random_ints(const Shape& shape, uint64_t seed, DType dtype = DType::F32) {
  std::vector<double> v = random_f64(shape, seed, false, -3.0, 4.0).to_vector();
  for (double& x : v)
    x = std::floor(x);
  return Tensor::from_vector(v, shape, dtype);
}

// a [..., M, K] @ b [..., K, N] by a triple loop over the logical values (to_vector is
// row-major whatever the strides), batch broadcasting resolved by index arithmetic.
Tensor naive_matmul(const Tensor& a, const Tensor& b) {
  const std::vector<double> av = a.to_vector(), bv = b.to_vector();
  const int64_t m = a.size(-2), k = a.size(-1), n = b.size(-1);
  const Shape ab(a.shape().begin(), a.shape().end() - 2),
      bb(b.shape().begin(), b.shape().end() - 2);
  const size_t nb = std::max(ab.size(), bb.size());
  auto size_at = [nb](const Shape& s, size_t i) {
    return i < nb - s.size() ? int64_t{1} : s[i - (nb - s.size())];
  };
  Shape batch(nb);
  for (size_t i = 0; i < nb; ++i)
    batch[i] = std::max(size_at(ab, i), size_at(bb, i));
  Shape out_shape = batch;
  out_shape.insert(out_shape.end(), {m, n});
  std::vector<double> out(static_cast<size_t>(shape_numel(out_shape)));
  const int64_t batches = shape_numel(batch);
  for (int64_t ob = 0; ob < batches; ++ob) {
    // Flat batch index of a and b: row-major over their own batch shapes, 0 on size-1 dims.
    int64_t rem = ob, a_batch = 0, b_batch = 0, a_scale = 1, b_scale = 1;
    for (size_t i = nb; i-- > 0;) {
      const int64_t idx = rem % batch[i];
      rem /= batch[i];
      const int64_t sa = size_at(ab, i), sb = size_at(bb, i);
      a_batch += (sa == 1 ? 0 : idx) * a_scale;
      b_batch += (sb == 1 ? 0 : idx) * b_scale;
      a_scale *= sa;
      b_scale *= sb;
    }
    for (int64_t i = 0; i < m; ++i) {
      for (int64_t j = 0; j < n; ++j) {
        double s = 0.0;
        for (int64_t p = 0; p < k; ++p) {
          s += av[(a_batch * m + i) * k + p] * bv[(b_batch * k + p) * n + j];
        }
        out[(ob * m + i) * n + j] = s;
      }
    }
  }
  return Tensor::from_vector(out, out_shape, DType::F64);
}

// Exact comparison for integer-valued f32 inputs (the table's f32 tolerance, never needed).
void expect_matmul_matches(const Tensor& a, const Tensor& b, const std::string& what) {
  const Tensor got = ops::matmul(a, b);
  const Tensor expected = naive_matmul(a, b);
  EXPECT_TRUE(testing::all_close(got, expected, tolerance_for(a.dtype()), what));
}

TEST(Matmul, MatchesTheNaiveProductForOddSizes) {
  const std::vector<int64_t> sizes{1, 3, 7, 33, 65};
  uint64_t seed = 1;
  for (int64_t m : sizes) {
    for (int64_t k : sizes) {
      for (int64_t n : sizes) {
        const Tensor a = random_ints({m, k}, seed++), b = random_ints({k, n}, seed++);
        expect_matmul_matches(a, b,
                              "matmul " + shape_str(a.shape()) + " @ " + shape_str(b.shape()));
      }
    }
  }
}

TEST(Matmul, ReadsTransposedViewsWithoutChangingTheResult) {
  for (int64_t m : {1, 7, 33}) {
    for (int64_t k : {3, 65}) {
      for (int64_t n : {1, 7}) {
        const Tensor at = random_ints({k, m}, 10).transpose(0, 1);  // [m, k], unit row stride
        const Tensor bt = random_ints({n, k}, 11).transpose(0, 1);  // [k, n], unit row stride
        const Tensor a = random_ints({m, k}, 12), b = random_ints({k, n}, 13);
        EXPECT_FALSE(at.is_contiguous() && m > 1);
        expect_matmul_matches(at, b, "a^T view");
        expect_matmul_matches(a, bt, "b^T view");
        expect_matmul_matches(at, bt, "both transposed");
      }
    }
  }
}

TEST(Matmul, CopiesViewsWithNoUnitStrideInTheMatrixDims) {
  // select(2, 1) of [7, 5, 2] has strides [10, 2]: neither a matrix nor its transpose.
  const Tensor a = random_ints({7, 5, 2}, 20).select(2, 1);
  const Tensor b = random_ints({3, 5, 2}, 21).select(2, 0).transpose(0, 1);  // strides [2, 10]
  expect_matmul_matches(a, b, "strided views");
}

TEST(Matmul, BroadcastsBatchDims) {
  // [3, 1, 7, 5] @ [4, 5, 3] -> [3, 4, 7, 3]
  expect_matmul_matches(random_ints({3, 1, 7, 5}, 30), random_ints({4, 5, 3}, 31), "[3,1]x[4]");
  // a 2-D b shared by every batch, and a 2-D a shared by every batch of b
  expect_matmul_matches(random_ints({2, 3, 7, 5}, 32), random_ints({5, 33}, 33), "2-D b");
  expect_matmul_matches(random_ints({7, 5}, 34), random_ints({2, 5, 3}, 35), "2-D a");
  // batch of 1 against a batch of 3, and batch dims of size 1 everywhere
  expect_matmul_matches(random_ints({1, 3, 5}, 36), random_ints({3, 5, 7}, 37), "[1]x[3]");
  expect_matmul_matches(random_ints({1, 1, 3, 5}, 38), random_ints({1, 5, 7}, 39), "all ones");
  const Tensor out = ops::matmul(random_ints({3, 1, 7, 5}, 30), random_ints({4, 5, 3}, 31));
  EXPECT_EQ(out.shape(), (Shape{3, 4, 7, 3}));
}

TEST(Matmul, HandlesBatchDimsThatDoNotShareOneStride) {
  // [3, 7, 2, 5] permuted to [2, 3, 7, 5]: batch strides 5 and 70 do not nest.
  const Tensor a = random_ints({3, 7, 2, 5}, 40).permute({2, 0, 1, 3});
  expect_matmul_matches(a, random_ints({2, 3, 5, 4}, 41), "permuted batch");
  expect_matmul_matches(a, random_ints({5, 4}, 42), "permuted batch, shared b");
  // two outer batch dims looped over ([2, 3] do not nest with the broadcast [4])
  expect_matmul_matches(random_ints({2, 3, 1, 7, 5}, 45), random_ints({4, 5, 3}, 46),
                        "[2,3,1]x[4]");
  expect_matmul_matches(random_ints({4, 7, 5}, 49), random_ints({2, 3, 1, 5, 3}, 50),
                        "[4]x[2,3,1]");
  // rows narrowed out of each matrix: the batch is not an even stack of [7, 5] matrices
  const Tensor an = random_ints({3, 9, 5}, 47).narrow(1, 1, 7);
  expect_matmul_matches(an, random_ints({5, 4}, 48), "narrowed rows, shared b");
  // transposed matrices inside a batch, shared b (no folding into one GEMM possible)
  const Tensor at = random_ints({2, 5, 7}, 43).transpose(-1, -2);
  expect_matmul_matches(at, random_ints({5, 3}, 44), "batched a^T, shared b");
}

TEST(Matmul, ReadsExpandedMatricesWithZeroStrides) {
  const Tensor row = random_ints({1, 5}, 55).expand({7, 5});  // strides [0, 1]
  const Tensor col = random_ints({5, 1}, 56).expand({5, 3});  // strides [1, 0]
  expect_matmul_matches(row, col, "expanded rows @ expanded cols");
  expect_matmul_matches(col.transpose(0, 1), row.transpose(0, 1), "their transposes");
  // every batch and row of a is the same vector, b shared
  expect_matmul_matches(random_ints({5}, 57).expand({2, 3, 5}), random_ints({5, 4}, 58),
                        "fully expanded a");
}

TEST(Matmul, F64FractionalValuesMatchWithinTheF64Tolerance) {
  const Tensor a = random_f64({2, 33, 65}, 50, false), b = random_f64({65, 7}, 51, false);
  EXPECT_ALL_CLOSE(ops::matmul(a, b), naive_matmul(a, b), tolerance_for(DType::F64));
}

TEST(Matmul, EmptyInnerDimGivesZeros) {
  const Tensor out = ops::matmul(Tensor::ones({3, 0}), Tensor::ones({0, 4}));
  EXPECT_EQ(out.shape(), (Shape{3, 4}));
  EXPECT_EQ(out.to_vector(), std::vector<double>(12, 0.0));
}

TEST(Matmul, GradientsMatchFiniteDifferences) {
  auto mm = [](const std::vector<Tensor>& in) { return ops::matmul(in[0], in[1]); };
  EXPECT_GRADCHECK(mm, (std::vector<Tensor>{random_f64({3, 5}, 1), random_f64({5, 7}, 2)}));
  // broadcast batches: dA sums over b's batch, dB over a's
  EXPECT_GRADCHECK(mm,
                   (std::vector<Tensor>{random_f64({2, 1, 3, 5}, 3), random_f64({3, 5, 2}, 4)}));
  // 2-D b shared by the batch (dB is one GEMM over all rows), and 2-D a shared by b's batch
  EXPECT_GRADCHECK(mm, (std::vector<Tensor>{random_f64({2, 3, 5}, 5), random_f64({5, 3}, 6)}));
  EXPECT_GRADCHECK(mm, (std::vector<Tensor>{random_f64({3, 5}, 7), random_f64({2, 5, 3}, 8)}));
  // only one operand requiring a gradient
  EXPECT_GRADCHECK(mm, (std::vector<Tensor>{random_f64({3, 5}, 9, false), random_f64({5, 3}, 10)}));
}

TEST(Matmul, GradientsFlowThroughTransposedInputs) {
  auto mm = [](const std::vector<Tensor>& in) {
    return ops::matmul(in[0].transpose(0, 1), in[1].transpose(-1, -2));
  };
  EXPECT_GRADCHECK(mm, (std::vector<Tensor>{random_f64({5, 3}, 11), random_f64({2, 7, 5}, 12)}));
}

TEST(Matmul, RejectsMismatchedShapesNamingBoth) {
  try {
    ops::matmul(Tensor::ones({3, 5}), Tensor::ones({4, 7}));
    FAIL() << "expected an error";
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("[3, 5]"), std::string::npos) << msg;
    EXPECT_NE(msg.find("[4, 7]"), std::string::npos) << msg;
  }
  try {
    ops::matmul(Tensor::ones({2, 3, 5}), Tensor::ones({3, 5, 7}));
    FAIL() << "expected an error";
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("[2, 3, 5]"), std::string::npos) << msg;
    EXPECT_NE(msg.find("[3, 5, 7]"), std::string::npos) << msg;
  }
  EXPECT_THROW(ops::matmul(Tensor::ones({5}), Tensor::ones({5, 2})), Error);
  EXPECT_THROW(ops::matmul(Tensor::ones({2, 5}), Tensor::ones({5, 2}, DType::F64)), Error);
}

// x [..., in] @ W^T + bias by a naive loop.
Tensor naive_linear(const Tensor& x, const Tensor& w, const Tensor& bias) {
  const std::vector<double> xv = x.to_vector(), wv = w.to_vector();
  const std::vector<double> bv = bias.defined() ? bias.to_vector() : std::vector<double>();
  const int64_t out_f = w.size(0), in_f = w.size(1), rows = x.numel() / in_f;
  std::vector<double> out(static_cast<size_t>(rows * out_f));
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t o = 0; o < out_f; ++o) {
      double s = bv.empty() ? 0.0 : bv[o];
      for (int64_t i = 0; i < in_f; ++i)
        s += xv[r * in_f + i] * wv[o * in_f + i];
      out[r * out_f + o] = s;
    }
  }
  Shape shape = x.shape();
  shape.back() = out_f;
  return Tensor::from_vector(out, shape, DType::F64);
}

TEST(Linear, MatchesTheNaiveLoopWithAndWithoutBias) {
  const Tensor x = random_ints({2, 3, 5}, 60), w = random_ints({7, 5}, 61),
               b = random_ints({7}, 62);
  EXPECT_ALL_CLOSE(ops::linear(x, w, b), naive_linear(x, w, b), tolerance_for(DType::F32));
  EXPECT_ALL_CLOSE(ops::linear(x, w), naive_linear(x, w, Tensor()), tolerance_for(DType::F32));
  // a 1-D input, a transposed input and a transposed weight
  const Tensor x1 = random_ints({5}, 63);
  EXPECT_ALL_CLOSE(ops::linear(x1, w, b), naive_linear(x1, w, b), tolerance_for(DType::F32));
  const Tensor xt = random_ints({5, 33}, 64).transpose(0, 1);  // [33, 5]
  const Tensor wt = random_ints({5, 7}, 65).transpose(0, 1);   // [7, 5]
  EXPECT_ALL_CLOSE(ops::linear(xt, wt, b), naive_linear(xt, wt, b), tolerance_for(DType::F32));
  EXPECT_EQ(ops::linear(x, w, b).shape(), (Shape{2, 3, 7}));
}

TEST(Linear, GradientsMatchFiniteDifferences) {
  auto with_bias = [](const std::vector<Tensor>& in) { return ops::linear(in[0], in[1], in[2]); };
  auto no_bias = [](const std::vector<Tensor>& in) { return ops::linear(in[0], in[1]); };
  EXPECT_GRADCHECK(with_bias, (std::vector<Tensor>{random_f64({2, 3, 5}, 70),
                                                   random_f64({7, 5}, 71), random_f64({7}, 72)}));
  EXPECT_GRADCHECK(no_bias, (std::vector<Tensor>{random_f64({3, 5}, 73), random_f64({3, 5}, 74)}));
  EXPECT_GRADCHECK(with_bias, (std::vector<Tensor>{random_f64({5}, 75), random_f64({3, 5}, 76),
                                                   random_f64({3}, 77)}));
  // a frozen weight: only x and the bias get gradients
  EXPECT_GRADCHECK(with_bias,
                   (std::vector<Tensor>{random_f64({3, 5}, 78), random_f64({7, 5}, 79, false),
                                        random_f64({7}, 80)}));
}

TEST(Linear, BiasGradientIsTheSumOverAllRows) {
  Tensor x = random_f64({2, 3, 5}, 81), w = random_f64({4, 5}, 82), b = random_f64({4}, 83);
  ops::sum(ops::linear(x, w, b)).backward();
  EXPECT_EQ(b.grad().to_vector(), std::vector<double>(4, 6.0));  // 2 * 3 rows, each gradient 1
}

TEST(Linear, RejectsMismatchedShapesNamingBoth) {
  try {
    ops::linear(Tensor::ones({2, 3, 5}), Tensor::ones({7, 4}));
    FAIL() << "expected an error";
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("[2, 3, 5]"), std::string::npos) << msg;
    EXPECT_NE(msg.find("[7, 4]"), std::string::npos) << msg;
  }
  try {
    ops::linear(Tensor::ones({3, 5}), Tensor::ones({7, 5}), Tensor::ones({5}));
    FAIL() << "expected an error";
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("[5]"), std::string::npos) << msg;
    EXPECT_NE(msg.find("[7, 5]"), std::string::npos) << msg;
  }
  EXPECT_THROW(ops::linear(Tensor::ones({3, 5}), Tensor::ones({5})), Error);
}

TEST(LinearAdd, EqualsTheResidualPlusTheNaiveLinear) {
  // Integer values: exact in f32 whatever the order of the sums.
  const Tensor x = random_ints({2, 3, 5}, 90), w = random_ints({7, 5}, 91),
               b = random_ints({7}, 92), r = random_ints({2, 3, 7}, 93);
  const Tensor naive = ops::add(r.to(DType::F64), naive_linear(x, w, b));
  EXPECT_ALL_CLOSE(ops::linear_add(x, w, b, r), naive, kExactSums);
  EXPECT_ALL_CLOSE(ops::linear_add(x, w, Tensor(), r),
                   ops::add(r.to(DType::F64), naive_linear(x, w, Tensor())), kExactSums);
  // A residual viewed through a transpose (copied for the GEMM) gives the same sums.
  const Tensor rt = random_ints({7, 3}, 94).transpose(0, 1);  // [3, 7]
  const Tensor x2 = random_ints({3, 5}, 95);
  EXPECT_ALL_CLOSE(ops::linear_add(x2, w, Tensor(), rt),
                   ops::add(rt.to(DType::F64), naive_linear(x2, w, Tensor())), kExactSums);
  // The residual's own values are left alone.
  EXPECT_EQ(r.to_vector(), random_ints({2, 3, 7}, 93).to_vector());
}

TEST(LinearAdd, GradientsMatchFiniteDifferences) {
  auto with_bias = [](const std::vector<Tensor>& in) {
    return ops::linear_add(in[0], in[1], in[2], in[3]);
  };
  auto no_bias = [](const std::vector<Tensor>& in) {
    return ops::linear_add(in[0], in[1], Tensor(), in[2]);
  };
  EXPECT_GRADCHECK(with_bias,
                   (std::vector<Tensor>{random_f64({2, 3, 5}, 96), random_f64({7, 5}, 97),
                                        random_f64({7}, 98), random_f64({2, 3, 7}, 99)}));
  EXPECT_GRADCHECK(no_bias, (std::vector<Tensor>{random_f64({3, 5}, 100), random_f64({4, 5}, 101),
                                                 random_f64({3, 4}, 102)}));
}

TEST(LinearAdd, RejectsAResidualOfAnotherShapeNamingIt) {
  try {
    ops::linear_add(Tensor::ones({3, 5}), Tensor::ones({7, 5}), Tensor(), Tensor::ones({3, 6}));
    FAIL() << "expected an error";
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("residual shape [3, 6]"), std::string::npos) << msg;
    EXPECT_NE(msg.find("[3, 7]"), std::string::npos) << msg;
  }
  EXPECT_THROW(ops::linear_add(Tensor::ones({3, 5}), Tensor::ones({7, 5}), Tensor(),
                               Tensor::ones({3, 7}, DType::F64)),
               Error);
}

}  // namespace
}  // namespace autotp
