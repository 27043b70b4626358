// Philox-4x32-10 counter-based generator (Salmon et al., SC'11): value = f(seed, counter).
// Usable from host and device code, so CPU and GPU produce the same numbers.
#pragma once

#include <cmath>
#include <cstdint>

#if defined(__CUDACC__)
#define AUTOTP_HOST_DEVICE __host__ __device__
#else
#define AUTOTP_HOST_DEVICE
#endif

namespace autotp::philox {

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

// Uniform in (0, 1] from 32 random bits (never 0, so log() is safe).
AUTOTP_HOST_DEVICE inline double uniform_from_bits(uint32_t bits) {
  return (static_cast<double>(bits) + 1.0) * (1.0 / 4294967296.0);
}

// Element i of a uniform [lo, hi) stream: one Philox block per element.
AUTOTP_HOST_DEVICE inline double uniform(uint64_t seed, uint64_t index, double lo, double hi) {
  const Block b = generate(seed, index);
  return lo + (hi - lo) * (1.0 - uniform_from_bits(b.v[0]));
}

// Element i of a normal(mean, std) stream: Box-Muller on one Philox block per element.
AUTOTP_HOST_DEVICE inline double normal(uint64_t seed, uint64_t index, double mean, double std) {
  const Block b = generate(seed, index);
  const double u1 = uniform_from_bits(b.v[0]);
  const double u2 = uniform_from_bits(b.v[1]);
  const double radius = sqrt(-2.0 * log(u1));
  return mean + std * radius * cos(6.283185307179586476925 * u2);
}

}  // namespace autotp::philox
