// Philox-4x32-10 counter-based generator (Salmon et al., SC'11): value = f(seed, counter).
// Usable from host and device code; CPU and GPU produce bit-identical doubles.
#pragma once

#include <cmath>
#include <cstdint>

#if defined(__CUDACC__)
#define AUTOTP_HOST_DEVICE __host__ __device__
#else
#define AUTOTP_HOST_DEVICE
#endif

namespace autotp::philox {

#if !defined(__CUDA_ARCH__)
using std::floor;
using std::frexp;
using std::sqrt;
#endif

struct Block {
  uint32_t v[4];
};

AUTOTP_HOST_DEVICE inline void mul_hi_lo(uint32_t a, uint32_t b, uint32_t* hi, uint32_t* lo) {
  const uint64_t product = static_cast<uint64_t>(a) * b;
  *hi = static_cast<uint32_t>(product >> 32);
  *lo = static_cast<uint32_t>(product);
}

// Four random 32-bit words for the 128-bit counter (counter_lo, counter_hi, 0, 0) and key seed.
AUTOTP_HOST_DEVICE inline Block generate(uint64_t seed, uint64_t counter) {
  constexpr uint32_t kMul0 = 0xD2511F53u, kMul1 = 0xCD9E8D57u;
  constexpr uint32_t kWeyl0 = 0x9E3779B9u, kWeyl1 = 0xBB67AE85u;
  uint32_t c0 = static_cast<uint32_t>(counter), c1 = static_cast<uint32_t>(counter >> 32);
  uint32_t c2 = 0, c3 = 0;
  uint32_t k0 = static_cast<uint32_t>(seed), k1 = static_cast<uint32_t>(seed >> 32);
  for (int round = 0; round < 10; ++round) {
    uint32_t hi0, lo0, hi1, lo1;
    mul_hi_lo(kMul0, c0, &hi0, &lo0);
    mul_hi_lo(kMul1, c2, &hi1, &lo1);
    const uint32_t n0 = hi1 ^ c1 ^ k0, n1 = lo1, n2 = hi0 ^ c3 ^ k1, n3 = lo0;
    c0 = n0;
    c1 = n1;
    c2 = n2;
    c3 = n3;
    k0 += kWeyl0;
    k1 += kWeyl1;
  }
  return Block{{c0, c1, c2, c3}};
}

// Round-to-nearest basic arithmetic that the compiler may not fuse into FMAs: host and device
// then evaluate the same sequence of IEEE operations and agree bit for bit (host builds pass
// -ffp-contract=off, so plain operators are never fused there either).
AUTOTP_HOST_DEVICE inline double add_rn(double a, double b) {
#if defined(__CUDA_ARCH__)
  return __dadd_rn(a, b);
#else
  return a + b;
#endif
}
AUTOTP_HOST_DEVICE inline double sub_rn(double a, double b) {
#if defined(__CUDA_ARCH__)
  return __dsub_rn(a, b);
#else
  return a - b;
#endif
}
AUTOTP_HOST_DEVICE inline double mul_rn(double a, double b) {
#if defined(__CUDA_ARCH__)
  return __dmul_rn(a, b);
#else
  return a * b;
#endif
}
AUTOTP_HOST_DEVICE inline double div_rn(double a, double b) {
#if defined(__CUDA_ARCH__)
  return __ddiv_rn(a, b);
#else
  return a / b;
#endif
}

// log(u) for u in (0, 1] from basic operations only (libm's log differs between the host and
// CUDA in the last bit), within 3 ulp (tests/kernels/test_philox_math.cpp). u = f * 2^e with f in
// [sqrt(1/2), sqrt(2)), log(f) = 2 atanh(s) = 2 (s + s^3/3 + ... + s^23/23), s = (f - 1) / (f + 1),
// |s| < 0.1716.
AUTOTP_HOST_DEVICE inline double log_portable(double u) {
  int e = 0;
  double f = frexp(u, &e);  // exact: f in [0.5, 1)
  if (f < 0.70710678118654752440) {
    f = mul_rn(f, 2.0);  // exact
    --e;
  }
  const double s = div_rn(sub_rn(f, 1.0), add_rn(f, 1.0));
  const double s2 = mul_rn(s, s);
  constexpr double kInverseOdd[] = {
      // 1/23, 1/21, ..., 1/3
      0x1.642c8590b2164p-5, 0x1.8618618618618p-5, 0x1.af286bca1af28p-5, 0x1.e1e1e1e1e1e1ep-5,
      0x1.1111111111111p-4, 0x1.3b13b13b13b14p-4, 0x1.745d1745d1746p-4, 0x1.c71c71c71c71cp-4,
      0x1.2492492492492p-3, 0x1.999999999999ap-3, 0x1.5555555555555p-2};
  double series = kInverseOdd[0];
  for (int i = 1; i < 11; ++i)
    series = add_rn(kInverseOdd[i], mul_rn(s2, series));
  series = add_rn(1.0, mul_rn(s2, series));
  const double log_f = mul_rn(mul_rn(2.0, s), series);
  // e * log(2) in two parts (fdlibm's split: e * kLn2Hi is exact for |e| < 2^20).
  constexpr double kLn2Hi = 0x1.62e42feep-1, kLn2Lo = 0x1.a39ef35793c76p-33;
  const double ed = static_cast<double>(e);
  return add_rn(mul_rn(ed, kLn2Hi), add_rn(mul_rn(ed, kLn2Lo), log_f));
}

// cos(2 pi u) for u in [0, 1] from basic operations only, within 2^-52 absolute. u is split
// exactly into quarter turns q and a remainder r in [-1/8, 1/8]; Taylor series of cos/sin of
// x = 2 pi r (|x| <= pi/4) through x^18 / x^19.
AUTOTP_HOST_DEVICE inline double cos_two_pi_portable(double u) {
  const double quarter_turns = floor(add_rn(mul_rn(u, 4.0), 0.5));  // exact for u = k / 2^32
  const double r = sub_rn(u, mul_rn(quarter_turns, 0.25));          // exact
  const double x = mul_rn(r, 0x1.921fb54442d18p+2);                 // 2 pi r
  const double x2 = mul_rn(x, x);
  const int quadrant = static_cast<int>(quarter_turns) & 3;
  if (quadrant == 0 || quadrant == 2) {
    constexpr double kCos[] = {
        // (-1)^k / (2k)! for k = 9 down to 1
        -0x1.6827863b97d97p-53, 0x1.ae7f3e733b81fp-45,  -0x1.93974a8c07c9dp-37,
        0x1.1eed8eff8d898p-29,  -0x1.27e4fb7789f5cp-22, 0x1.a01a01a01a01ap-16,
        -0x1.6c16c16c16c17p-10, 0x1.5555555555555p-5,   -0x1.0000000000000p-1};
    double p = kCos[0];
    for (int i = 1; i < 9; ++i)
      p = add_rn(kCos[i], mul_rn(x2, p));
    const double c = add_rn(1.0, mul_rn(x2, p));
    return quadrant == 0 ? c : -c;
  }
  constexpr double kSin[] = {// (-1)^k / (2k+1)! for k = 9 down to 1
                             -0x1.2f49b46814157p-57, 0x1.952c77030ad4ap-49,  -0x1.ae7f3e733b81fp-41,
                             0x1.6124613a86d09p-33,  -0x1.ae64567f544e4p-26, 0x1.71de3a556c734p-19,
                             -0x1.a01a01a01a01ap-13, 0x1.1111111111111p-7,   -0x1.5555555555555p-3};
  double q = kSin[0];
  for (int i = 1; i < 9; ++i)
    q = add_rn(kSin[i], mul_rn(x2, q));
  const double s = add_rn(x, mul_rn(mul_rn(x, x2), q));
  return quadrant == 1 ? -s : s;  // cos(pi/2 + x) = -sin x, cos(3 pi/2 + x) = sin x
}

// Uniform in (0, 1] from 32 random bits (never 0, so log() is safe). Exact.
AUTOTP_HOST_DEVICE inline double uniform_from_bits(uint32_t bits) {
  return (static_cast<double>(bits) + 1.0) * (1.0 / 4294967296.0);
}

// Element i of a uniform [lo, hi) stream: one Philox block per element.
AUTOTP_HOST_DEVICE inline double uniform(uint64_t seed, uint64_t index, double lo, double hi) {
  const Block b = generate(seed, index);
  return add_rn(lo, mul_rn(sub_rn(hi, lo), sub_rn(1.0, uniform_from_bits(b.v[0]))));
}

// Element i of a normal(mean, std) stream: Box-Muller on one Philox block per element, with
// the portable log and cos above so that CPU and GPU streams agree bit for bit.
AUTOTP_HOST_DEVICE inline double normal(uint64_t seed, uint64_t index, double mean, double std) {
  const Block b = generate(seed, index);
  const double u1 = uniform_from_bits(b.v[0]);
  const double u2 = uniform_from_bits(b.v[1]);
  const double radius = sqrt(mul_rn(-2.0, log_portable(u1)));  // sqrt is correctly rounded
  return add_rn(mean, mul_rn(mul_rn(std, radius), cos_two_pi_portable(u2)));
}

}  // namespace autotp::philox
