// Element types (DType) and the bf16/f16 storage types with their f32 conversions.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "kernels/numeric_types.h"

namespace autotp {

enum class DType : uint8_t { F32, F64, BF16, F16, I32, I64 };

// Size in bytes of one element.
size_t dtype_size(DType dtype);
// Short lower-case name: "f32", "bf16", ...
std::string_view dtype_name(DType dtype);
// Parses a name as written in configs ("f32", "float32", "bf16", "bfloat16", ...).
DType dtype_from_name(std::string_view name);
bool is_floating(DType dtype);

template <typename T>
struct DTypeOf;
template <>
struct DTypeOf<float> {
  static constexpr DType value = DType::F32;
};
template <>
struct DTypeOf<double> {
  static constexpr DType value = DType::F64;
};
template <>
struct DTypeOf<BFloat16> {
  static constexpr DType value = DType::BF16;
};
template <>
struct DTypeOf<Float16> {
  static constexpr DType value = DType::F16;
};
template <>
struct DTypeOf<int32_t> {
  static constexpr DType value = DType::I32;
};
template <>
struct DTypeOf<int64_t> {
  static constexpr DType value = DType::I64;
};

}  // namespace autotp
