// Maps a runtime DType to a C++ scalar type: fn(TypeTag<T>{}) is called with the matching T.
#pragma once

#include "core/dtype.h"
#include "core/error.h"

namespace autotp {

template <typename T>
struct TypeTag {
  using type = T;
};

// Every dtype.
template <typename Fn>
decltype(auto) dispatch_any(DType dtype, Fn&& fn) {
  switch (dtype) {
    case DType::F32:
      return fn(TypeTag<float>{});
    case DType::F64:
      return fn(TypeTag<double>{});
    case DType::BF16:
      return fn(TypeTag<BFloat16>{});
    case DType::F16:
      return fn(TypeTag<Float16>{});
    case DType::I32:
      return fn(TypeTag<int32_t>{});
    case DType::I64:
      return fn(TypeTag<int64_t>{});
  }
  AUTOTP_ASSERT(false, "unknown dtype");
}

// The dtypes CPU compute kernels support (f32, and f64 for gradient checks). Other dtypes
// get an error naming the op; convert with .to(DType::F32) first.
template <typename Fn>
decltype(auto) dispatch_float(DType dtype, const char* op, Fn&& fn) {
  switch (dtype) {
    case DType::F32:
      return fn(TypeTag<float>{});
    case DType::F64:
      return fn(TypeTag<double>{});
    default:
      AUTOTP_FAIL("{}: dtype {} is not supported here (expected f32 or f64)", op,
                  dtype_name(dtype));
  }
}

}  // namespace autotp
