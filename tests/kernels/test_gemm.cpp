// The CPU GEMM kernel against a naive triple loop: transposes, leading dimensions, alpha/beta,
// block-boundary sizes and the strided-batched variant with shared (stride 0) operands.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <vector>

#include "kernels/cpu/gemm.h"

namespace autotp {
namespace {

using kernels::cpu::gemm;
using kernels::cpu::gemm_strided_batched;

// Small integers in [-3, 3] (exact in f32 sums of a few thousand products), or, with
// `fractional`, values in (-1, 1) with many mantissa bits.
template <typename T>
std::vector<T> make_values(int64_t n, uint32_t seed, bool fractional = false) {
  std::vector<T> v(static_cast<size_t>(n));
  uint32_t s = seed * 2654435761u + 12345u;
  for (auto& x : v) {
    s = s * 1664525u + 1013904223u;
    x = fractional ? static_cast<T>((static_cast<double>(s >> 8) / (1 << 24)) * 2.0 - 1.0)
                   : static_cast<T>(static_cast<int>((s >> 16) % 7) - 3);
  }
  return v;
}

// One GEMM problem in the kernel's row-major conventions, with a naive double reference.
struct GemmCase {
  int64_t m, n, k;
  bool trans_a, trans_b;
  int64_t pad = 0;  // extra elements per row beyond the minimum leading dimension

  int64_t lda() const { return (trans_a ? m : k) + pad; }
  int64_t ldb() const { return (trans_b ? k : n) + pad; }
  int64_t ldc() const { return n + pad; }
  int64_t a_size() const { return (trans_a ? k : m) * lda(); }
  int64_t b_size() const { return (trans_b ? n : k) * ldb(); }
  int64_t c_size() const { return m * ldc(); }

