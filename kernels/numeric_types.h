// Scalar storage types shared by CPU and CUDA kernels: bfloat16 and IEEE half, with
// round-to-nearest-even conversions from f32, plus a generic value conversion.
#pragma once

#include <cstdint>
#include <cstring>
#include <type_traits>

namespace autotp {

// bfloat16: the upper 16 bits of an IEEE f32.
struct BFloat16 {
  uint16_t bits = 0;
  BFloat16() = default;
  explicit BFloat16(float value) : bits(from_float(value)) {}
  explicit operator float() const { return to_float(bits); }

  static uint16_t from_float(float value) {
    uint32_t u;
    std::memcpy(&u, &value, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((u >> 16) | 0x40);  // NaN
    const uint32_t rounding = 0x7fffu + ((u >> 16) & 1u);
    return static_cast<uint16_t>((u + rounding) >> 16);
  }
  static float to_float(uint16_t b) {
    const uint32_t u = static_cast<uint32_t>(b) << 16;
    float f;
    std::memcpy(&f, &u, 4);
    return f;
  }
};

// IEEE binary16 (subnormals, inf and NaN handled).
struct Float16 {
  uint16_t bits = 0;
  Float16() = default;
  explicit Float16(float value) : bits(from_float(value)) {}
  explicit operator float() const { return to_float(bits); }

  static uint16_t from_float(float value);
  static float to_float(uint16_t h);
};

template <typename T>
inline constexpr bool kIsHalfType = std::is_same_v<T, BFloat16> || std::is_same_v<T, Float16>;

// Converts between any two scalar types; 16-bit floats go through f32.
template <typename Dst, typename Src>
inline Dst convert_value(Src value) {
  if constexpr (std::is_same_v<Dst, Src>) {
    return value;
  } else if constexpr (kIsHalfType<Src>) {
    return convert_value<Dst>(static_cast<float>(value));
  } else if constexpr (kIsHalfType<Dst>) {
    return Dst(static_cast<float>(value));
  } else {
    return static_cast<Dst>(value);
  }
}

}  // namespace autotp
