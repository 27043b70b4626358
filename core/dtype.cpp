// DType names and sizes; f16 conversion.
#include "core/dtype.h"

#include "core/error.h"

namespace autotp {

size_t dtype_size(DType dtype) {
  switch (dtype) {
    case DType::F32:
      return 4;
    case DType::F64:
      return 8;
    case DType::BF16:
      return 2;
    case DType::F16:
      return 2;
    case DType::I32:
      return 4;
    case DType::I64:
      return 8;
  }
  AUTOTP_ASSERT(false, "unknown dtype {}", static_cast<int>(dtype));
}

std::string_view dtype_name(DType dtype) {
  switch (dtype) {
    case DType::F32:
      return "f32";
    case DType::F64:
      return "f64";
    case DType::BF16:
      return "bf16";
    case DType::F16:
      return "f16";
    case DType::I32:
      return "i32";
    case DType::I64:
      return "i64";
  }
  AUTOTP_ASSERT(false, "unknown dtype {}", static_cast<int>(dtype));
}

DType dtype_from_name(std::string_view name) {
  if (name == "f32" || name == "float32" || name == "fp32" || name == "float") return DType::F32;
  if (name == "f64" || name == "float64" || name == "fp64" || name == "double") return DType::F64;
  if (name == "bf16" || name == "bfloat16") return DType::BF16;
  if (name == "f16" || name == "float16" || name == "fp16" || name == "half") return DType::F16;
  if (name == "i32" || name == "int32") return DType::I32;
  if (name == "i64" || name == "int64") return DType::I64;
  AUTOTP_FAIL("unknown dtype '{}': expected one of f32, f64, bf16, f16, i32, i64", name);
}

bool is_floating(DType dtype) {
  return dtype == DType::F32 || dtype == DType::F64 || dtype == DType::BF16 || dtype == DType::F16;
}

}  // namespace autotp