  // C = alpha * op(A) op(B) + beta * C, summed in double; padding of C is left untouched.
  template <typename T>
  std::vector<double> reference(const std::vector<T>& a, const std::vector<T>& b,
                                const std::vector<T>& c, double alpha, double beta) const {
    std::vector<double> out(c.begin(), c.end());
    for (int64_t i = 0; i < m; ++i) {
      for (int64_t j = 0; j < n; ++j) {
        double s = 0.0;
        for (int64_t p = 0; p < k; ++p) {
          const double av = trans_a ? a[p * lda() + i] : a[i * lda() + p];
          const double bv = trans_b ? b[j * ldb() + p] : b[p * ldb() + j];
          s += av * bv;
        }
        const double old = beta == 0.0 ? 0.0 : beta * static_cast<double>(c[i * ldc() + j]);
        out[i * ldc() + j] = alpha * s + old;
      }
    }
    return out;
  }
};

std::string describe(const GemmCase& g) {
  return "m=" + std::to_string(g.m) + " n=" + std::to_string(g.n) + " k=" + std::to_string(g.k) +
         " trans_a=" + std::to_string(g.trans_a) + " trans_b=" + std::to_string(g.trans_b) +
         " pad=" + std::to_string(g.pad);
}

// Runs the kernel on integer-valued inputs and demands the exact reference result.
template <typename T>
void expect_exact(const GemmCase& g, T alpha, T beta) {
  const auto a = make_values<T>(g.a_size(), 1);
  const auto b = make_values<T>(g.b_size(), 2);
  auto c = make_values<T>(g.c_size(), 3);
  const std::vector<double> expected = g.reference(a, b, c, alpha, beta);
  gemm<T>(c.data(), g.ldc(), a.data(), g.lda(), g.trans_a, b.data(), g.ldb(), g.trans_b, g.m, g.n,
          g.k, alpha, beta);
  for (size_t i = 0; i < c.size(); ++i) {
    ASSERT_EQ(static_cast<double>(c[i]), expected[i]) << describe(g) << " at flat index " << i;
  }
}

TEST(CpuGemm, MatchesTheNaiveProductForEveryTransposeAndOddSizes) {
  for (bool ta : {false, true}) {
    for (bool tb : {false, true}) {
      for (int64_t m : {1, 3, 7, 33, 65}) {
        for (int64_t n : {1, 7, 33, 65}) {
          for (int64_t k : {1, 3, 33, 65}) {
            expect_exact<float>({m, n, k, ta, tb}, 1.0f, 0.0f);
          }
        }
      }
    }
  }
}

TEST(CpuGemm, HonoursLeadingDimensionsLargerThanTheRows) {
  for (bool ta : {false, true}) {
    for (bool tb : {false, true}) {
      expect_exact<float>({7, 5, 3, ta, tb, /*pad=*/4}, 1.0f, 0.0f);
      expect_exact<double>({33, 9, 17, ta, tb, /*pad=*/3}, 1.0, 1.0);
    }
  }
}

TEST(CpuGemm, CrossesEveryCacheBlockBoundary) {
  // K beyond one K-block (256), M beyond one M-block (64), N beyond one N-block (1024).
  expect_exact<float>({70, 9, 300, false, false}, 1.0f, 0.0f);
  expect_exact<float>({67, 11, 513, true, true}, 1.0f, 1.0f);
  expect_exact<double>({3, 1030, 5, false, true}, 1.0, 0.0);
}

TEST(CpuGemm, AppliesAlphaAndBetaToTheProductAndTheOldC) {
  for (bool ta : {false, true}) {
    for (bool tb : {false, true}) {
      expect_exact<float>({5, 7, 3, ta, tb}, 2.0f, -0.5f);
      expect_exact<float>({5, 7, 3, ta, tb}, -1.0f, 1.0f);
      expect_exact<double>({3, 5, 7, ta, tb}, 0.5, 3.0);
    }
  }
}

TEST(CpuGemm, BetaZeroOverwritesCWithoutReadingNaNs) {
  const GemmCase g{3, 5, 7, false, false};
  const auto a = make_values<float>(g.a_size(), 1), b = make_values<float>(g.b_size(), 2);
  std::vector<float> c(g.c_size(), std::numeric_limits<float>::quiet_NaN());
  gemm<float>(c.data(), g.ldc(), a.data(), g.lda(), false, b.data(), g.ldb(), false, g.m, g.n, g.k,
              1.0f, 0.0f);
  const std::vector<double> expected = g.reference(a, b, std::vector<float>(c.size(), 0.0f), 1, 0);
  for (size_t i = 0; i < c.size(); ++i)
    EXPECT_EQ(static_cast<double>(c[i]), expected[i]) << i;
}

TEST(CpuGemm, EmptyKScalesCByBetaAndZeroAlphaSkipsTheProduct) {
  std::vector<double> c{1, 2, 3, 4, 5, 6};
  const std::vector<double> none;
  gemm<double>(c.data(), 3, none.data(), 0, false, none.data(), 3, false, 2, 3, 0, 1.0, 2.0);
  EXPECT_EQ(c, (std::vector<double>{2, 4, 6, 8, 10, 12}));
  const std::vector<double> a(6, std::numeric_limits<double>::infinity()), b(9, 1.0);
  gemm<double>(c.data(), 3, a.data(), 3, false, b.data(), 3, false, 2, 3, 3, 0.0, 0.5);
  EXPECT_EQ(c, (std::vector<double>{1, 2, 3, 4, 5, 6}));
}

TEST(CpuGemm, FractionalF64InputsMatchTheReferenceWithinTheF64Tolerance) {
  const GemmCase g{33, 7, 65, true, false};
  const auto a = make_values<double>(g.a_size(), 4, true);
  const auto b = make_values<double>(g.b_size(), 5, true);
  auto c = make_values<double>(g.c_size(), 6, true);
  const std::vector<double> expected = g.reference(a, b, c, 1.5, 0.25);
  gemm<double>(c.data(), g.ldc(), a.data(), g.lda(), true, b.data(), g.ldb(), false, g.m, g.n, g.k,
               1.5, 0.25);
  // f64 table tolerance (atol 1e-11, rtol 1e-11); 65-term sums of O(1) products err ~1e-14.
  for (size_t i = 0; i < c.size(); ++i) {
    EXPECT_NEAR(c[i], expected[i], 1e-11 + 1e-11 * std::fabs(expected[i])) << i;
  }
}

TEST(CpuGemm, StridedBatchedRunsEachMatrixAndSharesStrideZeroOperands) {
  const int64_t batch = 3;
  for (bool ta : {false, true}) {
    for (bool tb : {false, true}) {
      const GemmCase g{5, 7, 3, ta, tb, /*pad=*/1};
      // A per batch with a gap of 2 elements between matrices; B shared (stride 0);
      // C per batch, back to back.
      const int64_t stride_a = g.a_size() + 2, stride_c = g.c_size();
      const auto a = make_values<float>(stride_a * batch, 7);
      const auto b = make_values<float>(g.b_size(), 8);
      auto c = make_values<float>(stride_c * batch, 9);
      std::vector<std::vector<double>> expected;
      for (int64_t i = 0; i < batch; ++i) {
        const std::vector<float> ai(a.begin() + i * stride_a,
                                    a.begin() + i * stride_a + g.a_size());
        const std::vector<float> ci(c.begin() + i * stride_c, c.begin() + (i + 1) * stride_c);
        expected.push_back(g.reference(ai, b, ci, 2.0, 1.0));
      }
      gemm_strided_batched<float>(c.data(), g.ldc(), stride_c, a.data(), g.lda(), stride_a, ta,
                                  b.data(), g.ldb(), 0, tb, g.m, g.n, g.k, 2.0f, 1.0f, batch);
      for (int64_t i = 0; i < batch; ++i) {
        for (int64_t e = 0; e < stride_c; ++e) {
          ASSERT_EQ(static_cast<double>(c[i * stride_c + e]), expected[i][e])
              << describe(g) << " batch " << i << " element " << e;
        }
      }
    }
  }
}

TEST(CpuGemm, StridedBatchedCanShareTheLeftOperand) {
  const GemmCase g{4, 3, 5, false, false};
  const int64_t batch = 2;
  const auto a = make_values<double>(g.a_size(), 10);
  const auto b = make_values<double>(g.b_size() * batch, 11);
  std::vector<double> c(g.c_size() * batch, 0.0);
  gemm_strided_batched<double>(c.data(), g.ldc(), g.c_size(), a.data(), g.lda(), 0, false, b.data(),
                               g.ldb(), g.b_size(), false, g.m, g.n, g.k, 1.0, 0.0, batch);
  for (int64_t i = 0; i < batch; ++i) {
    const std::vector<double> bi(b.begin() + i * g.b_size(), b.begin() + (i + 1) * g.b_size());
    const auto expected = g.reference(a, bi, std::vector<double>(g.c_size(), 0.0), 1.0, 0.0);
    for (int64_t e = 0; e < g.c_size(); ++e)
      EXPECT_EQ(c[i * g.c_size() + e], expected[e]);
  }
}

}  // namespace
}  // namespace autotp
