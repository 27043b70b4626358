// The portable log and cos behind the Philox normal fills (kernels/philox.h) against long
// double references, and the normal stream's first two moments.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>

#include "kernels/philox.h"

namespace autotp {
namespace {

// Units in the last place of `reference` (a double) that `value` is away from it.
double ulps_from(double value, long double reference) {
  const double ref = static_cast<double>(reference);
  const double ulp = std::nextafter(std::fabs(ref), INFINITY) - std::fabs(ref);
  return static_cast<double>(std::fabs(static_cast<long double>(value) - reference)) / ulp;
}

TEST(PhiloxMath, PortableLogIsWithinThreeUlpsOverTheUniformGrid) {
  // u = k / 2^32 for k spread over [1, 2^32], plus the ends and the sqrt(1/2) split point.
  double worst = 0.0;
  auto check = [&](double u) {
    if (u == 1.0) {
      EXPECT_EQ(philox::log_portable(u), 0.0);
      return;
    }
    const double err = ulps_from(philox::log_portable(u), std::log(static_cast<long double>(u)));
    worst = std::max(worst, err);
    ASSERT_LE(err, 3.0) << "u = " << u;
  };
  for (uint64_t k = 1; k <= (uint64_t(1) << 32); k += 65521 * 13)
    check(k / 4294967296.0);
  for (uint64_t k : {uint64_t(1), uint64_t(2), uint64_t(3), uint64_t(3037000499),
                     uint64_t(3037000500), (uint64_t(1) << 31), (uint64_t(1) << 32) - 1}) {
    check(static_cast<double>(k) / 4294967296.0);
  }
  EXPECT_GT(worst, 0.0);  // the reference is not trivially hit
}

TEST(PhiloxMath, PortableCosOfTwoPiUIsWithinTwoToTheMinus52Absolute) {
  const long double two_pi = 6.283185307179586476925286766559L;
  double worst = 0.0;
  for (uint64_t k = 0; k <= (uint64_t(1) << 32); k += 65521 * 7) {
    const double u = static_cast<double>(k) / 4294967296.0;
    const long double reference = std::cos(two_pi * static_cast<long double>(u));
    const double value = philox::cos_two_pi_portable(u);
    const double err = static_cast<double>(std::fabs(static_cast<long double>(value) - reference));
    worst = std::max(worst, err);
    ASSERT_LE(err, 0x1p-52) << "u = " << u;
  }
  EXPECT_GT(worst, 0.0);
  EXPECT_EQ(philox::cos_two_pi_portable(0.0), 1.0);
  EXPECT_EQ(philox::cos_two_pi_portable(0.5), -1.0);
  EXPECT_EQ(philox::cos_two_pi_portable(1.0), 1.0);
  EXPECT_EQ(philox::cos_two_pi_portable(0.25), 0.0);
}

TEST(PhiloxMath, NormalStreamHasMeanZeroAndUnitVariance) {
  constexpr int kCount = 200000;
  double sum = 0.0, sum_sq = 0.0;
  for (int i = 0; i < kCount; ++i) {
    const double v = philox::normal(7, static_cast<uint64_t>(i), 0.0, 1.0);
    sum += v;
    sum_sq += v * v;
  }
  const double mean = sum / kCount, variance = sum_sq / kCount - mean * mean;
  // Standard errors: 1/sqrt(n) = 0.0022 for the mean, sqrt(2/n) = 0.0032 for the variance.
  EXPECT_LT(std::fabs(mean), 5 * 0.0022);
  EXPECT_LT(std::fabs(variance - 1.0), 5 * 0.0032);
}

TEST(PhiloxMath, UniformStreamStaysInItsHalfOpenRange) {
  for (uint64_t i = 0; i < 10000; ++i) {
    const double v = philox::uniform(3, i, -2.0, 3.0);
    ASSERT_GE(v, -2.0);
    ASSERT_LT(v, 3.0);
  }
}

}  // namespace
}  // namespace autotp
