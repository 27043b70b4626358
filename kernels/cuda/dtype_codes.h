// Element-type codes the CUDA kernels take as `int dtype`. kernels/ may not include core/, so
// these mirror autotp::DType; core/cuda_dtype_codes.cpp static_asserts that the values agree.
#pragma once

namespace autotp::kernels::cuda {

enum class DTypeCode : int { F32 = 0, F64 = 1, BF16 = 2, F16 = 3, I32 = 4, I64 = 5 };

// "f32", "bf16", ... or "unknown" (for error messages).
inline const char* dtype_code_name(int dtype) {
  switch (static_cast<DTypeCode>(dtype)) {
    case DTypeCode::F32:
      return "f32";
    case DTypeCode::F64:
      return "f64";
    case DTypeCode::BF16:
      return "bf16";
    case DTypeCode::F16:
      return "f16";
    case DTypeCode::I32:
      return "i32";
    case DTypeCode::I64:
      return "i64";
  }
  return "unknown";
}

}  // namespace autotp::kernels::cuda
