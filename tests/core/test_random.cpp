// Counter-based random fills: values depend only on (seed, offset + i), never on draw order;
// the normal fill has the requested moments and the uniform fill stays inside [lo, hi).
#include <gtest/gtest.h>

#include <cmath>

#include "core/random.h"

namespace autotp {
namespace {

std::vector<double> uniform_values(int64_t n, uint64_t seed, uint64_t offset, DType dtype,
                                   double lo = 0.0, double hi = 1.0) {
  Tensor t = Tensor::empty({n}, dtype);
  fill_uniform(t, seed, offset, lo, hi);
  return t.to_vector();
}

std::vector<double> concat(std::vector<double> a, const std::vector<double>& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

TEST(Random, TwoFillsAtConsecutiveOffsetsEqualOneFillWhateverTheOrder) {
  const std::vector<double> whole = uniform_values(200, 7, 0, DType::F64);
  const std::vector<double> second = uniform_values(100, 7, 100, DType::F64);  // drawn first
  const std::vector<double> first = uniform_values(100, 7, 0, DType::F64);
  EXPECT_EQ(concat(first, second), whole);

  Tensor normal_whole = Tensor::empty({200}, DType::F64), a = Tensor::empty({100}, DType::F64),
         b = Tensor::empty({100}, DType::F64);
  fill_normal(normal_whole, 7, 0);
  fill_normal(b, 7, 100);
  fill_normal(a, 7, 0);
  EXPECT_EQ(concat(a.to_vector(), b.to_vector()), normal_whole.to_vector());
}

TEST(Random, AGeneratorHandsOutConsecutiveCounters) {
  Generator gen(11);
  Tensor a = rand({30}, gen, DType::F64), b = rand({70}, gen, DType::F64);
  EXPECT_EQ(gen.offset(), 100u);
  EXPECT_EQ(concat(a.to_vector(), b.to_vector()), uniform_values(100, 11, 0, DType::F64));
  const std::vector<double> bv = b.to_vector();
  EXPECT_NE(a.to_vector(), std::vector<double>(bv.begin(), bv.begin() + 30));
}

TEST(Random, DifferentSeedsGiveDifferentValues) {
  const std::vector<double> a = uniform_values(1000, 1, 0, DType::F64);
  const std::vector<double> b = uniform_values(1000, 2, 0, DType::F64);
  int equal = 0;
  for (size_t i = 0; i < a.size(); ++i)
    equal += a[i] == b[i];
  EXPECT_EQ(equal, 0);
  // the seed's upper 32 bits matter too
  EXPECT_NE(uniform_values(10, 1, 0, DType::F64),
            uniform_values(10, 1 + (1ull << 32), 0, DType::F64));
}

TEST(Random, F32FillsAreTheF64FillsRounded) {
  const std::vector<double> d = uniform_values(500, 3, 40, DType::F64, -2.0, 5.0);
  const std::vector<double> f = uniform_values(500, 3, 40, DType::F32, -2.0, 5.0);
  for (size_t i = 0; i < d.size(); ++i)
    ASSERT_EQ(f[i], static_cast<double>(static_cast<float>(d[i])));
}

TEST(Random, NormalFillHasTheRequestedMeanAndStdWithinFourStandardErrors) {
  const int64_t n = 100000;
  const double mean = 2.5, std = 0.5;
  Tensor t = Tensor::empty({n}, DType::F64);
  fill_normal(t, 123, 0, mean, std);
  const std::vector<double> v = t.to_vector();
  double sum = 0.0, sum_sq = 0.0;
  for (double x : v)
    sum += x;
  const double m = sum / n;
  for (double x : v)
    sum_sq += (x - m) * (x - m);
  const double s = std::sqrt(sum_sq / (n - 1));
  EXPECT_NEAR(m, mean, 4 * std / std::sqrt(n));             // SE of the mean
  EXPECT_NEAR(s, std, 4 * std / std::sqrt(2.0 * (n - 1)));  // SE of the std (normal data)
  // and it is not degenerate: a fair share of samples beyond one std on each side
  int below = 0, above = 0;
  for (double x : v) {
    below += x < mean - std;
    above += x > mean + std;
  }
  EXPECT_NEAR(below / static_cast<double>(n), 0.1587, 0.01);
  EXPECT_NEAR(above / static_cast<double>(n), 0.1587, 0.01);
}

TEST(Random, UniformFillRespectsItsRangeAndIsFlat) {
  const int64_t n = 100000;
  const double lo = -2.0, hi = 3.0;
  const std::vector<double> v = uniform_values(n, 5, 0, DType::F64, lo, hi);
  double sum = 0.0;
  for (double x : v) {
    ASSERT_GE(x, lo);
    ASSERT_LT(x, hi);
    sum += x;
  }
  EXPECT_NEAR(sum / n, (lo + hi) / 2, 4 * (hi - lo) / std::sqrt(12.0 * n));
  int low_half = 0;
  for (double x : v)
    low_half += x < (lo + hi) / 2;
  EXPECT_NEAR(low_half / static_cast<double>(n), 0.5, 4 * 0.5 / std::sqrt(n));
}

TEST(Random, UniformValuesThatRoundUpToHiInANarrowDTypeStayBelowHi) {
  // Counter 163350662 of seed 0 draws 1 - 10 * 2^-32 in double, which rounds to 1.0f.
  EXPECT_LT(uniform_values(1, 0, 163350662, DType::F64)[0], 1.0);
  const double f = uniform_values(1, 0, 163350662, DType::F32)[0];
  EXPECT_LT(f, 1.0);
  EXPECT_EQ(f, static_cast<double>(std::nextafter(1.0f, 0.0f)));
  // bf16 keeps 8 bits: about one draw in 512 lies within rounding distance of hi.
  for (DType dtype : {DType::BF16, DType::F16}) {
    for (double x : uniform_values(20000, 9, 0, dtype, -1.0, 1.0)) {
      ASSERT_GE(x, -1.0);
      ASSERT_LT(x, 1.0) << dtype_name(dtype);
    }
  }
  for (double x : uniform_values(20000, 9, 0, DType::BF16, -1.0, 0.0))
    ASSERT_LT(x, 0.0);
}

TEST(Random, FillsRejectNonContiguousAndIntegerTensors) {
  Tensor t = Tensor::empty({3, 4}, DType::F32).transpose(0, 1);
  EXPECT_THROW(fill_uniform(t, 0, 0), Error);
  EXPECT_THROW(fill_normal(Tensor::empty({3}, DType::I64), 0, 0), Error);
}

}  // namespace
}  // namespace autotp
